"""`audit compare`: side-by-side controls, paired statistics on the same cases, exit 1 on a regression, refusal of
audits that cannot be compared."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pypdf import PdfReader

import audit
from audit.cli import main
from audit.controls.groups import scenario_shifts
from audit.evidence.bundle import read_bundle
from audit.evidence.hashing import sha256_file
from audit.integrity.compare import relation, write_compare
from audit.wording import INTERSECTION


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture(scope="module")
def six_scenarios(tmp_path_factory, tiny_llama_dir) -> Path:
    """An audit of the tiny Llama on six scenarios: enough for the bootstrap's intervals."""
    out = tmp_path_factory.mktemp("six") / "reference"
    audit.run(model=str(tiny_llama_dir), out=out, limit=6, ig_steps=2, methods="ig", quiet=True, render=False,
              format_sensitivity="off", patching_pairs=1)
    return out


def edited(folder: Path, to: Path, edit) -> Path:
    """A copy of an audit folder whose bundle ``edit`` changed, with the manifest's line for bundle.json renewed
    (what a second, genuine audit of a changed model would hold)."""
    copy = Path(shutil.copytree(folder, to))
    data = json.loads((copy / "bundle.json").read_text())
    edit(data)
    (copy / "bundle.json").write_text(json.dumps(data))
    manifest = copy / "manifest.sha256"
    lines = [line if not line.endswith("  bundle.json") else f"{sha256_file(copy / 'bundle.json')}  bundle.json"
             for line in manifest.read_text().splitlines()]
    manifest.write_text("\n".join(lines) + "\n")
    return copy


def plant(group: str, size: float, noise: float = 0.0, seed: int = 1):
    """An edit that moves the score of every case whose applicant is of race ``group`` by ``size`` log-odds, in
    the direction of that group's present shift, and adds Gaussian noise of sd ``noise`` to every case."""
    def edit(data):
        analysis = next(a for a in data["fairness"]["analyses"] if a["property"] == "race")
        shift = next(g["mean_shift"] for g in analysis["groups"] if g["group"] == group)
        rng = np.random.default_rng(seed)
        for case in data["cases"]:
            case["score"] += rng.normal(0, noise) if noise else 0.0
            if case["groups"].get("race") == group and case["attribute"] == "applicant":
                case["score"] += size if shift >= 0 else -size
            case["decision"] = "favourable" if case["score"] > 0 else "unfavourable"
    return edit


def test_the_per_scenario_shifts_average_to_the_audits_own_mean_shift(six_scenarios):
    bundle = read_bundle(six_scenarios)
    scenarios = sorted({c["pair_id"] for c in bundle.cases})
    checked = 0
    for analysis in bundle.fairness["analyses"]:
        shifts = scenario_shifts(bundle.cases, analysis["attribute"], analysis["property"].split(INTERSECTION),
                                 analysis["reference"], scenarios)
        for group in analysis["groups"]:
            found = shifts[group["group"]]
            if group["mean_shift"] is None:  # a reference group with no other value (age 45)
                assert np.isnan(found).all()
                continue
            assert np.nanmean(found) == pytest.approx(group["mean_shift"], abs=1e-9), group["group"]
            checked += 1
    assert checked >= 10


