"""`audit verify`: an intact folder passes; every kind of tampering is caught and named; unreadable is exit 2."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.report.artifacts import render_artifacts
from audit.cli import main
from audit.evidence.bundle import BUNDLE_FILE, EvidenceBundle, read_bundle
from audit.evidence.manifest import MANIFEST_FILE, manifest_text
from tests.conftest import save_tiny_llama


def verify(*args):
    return CliRunner().invoke(main, ["verify", *map(str, args)], catch_exceptions=False)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def rewrite_consistently(folder: Path, bundle: EvidenceBundle, *, rerender: bool) -> None:
    """What a careful forger does: new bundle, artifacts rendered from it (or not), manifest recomputed."""
    files = {BUNDLE_FILE: bundle.to_json()}
    if rerender:
        files.update(render_artifacts(bundle, report=(folder / "report.pdf").exists()))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    names = [line.split("  ", 1)[1] for line in (folder / MANIFEST_FILE).read_text().splitlines()]
    (folder / MANIFEST_FILE).write_text(manifest_text(folder, names))


def test_an_untouched_audit_verifies_including_the_rendered_pdf(audited):
    result = verify(audited)
    assert result.exit_code == 0, result.output
    assert "intact" in result.output.splitlines()[-1]
    assert "report.pdf" in result.output and "re-derived" in result.output


def test_a_changed_pdf_is_named(audited, tmp_path):
    folder = copy_of(audited, tmp_path)
    data = bytearray((folder / "report.pdf").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "report.pdf").write_bytes(bytes(data))
    result = verify(folder)
    assert result.exit_code == 1
    assert "CHANGED  report.pdf: changed after the audit wrote it" in result.output


def test_a_deleted_artifact_is_named(unrendered, tmp_path):
    folder = copy_of(unrendered, tmp_path)
    (folder / "junit.xml").unlink()
    result = verify(folder)
    assert result.exit_code == 1
    assert "junit.xml: listed in the manifest but missing" in result.output


def flip_verdict(bundle: EvidenceBundle) -> str:
    flipped = "pass" if bundle.verdict["status"] == "fail" else "fail"
    bundle.verdict = {**bundle.verdict, "status": flipped, "exit_code": int(flipped == "fail")}
    return f"verdict.status is '{flipped}', the controls give"


def clear_an_undecided_audit(bundle: EvidenceBundle) -> str:
    """What a forger wanting a green build would write: PASS, exit 0, nothing undecided, every blocking control
    passing; the evidence still leaves a blocking control undecided."""
    undecided = next(c for c in bundle.controls if c["blocking"] and c["status"] in ("inconclusive", "not evaluated"))
    bundle.verdict = {**bundle.verdict, "status": "pass", "exit_code": 0, "failed_controls": [],
                      "undecided_controls": []}
    for control in bundle.controls:
        if control["blocking"]:
            control["status"] = "pass"
    return f"control {undecided['id']} states pass"


def pass_a_control(bundle: EvidenceBundle) -> str:
    control = next(c for c in bundle.controls if c["status"] != "pass")
    control["status"] = "pass"
    return f"control {control['id']} states pass"


@pytest.mark.parametrize("edit", [flip_verdict, pass_a_control, clear_an_undecided_audit])
def test_an_edited_verdict_or_control_is_caught_even_with_manifest_and_artifacts_rewritten(unrendered, tmp_path,
                                                                                           edit):
    folder = copy_of(unrendered, tmp_path)
    bundle = read_bundle(folder)
    expected = edit(bundle)
    rewrite_consistently(folder, bundle, rerender=True)
    result = verify(folder)
    assert result.exit_code == 1
    assert expected in result.output


def test_an_edited_measurement_is_caught_through_the_control_it_feeds(unrendered, tmp_path):
    folder = copy_of(unrendered, tmp_path)
    bundle = read_bundle(folder)
    group = next(g for a in bundle.fairness["analyses"] for g in a["groups"] if g["mean_shift"] is not None
                 and not g["is_reference"])
    group["mean_shift"], group["shift_ci"] = 5.0, [4.9, 5.1]
    rewrite_consistently(folder, bundle, rerender=True)
    result = verify(folder)
    assert result.exit_code == 1
    assert "control counterfactual-shift states" in result.output and " at 5.0" in result.output


def test_a_bundle_edited_without_rendering_again_is_caught_by_the_rendering_check(unrendered, tmp_path):
    folder = copy_of(unrendered, tmp_path)
    bundle = read_bundle(folder)
    bundle.suite = {**bundle.suite, "id": "another-suite"}
    rewrite_consistently(folder, bundle, rerender=False)
    result = verify(folder)
    assert result.exit_code == 1
    assert "CHANGED  junit.xml: differs from the junit.xml rendered again from bundle.json" in result.output


@pytest.mark.parametrize("damage, fragment", [
    (lambda f: (f / MANIFEST_FILE).unlink(), "manifest.sha256: missing"),
    (lambda f: (f / MANIFEST_FILE).write_text("not a manifest\n"), "line 1: expected '<sha256> <file name>'"),
    (lambda f: (f / MANIFEST_FILE).write_text(f"{'0' * 64}  ../escape\n"), "line 1"),
])
def test_an_unreadable_folder_exits_2_with_one_line(unrendered, tmp_path, damage, fragment):
    folder = copy_of(unrendered, tmp_path)
    damage(folder)
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code == 2
    assert fragment in result.output


def test_a_bundle_of_a_newer_schema_is_unreadable_not_tampered(unrendered, tmp_path):
    folder = copy_of(unrendered, tmp_path)
    data = json.loads((folder / BUNDLE_FILE).read_text())
    data["schema_version"] = "9.0"
    (folder / BUNDLE_FILE).write_text(json.dumps(data))
    (folder / MANIFEST_FILE).write_text(manifest_text(folder, [BUNDLE_FILE, "junit.xml"]))
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code == 2
    assert "schema_version '9.0' is not supported" in result.output


def test_the_audited_model_matches_and_another_model_does_not(unrendered, tiny_llama_dir, tmp_path, bpe_tokenizer):
    assert verify(unrendered, "--model", tiny_llama_dir).exit_code == 0
    other = save_tiny_llama(tmp_path / "other", bpe_tokenizer)
    weights = next(other.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    result = verify(unrendered, "--model", other)
    assert result.exit_code == 1
    assert "is not the audited model" in result.output and "differs in weights" in result.output


# Every artifact, every way a forger can treat it ----------------------------------------------------------------

ARTIFACTS = ("bundle.json", "junit.xml", "report.html", "report.pdf")


def manifest_lines(folder: Path) -> dict[str, str]:
    return {line.split("  ", 1)[1]: line for line in (folder / MANIFEST_FILE).read_text().splitlines()}


def write_manifest(folder: Path, lines: dict[str, str]) -> None:
    (folder / MANIFEST_FILE).write_text("".join(f"{line}\n" for line in lines.values()))


def delete(folder, name, other):
    (folder / name).unlink()


def swap(folder, name, other):
    shutil.copyfile(other / name, folder / name)


def swap_and_drop_its_line(folder, name, other):
    swap(folder, name, other)
    drop_its_line(folder, name, other)


def drop_its_line(folder, name, other):
    lines = manifest_lines(folder)
    del lines[name]
    write_manifest(folder, lines)


def swap_and_rehash(folder, name, other):
    """The careful forger: another audit's file, the manifest recomputed to match it."""
    swap(folder, name, other)
    write_manifest(folder, {**manifest_lines(folder), name: manifest_text(folder, [name]).rstrip("\n")})


