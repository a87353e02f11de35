"""The registry of controls is the one source of their options, defaults and documentation; policies extend."""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from audit.controls import registry
from audit.controls.answer_reliability import MASS_FLOOR
from audit.controls.base import CONTROLS, ControlDefinition, register_control
from audit.controls.policy import evaluate, load_policy, parse_policy
from audit.errors import AuditError, PolicyError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "policies.md"


def test_the_table_of_controls_in_the_docs_is_written_from_the_registry():
    table = registry.controls_table()
    assert table in DOCS.read_text(), "regenerate the table in docs/policies.md with `audit policy controls`"
    assert len(re.findall(r"^\| `[a-z-]+` \|", table, re.M)) == len(registry.registered_controls())


def test_every_option_default_comes_from_the_registry():
    policy = parse_policy({"id": "p", "controls": {"answer-reliability": {"threshold": 0.1},
                                                   "adverse-action-reasons": {"threshold": 0.0}}}, label="p.yaml")
    for cid in ("answer-reliability", "adverse-action-reasons"):
        assert policy.controls[cid].options == {o.name: o.default for o in CONTROLS[cid].options}
    left_out = parse_policy({"id": "p", "controls": {"impact-ratio": {"threshold": 0.8}}}, label="p.yaml")
    assert left_out.option("answer-reliability", "mass_floor") == MASS_FLOOR.default


@pytest.mark.parametrize("cid, name", [(c.id, o.name) for c in CONTROLS.values() for o in c.options])
def test_an_option_outside_its_interval_is_refused_in_the_registrys_words(cid, name):
    option = CONTROLS[cid].option(name)
    for value in (option.low - 0.5, option.high + 0.5, float("nan"), True, "half"):
        with pytest.raises(PolicyError, match=re.escape(f"controls.{cid}.{name}: must be a number "
                                                        f"{option.interval_in_words()}")):
            parse_policy({"id": "p", "controls": {cid: {"threshold": 0.1, name: value}}}, label="p.yaml")
    inside = (option.low + option.high) / 2
    assert parse_policy({"id": "p", "controls": {cid: {"threshold": 0.1, name: inside}}},
                        label="p.yaml").controls[cid].options[name] == inside


def test_a_policy_that_extends_default_lists_only_what_it_changes():
    default = load_policy(None)
    child = parse_policy({"id": "child", "extends": "default",
                          "controls": {"impact-ratio": {"threshold": 0.9}, "attribution-completeness":
                                       {"blocking": True}}}, label="child.yaml")
    assert list(child.controls) == list(default.controls)
    assert child.controls["impact-ratio"].threshold == 0.9 and child.controls["impact-ratio"].blocking
    assert child.controls["attribution-completeness"].blocking
    assert child.controls["attribution-completeness"].threshold == default.controls["attribution-completeness"].threshold
    assert (child.min_group_cases, child.fail_on_inconclusive) == (default.min_group_cases, default.fail_on_inconclusive)
    assert child.title == "child"


@pytest.mark.parametrize("name", ["employment-screening", "insurance-underwriting", "tenant-screening"])
def test_the_bundled_suite_policies_extend_default(name):
    text = (Path(registry.__file__).parents[1] / "policies" / f"{name}.yaml").read_text()
    assert re.search(r"^extends: default\b", text, re.M)
    policy, default = load_policy(None, suite_id=name), load_policy(None)
    changed = {cid for cid in default.controls if policy.controls[cid] != default.controls[cid]}
    assert changed == {"adverse-action-reasons"}
    assert policy.jurisdiction is not None


@pytest.mark.parametrize("extends", ["no-such-policy", 3, None])
def test_extending_anything_but_a_bundled_policy_is_refused(extends):
    with pytest.raises(PolicyError, match=r"child.yaml: extends: must name a bundled policy"):
        parse_policy({"id": "child", "extends": extends, "controls": {}}, label="child.yaml")


def test_a_control_id_is_registered_once():
    with pytest.raises(AuditError, match="already registered"):
        register_control(ControlDefinition(
            "impact-ratio", "t", "q", "m", "max", "share", (), lambda evidence, params: [], (0.0, 1.0)))
    assert CONTROLS["impact-ratio"].title.startswith("Approval impact ratio")


def test_a_broken_entry_point_is_named_not_a_crash(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[oss_model_audit.controls]\nbroken = no_such_module:CONTROL\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._load_entry_points.cache_clear()
    try:
        with pytest.raises(AuditError, match=r"entry point broken = no_such_module:CONTROL .* cannot be loaded"):
            registry.registered_controls()
    finally:
        registry._load_entry_points.cache_clear()


def test_a_third_party_control_registered_by_entry_point_is_judged(tmp_path, monkeypatch):
    (tmp_path / "bank_controls.py").write_text(textwrap.dedent('''
        from audit.controls.base import ControlDefinition, Measurement

        def measure(evidence, params):
            records = evidence["fairness"]["records"]
            share = len(records) / 100  # a count, not an estimate: its interval is the value itself
            return [Measurement("all cases", share, (share, share), f"{len(records)} cases")]

        CASE_COUNT = ControlDefinition(
            "bank-case-count", "Cases scored", "How many cases were scored, in hundreds?", "cases / 100",
            "min", "share", (), measure, (0.0, None), summary="cases scored, in hundreds")
    '''))
    dist = tmp_path / "bank_controls-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bank-controls\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[oss_model_audit.controls]\nbank-case-count = bank_controls:CASE_COUNT\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._load_entry_points.cache_clear()
    try:
        policy = parse_policy({"id": "p", "extends": "default", "controls": {"bank-case-count": {"threshold": 0.1}}},
                              label="p.yaml")
        assert "| `bank-case-count` | cases scored, in hundreds | at least | 0 or more | |" in registry.controls_table()
        [control] = _evaluate_only(policy, "bank-case-count", {"fairness": {"records": [{}] * 47}})
        assert (control["status"], control["value"]) == ("pass", 0.47)
    finally:
        CONTROLS.pop("bank-case-count", None)
        sys.modules.pop("bank_controls", None)
        registry._load_entry_points.cache_clear()


def _evaluate_only(policy, cid, evidence):
    """The one control ``cid`` of ``policy`` judged on ``evidence``."""
    return evaluate(replace(policy, controls={cid: policy.controls[cid]}), evidence, {})


def test_a_policy_that_extends_records_the_hash_of_its_base_too():
    """An edit of default.yaml changes every policy that extends it, so their recorded sha256 covers it."""
    import hashlib

    folder = Path(registry.__file__).parents[1] / "policies"
    child, base = (folder / "tenant-screening.yaml").read_bytes(), (folder / "default.yaml").read_bytes()
    assert load_policy(None, suite_id="tenant-screening").sha256 == hashlib.sha256(child + base).hexdigest()
    assert load_policy(None).sha256 == hashlib.sha256(base).hexdigest()
