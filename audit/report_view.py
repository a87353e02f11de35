"""What the report templates show, computed from the evidence bundle alone.

``build_context(bundle)`` turns the bundle into template-ready pieces, one
per report section: formatted tables, plain-language readings of the
numbers, and SVG charts. Nothing here reads the clock, the model or the
disk, so the same bundle always renders the same report. ``FILTERS`` are the
jinja filters the templates use to format numbers, rates and intervals.

Text from the suite or the model is returned as plain ``str`` and escaped by
jinja's autoescape; the only markup built here (charts, shaded attribution
text) is assembled with ``markupsafe`` so every piece of input text in it is
escaped.
"""

from __future__ import annotations

import math
import shlex
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from markupsafe import Markup

from audit import charts
from audit.evidence import BUNDLE_FILE, MANIFEST_FILE, EvidenceBundle
from audit.fairness import INTERSECTION
from audit.report_reasons import reasons_context
from audit.report_bias_audit import bias_audit_context
from audit.report_crosswalk import crosswalk_context
from audit.report_discrimination import discrimination_context
from audit.report_formats import formats_context
from audit.report_internals import internals_context
from audit.report_trust import trust_context
from audit.report_signoff import signoff_context

NBSP = "\u00a0"
NA = "n/a"
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
SHIFT_CONTROL = "counterfactual-shift"
IMPACT_CONTROL = "impact-ratio"
FLIP_CONTROL = "decision-flip-rate"
COMPLETENESS_CONTROL = "attribution-completeness"
ATTRIBUTION_PARAM_LABELS = {
    "n_steps": "Integration steps",
    "method": "Integration rule",
    "baseline": "Reference input (x′)",
    "tolerance": "Adaptive steps: completeness tolerance",
    "max_steps": "Adaptive steps: step budget",
}
STATUS_WORDS = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive", "not evaluated": "not evaluated"}
SMALL_MODEL_PARAMETERS = 1_000_000_000
FEW_SCENARIOS = 10
FEW_CASES = 30


# ---------------------------------------------------------------- formatting


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; None, NaN and infinity read "n/a"."""
    if value is None or not math.isfinite(value):
        return NA
    text = f"{value:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def fmt_signed(value: float | None, digits: int = 3) -> str:
    """A number with an explicit sign (+0.020, -0.078)."""
    text = fmt_num(value, digits)
    return text if text == NA or text.startswith("-") else "+" + text


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A share in 0..1 as a percentage: 0.075 -> "7.5 %"."""
    text = fmt_num(None if value is None else 100 * value, digits)
    return text if text == NA else f"{text}{NBSP}%"


def fmt_signed_pct(value: float | None, digits: int = 1) -> str:
    """A relative change as a signed percentage: -0.075 -> "-7.5 %"."""
    text = fmt_pct(value, digits)
    return text if text == NA or text.startswith("-") else "+" + text


def fmt_ci(ci: list[float] | tuple[float, float] | None, digits: int = 3) -> str:
    """An interval as "[low, high]"."""
    if ci is None:
        return NA
    return f"[{fmt_num(ci[0], digits)}, {fmt_num(ci[1], digits)}]"


def fmt_pct_ci(ci: list[float] | tuple[float, float] | None, digits: int = 1) -> str:
    """An interval of shares as "[2.0 %, 19.4 %]"."""
    if ci is None:
        return NA
    return f"[{fmt_pct(ci[0], digits)}, {fmt_pct(ci[1], digits)}]"


def fmt_ratio(value: float | None) -> str:
    """A ratio with two decimals."""
    return fmt_num(value, 2)


def fmt_ratio_ci(ci: list[float] | tuple[float, float] | None) -> str:
    """An interval of ratios with two decimals."""
    return fmt_ci(ci, 2)


def fmt_int(value: int | None) -> str:
    """An integer with thousands separators."""
    return NA if value is None else f"{value:,}"


