"""The controls as a JUnit XML report, so CI systems show them as tests.

One ``<testcase>`` per control, so that the CI job is green only when the verdict is PASS:

- a control that makes the audit fail (a blocking control that failed, or an undecided one under a policy with
  ``fail_on_inconclusive``) is a ``<failure>``;
- a blocking control that could not be decided (inconclusive or not evaluated) is an ``<error>`` of that type:
  the test could not reach a result, and the verdict is INCONCLUSIVE;
- a non-blocking control that could not be evaluated is ``<skipped>``;
- every other control passes, with its status, value, CI and threshold in ``<properties>`` and
  ``<system-out>`` (a non-blocking failure is visible there without failing the build).
The clauses a control evidences are ``clause`` properties, one each.

The format is the de-facto JUnit schema read by GitHub Actions test reporters, GitLab (``artifacts:reports:
junit``) and Jenkins' junit step: ``testsuites > testsuite > properties, testcase > properties, failure |
error | skipped, system-out``. Rendered from the bundle alone, like every other artifact.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from audit.evidence.bundle import EvidenceBundle
from audit.controls.policy import current_verdict, verdict_sentence

JUNIT_FILE = "junit.xml"


def render_junit(bundle: EvidenceBundle) -> bytes:
    """The controls as JUnit XML, judged by the current verdict rule (a bundle before schema 1.6 that states PASS
    with a blocking control undecided reads INCONCLUSIVE here too; its own statement is ``verdict.stated``)."""
    controls = bundle.controls
    current = current_verdict(bundle)
    failing = set(current["failed_controls"])
    undecided = set(current["undecided_controls"]) - failing
    counts = {
        "tests": str(len(controls)),
        "failures": str(sum(c["id"] in failing for c in controls)),
        "errors": str(len(undecided)),
        "skipped": str(sum(c["status"] == "not evaluated" and not c["blocking"] for c in controls)),
        "time": _seconds(bundle.run.get("durations_s", {}).get("total")),
    }
    root = ET.Element("testsuites", {"name": "oss-model-audit", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"{bundle.suite['id']} on {bundle.model.get('spec') or bundle.model['id'][:16]}",
        **counts,
        "timestamp": bundle.run["finished_at"],
    })
    _properties(suite, [
        ("verdict", current["status"]),
        ("verdict.reason", verdict_sentence(current, controls)),
        ("verdict.stated", bundle.verdict["status"] if bundle.verdict["status"] != current["status"] else None),
        ("exit_code", current["exit_code"]),
        ("model.fingerprint", bundle.model["id"]),
        ("model.spec", bundle.model.get("spec")),
        ("suite.id", bundle.suite["id"]),
        ("suite.sha256", bundle.suite["sha256"]),
        ("policy.id", bundle.policy["id"]),
        ("policy.sha256", bundle.policy.get("sha256")),
        ("tool.version", bundle.tool["version"]),
        ("tool.revision", (bundle.tool.get("revision") or {}).get("id")),
        ("schema_version", bundle.schema_version),
    ])
    for control in controls:
        outcome = "failure" if control["id"] in failing else "error" if control["id"] in undecided else None
        suite.append(_testcase(control, bundle.suite["id"], outcome))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _testcase(control: dict[str, Any], suite_id: str, outcome: str | None) -> ET.Element:
    """One control as a test case; ``outcome`` is "failure", "error" or None (passes, or skipped when not
    evaluated)."""
    case = ET.Element("testcase", {"classname": f"audit.{suite_id}", "name": f"{control['id']}: {control['title']}",
                                   "time": "0"})
    _properties(case, [
        ("status", control["status"]),
        ("blocking", control["blocking"]),
        ("metric", control["metric"]),
        ("value", control.get("value")),
        ("ci_low", (control.get("ci") or [None, None])[0]),
        ("ci_high", (control.get("ci") or [None, None])[1]),
        ("threshold", control["threshold"]),
        ("direction", control["direction"]),
        ("unit", control.get("unit")),
        ("decisive", control.get("decisive")),
        *(("clause", clause) for clause in control["clauses"]),
    ])
    summary = _summary(control)
    if outcome is not None:
        ET.SubElement(case, outcome, {"message": summary, "type": control["status"]}).text = _details(control)
    elif control["status"] == "not evaluated":
        ET.SubElement(case, "skipped", {"message": summary})
    ET.SubElement(case, "system-out").text = f"{summary}\n{_details(control)}"
    return case


def _summary(control: dict[str, Any]) -> str:
    blocking = "blocking" if control["blocking"] else "non-blocking"
    if control.get("value") is None:
        return f"{control['id']}: {control['status']} ({blocking}); nothing to measure"
    bound = "<=" if control["direction"] == "max" else ">="
    ci = control.get("ci")
    interval = f", 95 % CI [{ci[0]:.4g}, {ci[1]:.4g}]" if ci and None not in ci else ""
    decisive = f" at {control['decisive']}" if control.get("decisive") else ""
    return (f"{control['id']}: {control['status']} ({blocking}); {control['value']:.4g}{interval}{decisive}; "
            f"required {bound} {control['threshold']:g} {control.get('unit') or ''}".rstrip())


def _details(control: dict[str, Any]) -> str:
    lines = [control["question"], f"metric: {control['metric']}"]
    lines += [f"{m['label']}: {m['status']}, {m.get('detail', '')}".rstrip(", ") for m in control.get("measurements", [])]
    return "\n".join(lines)


def _properties(parent: ET.Element, pairs: list[tuple[str, Any]]) -> None:
    element = ET.SubElement(parent, "properties")
    for name, value in pairs:
        if value is not None:
            ET.SubElement(element, "property", {"name": name, "value": _text(value)})


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "0"
