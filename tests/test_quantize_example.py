"""examples/quantize/requantize_gguf.py on the default model: a Q8_0 file of the packaged Q4_1 SmolLM2 that keeps
its metadata and tensors and differs from the source only by Q8_0's rounding, so the README's "a GGUF of another
quantisation" audit is of the same model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from audit.models import parse_model_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quantize" / "requantize_gguf.py"


def example():
    spec = importlib.util.spec_from_file_location("requantize_gguf", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_the_default_model_requantised_to_q8_0_is_the_same_model_at_another_precision(tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import dequantize

    source = parse_model_spec("smollm2-135m-instruct").path
    out = tmp_path / "smollm2-q8_0.gguf"
    assert example().main(["smollm2-135m-instruct", str(out), "--type", "Q8_0"]) == 0  # the alias is the file
    before, after = GGUFReader(source), GGUFReader(out)
    fields = lambda reader: {f.name: f.contents() for f in reader.fields.values()  # noqa: E731
                             if not f.name.startswith("GGUF.") and f.name != "general.file_type"}
    assert fields(after) == fields(before)  # architecture, tokenizer, chat template unchanged
    assert [t.name for t in after.tensors] == [t.name for t in before.tensors]
    requantised = 0
    for old, new in zip(before.tensors, after.tensors):
        if old.tensor_type == GGMLQuantizationType.Q4_1:
            assert new.tensor_type == GGMLQuantizationType.Q8_0
            requantised += 1
            if requantised <= 3:
                # Q8_0 rounds each value to a step of 1/127 of its block's largest magnitude, the step itself
                # stored as float16 (a relative error of 2^-11, times up to 127 steps)
                a, b = dequantize(old.data, old.tensor_type), dequantize(new.data, new.tensor_type)
                blocks = a.reshape(-1, 32)
                largest = np.abs(blocks).max(axis=1, keepdims=True)
                bound = largest / 127 * 0.5 + largest * 2.0 ** -11 + 1e-6
                assert np.all(np.abs(b.reshape(-1, 32) - blocks) <= bound)
        else:
            assert new.tensor_type == old.tensor_type and np.array_equal(new.data, old.data)
    assert requantised > 100


@pytest.mark.parametrize("arguments, named", [
    (["{bundled}", "{out}", "--type", "Q4_K"], "'Q4_K' is not a type this script can write"),  # gguf only reads K-quants
    (["{bundled}", "{out}", "--type", "q9"], "'q9' is not a type"),
    (["{tmp}/nothing.gguf", "{out}"], "nothing.gguf: no such file, nor a bundled alias"),
    (["{tmp}/notes.txt", "{out}"], "notes.txt: not a readable GGUF file"),
    (["{bundled}", "{tmp}/absent/out.gguf"], "its folder"),
    (["{bundled}"], "the following arguments are required: out"),
])
def test_bad_input_is_one_line_naming_it_with_exit_2_and_nothing_written(tmp_path, capsys, arguments, named):
    (tmp_path / "notes.txt").write_text("not a model\n")
    out = tmp_path / "out.gguf"
    fill = {"bundled": "smollm2-135m-instruct", "out": str(out), "tmp": str(tmp_path)}
    with pytest.raises(SystemExit) as stopped:
        example().main([a.format(**fill) for a in arguments])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("requantize_gguf.py: error: ") and named in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
