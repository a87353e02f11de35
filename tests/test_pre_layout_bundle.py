"""A bundle written before the layout move (issue 17) still re-renders byte for byte and verifies.

``tests/fixtures/pre-layout-audit`` is a one-scenario audit of the tiny Llama written by the code at commit
5084526, before ``audit/`` was split into subpackages. Moving modules must not change a single byte of what
the tool renders from a bundle, or every packet a bank already filed would stop verifying.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from audit.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "pre-layout-audit"


def test_the_pre_layout_audit_passes_verify(tmp_path):
    folder = Path(shutil.copytree(FIXTURE, tmp_path / "audit"))
    result = CliRunner().invoke(main, ["verify", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "identical to a fresh render of bundle.json" in result.output


def test_the_pre_layout_bundle_re_renders_byte_for_byte(tmp_path):
    folder = Path(shutil.copytree(FIXTURE, tmp_path / "audit"))
    out = tmp_path / "rendered"
    result = CliRunner().invoke(main, ["report", str(folder / "bundle.json"), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code in (0, 1, 4), result.output
    for name in ("report.html", "report.pdf", "junit.xml"):
        assert (out / name).read_bytes() == (FIXTURE / name).read_bytes(), name
