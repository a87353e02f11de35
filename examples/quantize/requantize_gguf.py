"""Write a GGUF file of another quantisation type from an existing one: the same model, quantised differently.

    python examples/quantize/requantize_gguf.py SOURCE.gguf OUT.gguf --type Q8_0
    python examples/quantize/requantize_gguf.py smollm2-135m-instruct smollm2-q8_0.gguf   # the bundled model

Every tensor stored in a block-quantised type is dequantised (gguf.quants) and quantised again in ``--type``;
float tensors (norms) and the metadata (architecture, tokenizer, chat template) are copied unchanged, as
gguf's own ``gguf_new_metadata`` script copies them. Auditing the source and the result (``audit run --model``)
then shows what the quantisation changes; both fingerprints name their GGUF file and its sha256.

The default model ships only as Q4_1; this is how the README's "a GGUF of another quantisation" is made
without a download. llama.cpp's ``llama-quantize`` does the same from a float model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, Keys
from gguf.quants import dequantize, quantize

FLOAT_TYPES = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
WRITABLE_TYPES = (  # the block types gguf.quants can quantise to and transformers' GGUF loader dequantises
    GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q5_0, GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q8_0,
)


def requantize(reader: GGUFReader, out: Path, target: GGMLQuantizationType) -> dict[str, int]:
    """Write ``out``: the read GGUF with its block-quantised tensors in ``target``; returns the counts per kind."""
    architecture = reader.fields[Keys.General.ARCHITECTURE].contents()
    writer = GGUFWriter(out, architecture, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        if field.name == Keys.General.FILE_TYPE:
            continue  # no longer true of the file
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    counts = {"requantised": 0, "copied": 0}
    tensors = []
    for tensor in reader.tensors:
        if tensor.tensor_type in FLOAT_TYPES:
            tensors.append((tensor.name, tensor.data, tensor.tensor_type))
            counts["copied"] += 1
            continue
        weights = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        tensors.append((tensor.name, quantize(weights, target), target))
        counts["requantised"] += 1
    for name, data, kind in tensors:
        writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data, _ in tensors:
        writer.write_tensor_data(data)
    writer.close()
    return counts


class OneLineParser(argparse.ArgumentParser):
    """argparse, with each bad-input error on one line (no usage block) and exit code 2, as ``audit`` does."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_target(text: str) -> GGMLQuantizationType:
    """``--type``: a block-quantised type gguf can write (its K-quants and i-quants it only reads)."""
    target = getattr(GGMLQuantizationType, text.upper(), None)
    if target not in WRITABLE_TYPES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a type this script can write (one of {', '.join(t.name for t in WRITABLE_TYPES)})")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="requantize_gguf.py", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="A GGUF file, or a bundled alias (smollm2-135m-instruct).")
    parser.add_argument("out", type=Path, help="The GGUF file to write (replaced only once complete).")
    parser.add_argument("--type", type=parse_target, default=GGMLQuantizationType.Q8_0,
                        help=f"{', '.join(t.name for t in WRITABLE_TYPES)} (default Q8_0)")
    args = parser.parse_args(argv)
    source = Path(args.source)
    if not source.is_file():
        from audit.models.spec import BUNDLED_MODELS, parse_model_spec

        if args.source not in BUNDLED_MODELS:
            parser.error(f"{args.source}: no such file, nor a bundled alias ({', '.join(BUNDLED_MODELS)})")
        source = parse_model_spec(args.source).path
    if not args.out.parent.is_dir():
        parser.error(f"{args.out}: its folder {args.out.parent} does not exist")
    if args.out.exists() and args.out.resolve() == source.resolve():
        parser.error(f"{args.out}: is the source file; write the result to another path")
    try:
        reader = GGUFReader(source)
    except (ValueError, OSError) as exc:  # gguf raises ValueError for a file without the GGUF magic or version
        parser.error(f"{args.source}: not a readable GGUF file ({exc})")
    partial = args.out.with_name(f".{args.out.name}.partial")
    try:
        counts = requantize(reader, partial, args.type)
        partial.replace(args.out)
    finally:
        partial.unlink(missing_ok=True)
    print(f"{args.out}: {counts['requantised']} tensors in {args.type.name}, {counts['copied']} copied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
