"""The three verdicts through what a CI job and a reader see: exit code, junit.xml and the report's first page.

Policies are written so that the tiny model's one-scenario audit is decided the way each test needs: a
counterfactual-shift threshold no shift can exceed leaves the control inconclusive (one scenario gives no
bootstrap interval), an answer-reliability threshold of 100 % always passes, and a mass floor of 99 % with a
zero threshold always fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from io import BytesIO

import pytest
from click.testing import CliRunner
from pypdf import PdfReader

import audit
from audit.cli import main
from audit.evidence.bundle import read_bundle
from tests.conftest import write_yaml

QUICK = ["--limit", "1", "--ig-steps", "2", "--methods", "ig", "--format-sensitivity", "off", "--patching-pairs", "1"]
ADVISORY = {cid: {"threshold": threshold, "blocking": False} for cid, threshold in (
    ("impact-ratio", 0.8), ("decision-flip-rate", 0.1), ("protected-attribution-share", 0.2),
    ("attribution-faithfulness", 0.0))}
POLICIES = {
    "inconclusive": {"counterfactual-shift": {"threshold": 1000.0}, "answer-reliability": {"threshold": 1.0}},
    "pass": {"answer-reliability": {"threshold": 1.0}},
    "fail": {"answer-reliability": {"threshold": 0.0, "mass_floor": 0.99},
             "counterfactual-shift": {"threshold": 1000.0}},
}


def policy_file(tmp_path, verdict: str):
    return write_yaml(tmp_path / f"{verdict}.yaml", {"id": f"test-{verdict}", "controls": {**ADVISORY,
                                                                                            **POLICIES[verdict]}})


def junit_outcomes(folder) -> dict[str, str]:
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    outcomes = {}
    for case in suite.findall("testcase"):
        found = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name").split(":")[0]] = found[0] if found else "passed"
    return outcomes


def test_an_undecided_blocking_control_exits_4_errors_in_junit_and_reads_inconclusive_on_page_1(tmp_path,
                                                                                                  tiny_llama_dir):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--model", str(tiny_llama_dir), "--out", str(out),
                                       "--policy", str(policy_file(tmp_path, "inconclusive")), *QUICK])
    bundle = read_bundle(out)
    assert result.exit_code == 4, result.output
    assert bundle.verdict["status"] == "inconclusive" and bundle.verdict["undecided_controls"] == [
        "counterfactual-shift"]
    assert "verdict: INCONCLUSIVE: no blocking control failed, but 1 of 2 blocking controls could not be decided" \
        in result.output
    outcomes = junit_outcomes(out)
    assert outcomes["counterfactual-shift"] == "error" and outcomes["answer-reliability"] == "passed"
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    first_page = PdfReader(BytesIO((out / "report.pdf").read_bytes())).pages[0].extract_text()
    assert "INCONCLUSIVE" in first_page and "PASS" not in first_page.replace("INCONCLUSIVE is not a pass", "")
    assert "Counterfactual decision shift" in first_page
    assert "could not be decided" in first_page


@pytest.mark.parametrize("verdict, exit_code, answer_reliability", [("pass", 0, "passed"), ("fail", 1, "failure")])
def test_pass_needs_every_blocking_control_passed_and_a_failure_fails(tmp_path, tiny_llama_dir, verdict, exit_code,
                                                                     answer_reliability):
    out = tmp_path / "out"
    result = audit.run(model=str(tiny_llama_dir), out=out, policy=str(policy_file(tmp_path, verdict)), limit=1,
                       ig_steps=2, methods="ig", format_sensitivity="off", patching_pairs=1, quiet=True, render=False)
    assert result.exit_code == exit_code and result.bundle.verdict["status"] == verdict
    assert junit_outcomes(out)["answer-reliability"] == answer_reliability
    if verdict == "fail":
        assert result.bundle.verdict["undecided_controls"] == ["counterfactual-shift"]
        assert junit_outcomes(out)["counterfactual-shift"] == "error"
