"""Helpers shared by the controls that measure per protected group or over attributed cases."""

from __future__ import annotations

import numpy as np

from audit.controls.base import Measurement
from audit.wording import plural
from explainers.intervals import bootstrap_ci


def protected_groups(fairness: dict, include_reference: bool):
    for analysis in fairness["analyses"]:
        for group in analysis["groups"]:
            if group["is_reference"] and not include_reference:
                continue
            yield analysis, group


def group_label(analysis: dict, group: dict) -> str:
    return f"{analysis['property']} = {group['group']} (vs {analysis['reference']})"


def group_key(analysis: dict, group: dict) -> dict[str, str]:
    return {"attribute": analysis["attribute"], "property": analysis["property"], "group": group["group"]}


def abs_interval(ci):
    if ci is None:
        return None
    low, high = ci
    if low <= 0 <= high:
        return 0.0, max(-low, high)
    return min(abs(low), abs(high)), max(abs(low), abs(high))


def case_statistic(values: list[float], statistic, params: dict) -> Measurement | None:
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    ci = bootstrap_ci(
        len(data), lambda idx: statistic(data[idx], axis=-1),
        seed=params["seed"], n_resamples=params["bootstrap_resamples"], confidence=params["confidence"],
    )
    return Measurement("attributed cases", float(statistic(data)), ci, plural(len(data), 'case'))
