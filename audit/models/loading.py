"""Load a model with its tokenizer, safely, and fingerprint what was loaded.

Safety defaults: weights are read from safetensors only (pickle checkpoints
can run code when unpickled) unless ``allow_pickle``; ``trust_remote_code``
stays off unless asked for; nothing is fetched from the network.

GGUF files are dequantised once by transformers and cached as a float32
safetensors folder keyed by the GGUF file's sha256, so later loads are a plain
safetensors read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from audit.errors import AuditError, ModelSpecError
from audit.options import DEVICE_MAPS, DEVICES, DTYPES, default_cache_dir
from audit.evidence.hashing import sha256_file, sha256_json, sha256_text
from audit.models.spec import ModelSpec, parse_model_spec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model", "chat_template.jinja",
    "chat_template.json",
)
CONVERTED_WEIGHTS = "model.safetensors"
CONVERSION_RECORD = "converted-from-gguf.json"


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    family: str  # "causal-lm" or "classifier"
    folder: Path
    fingerprint: dict[str, Any]
    budget: Any = None  # audit.models.batching.BatchBudget: rows per pass, shared by every adapter of this model


def check_runtime(device: str, dtype: str) -> None:
    """Refuse device/dtype combinations before anything is loaded."""
    import torch

    if device not in DEVICES:
        raise AuditError(f"--device: {device!r} is not one of {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise AuditError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise AuditError("--device cuda: torch sees no CUDA device on this machine; use --device cpu")


def fingerprint_of(spec_text: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                   base_model: str | None = None) -> dict:
    """The fingerprint ``audit run`` records for the model ``spec_text`` names, for ``audit verify --model``."""
    loaded = load_model(parse_model_spec(spec_text, base_model), allow_pickle=allow_pickle,
                        trust_remote_code=trust_remote_code)
    return loaded.fingerprint


def load_model(
    spec: ModelSpec,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    device_map: str | None = None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> LoadedModel:
    """Load ``spec`` for auditing: weights frozen, in eval mode, on ``device`` in ``dtype``.

    ``device_map="auto"`` spreads a model larger than one GPU over every visible GPU (and the CPU) through
    accelerate instead of moving it to ``device``; inputs then enter at the embedding layer's device.
    """
    import torch
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from audit.models.batching import BatchBudget

    check_runtime(device, dtype)
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise AuditError(f"--device-map: {device_map!r} is not one of {', '.join(DEVICE_MAPS)}")
    if spec.kind == "adapter":
        base = load_model(spec.base, device=device, dtype=dtype, allow_pickle=allow_pickle,
                          trust_remote_code=trust_remote_code, device_map=device_map, cache_dir=cache_dir, log=log)
        return with_adapter(base, spec, allow_pickle=allow_pickle, log=log)
    source_gguf = None
    if spec.kind in ("gguf", "alias"):
        folder, source_gguf = converted_gguf_folder(spec.path, cache_dir or default_cache_dir(), log=log)
    else:
        folder = spec.path
    use_safetensors = check_weights(spec, allow_pickle)

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, StrictDataclassError) as exc:  # a config field of the wrong type
        if not trust_remote_code and _names_remote_code(folder):
            raise ModelSpecError(
                f"--model: {spec.text!r} needs code shipped with the weights (auto_map in config.json), which is "
                "refused; pass --trust-remote-code only if you trust the source"
            ) from None
        raise ModelSpecError(f"--model: {spec.text!r} could not be loaded: {_first_line(exc)}") from None
    architectures = list(getattr(config, "architectures", None) or [])
    family = "classifier" if any(a.endswith("ForSequenceClassification") for a in architectures) else "causal-lm"
    auto_class = AutoModelForSequenceClassification if family == "classifier" else AutoModelForCausalLM
    try:
        model = auto_class.from_pretrained(
            folder,
            dtype=getattr(torch, dtype),
            use_safetensors=use_safetensors,
            trust_remote_code=trust_remote_code,
            local_files_only=True,
            **({"device_map": device_map} if device_map else {}),
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError, RuntimeError, StrictDataclassError) as exc:  # RuntimeError: weights of other shapes
        raise ModelSpecError(f"--model: {spec.text!r} could not be loaded: {_first_line(exc)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelSpecError(
            f"--model: {spec.text!r} has no fast tokenizer (tokenizer.json); audits need character offsets to align words"
        )
    model.requires_grad_(False)
    model.eval()
    if not device_map:
        model.to(device)
    fingerprint = fingerprint_model(folder, model, tokenizer, family, dtype, spec, source_gguf)
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, family=family, folder=folder, fingerprint=fingerprint,
                       budget=BatchBudget.for_model(model))


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def with_adapter(base: LoadedModel, spec: ModelSpec, *, allow_pickle: bool, log: Callable[[str], None]) -> LoadedModel:
    """``base`` with the PEFT adapter of ``spec`` merged into its weights (W + B A s for LoRA), frozen again.

    Merging gives the fine-tuned model's exact function as a plain transformers model, so every stage (hooks on
    decoder layers, the lens's head, the prefix cache) reads it as it reads any model of the family. The
    fingerprint is the base's with the adapter's config and weights hashed in: two fine-tunes of one base differ
    in ``id`` and share ``base_id``.
    """
    from peft import PeftModel

    log(f"applying adapter {spec.path.name} to {spec.base.text} (merged into the weights)")
    weights = check_adapter_weights(spec, allow_pickle)
    try:
        merged = PeftModel.from_pretrained(base.model, spec.path, is_trainable=False).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:  # RuntimeError: shapes of another base
        raise ModelSpecError(f"--model: adapter {spec.text!r} does not apply to its base {spec.base.text!r}: "
                             f"{_first_line(exc)}") from None
    merged.requires_grad_(False)
    merged.eval()
    tokenizer = base.tokenizer
    if (spec.path / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(spec.path, local_files_only=True)
    config = json.loads((spec.path / "adapter_config.json").read_text())
    adapter = {
        "config_sha256": sha256_file(spec.path / "adapter_config.json"),
        "weights": {path.name: sha256_file(path) for path in weights},
        "tokenizer": {name: sha256_file(spec.path / name) for name in TOKENIZER_FILES if (spec.path / name).is_file()},
    }
    fingerprint = {
        **base.fingerprint,
        "id": sha256_json({"base": base.fingerprint["id"], "adapter": adapter}),
        "spec": spec.text,
        "spec_kind": "adapter",
        "base_id": base.fingerprint["id"],
        "parameters": int(sum(p.numel() for p in merged.parameters())),
        "parameter_bytes": parameter_bytes(merged),
        "weight_bytes": (base.fingerprint.get("weight_bytes") or 0) + sum(path.stat().st_size for path in weights),
        "adapter": {
            **adapter,
            "base_spec": spec.base.text,
            "peft_type": config.get("peft_type"),
            "rank": config.get("r"),
            "alpha": config.get("lora_alpha"),
            "target_modules": sorted(config["target_modules"]) if isinstance(config.get("target_modules"), list)
            else config.get("target_modules"),
            "merged": True,
        },
    }
    if adapter["tokenizer"]:
        template = getattr(tokenizer, "chat_template", None)
        fingerprint["chat_template"] = template if isinstance(template, str) else None
    return LoadedModel(spec=spec, model=merged, tokenizer=tokenizer, family=base.family, folder=base.folder,
                       fingerprint=fingerprint, budget=base.budget)


def check_adapter_weights(spec: ModelSpec, allow_pickle: bool) -> list[Path]:
    """The adapter's weight files; refuses a pickle-only adapter unless allowed, and a folder without weights."""
    safetensors = spec.path / ADAPTER_WEIGHTS[0]
    if safetensors.is_file():
        check_safetensors(safetensors)
        return [safetensors]
    pickled = spec.path / ADAPTER_WEIGHTS[1]
    if not pickled.is_file():
        raise ModelSpecError(f"--model: adapter folder {spec.text!r} holds no {ADAPTER_WEIGHTS[0]}")
    if not allow_pickle:
        raise ModelSpecError(
            f"--model: adapter folder {spec.text!r} has only pickle weights ({pickled.name}), which can run code when "
            "loaded; convert them to safetensors or pass --allow-pickle if you trust the source"
        )
    return [pickled]


