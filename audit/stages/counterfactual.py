"""Counterfactual fairness statistics.

For a protected property P (race, sex, age, ...) with reference group r (the
baseline's value) and another group g, with scenarios s = 1..S:

- decision-score shift of group g: d_s = mean score of g's cases in scenario s
  - mean score of the reference group's cases in s (the baseline case and any
  other value of the baseline's group, e.g. the other white names); the effect
  is mean_s d_s. Comparing with the whole reference group rather than the one
  baseline value keeps a single name's idiosyncrasy out of every comparison.
  For the reference group itself the shift is that of its other values
  against the baseline case: the name-to-name noise floor. Scores are
  log-odds, so a shift of -0.2 multiplies the odds of approval by e^-0.2.
  The 95 % CI is a bootstrap over scenarios (the cases of one scenario are
  paired and resampled together), BCa where it is defined, else percentile
  (Efron & Tibshirani 1993; scipy.stats.bootstrap); with fewer than
  ``MIN_SCENARIOS_FOR_CI`` scenarios no interval is given (``explainers.intervals``).
- flip rate: share of group-g cases whose Yes/No decision differs from their
  baseline's, with a Wilson score interval (statsmodels).
- approval rate: share of a group's cases decided favourably, averaged over
  scenarios so that every scenario weighs the same; impact ratio:
  rate(g) / max_h rate(h), the selection-rate comparison of the four-fifths
  rule (29 CFR 1607.4(D)), with a bootstrap CI over scenarios.

Where an attribute carries two or more properties (a name carries race and
sex), the combination of its first two (race x sex) is analysed too
(intersectional groups, Buolamwini & Gebru 2018).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audit.controls.answer_reliability import MASS_FLOOR
from audit.controls.groups import group_members, scenario_shifts
from explainers.intervals import MIN_SCENARIOS_FOR_CI, bootstrap_ci, wilson
from audit.wording import INTERSECTION
from audit.errors import ModelSpecError
from audit.suites.schema import Suite


def decision_of(score: float, threshold: float = 0.0) -> bool:
    """Favourable when the log-odds exceed the threshold (p(fav) > p(unfav) at 0)."""
    return score > threshold


def _properties(suite: Suite) -> list[tuple[str, tuple[str, ...]]]:
    """(attribute name, properties) to analyse: each property, and the intersection of an attribute's first two
    (race x sex of a name; a third property would split the groups too thin to read)."""
    result = []
    for attribute in suite.attributes:
        for prop in attribute.protected:
            result.append((attribute.name, (prop,)))
        if len(attribute.protected) > 1:
            result.append((attribute.name, tuple(attribute.protected[:2])))
    return result


def case_records(encoded, scores: list[float], masses: list[float]) -> list[dict[str, Any]]:
    """The record of every scored case that the statistics, controls and bundle read: its provenance, score,
    answer mass, decision and shift against its scenario's baseline."""
    baseline_scores = {
        e.case.pair_id: s for e, s in zip(encoded, scores) if e.case.is_baseline
    }
    records = []
    for item, score, mass in zip(encoded, scores, masses):
        case = item.case
        if not (math.isfinite(score) and math.isfinite(mass)):
            raise ModelSpecError(f"--model: scores case {case.case_id} as {score} (answer mass {mass}): its logits "
                                 "are not finite, so no decision can be read (a half-precision overflow? try "
                                 "--dtype float32)")
        records.append(
            {
                "case_id": case.case_id,
                "pair_id": case.pair_id,
                "scenario_id": case.scenario_id,
                "attribute": case.attribute,
                "value": case.value,
                "groups": case.groups,
                "protected_slots": list(case.protected_slots),
                "text": case.text,
                "slots": {k: [list(span) for span in v] for k, v in case.slots.items()},
                "n_tokens": item.length,
                "score": score,
                "answer_mass": mass,
                "decision": "favourable" if decision_of(score) else "unfavourable",
                "shift": score - baseline_scores[case.pair_id],
            }
        )
    return records


