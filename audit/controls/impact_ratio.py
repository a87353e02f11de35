"""The control ``impact-ratio``: approval impact ratio (four-fifths rule)."""

from __future__ import annotations

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.controls.groups import group_key, protected_groups
from audit.wording import plural


def measure_impact(evidence: dict, params: dict) -> list[Measurement]:
    groups = list(protected_groups(evidence["fairness"], include_reference=True))
    if groups and all(g["impact_ratio"] is None for _, g in groups):
        return [Measurement("every group", None, None,
                            "no group was approved in any case, so no group's rate can be set against the "
                            "most-approved group's")]
    return [
        Measurement(
            f"{a['property']} = {g['group']} (vs the most-approved {a['property']} group)", g["impact_ratio"],
            g["impact_ci"],
            f"approval rate {g['approval_rate']:.2f} over {plural(g['n_cases'], 'case')}",
            group_key(a, g), g["n_cases"],
        )
        for a, g in protected_groups(evidence["fairness"], include_reference=True)
        if g["impact_ratio"] is not None
    ]


DEFINITION = register_control(ControlDefinition(
    "impact-ratio",
    "Approval impact ratio (four-fifths rule)",
    "Is any group approved at less than four fifths of the rate of the most-approved group?",
    "approval rate of the group / highest approval rate among the groups of the same property; "
    "95 % bootstrap CI over scenarios",
    "min",
    "ratio",
    # Not 12 CFR 1002.4(a): the 2026 Regulation B rule removed the effects test (disparate impact), so an
    # outcome ratio evidences the rule's risk reading, not the general rule against discrimination.
    ("ecoa-reg-b-2026-final-rule", "ugesp-29-cfr-1607.4d", "nist-ai-rmf-measure-2.11"),
    measure_impact,
    threshold_range=(0.0, 1.0),
    summary="a group's approval rate / the highest group's (four-fifths rule)",
    remedy=(
        "Review the approval rates by group for the decisive property with the model owner; a ratio below"
        " four fifths is an outcome gap that needs a business justification or remediation."
    ),
    to_decide=(
        "Run more scenarios: the approval rates are resampled over scenarios, and few scenarios leave "
        "them wide."
    ),
    if_not_evaluated=(
        "No group was approved, so no approval rate can be compared: find out why the model declines "
        "every application (answer reliability, the prompt) before relying on any fairness result."
    ),
))