def _names_remote_code(folder: Path) -> bool:
    try:
        return "auto_map" in json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False


def check_weights(spec: ModelSpec, allow_pickle: bool) -> bool:
    """True when the model folder has safetensors; refuses pickle-only folders unless allowed.

    GGUF files are always safe to read (no code in them) and report True.
    """
    if spec.kind == "adapter":
        check_adapter_weights(spec, allow_pickle)
        return check_weights(spec.base, allow_pickle)
    if spec.kind in ("gguf", "alias"):
        return True
    folder = spec.path
    files = [p for p in folder.iterdir() if p.is_file()]
    safetensors = sorted(p for p in files if p.suffix == ".safetensors")
    if safetensors:
        for path in safetensors:
            check_safetensors(path)
        return True
    pickled = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if not pickled:
        raise ModelSpecError(f"--model: folder {spec.text!r} holds no weight files (*.safetensors)")
    if not allow_pickle:
        raise ModelSpecError(
            f"--model: folder {spec.text!r} has only pickle weights ({pickled[0]}), which can run code when loaded; "
            "convert them to safetensors or pass --allow-pickle if you trust the source"
        )
    return False


def check_safetensors(path: Path) -> None:
    """Refuse a safetensors file whose header does not parse or whose tensors run past its end.

    Format: 8 bytes little-endian header length N, N bytes of JSON mapping each tensor to its ``data_offsets``
    [begin, end) in the data that follows. Reading the header alone catches a truncated or overwritten file
    before transformers fails half-way through loading it.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= size - 8:
                raise ValueError(f"header length {length} does not fit a file of {size} bytes")
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"--model: {path.name}: not a readable safetensors file, corrupted ({exc})") from None
    if 8 + length + end > size:
        raise ModelSpecError(f"--model: {path.name}: truncated: its tensors end at byte {8 + length + end}, the file "
                             f"has {size}")


def check_gguf(path: Path) -> None:
    """Refuse a GGUF file whose header does not parse or whose tensor data runs past its end."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the gguf reader signals a short or malformed file with many exception types
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSpecError(f"--model: {path.name}: not a readable GGUF file, truncated or corrupted ({detail})") from None
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > path.stat().st_size:
        raise ModelSpecError(f"--model: {path.name}: truncated: its tensors end at byte {end}, the file has "
                             f"{path.stat().st_size}")


