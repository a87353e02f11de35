"""The control ``decision-flip-rate``: decision flip rate."""

from __future__ import annotations

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.controls.groups import group_key, group_label, protected_groups
from audit.wording import plural


def measure_flips(evidence: dict, params: dict) -> list[Measurement]:
    return [
        Measurement(
            group_label(a, g), g["flip_rate"], g["flip_ci"], plural(g['n_counterfactual'], 'counterfactual case'), group_key(a, g),
            g["n_counterfactual"],
        )
        for a, g in protected_groups(evidence["fairness"], include_reference=False)
        if g["flip_rate"] is not None
    ]


DEFINITION = register_control(ControlDefinition(
    "decision-flip-rate",
    "Decision flip rate",
    "How often does the Yes/No decision itself change when only a protected attribute changes?",
    "share of counterfactual cases whose decision differs from their baseline's; Wilson 95 % CI",
    "max",
    "share",
    ("ecoa-reg-b-1002.4a", "eu-ai-act-art-15", "nist-ai-rmf-measure-2.11"),
    measure_flips,
    threshold_range=(0.0, 1.0),
    summary="share of counterfactual cases whose decision differs from their baseline's",
    remedy=(
        "Read the flipped cases in the fairness section: each is an applicant whose decision changed with"
        " a protected attribute alone, a disparate-treatment finding to remediate before deployment."
    ),
    to_decide=(
        "Run more scenarios: the flip rate's Wilson interval narrows with the number of counterfactual "
        "cases."
    ),
    if_not_evaluated="The suite needs protected attributes with counterfactual values for decisions to flip.",
))
