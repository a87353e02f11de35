"""Helpers shared by the controls that measure per protected group or over attributed cases."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from audit.controls.base import Measurement
from audit.wording import INTERSECTION, plural
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


def group_members(records: list[dict], attribute: str, props: list[str] | tuple[str, ...]) -> dict[str, list[dict]]:
    """The cases of each group of ``props`` (joined by ``INTERSECTION``) among the cases that vary ``attribute``
    and the scenarios' baseline cases, which belong to the reference group of every attribute they carry."""
    members: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        varied = record["attribute"] == attribute
        baseline = record["attribute"] is None and attribute in record.get("protected_slots", ())
        if varied or baseline:
            members[INTERSECTION.join(record["groups"][p] for p in props)].append(record)
    return members


def scenario_shifts(records: list[dict], attribute: str, props: list[str] | tuple[str, ...], reference: str,
                    scenarios: list[str]) -> dict[str, np.ndarray]:
    """Per group, the counterfactual shift ``d_s`` of each scenario s (NaN where the group has no case in s).

    ``d_s = mean score of the group's cases in s - mean score of the reference group's cases in s``; for the
    reference group itself, the mean of its other values in s against the baseline case of s (the name-to-name
    noise floor). The control ``counterfactual-shift`` reports ``mean_s d_s`` (``audit.stages.counterfactual``),
    ``audit compare`` the paired change of it between two models.
    """
    members = group_members(records, attribute, props)
    index = {s: i for i, s in enumerate(scenarios)}

    def per_scenario(cases: list[dict]) -> np.ndarray:
        sums, counts = np.zeros(len(scenarios)), np.zeros(len(scenarios))
        for case in cases:
            if case["pair_id"] in index:
                sums[index[case["pair_id"]]] += case["score"]
                counts[index[case["pair_id"]]] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / counts  # NaN where the group has no case in the scenario

    baseline = per_scenario([r for r in records if r["attribute"] is None])
    reference_mean = per_scenario(members.get(reference, []))
    shifts = {reference: per_scenario([r for r in members.get(reference, []) if r["attribute"] is not None])
              - baseline}
    for group, cases in members.items():
        if group != reference:
            shifts[group] = per_scenario(cases) - reference_mean
    return shifts
