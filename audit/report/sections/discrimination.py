"""Report context for the discrimination score of an imported discrim-eval set (``audit.stages.discrimination_score``)."""

from __future__ import annotations

from typing import Any

from audit.evidence.bundle import EvidenceBundle


def discrimination_context(bundle: EvidenceBundle) -> dict[str, Any] | None:
    found = bundle.fairness.get("mixed_effects")
    if not found:
        return None
    if not found["evaluated"]:
        return {"evaluated": False, "why": found["why"]}
    terms = [t for t in found["terms"] if t["term"] != "Intercept"]
    significant = [t for t in terms if t["p_value"] < 0.05]
    return {
        "evaluated": True,
        "definition": found["definition"],
        "formula": found["formula"],
        "n_rows": found["n_rows"],
        "n_questions": found["n_questions"],
        "age_sd": found["age_sd"],
        "converged": found["converged"],
        "fit_warnings": found["fit_warnings"],
        "terms": terms,
        "intercept": next((t for t in found["terms"] if t["term"] == "Intercept"), None),
        "significant": [t["label"] for t in significant],
    }
