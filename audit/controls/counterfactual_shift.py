"""The control ``counterfactual-shift``: counterfactual decision shift."""

from __future__ import annotations

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.controls.groups import abs_interval, group_key, group_label, protected_groups
from audit.wording import plural


def measure_shift(evidence: dict, params: dict) -> list[Measurement]:
    return [
        Measurement(
            group_label(a, g),
            None if g["mean_shift"] is None else abs(g["mean_shift"]),
            abs_interval(g["shift_ci"]),
            f"mean shift {g['mean_shift']:+.3f} log-odds against {g['shift_against']}, {plural(g['n_cases'], 'case')}",
            group_key(a, g), g["n_cases"],
        )
        for a, g in protected_groups(evidence["fairness"], include_reference=False)
        if g["mean_shift"] is not None
    ]


DEFINITION = register_control(ControlDefinition(
    "counterfactual-shift",
    "Counterfactual decision shift",
    "Does changing only a protected attribute (name, age, marital status, ...) move the decision?",
    "|mean shift of the decision log-odds| against the baseline applicant, per protected group, "
    "paired by scenario; 95 % bootstrap CI",
    "max",
    "log-odds",
    ("ecoa-reg-b-1002.4a", "ecoa-reg-b-1002.6b", "eu-ai-act-art-10", "nist-ai-rmf-measure-2.11"),
    measure_shift,
    threshold_range=(0.0, None),
    summary="abs. mean shift of a group's decision log-odds against the reference group",
    remedy=(
        "Investigate why the decisive group's applications score differently: compare its attributions "
        "and principal reasons with the baseline's, and do not deploy until the shift is explained or "
        "removed (prompt, fine-tuning data, or a different model)."
    ),
    to_decide=(
        "Run more scenarios (a group's mean shift is bootstrapped over scenarios) until the interval "
        "clears the threshold."
    ),
    if_not_evaluated="The suite needs protected attributes with counterfactual values for the model to be compared on.",
))
