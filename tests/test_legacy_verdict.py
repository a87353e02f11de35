"""A bundle written before schema 1.6, when an undecided blocking control did not keep the verdict from PASS.

Such a bundle states PASS with a blocking control inconclusive. `audit verify` re-derives it by the rule it
was written under (so an honest old folder verifies) and says what the current rule gives; every artifact
rendered from it again (the report's first page, junit.xml) and `audit diff` show the current rule's verdict,
INCONCLUSIVE, beside the one the bundle states, so a schema downgrade cannot turn "undecided" into PASS.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import pytest

from audit.integrity.diff import diff_bundles
from audit.evidence.bundle import read_bundle
from audit.report.junit import render_junit
from audit.controls.policy import legacy_verdict, parse_policy
from audit.report.render import render_html
from tests.test_report_counts import visible_text
from tests.test_verify import copy_of, rewrite_consistently, verify


@pytest.fixture
def legacy_folder(unrendered, tmp_path):
    """The one-scenario audit as a schema-1.5 tool would have written it: failed controls made advisory, so the
    old rule gives PASS while counterfactual-shift (one scenario, no interval) stays undecided."""
    folder = copy_of(unrendered, tmp_path)
    bundle = read_bundle(folder)
    for control in bundle.controls:
        if control["status"] == "fail":
            control["blocking"] = False
            bundle.policy["controls"][control["id"]]["blocking"] = False
    bundle.schema_version = "1.5"
    bundle.tool = {key: value for key, value in bundle.tool.items() if key != "revision"}
    recorded = {key: value for key, value in bundle.policy.items() if key not in ("source", "sha256")}
    bundle.verdict = legacy_verdict(parse_policy(recorded, label="policy"), bundle.controls)
    rewrite_consistently(folder, bundle, rerender=True)
    return folder


def test_the_old_bundle_states_pass_with_an_undecided_blocking_control(legacy_folder):
    bundle = read_bundle(legacy_folder)
    assert bundle.verdict["status"] == "pass"
    assert any(c["blocking"] and c["status"] == "inconclusive" for c in bundle.controls)


def test_verify_accepts_it_by_its_own_rule_and_states_the_current_one(legacy_folder):
    result = verify(legacy_folder)
    assert result.exit_code == 0, result.output
    assert "verdict pass (exit code 0) by the schema-1.5 rule" in result.output
    assert "by the current rule, which no undecided blocking control passes, INCONCLUSIVE" in result.output


def test_junit_and_the_first_page_read_inconclusive(legacy_folder):
    bundle = read_bundle(legacy_folder)
    suite = ET.fromstring(render_junit(bundle)).find("testsuite")
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["verdict"] == "inconclusive" and properties["verdict.stated"] == "pass"
    assert properties["exit_code"] == "4" and int(suite.get("errors")) >= 1
    assert properties["verdict.reason"].startswith("INCONCLUSIVE")
    first_page = visible_text(render_html(bundle)).split("Blocking controls that failed")[0]
    assert "Verdict INCONCLUSIVE" in first_page
    assert "This bundle (schema 1.5) states PASS" in first_page


def test_diff_shows_both_sides_by_the_current_rule(legacy_folder):
    base = read_bundle(legacy_folder)
    candidate = copy.deepcopy(base)
    found = diff_bundles(base, candidate)
    assert found["base"]["verdict"] == "inconclusive" and found["base"]["stated_verdict"] == "pass"
    assert found["verdict"]["status"] == "no regression"
