"""Report context for "Inside the model": logit lens and probes, from ``bundle.internals`` alone."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.report import charts
from audit.evidence.bundle import EvidenceBundle
from audit.report.numbers import fmt_pct
from audit.wording import plural

LENS_GROUPS_SHOWN = 6


READ_OUT_POSITION = {"causal-lm": "answer position", "classifier": "[CLS] position"}  # where the decision is read


def _pct(share: float, digits: int = 0) -> str:
    """A share in 0..1 as the report's tables write it: 0.25 -> "25 %"."""
    return fmt_pct(share, digits)


def _points(difference: float) -> str:
    """A difference of two shares in percentage points: 0.072 -> "+7.2 percentage points"."""
    return f"{100 * difference:+.1f} percentage points"


def internals_context(bundle: EvidenceBundle) -> dict[str, Any] | None:
    inside = bundle.internals
    if not inside:
        return None
    lens = inside["lens"]
    probes = inside["probes"]
    read_out = READ_OUT_POSITION.get(bundle.decision.get("family"), READ_OUT_POSITION["causal-lm"])
    return {
        "lens": _lens(lens) if lens.get("evaluated") else None,
        "lens_why": None if lens.get("evaluated") else lens.get("why"),
        "read_out": read_out,
        "probe_rows": [_probe_row(p, read_out) for p in probes],
        "probe_chart": _probe_chart(probes, read_out),
        "probe_readings": _probe_readings(probes),
        "probe_definition": inside["probe_definition"],
        "patching": _patching(inside.get("patching")),
    }


def _patching(patching: dict[str, Any] | None) -> dict[str, Any] | None:
    if not patching or not patching["pairs"]:
        return None
    summary = patching["summary"]
    layers = [row["layer"] for row in summary["layers"]]
    means = [row["normalised_indirect_effect"]["mean"] for row in summary["layers"]]
    cis = [row["normalised_indirect_effect"]["ci"] for row in summary["layers"]]
    pairs = [(pair["source_case_id"], [row["normalised_indirect_effect"] for row in pair["layers"]])
             for pair in patching["pairs"]]
    mediated = summary["mediated_fraction"]
    readings = []
    if mediated["mean"] is not None:
        readings.append(
            f"After the first layer, the words of the protected attribute still carry {_pct(mediated['mean'])} of the "
            "decision gap on average"
            + (f" (95 % CI [{_pct(mediated['ci'][0])}, {_pct(mediated['ci'][1])}])" if mediated["ci"] else "")
            + f" over {plural(mediated['n_pairs'], 'pair')}: patching their hidden states alone moves the baseline's decision "
            "that far toward the counterfactual's."
        )
    if summary["peak_layer"] is not None:
        readings.append(f"The attribute's own positions matter most at layer {summary['peak_layer']}; after that "
                        "the information has moved on to later positions, and patching the attribute's words no "
                        "longer moves the decision.")
    if summary["n_pairs_total_effect_below_floor"]:
        below = summary["n_pairs_total_effect_below_floor"]
        readings.append(f"{plural(below, 'pair')} moved the decision by less than "
                        f"{patching['total_effect_floor']} log-odds in total; their shares are not defined and are "
                        "left out of the mean.")
    return {
        "selection": patching["selection"],
        "metric": summary["metric"],
        "direction": summary["direction"],
        "n_pairs": summary["n_pairs"],
        "floor": patching["total_effect_floor"],
        "rows": [{"source": p["source_case_id"], "target": p["target_case_id"], "total_effect": p["total_effect"],
                  "tokens": f"{p['patched_tokens']} of {p['source_span_tokens']} / {p['target_span_tokens']}",
                  "seconds": p["seconds"]} for p in patching["pairs"]],
        "chart": charts.patching_chart(layers, means, cis, pairs, salt="patching"),
        "has_band": any(ci and ci[1] > ci[0] for ci in cis),
        "has_shares": any(m is not None for m in means),
        "readings": readings,
    }


