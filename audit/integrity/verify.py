"""``audit verify``: is this audit folder the evidence the tool wrote, and does its verdict follow from it?

A validator challenges the developer's evidence without trusting the developer's machine:

1. every file the manifest lists has the sha256 the manifest gives (the manifest is ``sha256sum`` format);
2. ``bundle.json`` reads as a bundle of a supported schema version and matches the bundle's JSON Schema
   (``audit/schemas/bundle.schema.json``);
3. the folder has the shape ``audit run`` gives it: the manifest lists ``bundle.json`` and exactly the artifacts
   the bundle records (``run.artifacts``), the folder holds nothing else but the manifest and, where the bundle
   records a sign-off, the attestation: a report swapped in with its manifest line deleted, or a file added
   with its own line, is tampering;
4. the controls and the verdict, re-derived from the bundle's evidence under the bundle's own policy, are
   those the bundle states (an edited verdict with a re-computed manifest is caught here);
5. every artifact re-rendered from the bundle (JUnit, HTML, PDF) is byte-identical to the file in the folder;
6. with ``--model``, the model's fingerprint (weights, tokenizer, chat template, config) is the bundle's;
7. where the bundle records a sign-off, the attestation's statement names every file of the manifest with its
   sha256 as it is now and agrees with the bundle; with ``--pubkey``, its DSSE signature verifies as well
   (``audit.integrity.signing``).

Hash and signature checks prove integrity only against the manifest and the key; checks 4 and 5 catch a
consistent rewrite that kept the manifest in step but not the evidence. Exit codes: 0 intact, 1 tampered
(each problem named), 2 unreadable (no manifest, no bundle, a bundle of an unknown schema).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from audit.report.folder import ATTESTATION_FILE, RENDERED_FILES, REPORT_FILES, REPORT_PDF, recorded_artifacts
from audit.errors import AuditError, BundleError
from audit.integrity.attestation import check_attestation, load_public_key
from audit.evidence.bundle import BUNDLE_FILE, EvidenceBundle, read_bundle
from audit.evidence.manifest import MANIFEST_FILE, read_manifest
from audit.evidence.hashing import sha256_file

LISTABLE = (BUNDLE_FILE, *RENDERED_FILES)  # every file a manifest written by this tool may list
VALUE_TOLERANCE = 1e-9  # relative; re-derived control values are the same arithmetic on the same numbers


@dataclass(frozen=True)
class ModelFingerprint:
    """A model's fingerprint (weights, tokenizer, chat template, config) and the spec it was read from."""

    spec: str
    fingerprint: dict[str, Any]


@dataclass
class Verification:
    folder: Path
    passed: list[str] = field(default_factory=list)  # one line per check that held
    problems: list[str] = field(default_factory=list)  # one line per thing that changed
    has_report: bool = False

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return 0 if self.intact else 1


def verify_folder(
    folder: str | Path,
    *,
    model: Callable[[], ModelFingerprint] | None = None,
    public_key: str | Path | None = None,
) -> Verification:
    """Run every check on ``folder``; ``model``: gives the fingerprint of the model to compare with the audited
    one, called after the folder's own checks (the caller loads the model, with ``audit.models.loading.
    fingerprint_of``: verification itself never imports a model), ``public_key``: the Ed25519 key (PEM) the
    attestation's signature must verify with."""
    folder = Path(folder)
    key = load_public_key(Path(public_key)) if public_key is not None else None
    manifest = read_manifest(folder)
    result = Verification(folder=folder)
    if BUNDLE_FILE not in manifest:
        raise BundleError(f"{folder / MANIFEST_FILE}: does not list {BUNDLE_FILE}")
    result.problems += [f"{name}: listed in the manifest, but no audit writes a file of that name (added to the "
                        "evidence)" for name in manifest if name not in LISTABLE]
    digests = _check_hashes(folder, manifest, result)
    try:
        bundle = read_bundle(folder)
    except BundleError as exc:
        if any(p.startswith(f"{BUNDLE_FILE}:") for p in result.problems):
            result.problems.append(f"{BUNDLE_FILE}: no longer reads as a bundle ({exc})")
            return result
        raise
    result.passed.append(f"{BUNDLE_FILE}: schema {bundle.schema_version}, matches the bundle's JSON Schema")
    _check_shape(folder, manifest, bundle, result)
    _check_controls(bundle, result)
    _check_rendering(folder, bundle, manifest, digests, result)
    if model is not None:
        _check_model(bundle, model(), result)
    if key is not None or (bundle.signoff is not None and (folder / ATTESTATION_FILE).is_file()):
        problems = check_attestation(folder, key, None if key is None else str(public_key), digests, bundle)
        result.problems += problems
        if not problems and key is not None:
            result.passed.append(f"signature: verifies with {public_key}; signed by {bundle.signoff['signer']} on "
                                 f"{bundle.signoff['signed_at']}, covering every file of the manifest")
        elif not problems:
            result.passed.append(f"{ATTESTATION_FILE}: its statement covers every file of the manifest as it is now "
                                 "(the signature itself is checked with --pubkey)")
    return result