TAMPERINGS = {"deleted": delete, "swapped with another audit's": swap,
              "swapped and its manifest line deleted": swap_and_drop_its_line,
              "its manifest line deleted": drop_its_line, "swapped with the manifest recomputed": swap_and_rehash}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_every_artifact_tampered_every_way_is_caught_and_named(audited, another_audited, tmp_path, artifact,
                                                                tampering):
    folder = copy_of(audited, tmp_path)
    TAMPERINGS[tampering](folder, artifact, another_audited)
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code in (1, 2), result.output
    named = [line for line in result.output.splitlines() if line.startswith(("CHANGED", "audit: error"))]
    assert named and any(artifact in line for line in named), result.output
    assert "intact" not in result.output.splitlines()[-1]


@pytest.mark.parametrize("name", ["notes.txt", "report-final.pdf", "attestation.intoto.jsonl"])
def test_a_file_added_with_its_own_manifest_line_is_tampering(unrendered, tmp_path, name):
    folder = copy_of(unrendered, tmp_path)
    (folder / name).write_text("approved by the board\n")
    write_manifest(folder, {**manifest_lines(folder), name: manifest_text(folder, [name]).rstrip("\n")})
    result = verify(folder)
    assert result.exit_code == 1
    assert f"CHANGED  {name}: listed in the manifest, but no audit writes a file of that name" in result.output


