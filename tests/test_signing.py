"""`audit keygen`, `audit sign`, `audit verify --pubkey`: a standard DSSE/in-toto attestation over every artifact."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.cli import main
from audit.evidence.manifest import MANIFEST_FILE, manifest_text
from audit.evidence.bundle import read_bundle
from audit.integrity.signing import ATTESTATION_FILE
from audit.integrity.attestation import PAYLOAD_TYPE, STATEMENT_TYPE

SIGNER = "Dana Whitfield, Head of Model Validation"


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    prefix = tmp_path_factory.mktemp("keys") / "validator"
    result = cli("keygen", "--out", prefix)
    assert result.exit_code == 0, result.output
    return prefix


@pytest.fixture(scope="module")
def signed(tmp_path_factory, audited, keys) -> Path:
    """The rendered one-scenario audit of tests/test_verify.py's fixture, copied and signed."""
    folder = Path(shutil.copytree(audited, tmp_path_factory.mktemp("signed") / "out"))
    result = cli("sign", folder, "--key", f"{keys}.key", "--signer", SIGNER)
    assert result.exit_code == 0, result.output
    return folder


def test_keygen_writes_a_private_key_only_its_owner_reads_and_refuses_to_overwrite(keys):
    assert stat.S_IMODE(Path(f"{keys}.key").stat().st_mode) == 0o600
    assert Path(f"{keys}.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = cli("keygen", "--out", keys)
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_signed_audit_verifies_with_its_public_key(signed, keys):
    result = cli("verify", signed, "--pubkey", f"{keys}.pub")
    assert result.exit_code == 0, result.output
    assert f"signed by {SIGNER}" in result.output


def test_the_sign_off_page_names_the_signer_the_date_and_the_key(signed, keys):
    from pypdf import PdfReader

    signoff = read_bundle(signed).signoff
    pages = [" ".join(page.extract_text().split()) for page in PdfReader(signed / "report.pdf").pages]
    text = next(page for page in pages if "Independent model validator" in page and "Responsible persons" in page)
    assert SIGNER in text and signoff["key_id"][:16] in text
    assert "Model owner" in text and "Independent model validator" in text


def test_the_attestation_verifies_with_standard_tooling_alone(signed, keys):
    """securesystemslib's DSSE verification and sha256 over the files: no code of ours involved."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    envelope = json.loads((signed / ATTESTATION_FILE).read_text().splitlines()[0])
    key = SSlibKey.from_crypto(load_pem_public_key(Path(f"{keys}.pub").read_bytes()))
    Envelope.from_dict(envelope).verify([key], 1)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert envelope["payloadType"] == PAYLOAD_TYPE and statement["_type"] == STATEMENT_TYPE
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert set(subjects) >= {"bundle.json", "report.pdf", "report.html", "junit.xml"}
    for name, digest in subjects.items():
        assert hashlib.sha256((signed / name).read_bytes()).hexdigest() == digest
    bundle = read_bundle(signed)
    assert statement["predicate"]["verdict"]["status"] == bundle.verdict["status"]
    assert statement["predicate"]["model"]["fingerprint"] == bundle.model["id"]


def test_a_file_changed_after_signing_is_caught_even_with_a_recomputed_manifest(signed, keys, tmp_path):
    folder = Path(shutil.copytree(signed, tmp_path / "copy"))
    (folder / "junit.xml").write_text((folder / "junit.xml").read_text().replace("oss-model-audit", "oss-model-audlt"))
    names = [line.split("  ", 1)[1] for line in (folder / MANIFEST_FILE).read_text().splitlines()]
    (folder / MANIFEST_FILE).write_text(manifest_text(folder, names))
    result = cli("verify", folder, "--pubkey", f"{keys}.pub")
    assert result.exit_code == 1
    assert "junit.xml: changed since it was signed" in result.output


def test_another_key_does_not_verify_the_signature(signed, tmp_path):
    other = tmp_path / "other"
    assert cli("keygen", "--out", other).exit_code == 0
    result = cli("verify", signed, "--pubkey", f"{other}.pub")
    assert result.exit_code == 1
    assert "the signature does not verify" in result.output


def test_an_unsigned_audit_fails_a_signature_check(audited, keys):
    result = cli("verify", audited, "--pubkey", f"{keys}.pub")
    assert result.exit_code == 1 and "not signed" in result.output


def test_signing_refuses_a_tampered_audit_and_writes_nothing(audited, keys, tmp_path):
    folder = Path(shutil.copytree(audited, tmp_path / "copy"))
    (folder / "junit.xml").write_text("<testsuites/>")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = cli("sign", folder, "--key", f"{keys}.key", "--signer", SIGNER)
    assert result.exit_code == 2 and "refusing to sign" in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("key_text, fragment", [
    ("not a key", "not an unencrypted PEM private key"),
    (None, "cannot be read"),
])
def test_a_bad_signing_key_is_one_line_exit_2(audited, tmp_path, key_text, fragment):
    key = tmp_path / "bad.key"
    if key_text is not None:
        key.write_text(key_text)
    result = cli("sign", audited, "--key", key, "--signer", SIGNER)
    assert result.exit_code == 2
    assert f"--key: {key}" in result.output and fragment in result.output


@pytest.mark.parametrize("with_key", [False, True])
def test_another_audits_attestation_swapped_in_is_caught_with_or_without_the_key(signed, another_audited, keys,
                                                                                  tmp_path, with_key):
    """Without --pubkey the signature cannot be checked, but the statement still names other files' hashes."""
    other = Path(shutil.copytree(another_audited, tmp_path / "other"))
    assert cli("sign", other, "--key", f"{keys}.key", "--signer", SIGNER).exit_code == 0
    folder = Path(shutil.copytree(signed, tmp_path / "forged"))
    shutil.copyfile(other / ATTESTATION_FILE, folder / ATTESTATION_FILE)
    result = cli("verify", folder, *(["--pubkey", f"{keys}.pub"] if with_key else []))
    assert result.exit_code == 1, result.output
    assert "CHANGED  bundle.json: changed since it was signed" in result.output


def test_a_signed_audit_whose_attestation_is_deleted_is_named(signed, tmp_path):
    folder = Path(shutil.copytree(signed, tmp_path / "unsigned"))
    (folder / ATTESTATION_FILE).unlink()
    result = cli("verify", folder)
    assert result.exit_code == 1
    assert f"CHANGED  {ATTESTATION_FILE}: missing, but bundle.json records a sign-off by {SIGNER}" in result.output