def converted_gguf_folder(gguf_path: Path, cache_root: Path, log: Callable[[str], None]) -> tuple[Path, dict]:
    """Dequantise a GGUF file once into ``cache_root/gguf/<sha256>/`` (safetensors + config + tokenizer)."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = sha256_file(gguf_path)
    folder = cache_root / "gguf" / digest
    record_path = folder / CONVERSION_RECORD
    if record_path.is_file() and (folder / CONVERTED_WEIGHTS).is_file():
        return folder, {**json.loads(record_path.read_text()), "bytes": gguf_path.stat().st_size}

    check_gguf(gguf_path)
    log(f"converting {gguf_path.name} to safetensors once (cached in {folder})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f"{digest}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except Exception as exc:  # transformers raises many types for unsupported GGUF architectures
        raise ModelSpecError(f"--model: GGUF file {gguf_path.name!r} could not be converted: {str(exc).splitlines()[0]}") from None
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]
    staging.mkdir(parents=True)
    config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    save_model(model, str(staging / CONVERTED_WEIGHTS))
    record = {"file": gguf_path.name, "sha256": digest, "license": _gguf_license(gguf_path)}
    (staging / CONVERSION_RECORD).write_text(json.dumps(record, indent=2))
    record["bytes"] = gguf_path.stat().st_size
    try:
        os.replace(staging, folder)
    except OSError:  # another process converted it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder, record


def _gguf_license(gguf_path: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("general.license")
    return None if field is None else str(field.contents())


def parameter_bytes(model) -> int:
    """Bytes the model's parameters hold in memory at the dtype it was loaded in."""
    return int(sum(p.numel() * p.element_size() for p in model.parameters()))