def test_an_audit_compared_with_a_rerun_of_itself_moves_nothing(six_scenarios, tmp_path):
    rerun = Path(shutil.copytree(six_scenarios, tmp_path / "rerun"))
    result = cli("compare", six_scenarios, rerun, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    candidate = found["candidates"][0]
    assert candidate["relation"] == "same model" and not candidate["regressed_controls"]
    assert candidate["groups"] and all(g["shift_change"] == 0 and not g["moved"] for g in candidate["groups"])
    assert candidate["decisions"]["changed"] == 0 and candidate["decisions"]["p_value"] is None
    assert candidate["scores"]["spearman_rho"] == pytest.approx(1.0)
    assert [m["bundle_sha256"] for m in found["models"]] == [sha256_file(six_scenarios / "bundle.json")] * 2
    assert {p.name for p in (tmp_path / "cmp").iterdir()} >= {"compare.json", "compare.html", "compare.pdf",
                                                              "junit.xml"}


def test_a_shift_planted_in_one_group_is_found_by_the_paired_ci_and_the_others_are_not(six_scenarios, tmp_path):
    planted = edited(six_scenarios, tmp_path / "planted", plant("black", 1.5, noise=0.05))
    result = cli("compare", six_scenarios, planted, "--out", tmp_path / "cmp")
    assert result.exit_code in (0, 1), result.output
    found = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    groups = {g["label"]: g for g in found["candidates"][0]["groups"]}
    black = groups["race = black (vs white)"]
    assert black["moved"] and black["direction"] == "larger"
    assert black["size_change_ci"][0] > 0 and black["shift_change_ci"] is not None
    assert abs(black["shift_change"]) == pytest.approx(1.5, abs=0.1)
    untouched = [g for label, g in groups.items() if "black" not in label]
    assert untouched and not any(g["moved"] for g in untouched), [g["label"] for g in untouched if g["moved"]]
    assert all(g["shift_change_family_ci"][0] <= 0 <= g["shift_change_family_ci"][1] for g in untouched)
    assert found["candidates"][0]["moved_groups"] == [label for label, g in groups.items() if g["moved"]]
    assert "race = black (vs white)" in result.output


def test_the_paired_ci_is_narrower_than_two_independent_intervals_when_the_models_share_the_noise(
        six_scenarios, tmp_path):
    """A candidate that differs by a small constant shift: the paired change has a tight CI, while the two
    audits' own intervals of the group's shift overlap."""
    planted = edited(six_scenarios, tmp_path / "planted", plant("asian", 0.2))
    assert cli("compare", six_scenarios, planted, "--out", tmp_path / "cmp").exit_code in (0, 1)
    found = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    asian = next(g for g in found["candidates"][0]["groups"] if g["label"] == "race = asian (vs white)")
    paired_width = asian["shift_change_ci"][1] - asian["shift_change_ci"][0]
    reference = read_bundle(six_scenarios).fairness["analyses"]
    own = next(g for a in reference if a["property"] == "race" for g in a["groups"] if g["group"] == "asian")
    assert paired_width < 0.5 * (own["shift_ci"][1] - own["shift_ci"][0])
    assert asian["moved"] and not asian["within_margin"]


def test_a_small_consistent_change_is_significant_but_immaterial_and_no_move(six_scenarios, tmp_path):
    """0.05 log-odds on every case of one group: the paired CI excludes 0 (the models are deterministic), yet the
    change is below half the policy's counterfactual-shift threshold, so the packet lists it apart, not as moved."""
    small = edited(six_scenarios, tmp_path / "small", plant("asian", 0.05))
    found, _ = write_compare([six_scenarios, small], tmp_path / "cmp")
    asian = next(g for g in found["candidates"][0]["groups"] if g["label"] == "race = asian (vs white)")
    assert asian["significant"] and not asian["moved"] and asian["direction"] is None
    assert found["params"]["material_change"] == pytest.approx(0.5 * 0.25)
    assert "race = asian (vs white)" in found["candidates"][0]["immaterial_groups"]
    assert found["candidates"][0]["moved_groups"] == []
    # its whole family-wise interval lies inside +-0.125: evidence the change is small, not only not large
    assert asian["within_margin"] and "race = asian (vs white)" in found["candidates"][0]["within_margin_groups"]
    assert -0.125 < asian["shift_change_family_ci"][0] <= asian["shift_change_family_ci"][1] < 0.125


def test_a_candidate_failing_a_blocking_control_the_reference_passes_exits_1(six_scenarios, tmp_path):
    reference = read_bundle(six_scenarios)
    control = next(c for c in reference.controls if c["blocking"] and c["status"] == "pass")

    def fail(data):
        next(c for c in data["controls"] if c["id"] == control["id"])["status"] = "fail"
        data["verdict"]["status"] = "fail"

    candidate = edited(six_scenarios, tmp_path / "candidate", fail)
    result = cli("compare", six_scenarios, candidate, "--out", tmp_path / "cmp")
    assert result.exit_code == 1, result.output
    found = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert found["verdict"] == {"status": "regressed", "exit_code": 1, "regressed_models": ["candidate"]}
    assert found["candidates"][0]["regressed_controls"] == [control["id"]]
    junit = ET.parse(tmp_path / "cmp" / "junit.xml").getroot()
    failures = [case.get("name") for case in junit.iter("testcase") if case.find("failure") is not None]
    assert failures == [f"{control['id']}: {control['title']}"] and junit.get("failures") == "1"
    pages = [page.extract_text() for page in PdfReader(tmp_path / "cmp" / "compare.pdf").pages]
    text = "\n".join(pages)
    assert "REGRESSED" in text and control["id"] in text
    # Every page after the first names the packet, its models and the comparison date in its running header/footer.
    assert len(pages) > 1 and all("Model comparison · 2 models against" in page and "Compared " in page
                                  for page in pages[1:])
    # With the failing model as the incumbent, the other one fixes the control: no regression.
    result = cli("compare", six_scenarios, candidate, "--reference", "candidate", "--out", tmp_path / "back")
    assert result.exit_code == 0, result.output


def test_a_candidate_failing_what_the_reference_could_not_decide_regressed_and_a_shared_failure_did_not(
        six_scenarios, tmp_path):
    control = next(c for c in read_bundle(six_scenarios).controls if c["blocking"] and c["status"] == "pass")

    def status(value):
        def edit(data):
            next(c for c in data["controls"] if c["id"] == control["id"])["status"] = value
            data["verdict"]["status"] = value
        return edit

    undecided = edited(six_scenarios, tmp_path / "undecided", status("inconclusive"))
    failing = edited(six_scenarios, tmp_path / "failing", status("fail"))
    also_failing = edited(six_scenarios, tmp_path / "also-failing", status("fail"))
    result = cli("compare", undecided, failing, "--out", tmp_path / "cmp")
    assert result.exit_code == 1, result.output
    found = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert found["candidates"][0]["regressed_controls"] == [control["id"]]
    assert cli("compare", failing, also_failing, "--out", tmp_path / "both").exit_code == 0


def test_audits_of_another_suite_are_refused_with_the_difference_named(six_scenarios, another_audited, tmp_path):
    result = cli("compare", six_scenarios, another_audited, "--out", tmp_path / "cmp")
    assert result.exit_code == 2
    assert "suite" in result.output and "employment-screening" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "cmp").exists()


