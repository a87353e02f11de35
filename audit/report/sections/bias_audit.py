"""Report context for the bias-audit tables in NYC Local Law 144 form (``audit.stages.bias_audit``).

Shown for a suite that cites Local Law 144 or has the employment domain, and
only when the bundle carries the tables (bundles before them do not).
"""

from __future__ import annotations

from typing import Any

from audit.evidence.bundle import EvidenceBundle

LL144_CLAUSES = {"nyc-ll-144", "nyc-6-rcny-5-300"}


def bias_audit_context(bundle: EvidenceBundle) -> dict[str, Any] | None:
    found = bundle.fairness.get("bias_audit")
    suite = bundle.suite
    if not found or not found["tables"]:
        return None
    if suite.get("domain") != "employment" and not LL144_CLAUSES & set(suite.get("clauses", [])):
        return None
    tables = []
    for table in found["tables"]:
        rows = table["rows"]
        included = [r for r in rows if not r["excluded_from_ratio"]]
        lowest = min(included, key=lambda r: r["selection_impact_ratio"] if r["selection_impact_ratio"] is not None
                     else float("inf"), default=None)
        tables.append({
            "title": f"{table['category_type'].capitalize()} categories (attribute {table['attribute']})",
            "n_applicants": table["n_applicants"],
            "n_scenarios": table["n_scenarios"],
            "median_score": table["median_score"],
            "rows": rows,
            "n_excluded": len(rows) - len(included),
            "lowest": lowest,
        })
    return {"tables": tables, "definitions": found["definitions"]}
