"""``audit compare``: two or more audits of candidate models on one suite and one policy, side by side, with
paired statistics on the same cases.

Read from the bundles alone, like every artifact. The first audit (or ``reference``) is the incumbent; every other
audit is a candidate compared with it:

- **controls**: each model's value, 95 % CI and status per control, and the verdict matrix (model x control).
- **paired group shifts**: per protected group g and scenario s, the group's counterfactual shift
  ``d_s(m) = mean score of g in s - mean score of the reference group in s`` (the shift the control
  ``counterfactual-shift`` averages, ``audit.controls.groups.scenario_shifts``) for the candidate m and the
  reference r. The change of the shift is ``mean_s (d_s(m) - d_s(r))``, and the change of its size (what the
  control measures) ``|mean_s d_s(m)| - |mean_s d_s(r)|``; both get a bootstrap CI that resamples *scenarios*,
  carrying both models' values of a scenario together (a paired bootstrap: the variation the two models share,
  the scenario's wording, cancels; Efron & Tibshirani 1993, ch. 6; ``scipy.stats.bootstrap``). A group
  *moved* when the change is both significant and material. Significant: the CI of the shift's change excludes
  zero at the family-wise level; with k groups compared, it is also computed at confidence ``1 - 0.05 / k``
  (Bonferroni), so that across the k groups an unchanged model shows a significant group with probability at
  most 5 %. Material: the change is at least half the policy's ``counterfactual-shift`` threshold (0.125
  log-odds under the default policy), since the models are deterministic and over enough scenarios a change of
  0.01 log-odds, which changes no decision, is significant too; the packet lists significant immaterial
  changes apart. The move is *larger* when the candidate's |shift| exceeds the reference's. A group is
  *within the margin* when its whole family-wise CI lies inside (-material, +material): evidence that the change
  is small, which "not significant" alone is not (an equivalence test by confidence interval, Schuirmann 1987;
  the family-wise interval is the stricter, 1 - 0.05/k, form of his 1 - 2 alpha one). The test is on the
  signed change, not on the change of |shift|: near a shift of zero, noise
  alone makes ``|mean|`` grow (it is biased away from 0), so a size test would find moves in unchanged models.
- **decisions**: the cases decided differently by the two models, with McNemar's exact test of the discordant
  pairs (McNemar 1947; ``statsmodels.stats.contingency_tables.mcnemar``), overall and per protected group, the
  per-group p-values adjusted by Holm's method (Holm 1979; ``statsmodels.stats.multitest``).
- **scores**: Spearman's rank correlation of the per-case decision scores (Spearman 1904) and the mean score
  change with a paired bootstrap CI over scenarios; **answer mass**: each model's mean and the paired change.
- **explanation drift**: per attribution method, Spearman's rho of the slot shares per case
  (``audit.integrity.diff``), and the declined cases whose *principal* adverse-action reason changed.
- **cost**: each model's parameters, weight bytes on disk, bytes of its parameters at the audited dtype,
  seconds per case and the audit's peak resident memory, as the bundles recorded them.
- **relation**: a candidate that shares the reference's base fingerprint (an adapter on the same base, the same
  weights in another dtype, or the same config and tokenizer with other weights: a quantization or full
  fine-tune) is a *change review*: the packet lists what moved.

The verdict: a candidate *regressed* when it fails a blocking control (or, under a policy that fails on
inconclusive, leaves one undecided) that the reference does not fail: the reference passed it or could not decide
it; ``audit compare`` then exits 1.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from audit.controls.groups import scenario_shifts
from audit.controls.policy import current_verdict
from audit.errors import BundleError
from audit.evidence.bundle import BUNDLE_FILE, EvidenceBundle, read_bundle
from audit.evidence.files import write_outputs
from audit.evidence.hashing import sha256_file
from audit.evidence.manifest import MANIFEST_FILE, read_manifest
from audit.integrity.diff import attribution_drift, reason_changes
from audit.wording import INTERSECTION
from explainers.intervals import bootstrap_ci

COMPARE_SCHEMA_VERSION = "1.0"
CONFIDENCE = 0.95
FAMILY_ALPHA = 0.05
MATERIAL_FRACTION = 0.5  # of the policy's counterfactual-shift threshold: the smallest change of a shift that moves
DEFAULT_SHIFT_THRESHOLD = 0.25  # the default policy's, for a policy without the control


def compare_bundles(bundles: list[EvidenceBundle], labels: list[str], *, reference: int = 0, seed: int = 0,
                    n_resamples: int = 2000) -> dict[str, Any]:
    """The comparison of ``bundles`` (labelled ``labels``, the folder names) with ``bundles[reference]``."""
    _check_comparable(bundles, labels)
    ref = bundles[reference]
    material = material_change(ref)
    models = [_model(b, label, ref, i == reference) for i, (b, label) in enumerate(zip(bundles, labels))]
    candidates = []
    for i, bundle in enumerate(bundles):
        if i == reference:
            continue
        candidates.append(_paired(ref, bundle, labels[i], models[i], material=material, seed=seed,
                                  n_resamples=n_resamples))
    regressed = [c["label"] for c in candidates if c["regressed_controls"]]
    return {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "reference": labels[reference],
        "suite": {"id": ref.suite["id"], "version": ref.suite.get("version"), "sha256": ref.suite["sha256"],
                  "title": ref.suite.get("title")},
        "policy": {"id": ref.policy["id"], "sha256": ref.policy.get("sha256")},
        "audited_at": max(b.run["finished_at"] for b in bundles),
        "models": models,
        "controls": _control_matrix(bundles, labels),
        "candidates": candidates,
        "params": {
            "confidence": CONFIDENCE, "family_alpha": FAMILY_ALPHA, "bootstrap_resamples": n_resamples,
            "bootstrap_unit": "scenario (paired: both models' values of a scenario resampled together)",
            "ci_method": "BCa bootstrap over scenarios (percentile where BCa is undefined)",
            "material_change": material,
            "moved_rule": "a group moved when the Bonferroni CI (confidence 1 - 0.05 / groups compared) of the "
                          f"paired change of its shift excludes 0 and the change is at least {material:g} log-odds "
                          "(half the policy's counterfactual-shift threshold); larger when the candidate's |shift| "
                          "is larger",
            "decision_test": "McNemar's exact test (binomial on the discordant cases); per-group p-values "
                             "Holm-adjusted",
            "seed": seed,
        },
        "verdict": {"status": "regressed" if regressed else "no regression", "exit_code": 1 if regressed else 0,
                    "regressed_models": regressed},
    }


def _prompt_sha256(bundle: EvidenceBundle) -> str | None:
    """The sha256 of the prompt an imported suite writes (discrim-eval's prompt version); None for other suites."""
    template = bundle.suite.get("prompt_template")
    return hashlib.sha256(template.encode("utf-8")).hexdigest() if template else None


def _check_comparable(bundles: list[EvidenceBundle], labels: list[str]) -> None:
    """One suite (same bytes), one policy (same bytes): otherwise the cases or the thresholds differ."""
    first, name = bundles[0], labels[0]
    for bundle, label in zip(bundles[1:], labels[1:]):
        for what, a, b in (
            ("suite", _suite_text(first), _suite_text(bundle)),
            ("suite sha256", first.suite["sha256"], bundle.suite["sha256"]),
            ("suite prompt sha256", _prompt_sha256(first), _prompt_sha256(bundle)),
            ("policy", first.policy["id"], bundle.policy["id"]),
            ("policy sha256", first.policy.get("sha256"), bundle.policy.get("sha256")),
        ):
            if a != b:
                raise BundleError(f"{label}: audited on {what} {_short(b)}, {name} on {_short(a)}: compare audits "
                                  "of one suite version under one policy")
        if {c["case_id"] for c in bundle.cases} != {c["case_id"] for c in first.cases}:
            raise BundleError(f"{label}: its cases differ from {name}'s (--limit {bundle.run.get('limit')} against "
                              f"{first.run.get('limit')}): compare audits of the same cases")


def _suite_text(bundle: EvidenceBundle) -> str:
    return f"{bundle.suite['id']} {bundle.suite.get('version')}"


def _short(value: Any) -> str:
    text = str(value)
    return text[:16] if len(text) == 64 else text


def _model(bundle: EvidenceBundle, label: str, ref: EvidenceBundle, is_reference: bool) -> dict[str, Any]:
    model, run = bundle.model, bundle.run
    durations = run.get("durations_s") or {}
    # The run's wall time; a bundle without the total (written before it was recorded) sums its stages.
    seconds = durations["total"] if "total" in durations else sum(durations.values())
    current = current_verdict(bundle)
    return {
        "label": label,
        "spec": model.get("spec"),
        "fingerprint": model["id"],
        "base_id": model.get("base_id"),
        "family": model.get("family"),
        "dtype": model.get("dtype"),
        "is_reference": is_reference,
        "relation": "reference" if is_reference else relation(ref.model, model),
        "verdict": current["status"],
        "exit_code": current["exit_code"],
        "cost": {
            "parameters": model.get("parameters"),
            "weight_bytes": model.get("weight_bytes"),
            "parameter_bytes": model.get("parameter_bytes"),
            "seconds": seconds or None,
            "seconds_per_case": seconds / len(bundle.cases) if seconds and bundle.cases else None,
            "peak_memory_bytes": run.get("peak_memory_bytes"),
        },
    }


RELATIONS = {
    "same model": "the reference model itself (the same fingerprint and dtype): a rerun",
    "fine-tune": "an adapter on the reference's base model (or on the reference itself)",
    "precision": "the reference's weights in another dtype",
    "quantization or fine-tune": "the reference's config and tokenizer with other weights (a quantization, a "
                                 "requantization or a full fine-tune)",
    "other model": "another model",
}


def relation(reference: dict, candidate: dict) -> str:
    """How the candidate's fingerprint relates to the reference's (a key of ``RELATIONS``)."""
    if candidate["id"] == reference["id"]:  # the id hashes the files, not the dtype they were loaded in
        return "same model" if candidate.get("dtype") == reference.get("dtype") else "precision"
    ref_base = reference.get("base_id") or reference["id"]
    if (candidate.get("base_id") and candidate["base_id"] == ref_base) or reference.get("base_id") == candidate["id"]:
        return "fine-tune"
    same = lambda *parts: all(reference.get(p) == candidate.get(p) for p in parts)  # noqa: E731
    if same("tokenizer", "config_sha256", "chat_template_sha256"):
        return "quantization or fine-tune"
    return "other model"


def _control_matrix(bundles: list[EvidenceBundle], labels: list[str]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for bundle, label in zip(bundles, labels):
        for control in bundle.controls:
            row = rows.setdefault(control["id"], {
                "id": control["id"], "title": control["title"], "direction": control["direction"],
                "unit": control.get("unit"), "threshold": control["threshold"], "blocking": control["blocking"],
                "models": {},
            })
            row["models"][label] = {"status": control["status"], "value": control.get("value"),
                                    "ci": control.get("ci"), "decisive": control.get("decisive")}
    return list(rows.values())


def material_change(ref: EvidenceBundle) -> float:
    """The smallest change of a group's shift (log-odds) that counts as a move: ``MATERIAL_FRACTION`` of the
    reference policy's counterfactual-shift threshold."""
    control = (ref.policy.get("controls") or {}).get("counterfactual-shift") or {}
    return MATERIAL_FRACTION * float(control.get("threshold", DEFAULT_SHIFT_THRESHOLD))


def _paired(ref: EvidenceBundle, bundle: EvidenceBundle, label: str, model: dict, *, material: float, seed: int,
            n_resamples: int) -> dict[str, Any]:
    ref_cases = {c["case_id"]: c for c in ref.cases}
    pairs = [(ref_cases[c["case_id"]], c) for c in bundle.cases]
    scenarios = sorted({c["pair_id"] for c in bundle.cases})
    groups = _group_shifts(ref, bundle, scenarios, material=material, seed=seed, n_resamples=n_resamples)
    regressed = _regressions(ref, bundle)
    moved = [g for g in groups if g["moved"]]
    decisions = _decisions(ref, pairs)
    return {
        "label": label,
        "relation": model["relation"],
        "relation_text": RELATIONS[model["relation"]],
        "change_review": model["relation"] not in ("other model", "same model"),
        "n_cases": len(pairs),
        "n_scenarios": len(scenarios),
        "groups": groups,
        "moved_groups": [g["label"] for g in moved],
        "immaterial_groups": [g["label"] for g in groups if g["significant"] and not g["moved"]],
        "within_margin_groups": [g["label"] for g in groups if g["within_margin"]],
        "decisions": decisions,
        "scores": _scores(pairs, scenarios, seed=seed, n_resamples=n_resamples),
        "answer_mass": _mass(pairs, scenarios, seed=seed, n_resamples=n_resamples),
        "explanation_drift": attribution_drift(ref, bundle),
        "reasons": _principal_reasons(ref, bundle),
        "control_changes": _control_changes(ref, bundle),
        "regressed_controls": regressed,
    }


def _group_shifts(ref: EvidenceBundle, bundle: EvidenceBundle, scenarios: list[str], *, material: float, seed: int,
                  n_resamples: int) -> list[dict[str, Any]]:
    """Per protected group of the reference's analyses, the paired change of the counterfactual shift."""
    found = []
    for analysis in ref.fairness.get("analyses", []):
        props = analysis["property"].split(INTERSECTION)
        a = scenario_shifts(ref.cases, analysis["attribute"], props, analysis["reference"], scenarios)
        b = scenario_shifts(bundle.cases, analysis["attribute"], props, analysis["reference"], scenarios)
        for group in sorted(set(a) & set(b)):
            if group == analysis["reference"]:
                continue
            keep = np.isfinite(a[group]) & np.isfinite(b[group])
            found.append({"attribute": analysis["attribute"], "property": analysis["property"], "group": group,
                          "reference_group": analysis["reference"],
                          "label": f"{analysis['property']} = {group} (vs {analysis['reference']})",
                          "x": a[group][keep], "y": b[group][keep]})
    family_confidence = 1 - FAMILY_ALPHA / max(len(found), 1)
    rows = []
    for g in found:
        x, y = g.pop("x"), g.pop("y")
        n = len(x)
        size = lambda idx: np.abs(y[idx].mean(-1)) - np.abs(x[idx].mean(-1))  # noqa: E731
        signed = lambda idx: (y[idx] - x[idx]).mean(-1)  # noqa: E731
        ci = lambda statistic, confidence=CONFIDENCE: bootstrap_ci(  # noqa: E731
            n, statistic, seed=seed, n_resamples=n_resamples, confidence=confidence) if n else None
        family_ci = ci(signed, family_confidence)
        significant = bool(family_ci and (family_ci[0] > 0 or family_ci[1] < 0))
        moved = significant and abs(float((y - x).mean())) >= material
        within_margin = bool(family_ci and -material < family_ci[0] and family_ci[1] < material)
        larger = n and abs(y.mean()) > abs(x.mean())
        rows.append({
            **g, "n_scenarios": n,
            "reference_shift": float(x.mean()) if n else None, "candidate_shift": float(y.mean()) if n else None,
            "shift_change": float((y - x).mean()) if n else None, "shift_change_ci": ci(signed),
            "shift_change_family_ci": family_ci, "family_confidence": family_confidence,
            "size_change": float(abs(y.mean()) - abs(x.mean())) if n else None, "size_change_ci": ci(size),
            "significant": significant, "moved": moved, "within_margin": within_margin,
            "direction": ("larger" if larger else "smaller") if moved else None,
        })
    return rows


def _decisions(ref: EvidenceBundle, pairs: list[tuple[dict, dict]]) -> dict[str, Any]:
    """McNemar's exact test of the discordant decisions, overall and per group of every single property."""
    from statsmodels.stats.multitest import multipletests

    overall = _mcnemar(pairs)
    per_group = []
    for analysis in ref.fairness.get("analyses", []):
        if analysis.get("intersectional"):
            continue
        prop = analysis["property"]
        for group in sorted({a["groups"].get(prop) for a, _ in pairs if a["attribute"] == analysis["attribute"]}
                            - {None}):
            members = [(a, b) for a, b in pairs if a.get("groups", {}).get(prop) == group
                       and (a["attribute"] == analysis["attribute"]
                            or (a["attribute"] is None and analysis["attribute"] in a.get("protected_slots", [])))]
            if members:
                per_group.append({"property": prop, "group": group, **_mcnemar(members)})
    tested = [g for g in per_group if g["p_value"] is not None]
    if tested:
        adjusted = multipletests([g["p_value"] for g in tested], method="holm")[1]
        for g, p in zip(tested, adjusted):
            g["p_holm"] = float(p)
    return {**overall, "per_group": per_group}


def _mcnemar(pairs: list[tuple[dict, dict]]) -> dict[str, Any]:
    from statsmodels.stats.contingency_tables import mcnemar

    fav = lambda case: case["decision"] == "favourable"  # noqa: E731
    table = [[sum(fav(a) and fav(b) for a, b in pairs), sum(fav(a) and not fav(b) for a, b in pairs)],
             [sum(not fav(a) and fav(b) for a, b in pairs), sum(not fav(a) and not fav(b) for a, b in pairs)]]
    discordant = table[0][1] + table[1][0]
    p = float(mcnemar(table, exact=True).pvalue) if discordant else None
    return {"n_cases": len(pairs), "changed": discordant, "to_unfavourable": table[0][1],
            "to_favourable": table[1][0], "table": table, "p_value": p}


def _by_scenario(pairs: list[tuple[dict, dict]], scenarios: list[str], field: str) -> tuple[np.ndarray, np.ndarray]:
    """Per scenario, the mean of ``field`` over its cases for the reference and the candidate."""
    index = {s: i for i, s in enumerate(scenarios)}
    sums, counts = np.zeros((2, len(scenarios))), np.zeros(len(scenarios))
    for a, b in pairs:
        i = index[b["pair_id"]]
        sums[0, i] += a[field]
        sums[1, i] += b[field]
        counts[i] += 1
    return sums[0] / counts, sums[1] / counts


def _paired_change(pairs, scenarios, field: str, *, seed: int, n_resamples: int) -> dict[str, Any]:
    x, y = _by_scenario(pairs, scenarios, field)
    d = y - x
    return {"reference_mean": float(np.mean([a[field] for a, _ in pairs])),
            "candidate_mean": float(np.mean([b[field] for _, b in pairs])),
            "change": float(d.mean()),
            "change_ci": bootstrap_ci(len(d), lambda idx: d[idx].mean(-1), seed=seed, n_resamples=n_resamples,
                                      confidence=CONFIDENCE)}


def _scores(pairs, scenarios, *, seed: int, n_resamples: int) -> dict[str, Any]:
    from scipy.stats import spearmanr

    a = [p[0]["score"] for p in pairs]
    b = [p[1]["score"] for p in pairs]
    rho = spearmanr(a, b) if len(pairs) >= 3 else None
    return {**_paired_change(pairs, scenarios, "score", seed=seed, n_resamples=n_resamples),
            "spearman_rho": _finite(rho.statistic) if rho else None,
            "spearman_p": _finite(rho.pvalue) if rho else None}


def _mass(pairs, scenarios, *, seed: int, n_resamples: int) -> dict[str, Any]:
    return _paired_change(pairs, scenarios, "answer_mass", seed=seed, n_resamples=n_resamples)


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _principal_reasons(ref: EvidenceBundle, bundle: EvidenceBundle) -> dict[str, Any] | None:
    """The reasons' changes (``audit.integrity.diff``) and the cases declined by both models whose principal
    (first) adverse-action reason differs."""
    found = reason_changes(ref, bundle)
    if found is None:
        return None
    first = lambda b: {c["case_id"]: c["reasons"][0]["factor"] for c in b.adverse_action["cases"]  # noqa: E731
                       if c["reasons"]}
    before, after = first(ref), first(bundle)
    found["principal_changed"] = [{"case_id": k, "reference": before[k], "candidate": after[k]}
                                  for k in sorted(set(before) & set(after)) if before[k] != after[k]]
    found["n_declined_both"] = len(set(before) & set(after))
    return found


def _control_changes(ref: EvidenceBundle, bundle: EvidenceBundle) -> list[dict[str, Any]]:
    before = {c["id"]: c for c in ref.controls}
    return [{"id": c["id"], "reference": before[c["id"]]["status"], "candidate": c["status"]}
            for c in bundle.controls if c["id"] in before and before[c["id"]]["status"] != c["status"]]


def _regressions(ref: EvidenceBundle, bundle: EvidenceBundle) -> list[str]:
    """Blocking controls the candidate fails (its failures, and its undecided controls where the policy fails on
    them) and the reference does not: it passed them, or could not decide them. An incumbent that could not be
    decided is no excuse for a candidate that demonstrably fails."""
    failing = set(current_verdict(bundle)["failed_controls"])
    failed_before = set(current_verdict(ref)["failed_controls"])
    known = {c["id"] for c in ref.controls}
    return [c["id"] for c in bundle.controls
            if c["blocking"] and c["id"] in failing and c["id"] in known and c["id"] not in failed_before]


def write_compare(folders: list[Path], out: Path, *, reference: str | None = None, seed: int = 0,
                  n_resamples: int = 2000) -> tuple[dict[str, Any], dict[str, Path]]:
    """``audit compare``: the comparison of the audits in ``folders`` (the first, or the one named
    ``reference``, is the incumbent) written to ``out`` as compare.json, compare.html, compare.pdf and junit.xml."""
    from audit.report.compare import render_compare

    if len(folders) < 2:
        raise BundleError("compare needs at least two audit folders")
    labels = _labels(folders)
    index = 0
    if reference is not None:
        matches = [i for i, (f, label) in enumerate(zip(folders, labels))
                   if reference in (str(f), label, f.name)]
        if not matches:
            raise BundleError(f"--reference {reference}: not one of the compared folders ({', '.join(labels)})")
        index = matches[0]
    bundles, digests = zip(*(read_checked(f) for f in folders))
    found = compare_bundles(list(bundles), labels, reference=index, seed=seed, n_resamples=n_resamples)
    for model, digest in zip(found["models"], digests):
        model["bundle_sha256"] = digest
    return found, write_outputs(out, render_compare(found))


def read_checked(folder: Path) -> tuple[EvidenceBundle, str]:
    """The bundle of an audit folder and its sha256, refused when bundle.json is not the file its manifest lists
    (a comparison of edited evidence is worth nothing; ``audit verify`` checks the rest of the folder)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if BUNDLE_FILE not in manifest:
        raise BundleError(f"{folder / MANIFEST_FILE}: does not list {BUNDLE_FILE}")
    path = folder / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(f"{path}: listed in the manifest but missing")
    digest = sha256_file(path)
    if digest != manifest[BUNDLE_FILE]:
        raise BundleError(f"{path}: changed after the audit wrote it (sha256 {digest[:12]}, manifest "
                          f"{manifest[BUNDLE_FILE][:12]}); `audit verify {folder}` lists what else changed")
    return read_bundle(folder), digest


def _labels(folders: list[Path]) -> list[str]:
    """Each audit's name in the packet: its folder's name, with as many parent folders as make the names unique."""
    for depth in range(1, 8):
        labels = ["/".join(Path(f).resolve().parts[-depth:]) for f in folders]
        if len(set(labels)) == len(labels):
            return labels
    raise BundleError(f"{folders[0]}: the same audit folder is given twice")
