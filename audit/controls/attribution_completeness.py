"""The control ``attribution-completeness``: attribution completeness gap."""

from __future__ import annotations

import numpy as np

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.controls.groups import case_statistic


def measure_completeness(evidence: dict, params: dict) -> list[Measurement]:
    gaps = [
        a["convergence_delta"] / max(abs(a["score"] - a["reference_score"]), 1e-6)
        for a in evidence["attributions"]["cases"]
        if a.get("convergence_delta") is not None
    ]
    found = case_statistic(gaps, np.median, params)
    return [] if found is None else [found]


DEFINITION = register_control(ControlDefinition(
    "attribution-completeness",
    "Attribution completeness gap",
    "Do the Integrated Gradients scores add up to the decision they explain?",
    "median over attributed cases of |sum of attributions - (f(x) - f(x'))| / |f(x) - f(x')|; "
    "95 % bootstrap CI",
    "max",
    "share",
    ("nist-ai-rmf-measure-2.9", "eu-ai-act-art-13"),
    measure_completeness,
    threshold_range=(0.0, None),
    summary="median IG completeness gap",
    remedy=(
        "Raise the integration steps (--ig-steps, or --ig-tolerance for adaptive steps) until the "
        "attributions add up to the decision they explain."
    ),
    to_decide="Attribute more cases, or raise the integration steps so the gaps shrink clear of the threshold.",
    if_not_evaluated="Attribute cases with Integrated Gradients (--methods ig), whose completeness can be checked.",
))
