"""The options of ``audit run`` and ``audit explain``: their choices, defaults and range checks, done before any work.

``RunOptions`` and ``ExplainOptions`` are the one validated options object each command passes to the library
(``audit.pipeline.run``, ``audit.explain.run.explain_answer``); what the two share (the model and how it is
loaded, the seed, the output folder) is ``CommonOptions``. Constructing one checks every flag's range, so bad
input is refused before any file is read or any model loaded; what needs the file system or torch (the output
folder, the model spec, the device) is checked next by the library, still before the model loads.

This module imports nothing heavier than ``audit.errors`` and ``audit.text_safety``, so the command line can
show every choice and default (``audit --help``) without loading torch, transformers, captum or shap.

click's ``INT`` takes any integer, and the seeding functions do not: ``numpy.random.seed`` refuses a seed of
2**32 or more and ``torch.manual_seed`` one of 2**64 or more, each with a traceback after the model has loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.text_safety import check_text

DEFAULT_MODEL = "smollm2-135m-instruct"  # the bundled alias (audit.models.spec)
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


@dataclass(frozen=True)
class CommonOptions:
    """What ``audit run`` and ``audit explain`` share: the model and how it is loaded, the seed, the output."""

    model: str = DEFAULT_MODEL
    base_model: str | None = None  # the base of a PEFT adapter folder given as ``model``
    device: str = "cpu"
    dtype: str = "float32"
    allow_pickle: bool = False
    trust_remote_code: bool = False
    seed: int = 0
    out: str | Path = DEFAULT_OUT
    command_line: list[str] | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        check_seed(self.seed)


@dataclass(frozen=True)
class RunOptions(CommonOptions):
    """``audit run``: the suite (or the bank's rows through it), the policy and every method's parameters.

    ``cache``: reuse and store per-case results in ``cache_dir`` (default: see ``audit.evidence.results_cache``).
    ``junit``: a second copy of ``junit.xml`` (always written into ``out``) where a CI job collects it.
    """

    suite: str = DEFAULT_SUITE
    rows: str | None = None
    policy: str | None = None
    limit: int | None = None
    device_map: str | None = None
    ig_steps: int = DEFAULT_IG_STEPS
    ig_tolerance: float | None = None
    ig_max_steps: int = DEFAULT_IG_MAX_STEPS
    methods: str | None = None
    patching_pairs: int | None = PATCHED_PAIRS
    jurisdiction: str | None = None
    format_sensitivity: str = "baselines"
    render: bool = True
    cache: bool = True
    cache_dir: str | Path | None = None
    junit: str | Path | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise AuditError(f"--limit: must be at least 1, got {self.limit}")
        super().__post_init__()
        check_steps("--ig-steps", self.ig_steps, least=2)
        if self.ig_tolerance is not None and not 0 < self.ig_tolerance < 1:
            raise AuditError(f"--ig-tolerance: must be a fraction between 0 and 1 (0.05 = 5 %), got {self.ig_tolerance}")
        if self.ig_tolerance is not None:
            check_steps("--ig-max-steps", self.ig_max_steps, least=self.ig_steps,
                        least_text=f"--ig-steps ({self.ig_steps})")
        if self.patching_pairs is not None and self.patching_pairs < 1:
            raise AuditError(f"--patching-pairs: must be at least 1 or 'all', got {self.patching_pairs}")
        if self.format_sensitivity not in FORMAT_MODES:
            raise AuditError(f"--format-sensitivity: must be one of {', '.join(FORMAT_MODES)}, "
                             f"got {self.format_sensitivity!r}")
        if self.jurisdiction is not None and self.jurisdiction not in JURISDICTIONS:
            raise AuditError(f"--jurisdiction: must be one of {', '.join(JURISDICTIONS)}, got {self.jurisdiction!r}")

    @property
    def ig_options(self) -> dict[str, Any]:
        """Integrated Gradients' parameters: fixed steps, or adaptive steps with a tolerance and a budget."""
        if self.ig_tolerance is None:
            return {"n_steps": self.ig_steps}
        return {"n_steps": self.ig_steps, "tolerance": self.ig_tolerance, "max_steps": self.ig_max_steps}


@dataclass(frozen=True)
class ExplainOptions(CommonOptions):
    """``audit explain``: the prompt (or the file holding it), the system prompt, the answer's length and the
    attribution method."""

    prompt: str | None = None
    prompt_file: str | Path | None = None
    system: str | None = None
    max_new_tokens: int = EXPLAIN_MAX_NEW_TOKENS
    method_name: str = "ig"
    ig_steps: int = EXPLAIN_IG_STEPS
    out: str | Path = EXPLAIN_OUT

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise AuditError(f"--max-new-tokens: must be at least 1, got {self.max_new_tokens}")
        check_steps("--ig-steps", self.ig_steps, least=1)
        super().__post_init__()
        if self.system is not None and not self.system.strip():
            raise AuditError("--system: is empty; leave it out for the chat template's default")
        if self.system is not None:
            check_text(self.system, "--system", AuditError)
