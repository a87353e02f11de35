"""Counterfactual statistics on records with known effects."""

from __future__ import annotations

import numpy as np
import pytest

from audit.stages.counterfactual import counterfactual_statistics
from audit.suites import expand, load_suite


def scored_records(suite, effect, noise=0.02, seed=0, limit=None, base=None):
    """Records whose scores are a scenario base (random unless given) plus a chosen effect per group."""
    rng = np.random.default_rng(seed)
    records = []
    bases = {}
    for case in expand(suite, limit=limit):
        start = bases.setdefault(case.pair_id, rng.normal(0.5, 1.0) if base is None else base)
        shift = 0.0 if case.is_baseline else effect(case) + rng.normal(0, noise)
        records.append({
            "case_id": case.case_id, "pair_id": case.pair_id, "attribute": case.attribute, "groups": case.groups,
            "protected_slots": list(case.protected_slots), "score": start + shift, "answer_mass": 0.9,
        })
    return records


def analysis(stats, prop):
    return next(a for a in stats["analyses"] if a["property"] == prop)


def group(stats, prop, name):
    return next(g for g in analysis(stats, prop)["groups"] if g["group"] == name)


@pytest.fixture(scope="module")
def suite():
    return load_suite("fair-lending")


def test_a_planted_race_effect_is_measured_with_a_ci_that_covers_it(suite):
    records = scored_records(suite, lambda c: -0.6 if c.groups["race"] == "black" else 0.0)
    stats = counterfactual_statistics(suite, records, seed=1, n_resamples=500)
    black = group(stats, "race", "black")
    low, high = black["shift_ci"]
    assert low <= black["mean_shift"] <= high
    assert low < -0.6 < high and black["mean_shift"] == pytest.approx(-0.6, abs=0.03)
    hispanic = group(stats, "race", "hispanic")
    assert abs(hispanic["mean_shift"]) < 0.03
    assert analysis(stats, "race")["reference"] == "white"
    assert group(stats, "race", "white")["is_reference"]
    assert stats["n_scenarios"] == len(suite.scenarios)


def test_group_gap_is_measured_against_the_whole_reference_group(suite):
    """Only the baseline name scores higher: other groups are compared with all white names, not with it."""
    records = scored_records(suite, lambda c: 0.0, noise=0.0)
    for r in records:
        if r["attribute"] is None:
            r["score"] += 0.8
    stats = counterfactual_statistics(suite, records, seed=0, n_resamples=200)
    white = group(stats, "race", "white")
    assert white["mean_shift"] == pytest.approx(-0.8, abs=1e-6), "the reference row shows name-to-name noise"
    assert group(stats, "race", "black")["mean_shift"] == pytest.approx(-0.1, abs=1e-6), "0.8 spread over 8 names"
    assert group(stats, "age", "81")["mean_shift"] == pytest.approx(-0.8, abs=1e-6), "a lone baseline value is the reference"


def test_intersectional_groups_are_analysed(suite):
    records = scored_records(
        suite, lambda c: -1.0 if (c.groups["race"], c.groups["sex"]) == ("black", "female") else 0.0, limit=4
    )
    stats = counterfactual_statistics(suite, records, seed=1, n_resamples=200)
    inter = analysis(stats, "race x sex")
    assert inter["intersectional"] and inter["reference"] == "white x male"
    assert group(stats, "race x sex", "black x female")["mean_shift"] == pytest.approx(-1.0, abs=0.05)
    assert abs(group(stats, "race x sex", "black x male")["mean_shift"]) < 0.05


def test_flip_rate_and_impact_ratio_follow_the_decisions(suite):
    # Every scenario's baseline is approved (+1); age 81 pushes below zero, so every 81 case flips.
    records = scored_records(suite, lambda c: -3.0 if c.groups["age"] == "81" else 0.0, noise=0.0, base=1.0)
    stats = counterfactual_statistics(suite, records, seed=0, n_resamples=200)
    old = group(stats, "age", "81")
    assert old["flip_rate"] == 1.0 and old["approval_rate"] == 0.0 and old["impact_ratio"] == 0.0
    assert group(stats, "age", "68")["flip_rate"] == 0.0
    assert group(stats, "age", "68")["impact_ratio"] == 1.0
    low, high = old["flip_ci"]
    assert low > 0.7 and high == pytest.approx(1.0)


def test_equal_approval_has_an_impact_interval_even_where_a_resample_approves_nobody(suite):
    """Three in four scenarios are declined for everyone: a bootstrap resample of only those shows no group behind
    another, so the interval is [1, 1] and the control can pass, rather than no interval at all."""
    approved = {s.id for s in suite.scenarios[::4]}
    records = scored_records(suite, lambda c: 0.0, noise=0.0, base=0.0)
    for r in records:
        r["score"] = 1.0 if r["pair_id"] in approved else -1.0
    stats = counterfactual_statistics(suite, records, seed=0, n_resamples=2000)
    black = group(stats, "race", "black")
    assert black["impact_ratio"] == 1.0 and black["impact_ci"] == pytest.approx((1.0, 1.0))


def test_answer_mass_floor_and_seeded_determinism(suite):
    records = scored_records(suite, lambda c: 0.1, limit=3)
    for r in records[:5]:
        r["answer_mass"] = 0.2
    a = counterfactual_statistics(suite, records, seed=7, n_resamples=200)
    b = counterfactual_statistics(suite, records, seed=7, n_resamples=200)
    assert a == b
    assert a["answer_mass"]["n_unreliable"] == 5
    assert a["answer_mass"]["unreliable_share"] == pytest.approx(5 / len(records))


def test_one_scenario_gives_no_interval(suite):
    records = scored_records(suite, lambda c: 0.2, limit=1)
    stats = counterfactual_statistics(suite, records, seed=0, n_resamples=200)
    assert group(stats, "race", "black")["shift_ci"] is None
