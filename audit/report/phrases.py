"""Plain-language readings of the bundle's numbers, shared by the report's sections: a control's status in one
sentence, a group's counterfactual shift in words, the controls table.

Every count and number in these sentences is read from the bundle; nothing is assumed about its shape.
"""

from __future__ import annotations

import math
from typing import Any

from audit.evidence.bundle import EvidenceBundle
from audit.wording import INTERSECTION
from audit.report.numbers import (
    NA, NBSP, fmt_ci, fmt_interval, fmt_num, fmt_pct, fmt_signed, fmt_threshold, fmt_value,
)
from audit.wording import plural

STATUS_WORDS = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive", "not evaluated": "not evaluated"}


def unit_of(control: dict[str, Any]) -> str:
    """How a control's values read: log-odds, a ratio, or a share shown as a percentage."""
    return control.get("unit", "number")


def threshold_of(bundle: EvidenceBundle, control_id: str) -> float | None:
    """The policy threshold of a control, None where the policy does not set it."""
    settings = bundle.policy["controls"].get(control_id)
    return None if settings is None else settings["threshold"]


def count_phrase(counts: dict[str, int]) -> str:
    """ "3 passed, 2 inconclusive and 1 failed" from status counts (zero counts left out)."""
    parts = [f"{n} {STATUS_WORDS.get(s, s)}" for s, n in counts.items() if n]
    if len(parts) <= 1:
        return "".join(parts) or "none evaluated"
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def odds_phrase(shift: float) -> str:
    """What a log-odds shift does to the odds: "the odds of approval fell by about 7.5 %"."""
    change = math.exp(shift) - 1
    direction = "rose" if change > 0 else "fell"
    return f"the odds of approval {direction} by about {fmt_pct(abs(change))}"


def shift_effect(mean: float, ci: list[float] | None) -> str:
    """ "lowered the log-odds of approval by 0.078 on average (95 % CI 0.058 to 0.099), i.e. ..."."""
    if ci is None:
        return (
            f"changed the log-odds of approval by {fmt_signed(mean)} on average (no confidence interval "
            f"could be estimated), i.e. {odds_phrase(mean)}"
        )
    if ci[0] <= 0 <= ci[1]:
        return (
            f"changed the log-odds of approval by {fmt_signed(mean)} on average (95{NBSP}% CI {fmt_ci(ci)}, "
            "which includes zero, so the direction is not established)"
        )
    verb = "raised" if mean > 0 else "lowered"
    low, high = sorted(abs(v) for v in ci)
    return (
        f"{verb} the log-odds of approval by {fmt_num(abs(mean))} on average "
        f"(95{NBSP}% CI {fmt_num(low)} to {fmt_num(high)}), i.e. {odds_phrase(mean)}"
    )


def suite_attribute(bundle: EvidenceBundle, name: str) -> dict[str, Any] | None:
    """The suite's definition of an attribute, by name."""
    return next((a for a in bundle.suite["attributes"] if a["name"] == name), None)


def group_key(groups: dict[str, str], prop: str) -> str:
    """The group label of a value for a (possibly intersectional) property, as the counterfactual statistics join it (``audit.wording.INTERSECTION``)."""
    return INTERSECTION.join(groups.get(p, "?") for p in prop.split(INTERSECTION))


def change_phrase(bundle: EvidenceBundle, analysis: dict[str, Any], group: str) -> str:
    """ "Changing age from “45” to “81”", or, where a group has several values, which and how many."""
    attribute = suite_attribute(bundle, analysis["attribute"])
    name = analysis["attribute"]
    if attribute is None:
        return f"Changing {name} to the group {group}"
    base = attribute["baseline"]["text"]
    values = [v["text"] for v in attribute["values"] if group_key(v["groups"], analysis["property"]) == group]
    if values == [group]:
        return f"Changing {name} from “{base}” to “{group}”"
    if len(values) == 1:
        return f"Changing {name} from “{base}” to “{values[0]}” ({analysis['property']} {group})"
    examples = ", ".join(f"“{v}”" for v in values[:2])
    return (
        f"Changing {name} from “{base}” to one of {len(values)} values associated with "
        f"{analysis['property']} = {group} (e.g. {examples})"
    )


def shift_sentence(bundle: EvidenceBundle, analysis: dict[str, Any], group: dict[str, Any]) -> str:
    """A full plain-language sentence on one group's mean shift, against the whole reference group."""
    change = change_phrase(bundle, analysis, group["group"])
    reference = next((g for g in analysis["groups"] if g["is_reference"]), None)
    against = ""
    if reference is not None and reference["n_counterfactual"]:
        n_values = reference["n_cases"] // max(analysis["n_scenarios"], 1)
        which = f"the average of all {n_values} values" if n_values > 1 else "the value"
        against = (
            f", measured against {which} of the reference group {analysis['reference']} rather than the baseline "
            "value alone"
        )
    return f"{change} {shift_effect(group['mean_shift'], group['shift_ci'])}{against}."