def fmt_parameters(value: int | None) -> str:
    """A parameter count in words: 134515008 -> "134.5 million"."""
    if value is None:
        return NA
    for size, word in ((1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if value >= size:
            return f"{value / size:.1f}{NBSP}{word}"
    return str(value)


def fmt_seconds(value: float | None) -> str:
    """A duration: "25.6 s" or "3 min 12 s"."""
    if value is None:
        return NA
    if value < 60:
        return f"{value:.1f}{NBSP}s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}{NBSP}min {seconds}{NBSP}s"


def _parse_time(iso: str) -> datetime:
    """An ISO timestamp as a datetime, in UTC where it carries a zone."""
    moment = datetime.fromisoformat(iso)
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment


def fmt_date(iso: str | None) -> str:
    """An ISO timestamp as a date in words ("25 November 2026"), independent of the locale."""
    if not iso:
        return NA
    moment = _parse_time(iso)
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def fmt_timestamp(iso: str | None) -> str:
    """An ISO timestamp as "2026-11-25 21:26:35 UTC"."""
    if not iso:
        return NA
    moment = _parse_time(iso)
    zone = " UTC" if moment.tzinfo else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone


def fmt_value(value: float | None, unit: str) -> str:
    """A control value in its unit."""
    if unit == "share":
        return fmt_pct(value)
    if unit == "ratio":
        return fmt_ratio(value)
    return fmt_num(value)


def fmt_interval(ci: list[float] | None, unit: str) -> str:
    """A control interval in its unit."""
    if unit == "share":
        return fmt_pct_ci(ci)
    if unit == "ratio":
        return fmt_ratio_ci(ci)
    return fmt_ci(ci)


def fmt_threshold(threshold: float, direction: str, unit: str) -> str:
    """A threshold with the side that passes: "≤ 0.250", "≥ 0.80"."""
    return f"{'≤' if direction == 'max' else '≥'}{NBSP}{fmt_value(threshold, unit)}"


def status_class(status: str) -> str:
    """CSS class of a status badge."""
    return status.replace(" ", "-")


FILTERS = {
    "num": fmt_num,
    "signed": fmt_signed,
    "pct": fmt_pct,
    "signed_pct": fmt_signed_pct,
    "ci": fmt_ci,
    "pct_ci": fmt_pct_ci,
    "ratio": fmt_ratio,
    "ratio_ci": fmt_ratio_ci,
    "int": fmt_int,
    "parameters": fmt_parameters,
    "seconds": fmt_seconds,
    "date": fmt_date,
    "timestamp": fmt_timestamp,
    "status_class": status_class,
}


# ---------------------------------------------------------------- helpers


def _unit(control: dict[str, Any]) -> str:
    """How a control's values read: log-odds, a ratio, or a share shown as a percentage."""
    return control.get("unit", "number")


def _threshold(bundle: EvidenceBundle, control_id: str) -> float | None:
    """The policy threshold of a control, None where the policy does not set it."""
    settings = bundle.policy["controls"].get(control_id)
    return None if settings is None else settings["threshold"]


def _count_phrase(counts: dict[str, int]) -> str:
    """ "3 passed, 2 inconclusive and 1 failed" from status counts (zero counts left out)."""
    parts = [f"{n} {STATUS_WORDS.get(s, s)}" for s, n in counts.items() if n]
    if len(parts) <= 1:
        return "".join(parts) or "none evaluated"
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _odds_phrase(shift: float) -> str:
    """What a log-odds shift does to the odds: "the odds of approval fell by about 7.5 %"."""
    change = math.exp(shift) - 1
    direction = "rose" if change > 0 else "fell"
    return f"the odds of approval {direction} by about {fmt_pct(abs(change))}"


def _shift_effect(mean: float, ci: list[float] | None) -> str:
    """ "lowered the log-odds of approval by 0.078 on average (95 % CI 0.058 to 0.099), i.e. ..."."""
    if ci is None:
        return (
            f"changed the log-odds of approval by {fmt_signed(mean)} on average (no confidence interval "
            f"could be estimated), i.e. {_odds_phrase(mean)}"
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
        f"(95{NBSP}% CI {fmt_num(low)} to {fmt_num(high)}), i.e. {_odds_phrase(mean)}"
    )


def _suite_attribute(bundle: EvidenceBundle, name: str) -> dict[str, Any] | None:
    """The suite's definition of an attribute, by name."""
    return next((a for a in bundle.suite["attributes"] if a["name"] == name), None)


def _group_key(groups: dict[str, str], prop: str) -> str:
    """The group label of a value for a (possibly intersectional) property, as fairness.py joins it."""
    return INTERSECTION.join(groups.get(p, "?") for p in prop.split(INTERSECTION))


def _change_phrase(bundle: EvidenceBundle, analysis: dict[str, Any], group: str) -> str:
    """ "Changing age from “45” to “81”", or, where a group has several values, which and how many."""
    attribute = _suite_attribute(bundle, analysis["attribute"])
    name = analysis["attribute"]
    if attribute is None:
        return f"Changing {name} to the group {group}"
    base = attribute["baseline"]["text"]
    values = [v["text"] for v in attribute["values"] if _group_key(v["groups"], analysis["property"]) == group]
    if values == [group]:
        return f"Changing {name} from “{base}” to “{group}”"
    if len(values) == 1:
        return f"Changing {name} from “{base}” to “{values[0]}” ({analysis['property']} {group})"
    examples = ", ".join(f"“{v}”" for v in values[:2])
    return (
        f"Changing {name} from “{base}” to one of {len(values)} values associated with "
        f"{analysis['property']} = {group} (e.g. {examples})"
    )


def _shift_sentence(bundle: EvidenceBundle, analysis: dict[str, Any], group: dict[str, Any]) -> str:
    """A full plain-language sentence on one group's mean shift, against the whole reference group."""
    change = _change_phrase(bundle, analysis, group["group"])
    reference = next((g for g in analysis["groups"] if g["is_reference"]), None)
    against = ""
    if reference is not None and reference["n_counterfactual"]:
        against = (
            f", measured against the average of all {reference['n_cases'] // max(analysis['n_scenarios'], 1)} "
            f"values of the reference group {analysis['reference']} rather than the baseline value alone"
        )
    return f"{change} {_shift_effect(group['mean_shift'], group['shift_ci'])}{against}."


def _counterfactual_groups(bundle: EvidenceBundle):
    """(analysis, group) for every non-reference group with a measured shift."""
    for analysis in bundle.fairness["analyses"]:
        for group in analysis["groups"]:
            if not group["is_reference"] and group["mean_shift"] is not None:
                yield analysis, group


def _flip_counts(bundle: EvidenceBundle) -> tuple[int, int]:
    """(decisions that flipped, counterfactual cases) over all cases of the bundle."""
    baseline = {c["pair_id"]: c["decision"] for c in bundle.cases if c["attribute"] is None}
    varied = [c for c in bundle.cases if c["attribute"] is not None]
    return sum(c["decision"] != baseline.get(c["pair_id"]) for c in varied), len(varied)


def _measurement_status(bundle: EvidenceBundle) -> dict[tuple[str, str, str], str]:
    """Status of every per-group measurement by (control id, property, group), as the policy judged it."""
    return {
        (c["id"], m["key"]["property"], m["key"]["group"]): m["status"]
        for c in bundle.controls
        for m in c["measurements"]
        if m.get("key")
    }


# ---------------------------------------------------------------- controls


def _control_reading(control: dict[str, Any]) -> str:
    """One plain-language sentence on why a control has its status."""
    unit, status = _unit(control), control["status"]
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
        scope = f"all {n} measurements" if n > 1 else "the measurement"
        return (
            f"The 95{NBSP}% confidence interval lies entirely {side} the limit for {scope}; "
            f"the closest to the limit is {where}: {value} (95{NBSP}% CI {ci}; limit {limit})."
        )
    if status == "fail":
        scope = f" {failing} of {n} measurements fail." if n > 1 else ""
        return f"The point estimate for {where} is {value}, {wrong} the limit ({limit}; 95{NBSP}% CI {ci}).{scope}"
    if control["ci"] is None:
        return (
            f"The point estimate for {where} is {value}, within the limit ({limit}), but no confidence interval "
            "could be estimated."
        )
    return (
        f"The point estimate for {where} is {value}, within the limit ({limit}), but its 95{NBSP}% CI {ci} "
        f"reaches {wrong} it, so the data cannot tell; more scenarios would narrow the interval."
    )


def _control_rows(bundle: EvidenceBundle) -> list[dict[str, Any]]:
    """The controls table: one row per control, numbers formatted in the control's unit."""
    rows = []
    for control in bundle.controls:
        unit = _unit(control)
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
                "reading": _control_reading(control),
            }
        )
    return rows


