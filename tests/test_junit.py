"""junit.xml: one test case per control, failures exactly where the audit fails, errors where a blocking control
could not be decided, clauses as properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from click.testing import CliRunner

import audit
from audit.cli import main
from audit.evidence.bundle import read_bundle


def properties(element) -> list[tuple[str, str]]:
    return [(p.get("name"), p.get("value")) for p in element.find("properties")]


def test_every_control_is_a_test_case_and_only_the_failing_ones_fail(audited):
    bundle = read_bundle(audited)
    root = ET.parse(audited / "junit.xml").getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    failing = set(bundle.verdict["failed_controls"])
    undecided = set(bundle.verdict["undecided_controls"]) - failing
    assert [c.get("name").split(":")[0] for c in cases] == [c["id"] for c in bundle.controls]
    assert int(suite.get("tests")) == len(bundle.controls) and int(suite.get("failures")) == len(failing)
    assert int(suite.get("errors")) == len(undecided)
    assert dict(properties(suite))["model.fingerprint"] == bundle.model["id"]
    assert dict(properties(suite))["verdict"] == bundle.verdict["status"]
    for case, control in zip(cases, bundle.controls):
        assert (case.find("failure") is not None) == (control["id"] in failing)
        error = case.find("error")
        assert (error is not None) == (control["id"] in undecided)
        if error is not None:
            assert error.get("type") == control["status"] and control["blocking"]
        assert (case.find("skipped") is not None) == (control["status"] == "not evaluated" and not control["blocking"])
        listed = properties(case)
        assert [value for name, value in listed if name == "clause"] == control["clauses"]
        assert dict(listed)["status"] == control["status"]
        assert control["id"] in case.find("system-out").text


def test_junit_flag_writes_a_copy_where_ci_collects_it(tmp_path, tiny_llama_dir):
    collected = tmp_path / "reports" / "audit.xml"
    collected.parent.mkdir()
    result = audit.run(model=str(tiny_llama_dir), out=tmp_path / "out", limit=1, ig_steps=2, methods="ig",
                       quiet=True, render=False, format_sensitivity="off", patching_pairs=1, junit=collected)
    assert collected.read_bytes() == (tmp_path / "out" / "junit.xml").read_bytes()
    assert result.paths["junit"] == collected


def test_junit_into_a_missing_folder_is_refused_before_any_work(tmp_path, tiny_llama_dir):
    result = CliRunner().invoke(main, ["run", "--model", str(tiny_llama_dir), "--out", str(tmp_path / "out"),
                                       "--junit", str(tmp_path / "absent" / "junit.xml")])
    assert result.exit_code == 2
    assert "--junit: folder" in result.output and "does not exist" in result.output
    assert not (tmp_path / "out").exists()
