"""The control ``prompt-format-stability``: stability of decisions across prompt formats."""

from __future__ import annotations

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.wording import plural


def measure_format_stability(evidence: dict, params: dict) -> list[Measurement]:
    """Share of the cases compared across prompt formats whose decision changes in at least one (``audit.stages.prompt_formats``)."""
    robustness = evidence.get("robustness")
    if not robustness or not robustness.get("evaluated"):
        return []
    changed, n = robustness["n_decision_changes"], robustness["n_cases"]
    names = ", ".join(f["name"] for f in robustness["formats"][1:])
    return [
        Measurement(
            f"{plural(n, 'baseline case' if robustness['mode'] == 'baselines' else 'case')} x "
            f"{len(robustness['formats'])} formats", changed / n, robustness["decision_change_ci"],
            f"{changed} of {plural(n, 'case')} change decision between {robustness['reference']} and {names} (readings "
            f"with answer mass below {robustness.get('mass_floor', 0.5)} not counted)",
        )
    ]


DEFINITION = register_control(ControlDefinition(
    "prompt-format-stability",
    "Stability of decisions across prompt formats",
    "Does the model reach the same Yes/No decision when the same case is put in another prompt format "
    "(another answer prefix, a system prompt, the facts in another order)?",
    "share of the compared cases whose decision under at least one other format differs from the suite as "
    "written; Wilson 95 % CI",
    "max",
    "share",
    ("eu-ai-act-art-15", "nist-ai-rmf-measure-2.5"),
    measure_format_stability,
    threshold_range=(0.0, 1.0),
    summary="share of cases whose decision changes with the prompt format",
    remedy=(
        "Decisions depend on the prompt format: fix the deployment's format and audit that format, or "
        "choose a model whose decisions do not move with it."
    ),
    to_decide="Compare more cases across formats (--format-sensitivity full, more scenarios).",
    if_not_evaluated=(
        "Compare prompt formats (--format-sensitivity baselines or full); a suite that fixes its own "
        "prompt has none to compare."
    ),
))
