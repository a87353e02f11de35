"""`audit diff`: per-control change with CI and significance, attribution drift, reasons, fingerprints, exit 1
on a regressed blocking control."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from pypdf import PdfReader

import audit
from audit.cli import main
from audit.integrity.diff import diff_bundles
from audit.evidence.bundle import read_bundle
from tests.conftest import save_tiny_llama


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, bpe_tokenizer) -> Path:
    """The same audit on a 'new version' of the tiny model: its weights perturbed by 20 % noise."""
    folder = save_tiny_llama(tmp_path_factory.mktemp("v2"), bpe_tokenizer)
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(7)
    save_file({k: v + 0.2 * v.std() * torch.randn(v.shape, generator=generator) if v.dim() == 2 else v
               for k, v in weights.items()}, folder / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path_factory.mktemp("v2-audit") / "out"
    audit.run(model=str(folder), out=out, limit=1, ig_steps=2, methods="ig", quiet=True, render=False,
              format_sensitivity="off", patching_pairs=1)
    return out


def test_an_audit_against_itself_changes_nothing(unrendered, tmp_path):
    result = cli("diff", unrendered, unrendered, "--out", tmp_path / "diff")
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "diff" / "diff.json").read_text())
    assert found["verdict"] == {"status": "no regression", "exit_code": 0, "regressed_controls": []}
    assert not any(found["fingerprints"].values())
    for control in found["controls"]:
        assert not control["significant"] and control["change"] in (0, None)
    for method in found["attribution_drift"]:
        assert method["n_cases"] > 0 and method["median_rho"] == pytest.approx(1.0) and not method["drifted"]
    pages = [page.extract_text() for page in PdfReader(tmp_path / "diff" / "diff.pdf").pages]
    assert len(pages) > 1 and all("Audit comparison · " in page and "Compared " in page for page in pages[1:])


def test_the_same_files_loaded_in_another_dtype_are_a_changed_model(unrendered):
    base = read_bundle(unrendered)
    in_bfloat16 = read_bundle(unrendered)
    in_bfloat16.model["dtype"] = "bfloat16"  # the fingerprint id hashes the files, so it stays the same
    found = diff_bundles(base, in_bfloat16)["fingerprints"]
    assert found["model_changed"] and found["model_parts_changed"] == ["dtype"]


def test_a_new_model_version_shows_its_changed_weights_and_attribution_drift(unrendered, retrained):
    found = diff_bundles(read_bundle(unrendered), read_bundle(retrained))
    assert found["fingerprints"]["model_changed"] and found["fingerprints"]["model_parts_changed"] == ["weights"]
    assert not found["fingerprints"]["suite_changed"]
    drift = found["attribution_drift"][0]
    assert drift["n_cases"] > 0 and drift["median_rho"] < 1.0
    changed = [c for c in found["controls"] if c["change"]]
    assert changed, "different weights move at least one control"


def test_a_blocking_control_that_got_worse_fails_the_diff(unrendered, tmp_path):
    candidate = Path(shutil.copytree(unrendered, tmp_path / "candidate"))
    data = json.loads((candidate / "bundle.json").read_text())
    control = next(c for c in data["controls"] if c["blocking"] and c["status"] != "fail")
    control["status"] = "fail"
    (candidate / "bundle.json").write_text(json.dumps(data))
    result = cli("diff", unrendered, candidate, "--out", tmp_path / "diff")
    assert result.exit_code == 1
    assert f"{control['id']}" in result.output and "REGRESSED" in result.output
    found = json.loads((tmp_path / "diff" / "diff.json").read_text())
    assert found["verdict"]["regressed_controls"] == [control["id"]]


def test_the_change_ci_combines_both_intervals_and_decides_significance():
    from audit.integrity.diff import Z95, _change

    before = {"value": 0.10, "ci": [0.10 - Z95 * 0.03, 0.10 + Z95 * 0.03]}
    after = {"value": 0.25, "ci": [0.25 - Z95 * 0.04, 0.25 + Z95 * 0.04], "direction": "max"}
    found = _change(before, after)
    assert found["change"] == pytest.approx(0.15)
    assert found["change_ci"] == pytest.approx([0.15 - Z95 * 0.05, 0.15 + Z95 * 0.05])
    assert found["significant"] and found["worse"]
    close = _change(before, {**after, "value": 0.15, "ci": [0.15 - Z95 * 0.04, 0.15 + Z95 * 0.04]})
    assert not close["significant"]


def test_diff_of_a_folder_that_is_no_audit_is_exit_2(unrendered, tmp_path):
    result = cli("diff", unrendered, tmp_path, "--out", tmp_path / "diff")
    assert result.exit_code == 2 and "no evidence bundle there" in result.output
    assert not (tmp_path / "diff").exists()