def counterfactual_groups(bundle: EvidenceBundle):
    """(analysis, group) for every non-reference group with a measured shift."""
    for analysis in bundle.fairness["analyses"]:
        for group in analysis["groups"]:
            if not group["is_reference"] and group["mean_shift"] is not None:
                yield analysis, group


def flip_counts(bundle: EvidenceBundle) -> tuple[int, int]:
    """(decisions that flipped, counterfactual cases) over all cases of the bundle."""
    baseline = {c["pair_id"]: c["decision"] for c in bundle.cases if c["attribute"] is None}
    varied = [c for c in bundle.cases if c["attribute"] is not None]
    return sum(c["decision"] != baseline.get(c["pair_id"]) for c in varied), len(varied)


def measurement_status(bundle: EvidenceBundle) -> dict[tuple[str, str, str], str]:
    """Status of every per-group measurement by (control id, property, group), as the policy judged it."""
    return {
        (c["id"], m["key"]["property"], m["key"]["group"]): m["status"]
        for c in bundle.controls
        for m in c["measurements"]
        if m.get("key")
    }


def control_reading(control: dict[str, Any]) -> str:
    """One plain-language sentence on why a control has its status."""
    unit, status = unit_of(control), control["status"]
    value, ci = fmt_value(control["value"], unit), fmt_interval(control["ci"], unit)
    limit = fmt_threshold(control["threshold"], control["direction"], unit)
    side = "below" if control["direction"] == "max" else "above"
    wrong = "above" if control["direction"] == "max" else "below"
    where = control["decisive"]
    n = len(control["measurements"])
    failing = sum(m["status"] == "fail" for m in control["measurements"])
    if status == "not evaluated":
        decisive = next((m for m in control["measurements"] if m["label"] == where and m["detail"]), None)
        if decisive:
            return f"Not evaluated: {decisive['detail']}."
        return "No measurement could be made from this bundle, so the control was not evaluated."
    if status == "pass":
        scope = f"all {n} measurements" if n > 1 else "the one measurement"
        return (
            f"The 95{NBSP}% confidence interval lies entirely {side} the limit for {scope}; "
            f"the closest to the limit is {where}: {value} (95{NBSP}% CI {ci}; limit {limit})."
        )
    if status == "fail":
        scope = f" {failing} of {n} measurements fail." if n > 1 else ""
        return f"The point estimate for {where} is {value}, {wrong} the limit ({limit}; 95{NBSP}% CI {ci}).{scope}"
    return f"The point estimate for {where} is {value}, within the limit ({limit}), but {undecided_cause(control)}."


def undecided_cause(control: dict[str, Any], restate_interval: bool = True) -> str:
    """Why an inconclusive control could not be decided: no interval, an interval across the threshold, or too
    few cases per group for the policy (the measurement's detail says so)."""
    unit = unit_of(control)
    ci = control["ci"]
    decisive = next((m for m in control["measurements"] if m["label"] == control["decisive"]), None)
    if decisive is not None and "fewer than the policy's" in (decisive.get("detail") or ""):
        minimum = decisive["detail"].rsplit("fewer than the policy's ", 1)[1]
        return f"the group has fewer than the policy's {minimum}, so it cannot pass or fail"
    if ci is None or None in ci:
        return "no confidence interval could be estimated"
    wrong = "above" if control["direction"] == "max" else "below"
    interval = f"its 95{NBSP}% CI {fmt_interval(ci, unit)}" if restate_interval else "its interval"
    return f"{interval} reaches {wrong} the limit, so the data cannot tell"


def control_rows(bundle: EvidenceBundle) -> list[dict[str, Any]]:
    """The controls table: one row per control, numbers formatted in the control's unit."""
    rows = []
    for control in bundle.controls:
        unit = unit_of(control)
        decisive = next((m for m in control["measurements"] if m["label"] == control["decisive"]), None)
        rows.append(
            {
                "id": control["id"],
                "title": control["title"],
                "question": control["question"],
                "metric": control["metric"],
                "status": control["status"],
                "value": fmt_value(control["value"], unit),
                "ci": fmt_interval(control["ci"], unit),
                "threshold": fmt_threshold(control["threshold"], control["direction"], unit),
                "blocking": "blocking" if control["blocking"] else "advisory",
                "decisive": control["decisive"] or NA,
                "detail": decisive["detail"] if decisive else "",
                "clauses": control["clauses"],
                "reading": control_reading(control),
            }
        )
    return rows


def selection_phrase(attributions: dict[str, Any]) -> str:
    """Which cases the primary method attributed, counted from the attributed cases themselves (their ``why``),
    not from the selection rule's parameter."""
    cases = attributions["cases"]
    n_baseline = sum(c.get("why") == "baseline applicant" for c in cases)
    n_moved = len(cases) - n_baseline
    moved = (f"{plural(n_moved, 'counterfactual case')} whose decision score moved most (at most one per scenario)"
             if n_moved else "no counterfactual case")
    return f"{plural(n_baseline, 'baseline case')}, one per scenario, and {moved}"
