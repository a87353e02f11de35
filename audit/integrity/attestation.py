"""The attestation of an audit folder: an in-toto Statement of every file of the manifest, and its checks.

The statement's ``subject`` lists every artifact of the manifest with its sha256; its ``predicate`` carries
the audit's verdict, the model fingerprint, the suite and policy hashes, the tool version and the signer
(https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md). ``audit.integrity.signing`` wraps it
in a signed DSSE envelope; ``audit.integrity.verify`` checks an envelope against the folder as it is now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.evidence.bundle import BUNDLE_FILE
from audit.evidence.manifest import read_manifest
from audit.report.folder import ATTESTATION_FILE


STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://github.com/oss-model-audit/oss-model-audit/attestation/audit-evidence/v1"


def load_public_key(path: Path):
    """A securesystemslib ``SSlibKey`` for the Ed25519 public key in ``path``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise AuditError(f"--pubkey: {path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise AuditError(f"--pubkey: {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"--pubkey: {path}: not an Ed25519 public key")
    return SSlibKey.from_crypto(key)


def statement(folder: Path, bundle) -> dict[str, Any]:
    """The in-toto Statement of the folder as its manifest lists it, with what the signer vouches for."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in read_manifest(folder).items()],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate_of(bundle),
    }


def predicate_of(bundle) -> dict[str, Any]:
    """What the signer vouches for, beyond the artifacts' hashes."""
    return {
        "verdict": {k: bundle.verdict[k] for k in ("status", "exit_code", "failed_controls", "undecided_controls")
                    if k in bundle.verdict},
        "model": {"fingerprint": bundle.model["id"], "spec": bundle.model.get("spec")},
        "suite": {"id": bundle.suite["id"], "sha256": bundle.suite["sha256"]},
        "policy": {"id": bundle.policy["id"], "sha256": bundle.policy.get("sha256")},
        "tool": dict(bundle.tool),
        "schema_version": bundle.schema_version,
        "audited_at": bundle.run["finished_at"],
        "signoff": {k: bundle.signoff[k] for k in ("signer", "signed_at", "key_id")},
    }


def check_attestation(folder: Path, key, key_label: str | None, digests: dict[str, str], bundle) -> list[str]:
    """What is wrong with the folder's attestation; empty when it holds.

    ``key``: an ``SSlibKey`` read from ``key_label``, whose DSSE signature must verify; None checks the statement
    alone (a validator without the public key still learns whether the attestation is this audit's).
    ``digests``: the sha256 of each file the manifest lists, as found on disk. Checks that every subject's sha256
    matches the file on disk and every manifest file is a subject, and that the predicate agrees with the bundle.
    """
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    path = folder / ATTESTATION_FILE
    if not path.is_file():
        return [f"{ATTESTATION_FILE}: missing: the audit is not signed (sign it with `audit sign`)"]
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        envelope = Envelope.from_dict(json.loads(lines[0]))
    except (UnicodeDecodeError, json.JSONDecodeError, IndexError, KeyError, TypeError, ValueError,
            AttributeError, RecursionError) as exc:
        return [f"{ATTESTATION_FILE}: not a DSSE envelope ({type(exc).__name__}: {exc})"]
    if key is not None:
        try:
            envelope.verify([key], 1)
        except VerificationError:
            return [f"{ATTESTATION_FILE}: the signature does not verify with {key_label} (key id {key.keyid[:16]}): "
                    "signed by another key, or the statement was changed"]
    if envelope.payload_type != PAYLOAD_TYPE:
        return [f"{ATTESTATION_FILE}: payloadType {envelope.payload_type!r}, expected {PAYLOAD_TYPE!r}"]
    subjects = _subjects(envelope.payload)
    if subjects is None:
        return [f"{ATTESTATION_FILE}: its statement is not an in-toto Statement with named sha256 subjects"]
    statement, subjects = subjects
    problems = []
    for name, digest in subjects.items():
        if name not in digests:
            problems.append(f"{name}: signed but no longer in the manifest")
        elif digests[name] != digest:
            problems.append(f"{name}: changed since it was signed (signed sha256 {str(digest)[:12]}, now "
                            f"{digests[name][:12]})")
    problems += [f"{name}: in the manifest but not covered by the signature" for name in digests if name not in subjects]
    if bundle.signoff is None or statement.get("predicate") != predicate_of(bundle):
        problems.append(f"{BUNDLE_FILE}: its verdict, model, suite, policy or sign-off differ from the signed statement")
    return problems


def _subjects(payload: bytes) -> tuple[dict[str, Any], dict[str, str]] | None:
    """(statement, subject name -> sha256) of an in-toto Statement, or None when it is not one."""
    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    listed = statement.get("subject") if isinstance(statement, dict) else None
    if not isinstance(listed, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("digest"), dict)
            for s in listed):
        return None
    return statement, {s["name"]: s["digest"].get("sha256") for s in listed}
