"""Report context for "Principal reasons for adverse decisions" (12 CFR 1002.9(b)(2)).

Built from ``bundle.adverse_action`` alone (see ``audit.stages.reasons`` for the
rule): the rule in plain words, a sample notice per scenario (the reasons a
declined applicant would be given, as "Factor: value in this case"), and the
flagged declines with why. A bundle written before schema 1.1 has no reasons;
the section then says so.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from audit.evidence.bundle import EvidenceBundle

SAMPLE_ROWS = 8  # declines shown per scenario; every decline is in the bundle
FLAGGED_ROWS = 40
FLAG_WORDS = {
    "protected": "a protected attribute ranks among the top reasons",
    "unstable": "the top reason changes with the method or seed",
    "no-factor": "no legitimate factor pushed toward the decline",
    "no-method": "no signed explanatory method ran",
}


def _label(text: str) -> str:
    return text[:1].upper() + text[1:]


def _applicant(case: dict[str, Any]) -> str:
    return "baseline applicant" if case["attribute"] is None else f"{case['attribute']}: {case['value']}"


def _stability(case: dict[str, Any]) -> str:
    if case["stability"] is None:
        return case["stability_note"]
    others = len(case["runs"]) - 1
    return f"{round(case['stability'] * others)} of {others} runs"


def _ensemble(reasons: dict[str, Any]) -> list[str]:
    """ "GradientSHAP (expected gradients) (gradient-shap), seeds 0 and 1", one per method, in ensemble order."""
    seeds: dict[str, list[int]] = defaultdict(list)
    titles = {}
    for run in reasons["ensemble"]:
        titles[run["method"]] = run["title"]
        if run["seed"] is not None:
            seeds[run["method"]].append(run["seed"])
    return [
        f"{title} ({name})" + (f", seeds {' and '.join(map(str, seeds[name]))}" if seeds[name] else "")
        for name, title in titles.items()
    ]


def _row(case: dict[str, Any], width: int) -> dict[str, Any]:
    reasons = [f"{_label(r['factor'])}: {r['text']}" for r in case["reasons"]]
    return {
        "case_id": case["case_id"],
        "applicant": _applicant(case),
        "score": case["score"],
        "reasons": reasons + [""] * (width - len(reasons)),
        "stability": _stability(case),
        "overlap": case["overlap"],
        "flagged": case["flagged"],
    }


def reasons_context(bundle: EvidenceBundle) -> dict[str, Any]:
    """The section's context; ``available`` is False for a bundle written before reasons were derived."""
    reasons = bundle.adverse_action
    if reasons is None:
        return {"available": False, "schema_version": bundle.schema_version}
    titles = {s["id"]: s["title"] for s in bundle.suite["scenarios"]}
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in reasons["cases"]:
        by_scenario[case["scenario_id"]].append(case)
    scenarios = [
        {
            "title": titles.get(scenario_id, scenario_id),
            "n_declined": len(cases),
            "rows": [_row(c, reasons["max_reasons"]) for c in cases[:SAMPLE_ROWS]],
            "n_more": max(0, len(cases) - SAMPLE_ROWS),
        }
        for scenario_id, cases in by_scenario.items()
    ]
    flagged = [c for c in reasons["cases"] if c["flagged"]]
    kinds = Counter(flag["kind"] for case in flagged for flag in case["flags"])
    breakdown = [f"{n} {'decline' if n == 1 else 'declines'}: {FLAG_WORDS[kind]}" for kind, n in kinds.items()]
    return {
        "available": True,
        "title": reasons["title"],
        "method": reasons["method"],
        "citation": reasons["citation"],
        "max_reasons": reasons["max_reasons"],
        "factors": [_label(f) for f in reasons["factors"]],
        "stability_floor": reasons["stability_floor"],
        "protected_floor": reasons.get("protected_floor", 0.0),  # bundles before schema 1.4 had no floor
        "ensemble": _ensemble(reasons),
        "n_runs": len(reasons["ensemble"]),
        "left_out": reasons["left_out"],
        "n_cases": reasons["n_cases"],
        "n_unfavourable": reasons["n_unfavourable"],
        "n_flagged": reasons["n_flagged"],
        "breakdown": breakdown,
        "cost": reasons["cost"],
        "scenarios": scenarios,
        "flagged": [
            {
                "case_id": c["case_id"],
                "scenario": titles.get(c["scenario_id"], c["scenario_id"]),
                "applicant": _applicant(c),
                "why": [f["detail"] for f in c["flags"]],
            }
            for c in flagged[:FLAGGED_ROWS]
        ],
        "n_flagged_more": max(0, len(flagged) - FLAGGED_ROWS),
    }