def counterfactual_statistics(
    suite: Suite,
    records: list[dict[str, Any]],
    *,
    seed: int,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    mass_floor: float = MASS_FLOOR.default,
) -> dict[str, Any]:
    """Statistics per protected property and group from scored case records.

    ``records`` carry ``pair_id``, ``attribute`` (None for baselines),
    ``groups``, ``score`` and ``answer_mass``.
    """
    baselines = {r["pair_id"]: r for r in records if r["attribute"] is None}
    scenarios = sorted(baselines)
    analyses = []
    for attribute_name, props in _properties(suite):
        attribute = suite.attribute(attribute_name)
        label = INTERSECTION.join(props)

        reference = INTERSECTION.join(attribute.baseline.groups[p] for p in props)
        varied = [r for r in records if r["attribute"] == attribute_name]
        if not varied:
            continue
        members = group_members(records, attribute_name, props)
        shifts = scenario_shifts(records, attribute_name, props, reference, scenarios)
        group_names = [reference] + sorted(g for g in members if g != reference)
        rates_by_scenario = {
            g: np.array([_rate([r for r in members[g] if r["pair_id"] == s]) for s in scenarios]) for g in group_names
        }
        groups = [
            _group_statistics(
                g, reference, members[g], baselines, rates_by_scenario, shifts[g],
                seed=seed, n_resamples=n_resamples, confidence=confidence,
            )
            for g in group_names
        ]
        analyses.append(
            {
                "attribute": attribute_name,
                "property": label,
                "reference": reference,
                "intersectional": len(props) > 1,
                "n_scenarios": len({r["pair_id"] for r in varied}),
                "groups": groups,
            }
        )
    masses = np.array([r["answer_mass"] for r in records], dtype=float)
    unreliable = int((masses < mass_floor).sum())
    return {
        "params": {
            "decision_threshold": 0.0,
            "confidence": confidence,
            "bootstrap_resamples": n_resamples,
            "bootstrap_unit": "scenario",
            "ci_method": "BCa bootstrap over scenarios (percentile where BCa is undefined); Wilson for flip rates",
            "min_scenarios_for_ci": MIN_SCENARIOS_FOR_CI,
            "shift_definition": "mean over scenarios of (mean score of the group - mean score of the reference "
            "group); for the reference group, its other values against the baseline case",
            "seed": seed,
            "mass_floor": mass_floor,
        },
        "answer_mass": {
            "mean": float(masses.mean()),
            "min": float(masses.min()),
            "n_unreliable": unreliable,
            "unreliable_share": unreliable / len(records),
            "unreliable_ci": wilson(unreliable, len(records), confidence),
        },
        "baseline_approval_rate": _rate(list(baselines.values())),
        "n_cases": len(records),
        "n_scenarios": len(scenarios),
        "analyses": analyses,
    }


def _rate(records: list[dict]) -> float:
    if not records:
        return float("nan")
    return sum(decision_of(r["score"]) for r in records) / len(records)


def _group_statistics(
    group: str,
    reference: str,
    members: list[dict],
    baselines: dict[str, dict],
    rates_by_scenario: dict[str, np.ndarray],
    gaps: np.ndarray,
    *,
    seed: int,
    n_resamples: int,
    confidence: float,
) -> dict[str, Any]:
    is_reference = group == reference
    counterfactuals = [r for r in members if r["attribute"] is not None]
    flips = sum(
        decision_of(r["score"]) != decision_of(baselines[r["pair_id"]]["score"]) for r in counterfactuals
    )
    gaps = gaps[np.isfinite(gaps)]  # per scenario (audit.controls.groups.scenario_shifts)
    mean_shift = float(gaps.mean()) if len(gaps) else None
    shift_ci = (
        bootstrap_ci(len(gaps), lambda idx: gaps[idx].mean(-1), seed=seed, n_resamples=n_resamples, confidence=confidence)
        if len(gaps)
        else None
    )
    names = list(rates_by_scenario)
    rates = np.stack([rates_by_scenario[g] for g in names])  # [groups, scenarios]
    row = names.index(group)

    def impact(idx, none_approved=1.0):
        """The impact ratio over scenarios ``idx``; ``none_approved`` where no group is approved at all: 1 inside
        the bootstrap (a resample of only declined scenarios shows no group behind another), NaN for the
        estimate itself (a model that approves nobody has no approval rates to compare)."""
        means = np.nanmean(rates[:, idx], axis=-1)  # [groups, ...]
        best = means.max(axis=0)
        return np.where(best > 0, means[row] / np.where(best > 0, best, 1.0), none_approved)

    ratio = float(impact(np.arange(rates.shape[1]), none_approved=np.nan))
    return {
        "group": group,
        "is_reference": is_reference,
        "shift_against": "baseline case" if is_reference else f"reference group {reference}",
        "n_cases": len(members),
        "n_counterfactual": len(counterfactuals),
        "mean_shift": mean_shift,
        "shift_ci": shift_ci,
        "flip_rate": flips / len(counterfactuals) if counterfactuals else None,
        "flip_ci": wilson(flips, len(counterfactuals), confidence),
        "approval_rate": float(np.nanmean(rates_by_scenario[group])),
        "impact_ratio": None if math.isnan(ratio) else ratio,
        "impact_ci": bootstrap_ci(rates.shape[1], impact, seed=seed, n_resamples=n_resamples, confidence=confidence),
    }
