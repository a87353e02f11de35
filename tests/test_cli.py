"""The CLI: exit codes, one-line errors naming the flag or file, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.cli import main
from tests.conftest import write_yaml


def invoke(*args):
    runner = CliRunner()
    return runner.invoke(main, list(args), catch_exceptions=False)


def audit_process(*args, cwd=None):
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).with_name("audit")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("audit: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--model", "missing.gguf"], ["--model", "missing.gguf"]),
        (["--dtype", "int4"], ["--dtype", "int4"]),
        (["--limit", "0"], ["--limit"]),
        (["--no-such-flag"], ["--no-such-flag"]),
        (["--methods", "attention-rollout"], ["--methods", "descriptive only"]),
        (["--patching-pairs", "some"], ["--patching-pairs", "'some'"]),
        (["--ig-tolerance", "0.05", "--ig-max-steps", "8"], ["--ig-max-steps", "at least --ig-steps (32)"]),
        (["--device-map", "everywhere"], ["--device-map", "everywhere"]),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, args, fragments):
    """Through the installed console script; the catalogue in tests/test_bad_inputs.py has the rest."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = audit_process("run", "--out", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_malformed_suite_file_is_named_with_its_field(tmp_path, suite_raw):
    del suite_raw["scenarios"][0]["values"]["income"]
    path = write_yaml(tmp_path / "broken.yaml", suite_raw)
    result = audit_process("suites", "validate", str(path))
    assert_one_line_error(result, "broken.yaml: scenarios[0].template: slot {income}")
    result = audit_process("run", "--suite", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "broken.yaml")
    assert not (tmp_path / "out").exists()


def test_suites_list_and_show():
    listed = invoke("suites", "list")
    assert listed.exit_code == 0 and "fair-lending" in listed.output
    from audit.suites import expand, load_suite

    suite = load_suite("fair-lending")
    shown = invoke("suites", "show", "fair-lending")
    assert shown.exit_code == 0
    assert f"{len(suite.scenarios)} scenarios, {len(expand(suite))} cases" in shown.output
    assert suite.sha256 in shown.output


def test_run_on_a_tiny_model_writes_bundle_report_and_manifest(tmp_path, tiny_llama_dir):
    out = tmp_path / "audit-out"
    result = audit_process(
        "run", "--model", str(tiny_llama_dir), "--limit", "2", "--ig-steps", "4", "--out", str(out)
    )
    assert result.returncode in (0, 1, 4), result.stderr
    bundle = json.loads((out / "bundle.json").read_text())
    assert result.returncode == bundle["verdict"]["exit_code"]
    assert f"verdict: {bundle['verdict']['status'].upper()}" in result.stdout
    assert {"bundle.json", "report.html", "report.pdf", "manifest.sha256"} <= {p.name for p in out.iterdir()}
    for control in bundle["controls"]:
        assert control["id"] in result.stdout
    assert f"report: {out / 'report.pdf'}" in result.stdout
    assert bundle["run"]["environment"]["command_line"][:2] == ["audit", "run"]
    assert bundle["suite"]["n_scenarios_used"] == 2
    assert "[scoring]" in result.stderr or "loading model" in result.stderr
    check = subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout

    # Re-rendering from the bundle alone reproduces the report without the model.
    (out / "report.pdf").unlink()
    rerender = invoke("report", str(out))
    assert rerender.exit_code == 0, rerender.output
    assert (out / "report.pdf").stat().st_size > 10_000
    assert subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=out, capture_output=True).returncode == 0


def test_report_on_a_non_bundle_is_a_one_line_error(tmp_path):
    (tmp_path / "bundle.json").write_text("[]")
    result = audit_process("report", str(tmp_path))
    assert_one_line_error(result, "bundle.json")


def test_a_crash_exits_3_not_1_so_it_never_reads_as_a_failed_control(monkeypatch):
    from click.testing import CliRunner

    import audit.pipeline
    from audit.cli import main

    def broken(**_):
        raise KeyError("below_mass_floor")

    monkeypatch.setattr(audit.pipeline, "run", broken)
    result = CliRunner().invoke(main, ["run", "--limit", "1"])
    assert result.exit_code == 3
    assert "audit: internal error: KeyError" in result.output


def test_the_tool_sets_the_hub_offline_whatever_the_environment():
    code = "import audit, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"HF_HUB_OFFLINE": "0", "PATH": "/usr/bin:/bin"})
    assert found.stdout.strip() == "True", found.stderr
