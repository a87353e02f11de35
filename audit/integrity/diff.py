"""``audit diff``: a candidate audit (a new model version, a fine-tune) against the last validated one.

Read from the two bundles alone, like every artifact:

- **controls**: per control, both values with their 95 % CIs, the change and a 95 % CI of the change, from
  the normal approximation to each interval, ``se = (high - low) / (2 * 1.96)``, and ``se_change =
  sqrt(se_base^2 + se_candidate^2)`` (independent samples; the intervals are bootstrap or Wilson intervals,
  so this is an approximation, stated in diff.json). A change is significant when its CI excludes zero. A
  control *regressed* when it is blocking in the candidate and its status got worse (pass < not evaluated <
  inconclusive < fail, the policy's order); the diff then exits 1. The diff judges change, not fitness: with no
  regression it exits 0 even when the candidate's own verdict is FAIL or INCONCLUSIVE (both verdicts, by the
  current rule of ``audit.controls.policy``, head the diff; whether the candidate may be deployed is its own audit's
  exit code).
- **attribution drift**: per method and per case present in both audits, Spearman's rank correlation of the
  slot shares (the main method) or the word scores (the comparison methods) (Spearman 1904); a case drifted
  when rho < 0.5.
- **adverse-action reasons**: per case declined in both, the principal reasons the candidate gives that the
  base did not; how often each factor is a principal reason in each audit.
- **fingerprints**: which of the model's hashed parts (weights, tokenizer, chat template, config) or its dtype,
  the suite and the policy changed.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median
from typing import Any

from audit.evidence.bundle import EvidenceBundle, read_bundle
from audit.evidence.files import write_outputs
from audit.controls.policy import STATUS_ORDER, current_verdict, verdict_sentence

DIFF_SCHEMA_VERSION = "1.1"  # 1.1: each side's verdict by the current rule, with its reason and stated verdict
Z95 = 1.959963984540054
DRIFT_RHO = 0.5  # a case whose attribution ranks correlate less than this across the two audits drifted
MODEL_PARTS = ("weights", "tokenizer", "chat_template_sha256", "config_sha256", "source_gguf", "dtype")


def diff_bundles(base: EvidenceBundle, candidate: EvidenceBundle) -> dict[str, Any]:
    controls = _controls(base, candidate)
    regressed = [c["id"] for c in controls if c["regressed"]]
    return {
        "schema_version": DIFF_SCHEMA_VERSION,
        "base": _identity(base),
        "candidate": _identity(candidate),
        "fingerprints": _fingerprints(base, candidate),
        "controls": controls,
        "change_ci_method": "normal approximation: se = CI width / (2 x 1.96) per audit, independent samples",
        "attribution_drift": attribution_drift(base, candidate),
        "adverse_action": reason_changes(base, candidate),
        "verdict": {"status": "regressed" if regressed else "no regression", "exit_code": 1 if regressed else 0,
                    "regressed_controls": regressed},
    }


def _identity(bundle: EvidenceBundle) -> dict[str, Any]:
    """Who was audited on what, and the verdict by the current rule (a bundle before schema 1.6 may state PASS
    where its blocking controls were undecided; its own statement is ``stated_verdict``)."""
    current = current_verdict(bundle)
    return {"model": bundle.model.get("spec"), "fingerprint": bundle.model["id"], "suite": bundle.suite["id"],
            "suite_sha256": bundle.suite["sha256"], "policy": bundle.policy["id"],
            "policy_sha256": bundle.policy.get("sha256"), "audited_at": bundle.run["finished_at"],
            "verdict": current["status"], "verdict_reason": verdict_sentence(current, bundle.controls),
            "undecided_controls": current["undecided_controls"], "stated_verdict": bundle.verdict["status"],
            "tool_version": bundle.tool["version"], "tool_revision": (bundle.tool.get("revision") or {}).get("id")}


def _fingerprints(base: EvidenceBundle, candidate: EvidenceBundle) -> dict[str, Any]:
    changed = [part for part in MODEL_PARTS if base.model.get(part) != candidate.model.get(part)]
    return {
        "model_changed": base.model["id"] != candidate.model["id"] or bool(changed),  # the id omits the dtype
        "model_parts_changed": changed,
        "suite_changed": base.suite["sha256"] != candidate.suite["sha256"],
        "policy_changed": base.policy.get("sha256") != candidate.policy.get("sha256"),
    }


def _controls(base: EvidenceBundle, candidate: EvidenceBundle) -> list[dict[str, Any]]:
    before = {c["id"]: c for c in base.controls}
    rows = []
    for after in candidate.controls:
        prior = before.get(after["id"])
        change = _change(prior, after) if prior else None
        worse = prior is not None and STATUS_ORDER[after["status"]] > STATUS_ORDER[prior["status"]]
        rows.append({
            "id": after["id"],
            "title": after["title"],
            "direction": after["direction"],
            "blocking": after["blocking"],
            "threshold": after["threshold"],
            "base": prior and {"status": prior["status"], "value": prior.get("value"), "ci": prior.get("ci")},
            "candidate": {"status": after["status"], "value": after.get("value"), "ci": after.get("ci")},
            **(change or {"change": None, "change_ci": None, "significant": False, "worse": None}),
            "status_worse": worse,
            "regressed": bool(worse and after["blocking"]),
        })
    return rows


def _change(prior: dict, after: dict) -> dict[str, Any] | None:
    a, b = prior.get("value"), after.get("value")
    if a is None or b is None:
        return None
    change = b - a
    ses = [_standard_error(prior.get("ci")), _standard_error(after.get("ci"))]
    if None in ses:
        interval, significant = None, False
    else:
        half = Z95 * math.hypot(*ses)
        interval = [change - half, change + half]
        significant = interval[0] > 0 or interval[1] < 0
    worse = change > 0 if after["direction"] == "max" else change < 0
    return {"change": change, "change_ci": interval, "significant": significant, "worse": worse and change != 0}


def _standard_error(ci: list | None) -> float | None:
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return (ci[1] - ci[0]) / (2 * Z95)


def attribution_drift(base: EvidenceBundle, candidate: EvidenceBundle) -> list[dict[str, Any]]:
    drift = []
    main_base, main_candidate = base.attributions or {}, candidate.attributions or {}
    if main_base.get("method") and main_base.get("method") == main_candidate.get("method"):
        drift.append(_drift(main_base["method"], main_base.get("title"), "slot shares",
                            {c["case_id"]: c["slot_shares"] for c in main_base.get("cases", [])},
                            {c["case_id"]: c["slot_shares"] for c in main_candidate.get("cases", [])}))
    compared_base = {m["name"]: m for m in (main_base.get("comparison") or {}).get("methods", [])}
    for method in (main_candidate.get("comparison") or {}).get("methods", []):
        prior = compared_base.get(method["name"])
        if prior is None:
            continue
        drift.append(_drift(method["name"], method.get("title"), "word scores",
                            {c["case_id"]: c["word_scores"] for c in prior["cases"]},
                            {c["case_id"]: c["word_scores"] for c in method["cases"]}))
    return drift


def _drift(method: str, title: str | None, over: str, before: dict, after: dict) -> dict[str, Any]:
    from scipy.stats import spearmanr

    per_case = []
    for case_id in sorted(set(before) & set(after)):
        a, b = before[case_id], after[case_id]
        if isinstance(a, dict):
            keys = sorted(set(a) & set(b))
            a, b = [a[k] for k in keys], [b[k] for k in keys]
        if len(a) != len(b) or len(a) < 3:
            continue
        rho = spearmanr(a, b).statistic
        if math.isfinite(rho):
            per_case.append({"case_id": case_id, "rho": float(rho)})
    rhos = [c["rho"] for c in per_case]
    return {
        "method": method, "title": title, "over": over, "n_cases": len(per_case),
        "median_rho": median(rhos) if rhos else None, "min_rho": min(rhos) if rhos else None,
        "drifted": [c for c in per_case if c["rho"] < DRIFT_RHO], "drift_threshold": DRIFT_RHO,
    }


def reason_changes(base: EvidenceBundle, candidate: EvidenceBundle) -> dict[str, Any] | None:
    if not base.adverse_action or not candidate.adverse_action:
        return None
    before = {c["case_id"]: [r["factor"] for r in c["reasons"]] for c in base.adverse_action["cases"]}
    after = {c["case_id"]: [r["factor"] for r in c["reasons"]] for c in candidate.adverse_action["cases"]}
    new = [{"case_id": case_id, "reasons": [f for f in after[case_id] if f not in before[case_id]]}
           for case_id in sorted(set(before) & set(after))]
    factors = sorted({f for reasons in [*before.values(), *after.values()] for f in reasons})
    return {
        "new_reasons": [n for n in new if n["reasons"]],
        "newly_declined": sorted(set(after) - set(before)),
        "no_longer_declined": sorted(set(before) - set(after)),
        "factor_counts": {f: [sum(f in r for r in before.values()), sum(f in r for r in after.values())]
                          for f in factors},
    }


def write_diff(base: Path, candidate: Path, out: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """``audit diff``: the diff of the bundles at ``base`` and ``candidate`` (folders or ``bundle.json`` files),
    written to ``out`` as diff.json, diff.html and diff.pdf; (the diff, file name -> path written)."""
    from audit.report.diff import render_diff

    found = diff_bundles(read_bundle(base), read_bundle(candidate))
    return found, write_outputs(out, render_diff(found))