def fingerprint_model(
    folder: Path, model, tokenizer, family: str, dtype: str, spec: ModelSpec, source_gguf: dict | None
) -> dict[str, Any]:
    """sha256 of every weight file, tokenizer file, the chat template and the config, plus identity facts.

    ``id`` is the sha256 of the canonical JSON of the hashed parts, so two
    audits of byte-identical models share it.
    """
    weights = {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and (p.suffix == ".safetensors" or p.suffix in PICKLE_SUFFIXES)
    }
    tokenizer_files = {name: sha256_file(folder / name) for name in TOKENIZER_FILES if (folder / name).is_file()}
    template = getattr(tokenizer, "chat_template", None)
    hashed = {
        "weights": weights,
        "tokenizer": tokenizer_files,
        "chat_template_sha256": sha256_text(template) if isinstance(template, str) else None,
        "config_sha256": sha256_file(folder / "config.json"),
        "source_gguf": source_gguf and {"file": source_gguf["file"], "sha256": source_gguf["sha256"]},
    }
    config = model.config
    return {
        "id": sha256_json(hashed),
        **hashed,
        "spec": spec.text,
        "spec_kind": spec.kind,
        "family": family,
        "architecture": (getattr(config, "architectures", None) or [type(model).__name__])[0],
        "model_type": getattr(config, "model_type", None),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "parameter_bytes": parameter_bytes(model),
        "weight_bytes": (source_gguf or {}).get("bytes") or sum((folder / name).stat().st_size for name in weights),
        "layers": getattr(config, "num_hidden_layers", None),
        "dtype": dtype,
        "license": _license(folder, spec, source_gguf),
        "chat_template": template if isinstance(template, str) else None,
        "routing": expert_routing(config),
    }


EXPERT_COUNTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
ROUTING_NOTE = (
    "mixture of experts: each token runs through the top {active} of {experts} experts its router picks, so the "
    "decision is piecewise in the input: where a change of the input swaps an expert in or out, the score jumps "
    "and no gradient sees the jump. Gradient methods (Integrated Gradients, input x gradient, gradient SHAP) "
    "attribute within each routing region only; their completeness gap includes the jumps and does not close "
    "with more integration steps. Perturbation methods, which run the model, see the jumps."
)


def expert_routing(config) -> dict[str, Any] | None:
    """The router of a mixture-of-experts model (experts, experts active per token, what it means for gradient
    attributions), or None for a dense model."""
    config = getattr(config, "text_config", None) or config
    experts = next((getattr(config, name) for name in EXPERT_COUNTS if getattr(config, name, None)), None)
    active = getattr(config, "num_experts_per_tok", None) or getattr(config, "moe_topk", None)
    if not experts or not active or experts <= 1:
        return None
    return {"experts": int(experts), "active_per_token": int(active),
            "note": ROUTING_NOTE.format(active=int(active), experts=int(experts))}


def _license(folder: Path, spec: ModelSpec, source_gguf: dict | None) -> str | None:
    if source_gguf and source_gguf.get("license"):
        return source_gguf["license"]
    readme = folder / "README.md"
    if readme.is_file():
        front = re.match(r"^---\n(.*?)\n---", readme.read_text(errors="replace"), re.S)
        if front:
            found = re.search(r"^license:\s*(\S+)", front.group(1), re.M)
            if found:
                return found.group(1).strip("'\"")
    if spec.license_hint:
        return spec.license_hint
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (folder / name).is_file():
            return f"see {name} in the model folder"
    return None


def _first_line(exc: Exception) -> str:
    """The first non-blank line of a library's error, or its class where it says nothing."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
