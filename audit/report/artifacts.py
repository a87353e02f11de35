"""Every artifact rendered from an evidence bundle: the JUnit controls report, and the HTML and PDF report.

One function, so ``audit run``, ``audit report``, ``audit sign`` and ``audit verify`` render the same files
from the same bundle (every artifact is rendered from the bundle alone). The folder's file names are
``audit.report.folder``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from audit.evidence.bundle import BUNDLE_FILE, EvidenceBundle, read_bundle
from audit.evidence.files import write_outputs
from audit.report.folder import artifact_names
from audit.report.junit import JUNIT_FILE, render_junit


def render_artifacts(bundle: EvidenceBundle, *, report: bool = True) -> dict[str, bytes]:
    """File name -> bytes of every artifact of ``bundle``; ``report=False`` leaves out the HTML and PDF.

    The artifacts are rendered from ``bundle.json``'s bytes (``bundle.to_json()``), not from the object: a value
    the JSON writes differently (NaN as null) renders the same for ``audit run`` as for a later ``audit verify``.
    Rendering is a pure function of those bytes, so the last few renders are kept (a validator's verify after
    a sign, a test suite's many tamperings of one audit render the 40-page PDF once)."""
    return dict(_render(bundle.to_json(), report))


@functools.lru_cache(maxsize=4)
def _render(bundle_json: bytes, report: bool) -> tuple[tuple[str, bytes], ...]:
    bundle = EvidenceBundle(**json.loads(bundle_json))
    files = {JUNIT_FILE: render_junit(bundle)}
    if report:
        from audit.report.render import render_report

        files.update(render_report(bundle))
    return tuple(files.items())


def audit_files(bundle: EvidenceBundle, *, report: bool) -> dict[str, bytes]:
    """``bundle.json`` and every artifact rendered from it, ``run.artifacts`` set to the names written."""
    bundle.run = {**bundle.run, "artifacts": artifact_names(report=report)}
    return {BUNDLE_FILE: bundle.to_json(), **render_artifacts(bundle, report=report)}


def rerender_bundle(bundle_path: Path, out: Path | None = None) -> dict[str, Path]:
    """``audit report``: the bundle at ``bundle_path`` (a folder or its ``bundle.json``) written again with every
    artifact rendered from it, into ``out`` (default: the bundle's folder); file name -> path written."""
    evidence = read_bundle(bundle_path)
    folder = out or (bundle_path if bundle_path.is_dir() else bundle_path.parent)
    return write_outputs(folder, audit_files(evidence, report=True))
