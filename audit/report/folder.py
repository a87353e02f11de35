"""The files of an audit folder: their names, which of them are rendered from the bundle, and which the
manifest may list. ``audit verify`` refuses a manifest that lists any other file."""

from __future__ import annotations

from audit.evidence.bundle import EvidenceBundle
from audit.report.junit import JUNIT_FILE

REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
REPORT_FILES = (REPORT_HTML, REPORT_PDF)
ATTESTATION_FILE = "attestation.intoto.jsonl"  # written by `audit sign`, outside the manifest it attests
RENDERED_FILES = (JUNIT_FILE, *REPORT_FILES)  # every file the manifest may list besides bundle.json


def artifact_names(*, report: bool) -> list[str]:
    """The rendered files of an audit folder, as ``run.artifacts`` records them."""
    return [JUNIT_FILE, *(REPORT_FILES if report else ())]


def recorded_artifacts(bundle: EvidenceBundle) -> list[str]:
    """The files the audit folder of ``bundle`` must hold besides ``bundle.json``: ``run.artifacts`` (schema 1.5),
    else what ``audit run`` always wrote before it was recorded (the JUnit file and the report)."""
    recorded = bundle.run.get("artifacts")
    return list(RENDERED_FILES) if recorded is None else list(recorded)
