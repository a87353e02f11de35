"""Report context for "Can these explanations be trusted?": methods side by side on the same cases.

Built from ``bundle.attributions["comparison"]`` alone: per method its
parameters, cost per case, the share of attribution on protected slots, and
its rank agreement with the primary method; plus the agreement matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.report import charts
from audit.evidence.bundle import EvidenceBundle


def _protected_share(case: dict[str, Any]) -> float:
    return sum(case["slot_shares"].get(slot, 0.0) for slot in case["protected_slots"])


def _agreement_with(agreement: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    return next((p for p in agreement["pairs"] if set(p["methods"]) == {a, b}), None)


def trust_context(bundle: EvidenceBundle) -> dict[str, Any] | None:
    comparison = bundle.attributions.get("comparison")
    if not comparison or not comparison["methods"]:
        return None
    primary = bundle.attributions["method"]
    agreement = comparison["agreement"]
    rows = []
    for method in comparison["methods"]:
        shares = [_protected_share(c) for c in method["cases"]]
        pair = None if method["name"] == primary else _agreement_with(agreement, method["name"], primary)
        rows.append({
            "name": method["name"],
            "title": method["title"],
            "descriptive": method["descriptive"],
            "params": ", ".join(f"{k} = {v}" for k, v in method["params"].items()),
            "seconds": method["mean_seconds"],
            "forward_passes": method["mean_forward_passes"],
            "protected_share": float(np.mean(shares)) if shares else None,
            "tau_primary": None if pair is None else pair["mean_tau"],
            "tau_primary_ci": None if pair is None else pair["ci"],
        })
    faithfulness = comparison.get("faithfulness")
    titles = {m["name"]: m["title"] for m in comparison["methods"]}
    faithful_rows = _faithfulness_rows(faithfulness, titles) if faithfulness and faithfulness["case_ids"] else []
    checks = _check_rows(comparison, titles)
    explanatory = [p for p in agreement["pairs"] if p["mean_tau"] is not None]
    readings = _faithfulness_readings([r for r in faithful_rows if r["gain_comprehensiveness"]])
    lowest = min(explanatory, key=lambda p: p["mean_tau"], default=None)
    highest = max(explanatory, key=lambda p: p["mean_tau"], default=None)
    return {
        "primary": primary,
        "n_cases": len(comparison["case_ids"]),
        "selection": comparison["selection"],
        "rows": rows,
        "statistic": agreement["statistic"],
        "lowest": lowest,
        "highest": highest,
        "faithfulness": faithful_rows,
        "faithfulness_readings": readings,
        "faithfulness_definition": faithfulness["definition"] if faithfulness else None,
        "faithfulness_cases": len(faithfulness["case_ids"]) if faithfulness else 0,
        "bins": faithfulness["bins"] if faithfulness else [],
        "definitions": {k: faithfulness.get(k) for k in ("naopc_definition", "loo_definition",
                                                          "infidelity_definition")} if faithfulness else {},
        "loo_cases": len(faithfulness.get("loo_case_ids", [])) if faithfulness else 0,
        "checks": checks,
        "check_readings": _check_readings(checks, comparison.get("sanity")),
        "sensitivity": comparison.get("sensitivity"),
        "sanity": comparison.get("sanity"),
        "sanity_chart": _sanity_chart(comparison, titles),
        "plan": comparison.get("plan"),
        "chart": charts.agreement_chart(agreement["methods"], agreement["matrix"], salt="agreement"),
    }


REFERENCE_TITLES = {
    "random": "Random word ordering (floor)",
    "leave-one-out": "Leave-one-out occlusion (reference)",
}


def _faithfulness_rows(faithfulness: dict[str, Any], titles: dict[str, str]) -> list[dict[str, Any]]:
    """One row per method, then the random floor and the leave-one-out reference (its reverse only bounds NAOPC)."""
    rows = []
    for name, entry in faithfulness["methods"].items():
        if name not in titles and name not in REFERENCE_TITLES:
            continue
        rows.append({
            "name": name,
            "title": titles.get(name) or REFERENCE_TITLES[name],
            "reference": name not in titles,
            "comprehensiveness": entry["aopc_comprehensiveness"],
            "sufficiency": entry["aopc_sufficiency"],
            "gain_comprehensiveness": entry.get("gain_comprehensiveness"),
            "gain_sufficiency": entry.get("gain_sufficiency"),
            "naopc_comprehensiveness": entry.get("naopc_comprehensiveness"),
            "naopc_sufficiency": entry.get("naopc_sufficiency"),
        })
    return rows


def _check_rows(comparison: dict[str, Any], titles: dict[str, str]) -> list[dict[str, Any]]:
    """Per method: Kendall tau against leave-one-out, infidelity, max-sensitivity and the sanity check."""
    faithfulness = comparison.get("faithfulness") or {}
    sensitivity = (comparison.get("sensitivity") or {}).get("methods", {})
    sanity = comparison.get("sanity") or {}
    rows = []
    for name, title in titles.items():
        entry = faithfulness.get("methods", {}).get(name, {})
        stages = [stage["methods"].get(name, {}).get("absolute") for stage in sanity.get("stages", [])]
        rows.append({
            "name": name,
            "title": title,
            "loo_tau": entry.get("loo_tau"),
            "infidelity": entry.get("infidelity"),
            "sensitivity": sensitivity.get(name, {}).get("mean"),
            "sanity_stages": stages,
            "sanity_pass": sanity.get("passes", {}).get(name),
        })
    return rows


def _check_readings(checks: list[dict[str, Any]], sanity: dict[str, Any] | None) -> list[str]:
    readings = []
    failed = [r["title"] for r in checks if r["sanity_pass"] is False]
    passed = [r["title"] for r in checks if r["sanity_pass"] is True]
    if sanity and failed:
        readings.append(
            "Failed the randomisation sanity check (maps barely change when the model's weights are replaced by "
            "random ones, so they describe the input more than the model): " + "; ".join(failed) + "."
        )
    if sanity and passed and not failed:
        readings.append("Every method's maps changed when the model's layers were randomised (sanity check passed).")
    with_tau = [r for r in checks if r["loo_tau"] and r["loo_tau"]["mean"] is not None]
    if with_tau:
        best = max(with_tau, key=lambda r: r["loo_tau"]["mean"])
        readings.append(f"Closest to leave-one-out occlusion: {best['title']} (Kendall tau "
                        f"{best['loo_tau']['mean']:.2f}).")
    with_infidelity = [r for r in checks if r["infidelity"] and r["infidelity"]["mean"] is not None]
    if with_infidelity:
        best = min(with_infidelity, key=lambda r: r["infidelity"]["mean"])
        readings.append(f"Best at predicting the effect of erasing random words (lowest normalised infidelity): "
                        f"{best['title']} ({best['infidelity']['mean']:.2f}; 1 means no better than nothing).")
    return readings


def _sanity_chart(comparison: dict[str, Any], titles: dict[str, str]):
    sanity = comparison.get("sanity")
    if not sanity or not sanity.get("stages"):
        return None
    counts = [stage["randomised_layers"] for stage in sanity["stages"]]
    curves = [(name, [stage["methods"].get(name, {}).get("absolute") for stage in sanity["stages"]])
              for name in titles]
    limit = comparison["plan"]["sanity_max_correlation"]
    return charts.sanity_chart(counts, curves, limit, salt="sanity")


def _faithfulness_readings(rows: list[dict[str, Any]]) -> list[str]:
    """Which methods beat the random ordering on comprehensiveness, and which cannot be told apart from it."""
    judged = [r for r in rows if r["gain_comprehensiveness"] and r["gain_comprehensiveness"]["ci"]]
    better = [r["title"] for r in judged if r["gain_comprehensiveness"]["ci"][0] > 0]
    unclear = [r["title"] for r in judged if r["gain_comprehensiveness"]["ci"][0] <= 0]
    readings = []
    if judged:
        best = max(judged, key=lambda r: r["gain_comprehensiveness"]["mean_gain"])
        readings.append(
            f"Largest comprehensiveness gain over random: {best['title']} "
            f"({best['gain_comprehensiveness']['mean_gain']:+.3f} log-odds)."
        )
    if better:
        readings.append("Better than a random word ordering (whole 95 % CI above zero): " + "; ".join(better) + ".")
    if unclear:
        readings.append(
            "Not distinguishable from a random word ordering on these cases: " + "; ".join(unclear)
            + (". Its map" if len(unclear) == 1 else ". Their maps") + " should not be read as the reasons for a decision."
        )
    return readings
