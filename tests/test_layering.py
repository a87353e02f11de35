"""The layout keeps its rules: import-linter's contracts hold, and the command line starts without the model stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "captum", "shap", "accelerate", "weasyprint", "statsmodels")


def test_the_import_contracts_hold():
    """Layers of audit, explainers through the adapter only, reports and verification without torch, signing
    above verification (pyproject.toml, [tool.importlinter])."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["suites", "list"], ["policy", "list"], ["run", "--help"],
                                  ["verify", "--help"]])
def test_the_command_line_starts_without_the_model_stack(args):
    code = ("import sys, json\nfrom audit.cli import main\ntry:\n    main(%r)\nexcept SystemExit as exit:\n"
            "    code = exit.code\nprint(json.dumps({'code': code, 'modules': sorted(sys.modules)}))" % (args,))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["code"] == 0, result.stderr
    loaded = [name for name in HEAVY if name in found["modules"]]
    assert not loaded, f"audit {' '.join(args)} imported {', '.join(loaded)}"


def test_the_tool_revision_names_this_checkout_wherever_the_module_moved():
    """The revision is read from the folder holding the three packages (audit/evidence/revision.py sits two
    levels down): a git checkout gives its HEAD commit, a copy without git a digest of the package files."""
    import hashlib

    from audit.evidence.revision import files_digest, tool_revision

    found = tool_revision()
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert found["kind"] == "git" and found["id"] == head.stdout.strip()
    else:
        assert found["kind"] == "files"
    assert files_digest(ROOT) != hashlib.sha256(b"").hexdigest()