@pytest.mark.parametrize("name", ["notes.txt", "report.pdf", "attestation.intoto.jsonl"])
def test_a_file_added_without_a_manifest_line_is_tampering(unrendered, tmp_path, name):
    """An unrendered audit records no report: a report.pdf beside it is not its report, whatever it says."""
    folder = copy_of(unrendered, tmp_path)
    (folder / name).write_text("x")
    result = verify(folder)
    assert result.exit_code == 1
    assert any(line.startswith(f"CHANGED  {name}: ") for line in result.output.splitlines()), result.output


def test_a_report_listed_for_an_audit_that_recorded_none_is_tampering(unrendered, another_audited, tmp_path):
    folder = copy_of(unrendered, tmp_path)
    for name in ("report.html", "report.pdf"):
        swap_and_rehash(folder, name, another_audited)
    result = verify(folder)
    assert result.exit_code == 1
    assert "CHANGED  report.pdf: listed in the manifest, but bundle.json records no such artifact" in result.output


def test_an_audit_rerun_into_its_folder_leaves_no_stale_report_or_signature(audited, tiny_llama_dir, tmp_path):
    import audit

    folder = copy_of(audited, tmp_path)
    (folder / "attestation.intoto.jsonl").write_text("{}\n")
    audit.run(model=str(tiny_llama_dir), out=folder, limit=1, ig_steps=2, methods="ig", quiet=True, render=False,
              format_sensitivity="off", patching_pairs=1)
    assert sorted(p.name for p in folder.iterdir()) == ["bundle.json", "junit.xml", "manifest.sha256"]
    assert verify(folder).exit_code == 0


# Every top-level field of the bundle, of the wrong type or missing, with the manifest kept in step --------------

def wrong_type(value):
    """A JSON value of another type than ``value``'s."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return {"items": value}
    if isinstance(value, str):
        return 7
    return "7"


BUNDLE_FIELDS = [f.name for f in dataclasses.fields(EvidenceBundle)]


@pytest.mark.parametrize("change", ["wrong type", "missing"])
@pytest.mark.parametrize("name", BUNDLE_FIELDS)
def test_every_bundle_field_of_the_wrong_type_or_missing_is_named(unrendered, tmp_path, name, change):
    folder = copy_of(unrendered, tmp_path)
    data = json.loads((folder / BUNDLE_FILE).read_text())
    if change == "missing":
        del data[name]
    else:
        data[name] = wrong_type(data[name]) if data[name] is not None else "7"
    (folder / BUNDLE_FILE).write_text(json.dumps(data))
    write_manifest(folder, {**manifest_lines(folder), BUNDLE_FILE: manifest_text(folder, [BUNDLE_FILE]).rstrip("\n")})
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code in (1, 2), result.output
    assert name in result.output and "Traceback" not in result.output
    for command in (["report", str(folder), "--out", str(tmp_path / "again")],
                    ["diff", str(unrendered), str(folder), "--out", str(tmp_path / "diff")]):
        again = CliRunner().invoke(main, command)
        assert again.exit_code == 2 and name in again.stderr, (command, again.output)
    assert not (tmp_path / "again").exists() and not (tmp_path / "diff").exists()
