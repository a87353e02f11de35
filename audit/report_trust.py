"""Report context for "Can these explanations be trusted?": methods side by side on the same cases.

Built from ``bundle.attributions["comparison"]`` alone: per method its
parameters, cost per case, the share of attribution on protected slots, and
its rank agreement with the primary method; plus the agreement matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit import charts
from audit.evidence import EvidenceBundle


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
    faithful_rows = []
    if faithfulness and faithfulness["case_ids"]:
        titles = {m["name"]: m["title"] for m in comparison["methods"]}
        for name, entry in faithfulness["methods"].items():
            faithful_rows.append({
                "name": name,
                "title": titles.get(name, "Random word ordering (floor)"),
                "comprehensiveness": entry["aopc_comprehensiveness"],
                "sufficiency": entry["aopc_sufficiency"],
                "gain_comprehensiveness": entry.get("gain_comprehensiveness"),
                "gain_sufficiency": entry.get("gain_sufficiency"),
            })
    explanatory = [p for p in agreement["pairs"] if p["mean_tau"] is not None]
    readings = _faithfulness_readings(faithful_rows)
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
        "chart": charts.agreement_chart(agreement["methods"], agreement["matrix"], salt="agreement"),
    }


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
