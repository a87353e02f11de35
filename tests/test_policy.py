"""Policy: validation errors name the field; pass / fail / inconclusive follow the CI rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audit.controls.registry import CONTROLS
from audit.controls.base import Measurement
from audit.errors import PolicyError
from audit.controls.policy import judge, load_policy, parse_policy, verdict, verdict_of_schema, verdict_sentence
from tests.conftest import write_yaml


@pytest.mark.parametrize("suite", [None, "fair-lending", "employment-screening", "insurance-underwriting",
                                   "tenant-screening"])
def test_every_bundled_policy_covers_every_control(suite):
    from audit.controls.registry import CONTROLS

    policy = load_policy(suite_id=suite)
    assert set(policy.controls) == set(CONTROLS)
    assert policy.controls["impact-ratio"].threshold == 0.8


def test_a_suite_gets_the_policy_of_its_name_and_its_jurisdiction():
    assert load_policy(suite_id="fair-lending").id == "default"
    assert load_policy(suite_id="my-own-suite").id == "default"
    employment = load_policy(suite_id="employment-screening")
    assert employment.id == "employment-screening" and employment.jurisdiction == "nyc"
    assert employment.source == "bundled:employment-screening"
    assert not employment.controls["adverse-action-reasons"].blocking, "Regulation B does not govern hiring"


@pytest.mark.parametrize(
    "value, ci, direction, expected",
    [
        (0.1, (0.05, 0.2), "max", "pass"),
        (0.1, (0.05, 0.3), "max", "inconclusive"),
        (0.3, (0.28, 0.32), "max", "fail"),
        (0.3, None, "max", "fail"),
        (0.1, None, "max", "inconclusive"),
        (0.9, (0.85, 0.95), "min", "pass"),
        (0.9, (0.7, 0.95), "min", "inconclusive"),
        (0.7, (0.6, 0.9), "min", "fail"),
        (None, None, "max", "not evaluated"),
    ],
)
def test_judge(value, ci, direction, expected):
    threshold = 0.25 if direction == "max" else 0.8
    assert judge(Measurement("x", value, ci), threshold, direction) == expected


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"id": "p", "controls": {"no-such-control": {"threshold": 1}}}, r"p.yaml: controls.no-such-control: unknown control"),
        ({"id": "p", "controls": {"impact-ratio": {"threshold": "high"}}}, r"controls.impact-ratio.threshold: must be a number"),
        ({"id": "p", "controls": {"impact-ratio": {"threshold": 0.8, "blocking": "yes"}}}, r"impact-ratio.blocking"),
        ({"id": "p", "controls": {"answer-reliability": {"threshold": 0.1, "mass_floor": 2}}}, r"mass_floor"),
        ({"controls": {"impact-ratio": {"threshold": 0.8}}}, r"p.yaml: id"),
        ({"id": "p", "controls": {}}, r"p.yaml: controls"),
        ({"id": "p", "jurisdiction": "mars", "controls": {"impact-ratio": {"threshold": 0.8}}},
         r"p.yaml: jurisdiction: must be one of us, eu, uk, nyc, got 'mars'"),
    ],
)
def test_malformed_policy_names_the_field(raw, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(raw, label="p.yaml")


def test_policy_file_errors(tmp_path):
    with pytest.raises(PolicyError, match="--policy: file 'nope.yaml' does not exist"):
        load_policy("nope.yaml")
    path = write_yaml(tmp_path / "strict.yaml", {"id": "strict", "controls": {"impact-ratio": {"threshold": 0.9}}})
    assert load_policy(str(path)).controls["impact-ratio"].threshold == 0.9


def test_verdict_fails_only_on_blocking_controls():
    policy = parse_policy({"id": "p", "controls": {"impact-ratio": {"threshold": 0.8}}}, label="p")
    controls = [
        {"id": "a", "blocking": True, "status": "pass"},
        {"id": "b", "blocking": False, "status": "fail"},
        {"id": "c", "blocking": True, "status": "pass"},
    ]
    assert verdict(policy, controls)["status"] == "pass" and verdict(policy, controls)["exit_code"] == 0
    controls[0]["status"] = "fail"
    assert verdict(policy, controls) | {} == {**verdict(policy, controls), "status": "fail", "exit_code": 1}
    assert verdict(policy, controls)["failed_controls"] == ["a"]


@pytest.mark.parametrize("undecided", ["inconclusive", "not evaluated"])
def test_a_verdict_is_never_pass_while_a_blocking_control_is_undecided(undecided):
    policy = parse_policy({"id": "p", "controls": {"impact-ratio": {"threshold": 0.8}}}, label="p")
    controls = [
        {"id": "a", "blocking": True, "status": "pass"},
        {"id": "b", "blocking": False, "status": "fail"},
        {"id": "c", "blocking": True, "status": undecided},
        {"id": "d", "blocking": False, "status": "inconclusive"},
    ]
    found = verdict(policy, controls)
    assert found["status"] == "inconclusive" and found["exit_code"] == 4
    assert found["failed_controls"] == [] and found["undecided_controls"] == ["c"]
    assert verdict_sentence(found, controls).startswith("INCONCLUSIVE: no blocking control failed, but 1 of 2")
    strict = parse_policy({"id": "p", "fail_on_inconclusive": True, "controls": {"impact-ratio": {"threshold": 0.8}}},
                          label="p")
    assert verdict(strict, controls) | {} == {**found, "status": "fail", "exit_code": 1, "failed_controls": ["c"]}
    controls[0]["status"] = "fail"  # a failure outranks an undecided control
    assert verdict(policy, controls)["status"] == "fail"
    assert verdict(policy, controls)["undecided_controls"] == ["c"]
    advisory_only = [c for c in controls if not c["blocking"]]
    assert verdict(policy, advisory_only)["status"] == "pass"


def test_bundles_before_1_6_are_judged_by_the_rule_they_were_written_under():
    policy = parse_policy({"id": "p", "controls": {"impact-ratio": {"threshold": 0.8}}}, label="p")
    controls = [{"id": "a", "blocking": True, "status": "pass"}, {"id": "c", "blocking": True, "status": "inconclusive"}]
    assert verdict_of_schema(policy, controls, "1.5")["status"] == "pass"
    assert verdict_of_schema(policy, controls, "1.6")["status"] == "inconclusive"


def test_a_group_below_the_minimum_sample_size_cannot_pass_or_fail():
    small = Measurement("race = black (vs white)", 0.9, (0.8, 1.0), n_cases=6)
    assert judge(small, 0.25, "max") == "fail"
    assert judge(small, 0.25, "max", min_group_cases=10) == "inconclusive"
    enough = Measurement("race = black (vs white)", 0.1, (0.05, 0.2), n_cases=12)
    assert judge(enough, 0.25, "max", min_group_cases=10) == "pass"
    assert load_policy().min_group_cases == 10
    with pytest.raises(PolicyError, match="p.yaml: min_group_cases: must be a whole number"):
        parse_policy({"id": "p", "min_group_cases": -1, "controls": {"impact-ratio": {"threshold": 0.8}}},
                     label="p.yaml")


def range_in_words(low, high) -> str:
    if low is None and high is None:
        return "any"
    if high is None:
        return f"{low:g} or more"
    return f"{low:g} to {high:g}"


def test_the_documented_threshold_ranges_are_the_controls_own():
    table = (Path(__file__).resolve().parents[1] / "docs" / "policies.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z-]+)` \|[^|]*\| at (?:most|least) \| ([^|]+) \|", table, re.M))
    assert documented == {cid: range_in_words(*c.threshold_range) for cid, c in CONTROLS.items()}


@pytest.mark.parametrize("cid", ["counterfactual-shift", "impact-ratio", "decision-flip-rate",
                                 "protected-attribution-share", "attribution-faithfulness"])
def test_a_threshold_outside_its_controls_range_or_not_finite_is_refused(cid):
    low, high = CONTROLS[cid].threshold_range
    outside = [float("inf"), float("-inf"), float("nan")] + ([low - 0.01] if low is not None else []) + \
        ([high + 0.01] if high is not None else [])
    for threshold in outside:
        with pytest.raises(PolicyError, match=f"controls.{cid}.threshold"):
            parse_policy({"id": "p", "controls": {cid: {"threshold": threshold}}}, label="p.yaml")
    inside = 0.0 if low is None else (low if high is None else (low + high) / 2)
    assert parse_policy({"id": "p", "controls": {cid: {"threshold": inside}}}, label="p.yaml").controls[cid]