def _lens(lens: dict[str, Any]) -> dict[str, Any]:
    forming = [d for d in lens["forming_depths"] if d is not None]
    ranked = sorted(lens["groups"], key=lambda g: -abs(g["mean_shift"][-1]))
    shown = ranked[:LENS_GROUPS_SHOWN]
    readings = []
    if forming:
        readings.append(
            f"Where the decision forms: the baseline applications' decision settles on its final side at depth "
            f"{int(np.median(forming))} of {lens['depths'] - 1} (median over {plural(len(forming), 'scenario')}; range "
            f"{min(forming)} to {max(forming)}). Before that depth the read-out points the other way or nowhere."
        )
    for group in shown[:3]:
        settles = group["settles_at"]
        readings.append(
            f"{group['property']} = {group['group']}: the final gap of {group['mean_shift'][-1]:+.3f} log-odds "
            + (f"builds up from depth {settles} on." if settles is not None else "does not settle before the end.")
        )
    return {
        "definition": lens["definition"],
        "depths": lens["depths"],
        "chart": charts.lens_chart(
            lens["baseline_mean"], lens["baseline_ci"],
            [(f"{g['property']} = {g['group']}", g["mean_shift"]) for g in shown], salt="lens",
        ),
        "groups": [
            {"label": f"{g['property']} = {g['group']}", "final": g["mean_shift"][-1],
             "final_ci": g["shift_ci"][-1], "settles_at": g["settles_at"], "n": g["n_scenarios"]}
            for g in ranked
        ],
        "readings": readings,
    }


def _best(probe: dict[str, Any]) -> dict[str, Any] | None:
    if not probe.get("evaluated"):
        return None
    return probe["layers"][probe["most_selective_depth"]]


def _probe_row(probe: dict[str, Any], read_out: str) -> dict[str, Any]:
    best = _best(probe)
    position = read_out if probe["position"] == "answer" else f"words of '{probe['attribute']}'"
    return {
        "target": probe["target"], "position": position, "evaluated": probe.get("evaluated", False),
        "why": probe.get("why"), "n": probe.get("n_cases"), "majority": probe.get("majority"),
        "depth": None if best is None else best["depth"], "best": best,
        "final": probe["layers"][-1] if probe.get("evaluated") else None,
        # selectivity is a difference of two accuracies: shown in percentage points beside them in percent
        "selectivity_points": None if best is None else 100 * best["selectivity"],
        "selectivity_points_ci": None if best is None or not best["selectivity_ci"]
        else [100 * v for v in best["selectivity_ci"]],
    }


def _probe_chart(probes: list[dict[str, Any]], read_out: str):
    panels = [
        (f"{p['target']} at the {read_out}", [d["accuracy"] for d in p["layers"]],
         [d["control_accuracy"] for d in p["layers"]], p["majority"])
        for p in probes if p["position"] == "answer" and p.get("evaluated")
    ]
    return charts.probe_chart(panels, salt="probes") if panels else None


def _probe_readings(probes: list[dict[str, Any]]) -> list[str]:
    readings = []
    for probe in probes:
        if probe["position"] != "answer" or not probe.get("evaluated") or probe["target"] == "decision":
            continue
        best = _best(probe)
        low = best["selectivity_ci"][0] if best["selectivity_ci"] else None
        encoded = low is not None and low > 0 and best["accuracy"] > probe["majority"]
        verdict = ("is linearly decodable from the decision position beyond what the words alone give"
                   if encoded else "is not decodable from the decision position beyond word identity and chance")
        readings.append(
            f"{probe['target'].capitalize()} {verdict}: best selectivity {_points(best['selectivity'])}"
            + (f" (95 % CI [{100 * best['selectivity_ci'][0]:+.1f}, {100 * best['selectivity_ci'][1]:+.1f}])"
               if best["selectivity_ci"] else "")
            + f" at depth {best['depth']}, accuracy {_pct(best['accuracy'], 1)} against a majority-class share of "
            f"{_pct(probe['majority'], 1)}."
        )
    if any("beyond what the words alone give" in r for r in readings):
        readings.append("Being decodable is not by itself a failure: it says the characteristic reaches the point "
                        "where the model answers; whether the decision uses it is what the fairness results and the "
                        "patching below test.")
    return readings
