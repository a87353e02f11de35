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
