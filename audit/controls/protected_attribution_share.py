"""The control ``protected-attribution-share``: attribution share of protected attributes."""

from __future__ import annotations

import numpy as np

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.controls.groups import case_statistic


def measure_protected_share(evidence: dict, params: dict) -> list[Measurement]:
    attributions = evidence["attributions"]["cases"]
    shares = [
        sum(a["slot_shares"].get(slot, 0.0) for slot in a["protected_slots"]) for a in attributions
    ]
    found = case_statistic(shares, np.mean, params)
    return [] if found is None else [found]


DEFINITION = register_control(ControlDefinition(
    "protected-attribution-share",
    "Attribution share of protected attributes",
    "How much of the explanation of a decision rests on the words that carry protected attributes?",
    "mean over attributed cases of the share of |attribution| mass (primary method, Integrated Gradients "
    "by default) on protected slots; "
    "95 % bootstrap CI over cases",
    "max",
    "share",
    ("ecoa-reg-b-1002.9b2", "eu-ai-act-art-13", "nist-ai-rmf-measure-2.9"),
    measure_protected_share,
    threshold_range=(0.0, 1.0),
    summary="share of the primary method's attribution on protected words",
    remedy=(
        "The explanations rest on the protected words: investigate which slots carry the attribution "
        "(attributions section) and why the model attends to them."
    ),
    to_decide="Attribute more cases (more scenarios); the interval is bootstrapped over the attributed cases.",
    if_not_evaluated="Attribute at least one case with an attribution method (--methods).",
))
