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

from audit.integrity.attestation import PAYLOAD_TYPE, statement
from audit.integrity.verify import verify_folder
from audit.report.folder import ATTESTATION_FILE
from audit.report.artifacts import audit_files
from audit.errors import AuditError
from audit.evidence.bundle import read_bundle, utc_now
from audit.evidence.files import write_atomically, write_outputs
from audit.text_safety import check_text

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


def sign_folder(folder: Path, key_path: Path, signer_name: str) -> dict[str, Any]:
    """Sign the audit in ``folder``: sign-off in the bundle, artifacts re-rendered, manifest rewritten, envelope.

    Refuses a folder that does not verify: a signature over tampered evidence would vouch for it.
    """
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
    envelope = _envelope(statement(folder, bundle), signer)
    write_atomically(folder / ATTESTATION_FILE, (json.dumps(envelope, separators=(",", ":")) + "\n").encode())
    return bundle.signoff


def _envelope(statement: dict[str, Any], signer) -> dict[str, Any]:
    from securesystemslib.dsse import Envelope

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    return envelope.to_dict()


