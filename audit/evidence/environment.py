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


def reset_peak_memory() -> None:
    """Start a new peak of the process's resident memory: Linux resets VmHWM when 5 is written to
    /proc/self/clear_refs (proc(5)), so each audit of ``audit run --model A --model B`` records its own peak.
    Elsewhere nothing is reset and the peak is the process's."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_memory_bytes() -> int | None:
    """Peak resident memory since ``reset_peak_memory`` (VmHWM of /proc/self/status), else the process's peak
    (``resource.getrusage``: kilobytes on Linux, bytes on macOS); None where neither is available."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return int(peak if sys.platform == "darwin" else peak * 1024)
