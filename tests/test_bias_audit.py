"""Selection rates, scoring rates and impact ratios in the form of NYC Local Law 144's rules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from audit.stages.bias_audit import bias_audit_tables

SUITE = SimpleNamespace(attributes=[SimpleNamespace(name="applicant", protected=("race", "sex")),
                                    SimpleNamespace(name="age", protected=("age",))])


def case(scenario: int, attribute, race: str, sex: str, score: float) -> dict:
    return {"pair_id": f"s{scenario}", "attribute": attribute, "protected_slots": ["applicant", "age"],
            "groups": {"race": race, "sex": sex, "age": "45"}, "score": score,
            "decision": "favourable" if score > 0 else "unfavourable"}


def pool(scenarios: int = 6) -> list[dict]:
    """Per scenario: the baseline (white male, approved), 3 more white men approved, 4 black women of whom one is
    approved, and an age counterfactual that belongs to no name category."""
    records = []
    for s in range(scenarios):
        records.append(case(s, None, "white", "male", 2.0))
        records += [case(s, "applicant", "white", "male", 1.0 + k) for k in range(3)]
        records += [case(s, "applicant", "black", "female", score) for score in (0.5, -1.0, -2.0, -3.0)]
        records.append(case(s, "age", "white", "male", -5.0))
    return records


def table(tables, kind):
    return {row["category"]: row for row in next(t for t in tables if t["category_type"] == kind)["rows"]}


def test_rates_and_ratios_follow_the_rule_definitions_on_the_name_pool_only():
    tables = bias_audit_tables(SUITE, pool(), seed=0)
    assert [t["category_type"] for t in tables] == ["sex", "race", "race x sex"]
    sex = table(tables, "sex")
    assert sex["male"]["applicants"] == 24 and sex["female"]["applicants"] == 24  # the age case is not in the pool
    assert sex["male"]["selection_rate"] == 1.0 and sex["female"]["selection_rate"] == pytest.approx(0.25)
    assert sex["female"]["selection_impact_ratio"] == pytest.approx(0.25)
    assert sex["male"]["selection_impact_ratio"] == 1.0
    # median of the pool is 0.75 (between 0.5 and 1.0): every man is above it, no woman
    assert sex["male"]["scoring_rate"] == 1.0 and sex["female"]["scoring_rate"] == 0.0
    assert sex["female"]["scoring_impact_ratio"] == 0.0
    low, high = sex["female"]["selection_impact_ratio_ci"]
    assert low <= 0.25 <= high
    assert set(table(tables, "race x sex")) == {"black x female", "white x male"}


def test_a_category_under_two_percent_is_reported_but_left_out_of_the_ratios():
    records = pool(scenarios=8)
    records.append(case(0, "applicant", "asian", "female", 9.0))  # 1 of 65 applicants: 1.5 %
    race = table(bias_audit_tables(SUITE, records, seed=0), "race")
    assert race["asian"]["excluded_from_ratio"] and race["asian"]["selection_impact_ratio"] is None
    assert race["asian"]["applicants"] == 1 and race["asian"]["selection_rate"] == 1.0
    assert race["white"]["selection_impact_ratio"] == 1.0  # the tiny category's perfect rate is not the reference
