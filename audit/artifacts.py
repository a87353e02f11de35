"""Every artifact rendered from an evidence bundle: the JUnit controls report, and the HTML and PDF report.

One function, so ``audit run``, ``audit report``, ``audit sign`` and ``audit verify`` render the same files
from the same bundle (DESIGN: every artifact is rendered from the bundle alone).
"""

from __future__ import annotations

from audit.evidence import EvidenceBundle
from audit.junit import JUNIT_FILE, render_junit


def render_artifacts(bundle: EvidenceBundle, *, report: bool = True) -> dict[str, bytes]:
    """File name -> bytes of every artifact of ``bundle``; ``report=False`` leaves out the HTML and PDF."""
    files = {JUNIT_FILE: render_junit(bundle)}
    if report:
        from audit.report import render_report

        files.update(render_report(bundle))
    return files
