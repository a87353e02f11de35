"""Expansion: one attribute changed at a time, spans that point at the slot text, shared pair ids."""

from __future__ import annotations

from audit.suites import expand, load_suite


def test_cases_change_one_attribute_from_the_baseline():
    suite = load_suite("fair-lending")
    cases = expand(suite, limit=2)
    scenario_ids = [s.id for s in suite.scenarios[:2]]
    assert {c.pair_id for c in cases} == set(scenario_ids)
    per_scenario = 1 + sum(len(a.values) for a in suite.attributes)
    assert len(cases) == 2 * per_scenario
    assert len({c.case_id for c in cases}) == len(cases)
    for pair in scenario_ids:
        family = [c for c in cases if c.pair_id == pair]
        baseline = next(c for c in family if c.is_baseline)
        for case in family:
            for attribute in suite.attributes:
                expected = attribute.baseline.text if case.attribute != attribute.name else case.value
                (start, end), = case.slots[attribute.name]
                assert case.text[start:end] == expected
            changed = {p for p in baseline.groups if case.groups[p] != baseline.groups[p]}
            allowed = set() if case.is_baseline else set(suite.attribute(case.attribute).protected)
            assert changed <= allowed, case.case_id


def test_factor_spans_and_limit():
    suite = load_suite("fair-lending")
    scenario = suite.scenarios[0]
    case = expand(suite, limit=1)[0]
    for factor in suite.factors:
        if factor in case.slots:
            (start, end), = case.slots[factor]
            assert case.text[start:end] == scenario.values[factor]
    assert {c.scenario_id for c in expand(suite, limit=1)} == {scenario.id}
