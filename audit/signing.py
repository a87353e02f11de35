"""Signed evidence: the audit folder as an in-toto attestation in a DSSE envelope, signed with a local Ed25519 key.

EU AI Act Annex IV 2(g) asks for test reports "dated and signed by the responsible persons". Instead of a
signature format of our own, the signature is the supply chain's standard one, so it verifies offline with
securesystemslib, in-toto or cosign (local key) as well as with ``audit verify --pubkey``:

- the payload is an in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md):
  ``subject`` lists every artifact of the manifest with its sha256; ``predicate`` carries the audit's verdict,
  the model fingerprint, the suite and policy hashes, the tool version and the signer;
- the envelope is DSSE v1 (https://github.com/secure-systems-lab/dsse): ``payloadType``
  ``application/vnd.in-toto+json``, the Ed25519 signature over PAE(payloadType, payload) (Bernstein et al.
  2012), ``keyid`` the securesystemslib key id (sha256 of the canonical public key);
- keys are PEM (PKCS#8 private, SubjectPublicKeyInfo public), as ``openssl`` and cosign read them.

Signing records the signer, the date and the key id in the bundle first (the report's sign-off page shows
them), re-renders the artifacts, rewrites the manifest, and signs last, so the signature covers the page
that names the signer. The envelope is one JSON line in ``attestation.intoto.jsonl`` (the in-toto bundle
convention), outside the manifest it attests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.artifacts import ATTESTATION_FILE
from audit.errors import AuditError
from audit.evidence import BUNDLE_FILE, read_bundle, utc_now, write_atomically, write_outputs
from audit.text_safety import check_text

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://github.com/oss-model-audit/oss-model-audit/attestation/audit-evidence/v1"
PRIVATE_SUFFIX, PUBLIC_SUFFIX = ".key", ".pub"


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    key_id: str


def generate_key_pair(prefix: Path) -> KeyPair:
    """Write ``PREFIX.key`` (PEM PKCS#8, mode 0600) and ``PREFIX.pub`` (PEM SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from securesystemslib.signer import CryptoSigner

    private, public = Path(f"{prefix}{PRIVATE_SUFFIX}"), Path(f"{prefix}{PUBLIC_SUFFIX}")
    for path in (private, public):
        if path.exists():
            raise AuditError(f"--out: {path} already exists; refusing to overwrite a key")
        if not path.resolve().parent.is_dir():
            raise AuditError(f"--out: folder {path.resolve().parent} does not exist")
    key = Ed25519PrivateKey.generate()
    signer = CryptoSigner(key)
    write_atomically(private, signer.private_bytes, mode=0o600)
    write_atomically(public, key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private=private, public=public, key_id=signer.public_key.keyid)


def load_signer(path: Path):
    """A securesystemslib ``CryptoSigner`` for the Ed25519 private key in ``path``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise AuditError(f"--key: {path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, TypeError) as exc:
        raise AuditError(f"--key: {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"--key: {path}: not an Ed25519 key (make one with `audit keygen`)")
    return CryptoSigner(key)


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


def sign_folder(folder: Path, key_path: Path, signer_name: str) -> dict[str, Any]:
    """Sign the audit in ``folder``: sign-off in the bundle, artifacts re-rendered, manifest rewritten, envelope.

    Refuses a folder that does not verify: a signature over tampered evidence would vouch for it.
    """
    from audit.artifacts import audit_files
    from audit.verify import verify_folder

    if not signer_name.strip():
        raise AuditError("--signer: give the name (and role) of the person signing")
    check_text(signer_name, "--signer", AuditError)
    signer = load_signer(key_path)
    checked = verify_folder(folder)
    if checked.problems:
        raise AuditError(f"{folder}: refusing to sign an audit that does not verify: {checked.problems[0]}")
    bundle = read_bundle(folder)
    bundle.signoff = {
        "signer": signer_name.strip(),
        "signed_at": utc_now(),
        "key_id": signer.public_key.keyid,
        "key_type": signer.public_key.keytype,
        "attestation": ATTESTATION_FILE,
    }
    write_outputs(folder, audit_files(bundle, report=checked.has_report))
    envelope = _envelope(_statement(folder, bundle), signer)
    write_atomically(folder / ATTESTATION_FILE, (json.dumps(envelope, separators=(",", ":")) + "\n").encode())
    return bundle.signoff


def _statement(folder: Path, bundle) -> dict[str, Any]:
    from audit.verify import read_manifest

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


def _envelope(statement: dict[str, Any], signer) -> dict[str, Any]:
    from securesystemslib.dsse import Envelope

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    return envelope.to_dict()


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
