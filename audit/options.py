"""The options of ``audit run`` and ``audit explain``: their choices, defaults and range checks, done before any work.

This module imports nothing heavier than ``audit.errors``, so the command line can show every choice and
default (``audit --help``) without loading torch, transformers, captum or shap.

click's ``INT`` takes any integer, and the seeding functions do not: ``numpy.random.seed`` refuses a seed of
2**32 or more and ``torch.manual_seed`` one of 2**64 or more, each with a traceback after the model has loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from audit.errors import AuditError

DEFAULT_SUITE = "fair-lending"
DEFAULT_OUT = "audit-out"
DEFAULT_IG_STEPS = 32
DEFAULT_IG_MAX_STEPS = 256
DEFAULT_METHODS = ("ig", "saliency", "input-x-gradient", "gradient-shap", "feature-ablation", "attention-rollout")
PATCHED_PAIRS = 5  # the fewest pairs over which a bootstrap CI is reported
FORMAT_MODES = ("off", "baselines", "full")  # prompt-format sensitivity: none, the baseline cases, every case
JURISDICTIONS = ("us", "eu", "uk", "nyc")  # where the audited use is deployed: picks the clauses the report shows

DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
DEVICE_MAPS = ("auto",)

EXPLAIN_OUT = "explain-out"
EXPLAIN_MAX_NEW_TOKENS = 48
EXPLAIN_IG_STEPS = 32  # SmolLM2, a 32-token answer: median relative completeness gap 21 % at 8 steps, 20 % at 16, 6 % at 32

MAX_SEED = 2**32 - 1  # numpy.random.seed's largest seed
MAX_IG_STEPS = 4096  # Gauss-Legendre nodes; past a few hundred the completeness gap no longer shrinks (float32)


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise AuditError(f"--seed: must be a whole number from 0 to {MAX_SEED}, got {seed}")


def check_steps(flag: str, steps: int, least: int, least_text: str | None = None) -> None:
    """``least`` <= ``steps`` <= ``MAX_IG_STEPS``; ``least_text`` names the bound where it is another flag."""
    if not least <= steps <= MAX_IG_STEPS:
        raise AuditError(f"{flag}: must be at least {least_text or least} and at most {MAX_IG_STEPS}, got {steps}")


def default_cache_dir() -> Path:
    """The tool's cache folder (converted GGUF models, per-case results): ``$OSS_MODEL_AUDIT_CACHE``, else
    ``oss-model-audit`` in ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    configured = os.environ.get("OSS_MODEL_AUDIT_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "oss-model-audit"
