"""The bundle: JSON round trip, schema version, manifest in sha256sum format, atomic writes."""

from __future__ import annotations

import json
import subprocess

import pytest

from audit.errors import AuditError, BundleError
from audit.evidence.bundle import read_bundle
from audit.evidence.files import write_outputs


def test_round_trip_and_non_finite_numbers_become_null(unrendered, tmp_path):
    bundle = read_bundle(unrendered)
    bundle.fairness["analyses"][0]["groups"][0]["mean_shift"] = float("nan")
    write_outputs(tmp_path / "out", {"bundle.json": bundle.to_json()})
    again = read_bundle(tmp_path / "out")
    assert again.fairness["analyses"][0]["groups"][0]["mean_shift"] is None
    assert again.model == bundle.model


def test_unsupported_schema_and_garbage_are_refused(unrendered, tmp_path):
    path = tmp_path / "bundle.json"
    genuine = read_bundle(unrendered).to_dict()
    path.write_text(json.dumps({**genuine, "schema_version": "99"}))
    with pytest.raises(BundleError, match="schema_version '99' is not supported"):
        read_bundle(path)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="is not valid JSON"):
        read_bundle(path)
    data = dict(genuine)
    del data["controls"]
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="controls: missing from the bundle"):
        read_bundle(path)


def test_manifest_is_checkable_with_sha256sum(tmp_path):
    out = tmp_path / "out"
    write_outputs(out, {"bundle.json": b"{}", "report.html": b"<html></html>"})
    lines = (out / "manifest.sha256").read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["bundle.json", "report.html"]
    result = subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=out, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (out / "report.html").write_text("tampered")
    assert subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=out, capture_output=True).returncode != 0


def test_writes_replace_previous_files_and_leave_no_staging(tmp_path):
    out = tmp_path / "out"
    write_outputs(out, {"bundle.json": b"1"})
    write_outputs(out, {"bundle.json": b"2"})
    assert (out / "bundle.json").read_bytes() == b"2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(AuditError, match="--out: .*taken exists and is not a folder"):
        write_outputs(target, {"bundle.json": b"{}"})


@pytest.mark.parametrize("kind", ["bundle", "explanation"])
def test_the_shipped_json_schemas_are_valid_and_printed_for_other_tools(kind):
    from click.testing import CliRunner
    from jsonschema import Draft202012Validator

    from audit.cli import main

    printed = CliRunner().invoke(main, ["schema", kind])
    assert printed.exit_code == 0
    Draft202012Validator.check_schema(json.loads(printed.output))


def test_a_count_written_as_a_float_is_refused_with_its_field(unrendered, tmp_path):
    """JSON Schema's "integer" admits 2.0; a reader that indexes or slices with it cannot use it."""
    data = read_bundle(unrendered).to_dict()
    data["cases"][0]["n_tokens"] = float(data["cases"][0]["n_tokens"])
    (tmp_path / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"cases\[0\]\.n_tokens: must be integer, got number"):
        read_bundle(tmp_path)


def test_an_atomic_write_gives_the_mode_asked_for_else_the_umasks(tmp_path):
    """The results cache asks for 0600 (its entries hold case text: with --rows, the bank's own applications),
    as the signing key does; an artifact gets 0666 less the umask, as any file the user writes."""
    import stat

    from audit.evidence.files import replace_atomically

    replace_atomically(tmp_path / "entry.json", b"{}", mode=0o600, durable=False)
    replace_atomically(tmp_path / "report.html", b"<html></html>")
    assert stat.S_IMODE((tmp_path / "entry.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
