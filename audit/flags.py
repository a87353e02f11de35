"""Range checks of the numeric flags shared by ``audit run`` and ``audit explain``, done before any work.

click's ``INT`` takes any integer, and the seeding functions do not: ``numpy.random.seed`` refuses a seed of
2**32 or more and ``torch.manual_seed`` one of 2**64 or more, each with a traceback after the model has loaded.
"""

from __future__ import annotations

from audit.errors import AuditError

MAX_SEED = 2**32 - 1  # numpy.random.seed's largest seed
MAX_IG_STEPS = 4096  # Gauss-Legendre nodes; past a few hundred the completeness gap no longer shrinks (float32)


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise AuditError(f"--seed: must be a whole number from 0 to {MAX_SEED}, got {seed}")


def check_steps(flag: str, steps: int, least: int, least_text: str | None = None) -> None:
    """``least`` <= ``steps`` <= ``MAX_IG_STEPS``; ``least_text`` names the bound where it is another flag."""
    if not least <= steps <= MAX_IG_STEPS:
        raise AuditError(f"{flag}: must be at least {least_text or least} and at most {MAX_IG_STEPS}, got {steps}")