# ---------------------------------------------------------------- sections


def _verdict(bundle: EvidenceBundle) -> dict[str, Any]:
    """The overall verdict with a one-line note on what decided it."""
    verdict = bundle.verdict
    failed_advisory = [c["id"] for c in bundle.controls if not c["blocking"] and c["status"] == "fail"]
    if verdict["status"] == "fail":
        failed = verdict["failed_controls"]
        note = f"Blocking control{'s' if len(failed) > 1 else ''} failed: {', '.join(failed)}."
    else:
        note = "No blocking control failed."
        if failed_advisory:
            note += f" Advisory control{'s' if len(failed_advisory) > 1 else ''} failed: {', '.join(failed_advisory)}."
    return {
        "status": verdict["status"],
        "label": verdict["status"].upper(),
        "note": note,
        "counts": [{"status": s, "n": n} for s, n in verdict["counts"].items()],
    }


def _cover(bundle: EvidenceBundle) -> dict[str, Any]:
    """The cover page: key facts, fingerprint and verdict."""
    model, suite, policy = bundle.model, bundle.suite, bundle.policy
    return {
        "facts": [
            ("Model", model["spec"]),
            ("Architecture", f"{model.get('architecture') or NA} ({model.get('model_type') or NA})"),
            ("Parameters", f"{fmt_parameters(model.get('parameters'))} ({fmt_int(model.get('parameters'))})"),
            ("License", model.get("license") or "not declared"),
            ("Test suite", f"{suite['title']} ({suite['id']}, version {suite['version']})"),
            ("Policy", f"{policy['title']} ({policy['id']})"),
            ("Audit date", f"{fmt_date(bundle.run['finished_at'])} ({fmt_timestamp(bundle.run['finished_at'])})"),
            ("Tool", f"{bundle.tool['name']} {bundle.tool['version']}"),
        ],
        "fingerprint": model["id"],
        "verdict": _verdict(bundle),
    }


