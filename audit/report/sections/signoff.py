"""The sign-off page: the electronic signature recorded by ``audit sign``, and lines for handwritten sign-off.

EU AI Act Annex IV 2(g): test reports "dated and signed by the responsible persons". The page names the
signer, the date and the key id (sha256 of the Ed25519 public key, securesystemslib's key id) and says how
to check the signature offline; the model owner and the independent validator sign on the lines below.
"""

from __future__ import annotations

from typing import Any

from audit.evidence.bundle import EvidenceBundle

SIGNATORIES = ("Model owner", "Independent model validator")


def signoff_context(bundle: EvidenceBundle) -> dict[str, Any]:
    signoff = bundle.signoff
    return {
        "signed": signoff is not None,
        "signer": signoff and signoff["signer"],
        "signed_at": signoff and signoff["signed_at"],
        "key_id": signoff and signoff["key_id"],
        "key_type": signoff and signoff.get("key_type", "ed25519"),
        "attestation": signoff and signoff.get("attestation"),
        "signatories": SIGNATORIES,
    }