def test_audits_of_other_cases_or_an_unknown_reference_are_refused(six_scenarios, unrendered, tmp_path):
    result = cli("compare", six_scenarios, unrendered, "--out", tmp_path / "cmp")
    assert result.exit_code == 2 and "cases differ" in result.output and "--limit" in result.output
    result = cli("compare", six_scenarios, six_scenarios, "--out", tmp_path / "cmp")
    assert result.exit_code == 2 and "twice" in result.output
    rerun = shutil.copytree(six_scenarios, tmp_path / "rerun")
    result = cli("compare", six_scenarios, rerun, "--reference", "nope", "--out", tmp_path / "cmp")
    assert result.exit_code == 2 and "--reference nope" in result.output
    result = cli("compare", six_scenarios, "--out", tmp_path / "cmp")
    assert result.exit_code == 2 and "at least two" in result.output


def test_an_edited_bundle_is_refused_before_anything_is_compared(six_scenarios, tmp_path):
    forged = Path(shutil.copytree(six_scenarios, tmp_path / "forged"))
    data = json.loads((forged / "bundle.json").read_text())
    data["cases"][0]["score"] += 3.0
    (forged / "bundle.json").write_text(json.dumps(data))
    result = cli("compare", six_scenarios, forged, "--out", tmp_path / "cmp")
    assert result.exit_code == 2 and "changed after the audit wrote it" in result.output
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("change, expected", [
    ({"id": "b", "base_id": "a"}, "fine-tune"),
    ({"id": "c", "base_id": "z", "config_sha256": "c3"}, "other model"),
    ({"dtype": "bfloat16"}, "precision"),  # the same files (the same id) loaded in another dtype
    ({"id": "e", "weights": {"model.safetensors": "f"}}, "quantization or fine-tune"),
    ({"id": "f", "weights": {"model.safetensors": "f"}, "config_sha256": "c2"}, "other model"),
    ({}, "same model"),
])
def test_the_relation_of_two_models_is_read_from_their_fingerprints(change, expected):
    reference = {"id": "a", "weights": {"model.safetensors": "w"}, "tokenizer": {"tokenizer.json": "t"},
                 "config_sha256": "c", "chat_template_sha256": "h", "source_gguf": None, "dtype": "float32"}
    assert relation(reference, {**reference, **change}) == expected


def test_run_with_two_models_writes_two_verifiable_audits_and_their_comparison(tiny_llama_dir, tmp_path):
    copy = shutil.copytree(tiny_llama_dir, tmp_path / "copy-of-tiny")
    out = tmp_path / "out"
    result = cli("run", "--model", tiny_llama_dir, "--model", copy, "--limit", 1, "--ig-steps", 2, "--methods", "ig",
                 "--patching-pairs", 1, "--format-sensitivity", "off", "--out", out, "--junit", tmp_path / "ci.xml")
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["1-" + Path(tiny_llama_dir).name.replace("_", "-").lower(), "2-copy-of-tiny", "compare"]
    for folder in folders[:2]:
        assert cli("verify", out / folder).exit_code == 0
    found = json.loads((out / "compare" / "compare.json").read_text())
    assert [m["label"] for m in found["models"]] == folders[:2]
    assert found["candidates"][0]["relation"] == "same model"
    assert (tmp_path / "ci.xml").read_bytes() == (out / "compare" / "junit.xml").read_bytes()
    result = cli("run", "--model", copy, "--model", copy, "--out", tmp_path / "twice")
    assert result.exit_code == 2 and "--model" in result.output and not (tmp_path / "twice").exists()
