"""compare.json, compare.html, compare.pdf and junit.xml of an ``audit compare``, rendered like the audit report
(autoescaped jinja2, WeasyPrint with the templates-only URL fetcher, creation date fixed from the latest audit).

junit.xml holds one ``<testsuite>`` per candidate and one ``<testcase>`` per blocking control of the policy: a
``<failure>`` where the candidate fails a control the reference does not fail (the regression ``audit compare``
exits 1 on), else a pass with both statuses in ``<system-out>``; the CI job is green only without regressions.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

COMPARE_TEMPLATE = "compare.html.j2"


def render_compare(found: dict[str, Any]) -> dict[str, bytes]:
    from audit.report.render import render_packet

    return {**render_packet(COMPARE_TEMPLATE, found, "compare", found["audited_at"]),
            "junit.xml": render_compare_junit(found)}


def render_compare_junit(found: dict[str, Any]) -> bytes:
    blocking = [c for c in found["controls"] if c["blocking"]]
    reference = found["reference"]
    failures = sum(len(c["regressed_controls"]) for c in found["candidates"])
    root = ET.Element("testsuites", {"name": "oss-model-audit compare", "tests": str(len(blocking) *
                                     len(found["candidates"])), "failures": str(failures), "errors": "0"})
    for candidate in found["candidates"]:
        regressed = set(candidate["regressed_controls"])
        suite = ET.SubElement(root, "testsuite", {
            "name": f"{candidate['label']} against {reference}", "tests": str(len(blocking)),
            "failures": str(len(regressed)), "errors": "0", "skipped": "0", "timestamp": found["audited_at"]})
        properties = ET.SubElement(suite, "properties")
        for name, value in (("reference", reference), ("candidate", candidate["label"]),
                            ("relation", candidate["relation"]), ("suite.sha256", found["suite"]["sha256"]),
                            ("policy.sha256", found["policy"]["sha256"])):
            if value is not None:
                ET.SubElement(properties, "property", {"name": name, "value": str(value)})
        for control in blocking:
            before = control["models"].get(reference, {}).get("status", "absent")
            after = control["models"].get(candidate["label"], {}).get("status", "absent")
            case = ET.SubElement(suite, "testcase", {"classname": f"compare.{found['suite']['id']}",
                                                     "name": f"{control['id']}: {control['title']}", "time": "0"})
            text = f"{control['id']}: {reference} {before}, {candidate['label']} {after}"
            if control["id"] in regressed:
                ET.SubElement(case, "failure", {"message": f"regressed: {text}", "type": "regression"}).text = text
            ET.SubElement(case, "system-out").text = text
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
