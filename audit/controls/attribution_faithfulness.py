"""The control ``attribution-faithfulness``: faithfulness of the primary attribution method."""

from __future__ import annotations

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.wording import plural


def measure_faithfulness(evidence: dict, params: dict) -> list[Measurement]:
    comparison = evidence["attributions"].get("comparison") or {}
    faithfulness = comparison.get("faithfulness") or {}
    entry = faithfulness.get("methods", {}).get(evidence["attributions"]["method"])
    if not entry or entry["gain_comprehensiveness"]["mean_gain"] is None:
        return []
    gain = entry["gain_comprehensiveness"]
    return [
        Measurement(
            f"{evidence['attributions']['method']} vs random word ordering",
            gain["mean_gain"],
            gain["ci"],
            f"AOPC comprehensiveness {entry['aopc_comprehensiveness']:+.3f} vs random "
            f"{faithfulness['methods']['random']['aopc_comprehensiveness']:+.3f} over {plural(gain['n_cases'], 'case')}",
        )
    ]


DEFINITION = register_control(ControlDefinition(
    "attribution-faithfulness",
    "Faithfulness of the primary attribution method",
    "Do the words the primary method ranks highest actually carry the decision, more than random words?",
    "mean gain in ERASER comprehensiveness (AOPC over 1-50 % of words) of the primary method over a random "
    "word ordering, paired bootstrap 95 % CI over cases",
    "min",
    "log-odds",
    ("nist-ai-rmf-measure-2.9", "eu-ai-act-art-13", "ecoa-reg-b-1002.9b2"),
    measure_faithfulness,
    threshold_range=(None, None),
    summary="comprehensiveness gain of the primary method over a random ordering",
    remedy=(
        "Do not rely on the primary method's explanations: they are no better than a random ordering of "
        "the words. Pick a method that passes the checks in the trust section."
    ),
    to_decide="Run more scenarios: the faithfulness gain is compared over the baseline cases, one per scenario.",
    if_not_evaluated=(
        "Explain the baseline cases with the primary method so it can be compared with a random ordering "
        "of the words."
    ),
))