def _check_hashes(folder: Path, manifest: dict[str, str], result: Verification) -> dict[str, str]:
    digests = {}
    for name, expected in manifest.items():
        path = folder / name
        if not path.is_file():
            result.problems.append(f"{name}: listed in the manifest but missing")
            continue
        digests[name] = sha256_file(path)
        if digests[name] != expected:
            result.problems.append(f"{name}: changed after the audit wrote it (sha256 {digests[name][:12]}, "
                                   f"manifest {expected[:12]})")
    if len(digests) == len(manifest) and all(digests[n] == manifest[n] for n in manifest):
        result.passed.append(f"{MANIFEST_FILE}: all {len(manifest)} files have their recorded sha256")
    return digests


def _check_shape(folder: Path, manifest: dict[str, str], bundle: EvidenceBundle, result: Verification) -> None:
    """The folder holds what the audit wrote and nothing else (hidden dot-files aside).

    Required: ``bundle.json`` and the artifacts the bundle records (``run.artifacts``), each listed in the
    manifest; the attestation exactly when the bundle records a sign-off. Anything else in the folder, or a
    manifest line for a file the bundle does not record, is named as tampering.
    """
    expected = [BUNDLE_FILE, *recorded_artifacts(bundle)]
    result.has_report = REPORT_PDF in expected
    before = len(result.problems)
    for name in expected:
        if name not in manifest:
            result.problems.append(f"{name}: the audit wrote it, but the manifest does not list it" +
                                   (" (the file in the folder is not this audit's)" if (folder / name).exists() else
                                    " and it is missing"))
    result.problems += [f"{name}: listed in the manifest, but {BUNDLE_FILE} records no such artifact "
                        f"(run.artifacts: {', '.join(expected[1:])})"
                        for name in manifest if name in LISTABLE and name not in expected]
    signed = bundle.signoff is not None
    allowed = {*expected, MANIFEST_FILE, *((ATTESTATION_FILE,) if signed else ())}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in allowed or path.name in manifest:
            continue
        if path.name == ATTESTATION_FILE:
            result.problems.append(f"{ATTESTATION_FILE}: a signature, but {BUNDLE_FILE} records no sign-off (an "
                                   "attestation of another audit?)")
            continue
        result.problems.append(f"{path.name}: in the audit folder, but not written by the audit (not part of "
                               "the evidence: remove it, or keep it outside the folder)")
    if signed and not (folder / ATTESTATION_FILE).is_file():
        result.problems.append(f"{ATTESTATION_FILE}: missing, but {BUNDLE_FILE} records a sign-off by "
                               f"{bundle.signoff['signer']}")
    if len(result.problems) == before:
        result.passed.append(f"folder: holds exactly the audit's {len(expected)} files, the manifest"
                             + (" and the attestation" if signed else ""))