def _summary(bundle: EvidenceBundle, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The executive summary: scope and verdict, then findings (what failed and why, largest effect, flips)."""
    suite, fairness = bundle.suite, bundle.fairness
    verdict = _verdict(bundle)
    overview = (
        f"This audit put {fmt_int(fairness['n_cases'])} credit-decision prompts from "
        f"{suite['n_scenarios_used']} of the {suite['n_scenarios_total']} scenarios of the suite "
        f"“{suite['title']}” "
        f"to the model {bundle.model['spec']} and judged the results under the policy “{bundle.policy['title']}”. "
        f"Overall verdict: {verdict['label']}. {verdict['note']} Of {len(rows)} controls, "
        f"{_count_phrase(bundle.verdict['counts'])}."
    )
    findings = [
        {"lead": f"{row['title']} ({row['blocking']}): {row['status']}.", "text": row["reading"]}
        for row in rows
        if row["status"] in ("fail", "inconclusive", "not evaluated")
    ]
    largest = max(_counterfactual_groups(bundle), key=lambda ag: abs(ag[1]["mean_shift"]), default=None)
    if largest is not None:
        analysis, group = largest
        findings.append(
            {
                "lead": f"Largest counterfactual shift: {analysis['property']} = {group['group']}.",
                "text": _shift_sentence(bundle, analysis, group),
            }
        )
    flips, varied = _flip_counts(bundle)
    flip_text = (
        f"No approve/decline decision changed in the {fmt_int(varied)} counterfactual cases."
        if flips == 0
        else f"{flips} of the {fmt_int(varied)} counterfactual cases ({fmt_pct(flips / varied)}) received a "
        "different approve/decline decision from their baseline applicant."
    )
    findings.append(
        {
            "lead": f"Decisions: {fmt_pct(fairness['baseline_approval_rate'])} of baseline applications approved.",
            "text": flip_text,
        }
    )
    return {"overview": overview, "findings": findings, "controls": rows}


def _identity(bundle: EvidenceBundle) -> dict[str, Any]:
    """Model identity: facts and the hash of every file that defines the model."""
    model = bundle.model
    gguf = model.get("source_gguf")
    return {
        "fingerprint": model["id"],
        "facts": [
            ("Model specification", model["spec"]),
            ("Specification kind", model.get("spec_kind") or NA),
            ("Family", model.get("family") or NA),
            ("Architecture", model.get("architecture") or NA),
            ("Model type", model.get("model_type") or NA),
            ("Layers", fmt_int(model.get("layers"))),
            ("Parameters", fmt_int(model.get("parameters"))),
            ("Dtype as loaded", model.get("dtype") or NA),
            ("License", model.get("license") or "not declared"),
        ],
        "hashes": [
            *(("weights", name, digest) for name, digest in model.get("weights", {}).items()),
            *(("tokenizer", name, digest) for name, digest in model.get("tokenizer", {}).items()),
            *([("source GGUF", gguf["file"], gguf["sha256"])] if gguf else []),
            ("config", "model configuration", model.get("config_sha256") or NA),
            ("chat template", "chat template text", model.get("chat_template_sha256") or NA),
        ],
        "has_gguf": bool(gguf),
    }


def _attribute_rows(bundle: EvidenceBundle) -> list[dict[str, Any]]:
    """The protected attributes table: one row per attribute."""
    return [
        {
            "name": a["name"],
            "protected": ", ".join(a["protected"]),
            "baseline": a["baseline"]["text"],
            "n_values": len(a["values"]),
            "value_texts": "; ".join(v["text"] for v in a["values"]),
            "description": a["description"],
        }
        for a in bundle.suite["attributes"]
    ]


def _value_sources(bundle: EvidenceBundle) -> list[dict[str, Any]]:
    """Counterfactual values grouped by group and source, for attributes whose values cite a source."""
    tables = []
    for attribute in bundle.suite["attributes"]:
        if not any(v["source"] for v in [attribute["baseline"], *attribute["values"]]):
            continue
        grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
        for value in [attribute["baseline"], *attribute["values"]]:
            label = INTERSECTION.join(value["groups"][p] for p in attribute["protected"])
            text = value["text"] + (" (baseline)" if value is attribute["baseline"] else "")
            grouped[(label, value["source"] or NA)].append(text)
        tables.append(
            {
                "attribute": attribute["name"],
                "rows": [{"group": g, "source": s, "value_texts": ", ".join(v)} for (g, s), v in grouped.items()],
                "citations": attribute["sources"],
            }
        )
    return tables


def _scenario_rows(bundle: EvidenceBundle) -> list[dict[str, Any]]:
    """Per scenario: its cases aggregated (count, baseline score, shifts, flips, answer mass)."""
    by_scenario: dict[str, list[dict]] = defaultdict(list)
    for case in bundle.cases:
        by_scenario[case["scenario_id"]].append(case)
    rows = []
    for scenario in bundle.suite["scenarios"]:
        cases = by_scenario.get(scenario["id"], [])
        base = next((c for c in cases if c["attribute"] is None), None)
        shifts = [c["shift"] for c in cases if c["attribute"] is not None]
        flips = sum(base is not None and c["decision"] != base["decision"] for c in cases if c["attribute"] is not None)
        rows.append(
            {
                "id": scenario["id"],
                "title": scenario["title"],
                "n_cases": len(cases),
                "baseline_score": base["score"] if base else None,
                "baseline_decision": base["decision"] if base else NA,
                "shift_range": f"{fmt_signed(min(shifts))} to {fmt_signed(max(shifts))}" if shifts else NA,
                "flips": flips,
                "mean_mass": sum(c["answer_mass"] for c in cases) / len(cases) if cases else None,
            }
        )
    return rows


def _visible(token: str) -> str:
    """A token's text with line breaks and tabs spelled out, so every character shows."""
    return token.replace("\n", "\\n").replace("\t", "\\t")


def _testset(bundle: EvidenceBundle) -> dict[str, Any]:
    """The test set: suite facts, prompt pieces, attributes, value sources, scenarios."""
    suite, decision = bundle.suite, bundle.decision
    return {
        "suite": suite,
        "limited": suite["n_scenarios_used"] < suite["n_scenarios_total"],
        "limit": bundle.run.get("limit"),
        "verbaliser": {
            side: [{"text": _visible(t["text"]), "id": t["id"]} for t in tokens]
            for side, tokens in decision.get("verbaliser", {}).items()
        },
        "system_prompt": decision.get("system_prompt") or suite.get("system_prompt"),
        "labels": sorted((int(i), name) for i, name in decision.get("labels", {}).items()),
        "favourable_label": decision.get("favourable_label"),
        "unfavourable_label": decision.get("unfavourable_label"),
        "attributes": _attribute_rows(bundle),
        "value_sources": _value_sources(bundle),
        "scenarios": _scenario_rows(bundle),
        "n_cases": len(bundle.cases),
        "example_prompt": decision["example_prompt"],
    }


def _method(bundle: EvidenceBundle, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The method section: decision read-out, statistics, attribution and policy parameters."""
    attributions = bundle.attributions
    case_params = attributions["cases"][0]["params"] if attributions["cases"] else {}
    params = {**attributions["params"], **case_params}
    return {
        "is_causal_lm": bundle.decision.get("family") == "causal-lm",
        "small_model": 0 < (bundle.model.get("parameters") or 0) < SMALL_MODEL_PARAMETERS,
        "read_out": bundle.decision.get("read_out") or NA,
        "stats": bundle.fairness["params"],
        "attribution": {
            "title": attributions.get("title") or attributions["method"],
            "method": attributions["method"],
            "params": [
                (ATTRIBUTION_PARAM_LABELS.get(k, k.replace("_", " ").capitalize()), v) for k, v in params.items()
            ],
            "selection": attributions["selection"],
        },
        "controls": rows,
        "fail_on_inconclusive": bundle.policy["fail_on_inconclusive"],
        "policy": bundle.policy,
    }


def _shift_rows(analysis: dict[str, Any]) -> list[charts.ShiftRow]:
    """Chart rows of one analysis."""
    return [
        charts.ShiftRow(
            label=g["group"], mean=g["mean_shift"], ci=tuple(g["shift_ci"]) if g["shift_ci"] else None,
            is_reference=g["is_reference"],
        )
        for g in analysis["groups"]
    ]


def _analysis_readings(bundle: EvidenceBundle, analysis: dict[str, Any]) -> list[str]:
    """Plain-language readings of one analysis: largest shift, reference noise, flips, impact ratio."""
    readings = []
    others = [g for g in analysis["groups"] if not g["is_reference"] and g["mean_shift"] is not None]
    if others:
        top = max(others, key=lambda g: abs(g["mean_shift"]))
        readings.append(f"Largest shift: {_shift_sentence(bundle, analysis, top)}")
    reference = next((g for g in analysis["groups"] if g["is_reference"]), None)
    if reference and reference["mean_shift"] is not None:
        readings.append(
            f"The other values of the reference group {reference['group']} "
            f"{_shift_effect(reference['mean_shift'], reference['shift_ci'])}. They share the baseline's "
            f"{analysis['property']}, so this change is not due to {analysis['property']}: compare the other groups "
            "with it rather than with zero."
        )
    flipped = sum(round((g["flip_rate"] or 0) * g["n_counterfactual"]) for g in others)
    cases = sum(g["n_counterfactual"] for g in others)
    if cases and flipped == 0:
        readings.append(f"No approve/decline decision changed in the {cases} counterfactual cases of other groups.")
    elif cases:
        worst = max(others, key=lambda g: g["flip_rate"] or 0)
        readings.append(
            f"{flipped} of {cases} counterfactual decisions changed; the highest flip rate is for {worst['group']}: "
            f"{fmt_pct(worst['flip_rate'])} (95{NBSP}% CI {fmt_pct_ci(worst['flip_ci'])})."
        )
    ratios = [g for g in analysis["groups"] if g["impact_ratio"] is not None]
    rates = {g["approval_rate"] for g in ratios}
    if ratios and len(rates) == 1 and rates <= {0.0, 1.0}:
        readings.append(
            f"Every group was {'approved' if ratios[0]['approval_rate'] == 1.0 else 'declined'} in every case, "
            "so the impact ratios carry no information here."
        )
    elif ratios:
        low = min(ratios, key=lambda g: g["impact_ratio"])
        readings.append(
            f"Lowest impact ratio: {low['group']}, approved at {fmt_ratio(low['impact_ratio'])} times the rate of "
            f"the most-approved group (95{NBSP}% CI {fmt_ratio_ci(low['impact_ci'])}; the four-fifths rule of thumb "
            "flags ratios below 0.80)."
        )
    return readings


def _fairness(bundle: EvidenceBundle) -> dict[str, Any]:
    """Per analysis: group rows with policy statuses, a chart and readings; the answer-mass summary."""
    fairness = bundle.fairness
    threshold = _threshold(bundle, SHIFT_CONTROL)
    statuses = _measurement_status(bundle)
    analyses = []
    for index, analysis in enumerate(fairness["analyses"]):
        groups = []
        for g in analysis["groups"]:
            key = (analysis["property"], g["group"])
            groups.append(
                {
                    **g,
                    "odds_change": None if g["mean_shift"] is None else math.exp(g["mean_shift"]) - 1,
                    "shift_status": statuses.get((SHIFT_CONTROL, *key), ""),
                    "flip_status": statuses.get((FLIP_CONTROL, *key), ""),
                    "impact_status": statuses.get((IMPACT_CONTROL, *key), ""),
                }
            )
        attribute = _suite_attribute(bundle, analysis["attribute"])
        analyses.append(
            {
                **analysis,
                "groups": groups,
                "baseline_text": attribute["baseline"]["text"] if attribute else NA,
                "chart": charts.shift_chart(_shift_rows(analysis), threshold, salt=f"shift-{index}"),
                "readings": _analysis_readings(bundle, analysis),
            }
        )
    return {
        "analyses": analyses,
        "shift_threshold": threshold,
        "answer_mass": fairness["answer_mass"],
        "mass_floor": fairness["params"]["mass_floor"],
        "n_cases": fairness["n_cases"],
        "n_scenarios": fairness["n_scenarios"],
        "baseline_approval_rate": fairness["baseline_approval_rate"],
        "confidence": fairness["params"]["confidence"],
    }


def shade(score: float, scale: float) -> tuple[str, str]:
    """(background, text colour) of a word: blue toward the favourable answer, red toward the unfavourable."""
    strength = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    target = (33, 102, 172) if score > 0 else (178, 24, 43)
    r, g, b = (round(255 + (c - 255) * strength) for c in target)
    return f"#{r:02x}{g:02x}{b:02x}", "#ffffff" if strength > 0.6 else "#1f2933"


def _shaded_text(attribution: dict[str, Any]) -> Markup:
    """The case text as spans shaded by word score; every word is escaped by ``Markup.format``."""
    scores = attribution["word_scores"]
    scale = max((abs(s) for s in scores), default=0.0)
    protected = set(attribution.get("protected_slots", []))
    spans = []
    for word, score, slot in zip(attribution["words"], scores, attribution["word_slots"]):
        background, colour = shade(score, scale)
        css = "w prot" if slot in protected else "w"
        spans.append(
            Markup('<span class="{}" style="background-color:{};color:{}">{}</span>').format(
                css, background, colour, word
            )
        )
    return Markup(" ").join(spans)


def _mean_slot_shares(cases: list[dict[str, Any]]) -> list[tuple[str, float, str]]:
    """Mean share of |attribution| per slot over the cases, largest first; words outside slots last."""
    if not cases:
        return []
    totals: dict[str, float] = defaultdict(float)
    protected: set[str] = set()
    outside = 0.0
    for case in cases:
        protected.update(case.get("protected_slots", []))
        for slot, share in case["slot_shares"].items():
            totals[slot] += share
        outside += max(0.0, 1.0 - sum(case["slot_shares"].values()))
    ordered = sorted(totals.items(), key=lambda item: -item[1])
    slots = [(name, total / len(cases), "protected" if name in protected else "factor") for name, total in ordered]
    return [*slots, ("words outside any slot", outside / len(cases), "other")]


def _attributed_case(
    bundle: EvidenceBundle, attribution: dict[str, Any], scenario_titles: dict[str, str]
) -> dict[str, Any]:
    """One attributed case: its shaded text, scores, completeness gap and protected-slot shares."""
    case = next((c for c in bundle.cases if c["case_id"] == attribution["case_id"]), None)
    score, reference = attribution["score"], attribution["reference_score"]
    difference = None if reference is None else score - reference
    delta = attribution["convergence_delta"]
    relative = None if delta is None or not difference else delta / abs(difference)
    protected = [
        (slot, attribution["slot_shares"].get(slot, 0.0)) for slot in attribution.get("protected_slots", [])
    ]
    return {
        "case_id": attribution["case_id"],
        "scenario": scenario_titles.get(case["scenario_id"], case["scenario_id"]) if case else NA,
        "why": attribution["why"],
        "decision": case["decision"] if case else NA,
        "score": score,
        "reference_score": reference,
        "difference": difference,
        "attribution_sum": sum(attribution["token_scores"]),
        "delta": delta,
        "delta_relative": relative,
        "protected_total": sum(share for _, share in protected),
        "protected": sorted(protected, key=lambda item: -item[1]),
        "text": _shaded_text(attribution),
    }


def _attributions(bundle: EvidenceBundle) -> dict[str, Any]:
    """The attribution section: mean slot shares (chart) and every attributed case."""
    attributions = bundle.attributions
    titles = {s["id"]: s["title"] for s in bundle.suite["scenarios"]}
    shares = _mean_slot_shares(attributions["cases"])
    return {
        "title": attributions.get("title") or attributions["method"],
        "selection": attributions["selection"],
        "n_cases": len(attributions["cases"]),
        "chart": charts.slot_share_chart(shares, salt="slot-shares") if shares else None,
        "cases": [_attributed_case(bundle, a, titles) for a in attributions["cases"]],
    }


def _limitations(bundle: EvidenceBundle) -> list[str]:
    """Caveats drawn from the data, followed by the fixed caveats of the design."""
    suite, fairness, run = bundle.suite, bundle.fairness, bundle.run
    items = []
    if suite["n_scenarios_used"] < suite["n_scenarios_total"]:
        items.append(
            f"Only {suite['n_scenarios_used']} of the suite's {suite['n_scenarios_total']} scenarios were run "
            f"(--limit {run.get('limit')}); the results do not cover the other credit products of the suite."
        )
    if fairness["n_scenarios"] < FEW_SCENARIOS:
        items.append(
            f"Bootstrap intervals are computed over {fairness['n_scenarios']} scenarios. With fewer than "
            f"{FEW_SCENARIOS} resampling units a bootstrap interval is unstable and tends to be too narrow, so "
            "passes that rest on these intervals are weak evidence."
        )
    small = [g for _, g in _counterfactual_groups(bundle) if g["n_counterfactual"] < FEW_CASES and g["flip_ci"]]
    if small:
        fewest = min(g["n_counterfactual"] for g in small)
        widest = max(g["flip_ci"][1] for g in small)
        items.append(
            f"Some groups have few counterfactual cases (as few as {fewest}), so their flip-rate intervals are wide: "
            f"the upper end of a 95{NBSP}% flip-rate interval reaches {fmt_pct(widest)}."
        )
    mass = fairness["answer_mass"]
    if mass["n_unreliable"]:
        items.append(
            f"{mass['n_unreliable']} cases ({fmt_pct(mass['unreliable_share'])}) put less than "
            f"{fmt_pct(fairness['params']['mass_floor'], 0)} of the next-token probability on the answer words; "
            "their decisions are weakly determined and their scores less meaningful."
        )
    items.append(
        f"The model put on average {fmt_pct(mass['mean'])} (minimum {fmt_pct(mass['min'])}) of its next-token "
        "probability on the answer words; the decision score compares those words only and ignores the rest."
    )
    if fairness["baseline_approval_rate"] in (0.0, 1.0):
        word = "approved" if fairness["baseline_approval_rate"] == 1.0 else "declined"
        items.append(
            f"Every baseline application was {word}; approval rates and impact ratios can then only move if a "
            "counterfactual flips the decision, so the log-odds shift is the more sensitive measure here."
        )
    items.extend(_attribution_limitations(bundle))
    parameters = bundle.model.get("parameters") or 0
    if parameters and parameters < SMALL_MODEL_PARAMETERS:
        items.append(
            f"The audited model has {fmt_parameters(parameters)} parameters. Models of this size follow instructions "
            "loosely; treat the results as a demonstration of the method rather than as evidence about a "
            "production-grade model."
        )
    items.extend(FIXED_LIMITATIONS)
    return items


def _attribution_limitations(bundle: EvidenceBundle) -> list[str]:
    """Caveats on the attributions: non-random selection and completeness gaps."""
    cases = bundle.attributions["cases"]
    if not cases:
        return ["No case was attributed, so the explainability controls have no evidence."]
    items = [
        f"Attributions cover {len(cases)} selected cases ({bundle.attributions['selection']}), not a random "
        "sample; averages over them lean toward cases where the decision moved most."
    ]
    threshold = _threshold(bundle, COMPLETENESS_CONTROL)
    gaps = []
    for case in cases:
        if case["convergence_delta"] is not None and case["reference_score"] is not None:
            gaps.append(case["convergence_delta"] / max(abs(case["score"] - case["reference_score"]), 1e-6))
    if threshold is not None and gaps:
        over = sum(g > threshold for g in gaps)
        if over:
            params = bundle.attributions["params"]
            steps = params.get("max_steps") or params.get("n_steps")
            items.append(
                f"For {over} of {len(gaps)} attributed cases the attribution scores miss the score difference they "
                f"explain by more than {fmt_pct(threshold, 0)} (completeness gap); those attributions are "
                f"approximate{f', and more integration steps than {steps} would reduce the gap' if steps else ''}."
            )
    return items


FIXED_LIMITATIONS = (
    "The test changes one protected characteristic at a time in short synthetic applications and measures "
    "disparate treatment by the model. It does not measure disparate impact on a real applicant population, "
    "interactions between characteristics other than those a single value carries, or the model's behaviour "
    "inside a lender's full decision process.",
    "Names are a noisy proxy for race/ethnicity and sex; a shift for a group of names can reflect reactions to "
    "particular names as much as to the group.",
    "Attributions show how sensitive the decision score is to each word relative to a reference input, not why "
    "the model decided as it did; they are not a causal explanation and not by themselves adverse-action reasons.",
    "The decision score is read from the answer-word probabilities at one position with a fixed prompt, answer "
    "prefix and threshold of zero; other prompts, wordings or cut-offs can give different results.",
    "The regulatory crosswalk maps controls to clauses as evidence for a compliance review; it is not legal "
    "advice and does not establish compliance with any regulation.",
)


def _loading(loading: dict[str, Any]) -> str:
    """Whether the two ways a model can run code of its own were allowed, and whether the hub was reachable."""
    pickle = "ALLOWED by --allow-pickle" if loading["allow_pickle"] else "refused"
    remote = "ALLOWED by --trust-remote-code" if loading["trust_remote_code"] else "refused"
    network = "offline (HF_HUB_OFFLINE=1)" if loading["hub_offline"] else "hub reachable"
    return f"pickle weight files {pickle}; code shipped with the model {remote}; {network}"


def _reproducibility(bundle: EvidenceBundle) -> dict[str, Any]:
    """Command, timings, environment, package versions and input hashes."""
    run, environment = bundle.run, bundle.run["environment"]
    packages = list(environment.get("packages", {}).items())
    half = (len(packages) + 1) // 2
    return {
        "command": shlex.join(environment.get("command_line") or []) or NA,
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "durations": [(stage.replace("_", " "), seconds) for stage, seconds in run.get("durations_s", {}).items()],
        "facts": [
            ("Seed", environment.get("seed")),
            ("Device", environment.get("device")),
            ("Dtype", environment.get("dtype")),
            ("Python", environment.get("python")),
            ("Platform", environment.get("platform")),
            ("Machine", f"{environment.get('machine') or NA}, {environment.get('processor_count') or NA} CPUs, "
             f"{environment.get('torch_threads') or NA} torch threads"),
            ("Scenario limit", run.get("limit") if run.get("limit") is not None else "none (all scenarios)"),
            *([("Results cache", _cache_use(run["result_cache"]))] if run.get("result_cache") else []),
            *([("Memory", _placement(run["placement"]))] if run.get("placement") else []),
            *([("Loading safety", _loading(run["loading"]))] if run.get("loading") else []),
        ],
        "package_rows": [
            (packages[i], packages[i + half] if i + half < len(packages) else None) for i in range(half)
        ],
        "hashes": [
            ("Suite", f"{bundle.suite['id']} v{bundle.suite['version']} ({bundle.suite.get('source') or NA})",
             bundle.suite["sha256"]),
            ("Policy", f"{bundle.policy['id']} ({bundle.policy.get('source') or NA})", bundle.policy["sha256"]),
            ("Model fingerprint", bundle.model["spec"], bundle.model["id"]),
        ],
        "bundle_file": BUNDLE_FILE,
        "manifest_file": MANIFEST_FILE,
        "schema_version": bundle.schema_version,
    }


def _placement(placement: dict[str, Any]) -> str:
    """Where the model ran and whether any batch had to be split after running out of memory."""
    where = placement["device"] + (f", device map {placement['device_map']}" if placement.get("device_map") else "")
    splits = placement.get("out_of_memory_splits") or []
    if not splits:
        return f"{where}; no batch ran out of memory"
    return f"{where}; {len(splits)} batch(es) ran out of memory and were split and retried (first: {splits[0]})"


def _cache_use(cache: dict[str, Any]) -> str:
    """One line on the per-case results cache: off, unavailable, or what it reused per stage."""
    if cache.get("unavailable"):
        return f"not used: {cache['unavailable']}"
    if not cache.get("enabled"):
        return "off (--no-cache)"
    stages = cache.get("stages", {})
    hits = sum(counts["hits"] for counts in stages.values())
    total = hits + sum(counts["misses"] for counts in stages.values())
    per_stage = ", ".join(f"{stage.replace('_', ' ')} {c['hits']}/{c['hits'] + c['misses']}"
                          for stage, c in stages.items())
    return f"{hits} of {total} per-case results reused ({per_stage})" if total else "nothing to reuse"


def build_context(bundle: EvidenceBundle) -> dict[str, Any]:
    """Everything the report templates need, computed from ``bundle`` alone."""
    rows = _control_rows(bundle)
    return {
        "meta": {
            "model": bundle.model["spec"],
            "suite": bundle.suite["title"],
            "suite_id": bundle.suite["id"],
            "tool": f"{bundle.tool['name']} {bundle.tool['version']}",
            "date": fmt_date(bundle.run["finished_at"]),
        },
        "cover": _cover(bundle),
        "summary": _summary(bundle, rows),
        "identity": _identity(bundle),
        "testset": _testset(bundle),
        "method": _method(bundle, rows),
        "fairness": _fairness(bundle),
        "attributions": _attributions(bundle),
        "trust": trust_context(bundle),
        "reasons": reasons_context(bundle),
        "inside": internals_context(bundle),
        "crosswalk": crosswalk_context(bundle),
        "bias_audit": bias_audit_context(bundle),
        "discrimination": discrimination_context(bundle),
        "formats": formats_context(bundle),
        "limitations": _limitations(bundle),
        "repro": _reproducibility(bundle),
        "signoff": signoff_context(bundle),
    }
