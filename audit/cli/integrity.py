"""``audit verify``, ``audit keygen`` and ``audit sign``: check and attest an audit folder (``audit.integrity``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Also check that this model (spec as for `audit run`) is the audited one.")
@click.option("--pubkey", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also check the signature (attestation.intoto.jsonl) with this Ed25519 public key (PEM).")
@click.option("--base-model", default=None, help="With --model an adapter folder: its base model.")
@click.option("--allow-pickle", is_flag=True, help="With --model: allow pickle weight files.")
@click.option("--trust-remote-code", is_flag=True, help="With --model: allow model code shipped with the weights.")
def verify(folder, model, pubkey, base_model, allow_pickle, trust_remote_code):
    """Check an audit folder: hashes, schema, controls re-derived, artifacts re-rendered, model, signature.

    Exit 0 intact, 1 tampered (every change is named), 2 unreadable.
    """
    from audit.integrity.verify import ModelFingerprint, verify_folder

    def fingerprint() -> ModelFingerprint:
        from audit.models.loading import fingerprint_of

        found = fingerprint_of(model, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                               base_model=base_model)
        return ModelFingerprint(spec=model, fingerprint=found)

    result = verify_folder(folder, model=None if model is None else fingerprint, public_key=pubkey)
    for line in result.passed:
        click.echo(f"ok       {line}")
    for line in result.problems:
        click.echo(f"CHANGED  {line}")
    click.echo(f"{folder}: " + ("intact" if result.intact else f"TAMPERED ({len(result.problems)} problems)"))
    return result.exit_code


@click.command()
@click.option("--out", "prefix", default="audit-signing", show_default=True, type=click.Path(path_type=Path),
              help="Writes PREFIX.key (private, mode 0600) and PREFIX.pub.")
def keygen(prefix):
    """Make an Ed25519 key pair (PEM) for `audit sign`."""
    from audit.integrity.signing import generate_key_pair

    pair = generate_key_pair(prefix)
    click.echo(f"private key: {pair.private} (keep it secret)\npublic key:  {pair.public}\nkey id:      {pair.key_id}")


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Ed25519 private key (PEM), e.g. from `audit keygen`.")
@click.option("--signer", required=True, help="Name and role of the person signing, shown on the sign-off page.")
def sign(folder, key, signer):
    """Sign an audit folder: an in-toto attestation of every artifact in a DSSE envelope."""
    from audit.integrity.signing import ATTESTATION_FILE, sign_folder

    signoff = sign_folder(folder, key, signer)
    click.echo(f"signed by {signoff['signer']} on {signoff['signed_at']} with key {signoff['key_id']}\n"
               f"attestation: {folder / ATTESTATION_FILE}")