def _check_controls(bundle: EvidenceBundle, result: Verification) -> None:
    """Re-derive every control and the verdict from the bundle's evidence under the bundle's own policy."""
    from audit.controls.policy import evaluate, parse_policy, verdict_from, verdict_of_schema
    from audit.controls.registry import CONTROL_ENTRY_POINTS, registered_controls

    recorded = {key: value for key, value in bundle.policy.items() if key not in ("source", "sha256")}
    named = recorded.get("controls") if isinstance(recorded.get("controls"), dict) else {}
    missing = [cid for cid in named if isinstance(cid, str) and cid not in registered_controls()
               and cid in {c.get("id") for c in bundle.controls if isinstance(c, dict)}]
    if missing:  # a third party's control: not tampering, but not checkable without its code
        raise BundleError(f"{BUNDLE_FILE}: its policy judges control {missing[0]!r}, which is not installed here; "
                          "install the distribution that provides it (entry-point group "
                          f"{CONTROL_ENTRY_POINTS}) to re-derive its controls")
    try:
        policy = parse_policy(recorded, label=f"{BUNDLE_FILE}: policy")
        evidence = {"fairness": bundle.fairness, "attributions": bundle.attributions,
                    "adverse_action": bundle.adverse_action, "internals": bundle.internals,
                    "robustness": bundle.robustness}
        controls = evaluate(policy, evidence, bundle.fairness["params"])
    except (AuditError, KeyError, TypeError, ValueError, AttributeError) as exc:
        result.problems.append(f"{BUNDLE_FILE}: its controls cannot be re-derived from its evidence "
                               f"({type(exc).__name__}: {exc})")
        return
    stated = {c["id"]: c for c in bundle.controls}
    before = len(result.problems)
    for control in controls:
        mine = stated.get(control["id"])
        if mine is None:
            result.problems.append(f"{BUNDLE_FILE}: control {control['id']} of the policy is missing from controls")
        elif mine["status"] != control["status"] or not _same_number(mine.get("value"), control.get("value")):
            result.problems.append(
                f"{BUNDLE_FILE}: control {control['id']} states {mine['status']} at {mine.get('value')}, its evidence "
                f"gives {control['status']} at {control.get('value')}")
    extra = sorted(set(stated) - {c["id"] for c in controls})
    result.problems += [f"{BUNDLE_FILE}: control {cid} is not in the bundle's policy" for cid in extra]
    derived = verdict_of_schema(policy, controls, bundle.schema_version)
    for key in [key for key in ("status", "exit_code", "failed_controls", "undecided_controls") if key in derived]:
        if bundle.verdict.get(key) != derived[key]:
            result.problems.append(f"{BUNDLE_FILE}: verdict.{key} is {bundle.verdict.get(key)!r}, the controls give "
                                   f"{derived[key]!r}")
    if len(result.problems) == before:
        current = verdict_from(controls, policy.fail_on_inconclusive)
        rule = "" if "undecided_controls" in derived else f" by the schema-{bundle.schema_version} rule"
        later = ("" if current["status"] == derived["status"] else
                 f"; by the current rule, which no undecided blocking control passes, {current['status'].upper()}")
        undecided = current["undecided_controls"]
        result.passed.append(f"controls: all {len(controls)} re-derived from the evidence; verdict "
                             f"{derived['status']} (exit code {derived['exit_code']}){rule}{later}"
                             + (f"; undecided blocking controls: {', '.join(undecided)}" if undecided else ""))


def _same_number(stated: Any, derived: Any) -> bool:
    """``stated`` from JSON (NaN was written as null) against ``derived`` from a fresh evaluation."""
    if isinstance(derived, float) and math.isnan(derived):
        derived = None
    if stated is None or derived is None:
        return stated is None and derived is None
    return math.isclose(stated, derived, rel_tol=VALUE_TOLERANCE, abs_tol=VALUE_TOLERANCE)


def _check_rendering(folder: Path, bundle: EvidenceBundle, manifest: dict[str, str], digests: dict[str, str],
                     result: Verification) -> None:
    """Each listed artifact whose hash holds is byte-identical to a fresh render of the bundle (one whose hash does
    not hold is named already, so the report is rendered again only when there is an intact one to compare)."""
    from audit.report.artifacts import render_artifacts

    intact = [name for name in RENDERED_FILES if name in digests and digests[name] == manifest[name]]
    if not intact:
        return
    rendered = render_artifacts(bundle, report=any(name in REPORT_FILES for name in intact))
    differing = [name for name in intact if (folder / name).read_bytes() != rendered[name]]
    result.problems += [f"{name}: differs from the {name} rendered again from {BUNDLE_FILE}{_other_tool(bundle)}"
                        for name in differing]
    if not differing:
        result.passed.append(f"rendering: {', '.join(intact)} identical to a fresh render of {BUNDLE_FILE}")


def _other_tool(bundle: EvidenceBundle) -> str:
    """Why a fresh render may differ without tampering: another revision of the tool wrote the bundle. Said, not
    excused: the folder still does not verify."""
    from audit.evidence.revision import tool_revision

    written = (bundle.tool.get("revision") or {}).get("id")
    running = tool_revision()["id"]
    if written == running:
        return ""
    by = f"revision {written[:12]}" if written else f"version {bundle.tool.get('version')} (no revision recorded)"
    return (f" (the bundle was written by {bundle.tool.get('name')} {by}, this is revision {running[:12]}: renders "
            "differ across revisions, so verify with the revision that wrote it)")


def _check_model(bundle: EvidenceBundle, model: ModelFingerprint, result: Verification) -> None:
    spec_text, found, recorded = model.spec, model.fingerprint, bundle.model
    if found["id"] == recorded["id"]:
        result.passed.append(f"model: {spec_text} has the audited fingerprint {recorded['id'][:16]}")
        return
    changed = [part for part in ("weights", "tokenizer", "chat_template_sha256", "config_sha256", "source_gguf")
               if found.get(part) != recorded.get(part)]
    result.problems.append(f"model: {spec_text} is not the audited model (fingerprint {found['id'][:16]}, audited "
                           f"{recorded['id'][:16]}; differs in {', '.join(changed) or 'its identity'})")
