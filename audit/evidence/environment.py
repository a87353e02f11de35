"""The environment record of a run: interpreter, platform, processor count, torch threads, package versions,
seed, device, dtype and the command line, so a validator can rebuild the machine that produced the evidence."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any


RECORDED_PACKAGES = (
    "oss-model-audit", "torch", "transformers", "accelerate", "gguf", "safetensors", "tokenizers", "captum",
    "shap", "numpy", "scipy", "statsmodels", "matplotlib", "jinja2", "weasyprint", "click", "PyYAML",
)


def environment(*, seed: int, device: str, dtype: str, command_line: list[str] | None) -> dict[str, Any]:
    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": packages,
        "seed": seed,
        "device": device,
        "dtype": dtype,
        "command_line": command_line if command_line is not None else [os.path.basename(sys.argv[0]), *sys.argv[1:]],
    }
