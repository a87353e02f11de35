"""Report context for prompt-format sensitivity (``audit.stages.prompt_formats``)."""

from __future__ import annotations

from typing import Any

from audit.evidence.bundle import EvidenceBundle

SPREAD_ROWS = 12  # groups with the widest spread of mean shift over formats; every group is in the bundle


def formats_context(bundle: EvidenceBundle) -> dict[str, Any] | None:
    found = bundle.robustness
    if not found:
        return None
    if not found["evaluated"]:
        return {"evaluated": False, "why": found["why"]}
    titles = {s["id"]: s["title"] for s in bundle.suite["scenarios"]}
    names = [f["name"] for f in found["formats"]]
    cases = [{
        "label": titles.get(case["scenario_id"], case["scenario_id"]) if case["attribute"] is None else case["case_id"],
        "scores": [case["scores"][name] for name in names],
        "changes": case["decision_changes"],
        "unreliable": [name in case["below_mass_floor"] for name in names],
        "range": case["score_range"],
    } for case in found["cases"]]
    if found["mode"] == "full":
        cases = sorted((c for c in cases if c["changes"]), key=lambda c: -c["range"])[:SPREAD_ROWS]
    spread = sorted((g for g in found["group_spread"] if g["range"] is not None and not g["reference"]),
                    key=lambda g: -g["range"])[:SPREAD_ROWS]
    return {
        "evaluated": True,
        "mode": found["mode"],
        "reference": found["reference"],
        "formats": found["formats"],
        "names": names,
        "cases": cases,
        "n_cases": found["n_cases"],
        "n_changes": found["n_decision_changes"],
        "mass_floor": found["mass_floor"],
        "change_ci": found["decision_change_ci"],
        "spread": [{**g, "format_shifts": [g["shifts"].get(name) for name in names]} for g in spread],
    }
