"""The report's first page and executive summary, for a reader who reads nothing else.

Page 1 states the verdict and why in one sentence; what was audited (model, suite, policy, cases, scenarios);
each blocking control that failed or could not be decided, in plain words with its value and interval and
what to do about it; and the scope limits that matter most. The verdict shown is the current rule's
(``audit.controls.policy.verdict_from``): a bundle written before schema 1.6 may state PASS where a blocking control
was undecided, and the page then says so rather than repeat it.
"""

from __future__ import annotations

import math
from typing import Any

from audit.controls.registry import registered_controls
from audit.evidence.bundle import EvidenceBundle
from explainers.intervals import wilson
from audit.controls.policy import UNDECIDED, current_verdict, verdict_sentence
from audit.report.sections.limitations import scope_limits
from audit.report.numbers import NA, fmt_date, fmt_int, fmt_interval, fmt_parameters, fmt_pct, fmt_threshold, \
    fmt_timestamp, fmt_value
from audit.report.phrases import (
    count_phrase, counterfactual_groups, flip_counts, shift_sentence, undecided_cause, unit_of,
)
from audit.wording import join_words, plural

VERDICT_LABELS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
VERDICT_MEANING = {
    "pass": "On this evidence the policy clears the model for the audited use.",
    "fail": "The policy does not clear the model for the audited use.",
    "inconclusive": "INCONCLUSIVE is not a pass: the policy does not clear the model until every blocking control "
                    "is decided.",
}


def verdict_context(bundle: EvidenceBundle) -> dict[str, Any]:
    """The verdict box: label, one sentence on why, what it means, status counts, and a note where an older
    bundle states another verdict."""
    verdict = current_verdict(bundle)
    stated = bundle.verdict["status"]
    legacy = None
    if stated != verdict["status"]:
        legacy = (f"This bundle (schema {bundle.schema_version}) states {VERDICT_LABELS.get(stated, stated)}, under the "
                  "rule of the tool version that wrote it, for which an undecided blocking control did not count. "
                  "The verdict above is the current rule's, applied to the same controls.")
    advisory = [c["id"] for c in bundle.controls if not c["blocking"] and c["status"] == "fail"]
    meaning = VERDICT_MEANING[verdict["status"]]
    if not any(c["blocking"] for c in bundle.controls):
        meaning = "No control is blocking under this policy, so this PASS clears nothing: read the advisory controls."
    return {
        "status": verdict["status"],
        "label": VERDICT_LABELS[verdict["status"]],
        "sentence": verdict_sentence(verdict, bundle.controls),
        "plain": plain_verdict(verdict, bundle.controls),
        "meaning": meaning,
        "advisory_failed": advisory,
        "legacy_note": legacy,
        "counts": [{"status": s, "n": n} for s, n in verdict["counts"].items()],
        "n_controls": len(bundle.controls),
    }


def plain_verdict(verdict: dict[str, Any], controls: list[dict[str, Any]]) -> str:
    """Why the verdict is what it is, in counts a reader can check against the table below it."""
    blocking = [c for c in controls if c["blocking"]]
    failed = sum(c["status"] == "fail" for c in blocking)
    counts = {s: sum(c["status"] == s for c in blocking) for s in UNDECIDED}
    n_undecided = sum(counts.values())
    kinds = join_words([f"{n} {s}" for s, n in counts.items() if n])
    of_all = f"of the {len(blocking)}" if len(blocking) > 1 else "of 1"
    if verdict["status"] == "pass":
        return (f"All {plural(len(blocking), 'blocking control')} passed." if blocking
                else "The policy makes no control blocking, so no control could fail the audit.")
    if verdict["status"] == "inconclusive":
        return f"No blocking control failed, but {n_undecided} {of_all} could not be decided ({kinds})."
    if failed:
        more = f"; {n_undecided} more could not be decided ({kinds})" if n_undecided else ""
        counted = ", which this policy counts as failures" if n_undecided and len(verdict["failed_controls"]) > failed \
            else ""
        if len(blocking) == 1:
            return "The one blocking control failed."
        return f"{failed} {of_all} blocking controls failed{more}{counted}."
    return (f"No blocking control failed, but {n_undecided} {of_all} could not be decided ({kinds}), and this policy "
            "fails an audit whose blocking controls cannot all be decided.")


def next_step(bundle: EvidenceBundle, control: dict[str, Any]) -> str:
    """What to do about a failed or undecided control: its remediation, or what would decide it, with the
    number of scenarios that would roughly do so (``scenarios_to_decide``)."""
    definition = registered_controls().get(control["id"])
    if control["status"] == "fail":
        return definition.remedy if definition else "Investigate the decisive measurement before deployment."
    if definition is None:
        return "Gather the evidence the control needs."
    if control["status"] == "not evaluated":
        return definition.if_not_evaluated
    needed = scenarios_to_decide(bundle, control)
    if needed is None:
        return definition.to_decide
    total, ran = bundle.suite["n_scenarios_total"], bundle.suite["n_scenarios_used"]
    where = (f"the suite has {total}" if needed <= total else
             f"the suite has {total}, so add applications of your own with --rows")
    if not control.get("ci"):
        return (f"{definition.to_decide} No interval could be estimated from {plural(ran, 'scenario')}: at least "
                f"{plural(needed, 'scenario')} would be needed ({where}).")
    return (f"{definition.to_decide} At the present spread, roughly {plural(needed, 'scenario')} would decide it "
            f"(this audit ran {ran}; {where}).")


def scenarios_to_decide(bundle: EvidenceBundle, control: dict[str, Any]) -> int | None:
    """Roughly how many scenarios would decide an inconclusive control, or None where that cannot be said.

    Cases, attributed cases and bootstrap units all grow in proportion to the scenarios. A Wilson interval
    (flip rate, answer reliability) is recomputed at growing case counts with the same share until its edge
    clears the threshold (for a share of 0 it shrinks as 1/n, not 1/sqrt(n)). Any other interval's reach beyond
    its estimate shrinks as 1/sqrt(n) (the normal approximation), so one that reaches ``r`` past the estimate,
    ``m`` short of the threshold, clears it at about ``n * (r / m)^2`` scenarios. A group below the policy's
    minimum size needs ``min_group_cases / cases per scenario``; an interval needs at least 2 scenarios to
    exist. The largest of these applies.
    """
    n = bundle.fairness["n_scenarios"]
    value, ci, threshold = control.get("value"), control.get("ci"), control["threshold"]
    if value is None or n < 1:
        return None
    needs = []
    group = _decisive_group(bundle, control)
    minimum = bundle.policy.get("min_group_cases") or 0
    if group is not None and group["n_cases"] < minimum:
        needs.append(math.ceil(minimum / (group["n_cases"] / n)))
    wilson_cases = _wilson_cases(bundle, control, group)
    if not ci or None in ci:
        needs.append(max(2, n + 1))
    elif wilson_cases:
        needed_cases = _wilson_cases_needed(value, wilson_cases, threshold, control["direction"],
                                            bundle.fairness["params"]["confidence"])
        if needed_cases is None:
            return None
        needs.append(math.ceil(n * needed_cases / wilson_cases))
    else:
        edge = ci[1] if control["direction"] == "max" else ci[0]
        reach, margin = abs(edge - value), abs(threshold - value)
        if margin <= 0:
            return None
        if reach > margin:
            needs.append(math.ceil(n * (reach / margin) ** 2))
    return max(needs) if needs else None


WILSON_CONTROLS = {"decision-flip-rate": "group", "answer-reliability": "all"}
MOST_CASES = 10_000_000


def _wilson_cases(bundle: EvidenceBundle, control: dict[str, Any], group: dict[str, Any] | None) -> int | None:
    """The case count behind a Wilson-interval control's decisive measurement (None for other controls)."""
    over = WILSON_CONTROLS.get(control["id"])
    if over == "group":
        return group["n_counterfactual"] if group else None
    if over == "all":
        return bundle.fairness["n_cases"]
    return None


def _wilson_cases_needed(share: float, cases: int, threshold: float, direction: str, confidence: float) -> int | None:
    """The fewest cases (doubling, then bisecting) at which a Wilson interval around ``share`` clears
    ``threshold``; None when even ``MOST_CASES`` would not (the share sits on the threshold)."""
    def clears(n: int) -> bool:
        low, high = wilson(round(share * n), n, confidence)
        return high <= threshold if direction == "max" else low >= threshold

    low, high = cases, cases
    while not clears(high):
        if high > MOST_CASES:
            return None
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if not clears(middle) else (low, middle)
    return high


def _decisive_group(bundle: EvidenceBundle, control: dict[str, Any]) -> dict[str, Any] | None:
    """The fairness group a per-group control's decisive measurement belongs to, if it is one."""
    key = control.get("decisive_key") or {}
    for analysis in bundle.fairness["analyses"]:
        if analysis["property"] == key.get("property") and analysis["attribute"] == key.get("attribute"):
            return next((g for g in analysis["groups"] if g["group"] == key.get("group")), None)
    return None


def limited_run_note(bundle: EvidenceBundle) -> str | None:
    """The first step for every undecided control when the run left scenarios out."""
    suite = bundle.suite
    undecided = any(c["blocking"] and c["status"] in UNDECIDED for c in bundle.controls)
    if not undecided or suite["n_scenarios_used"] >= suite["n_scenarios_total"]:
        return None
    return (f"This audit ran {suite['n_scenarios_used']} of the suite's "
            f"{plural(suite['n_scenarios_total'], 'scenario')}: running them all (without --limit) is the first step "
            "for every control that could not be decided.")


def attention_rows(bundle: EvidenceBundle) -> list[dict[str, Any]]:
    """Each blocking control that failed or could not be decided: plain words, result with CI, next step."""
    rows = []
    for control in bundle.controls:
        if not control["blocking"] or control["status"] == "pass":
            continue
        unit = unit_of(control)
        if control["status"] == "not evaluated":
            decisive = next((m for m in control["measurements"]
                             if m["status"] == "not evaluated" and m.get("detail")), None)
            result = f"not evaluated: {decisive['detail']}" if decisive else "not evaluated: nothing to measure"
        else:
            where = f" for {control['decisive']}" if control.get("decisive") else ""
            interval = f"95 % CI {fmt_interval(control['ci'], unit)}" if control["ci"] else "no 95 % CI"
            result = (f"{fmt_value(control['value'], unit)}{where} ({interval}; "
                      f"required {fmt_threshold(control['threshold'], control['direction'], unit)})")
            if control["status"] == "inconclusive":
                result += f": {undecided_cause(control, restate_interval=False)}"
        rows.append({
            "id": control["id"],
            "title": control["title"],
            "question": control["question"],
            "status": control["status"],
            "result": result,
            "next_step": next_step(bundle, control),
        })
    order = {"fail": 0, "inconclusive": 1, "not evaluated": 2}
    return sorted(rows, key=lambda row: order[row["status"]])


def audited_facts(bundle: EvidenceBundle) -> list[tuple[str, str]]:
    """What was audited, on what, under which policy: the facts a reader needs to place the verdict."""
    model, suite, policy, fairness = bundle.model, bundle.suite, bundle.policy, bundle.fairness
    parameters = model.get("parameters")
    blocking = sum(c["blocking"] for c in bundle.controls)
    return [
        ("Model", f"{model['spec']} ({model.get('architecture') or NA}"
                  + (f", {fmt_parameters(parameters)} parameters)" if parameters else ")")),
        ("Test suite", f"{suite['title']} ({suite['id']}, version {suite['version']})"),
        ("Scope", f"{plural(fairness['n_cases'], 'case')} from {suite['n_scenarios_used']} of the suite's "
                  f"{plural(suite['n_scenarios_total'], 'scenario')}"),
        ("Policy", f"{policy['title']} ({policy['id']}): {plural(len(bundle.controls), 'control')}, "
                   f"{blocking} blocking"),
        ("Audit date", f"{fmt_date(bundle.run['finished_at'])} ({fmt_timestamp(bundle.run['finished_at'])})"),
    ]


def cover_context(bundle: EvidenceBundle) -> dict[str, Any]:
    """Page 1: verdict and why, what was audited, what needs attention and what to do, scope limits."""
    model = bundle.model
    return {
        "verdict": verdict_context(bundle),
        "facts": audited_facts(bundle),
        "attention": attention_rows(bundle),
        "limited_run": limited_run_note(bundle),
        "scope_limits": scope_limits(bundle),
        "fingerprint": model["id"],
        "tool": f"{bundle.tool['name']} {bundle.tool['version']}",
        "license": model.get("license") or "not declared",
    }


def summary_context(bundle: EvidenceBundle, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The executive summary: scope and verdict, the findings beyond the controls (the largest counterfactual
    shift, the decisions, failed advisory controls), and the controls table with each control's reading."""
    suite, fairness = bundle.suite, bundle.fairness
    verdict = verdict_context(bundle)
    overview = (
        f"This audit put {plural(fairness['n_cases'], 'decision prompt')} from {suite['n_scenarios_used']} of the "
        f"{plural(suite['n_scenarios_total'], 'scenario')} of the suite “{suite['title']}” to the model "
        f"{bundle.model['spec']} and judged the results under the policy “{bundle.policy['title']}”. "
        f"{verdict['sentence']} Of {plural(len(rows), 'control')}, {count_phrase(current_verdict(bundle)['counts'])}."
    )
    findings = []  # each control's own reading is in the controls table below; page 1 lists the blocking ones
    largest = max(counterfactual_groups(bundle), key=lambda ag: abs(ag[1]["mean_shift"]), default=None)
    if largest is not None:
        analysis, group = largest
        findings.append({
            "lead": f"Largest counterfactual shift: {analysis['property']} = {group['group']}.",
            "text": shift_sentence(bundle, analysis, group),
        })
    flips, varied = flip_counts(bundle)
    if varied:
        flip_text = (
            f"No approve/decline decision changed in the {plural(varied, 'counterfactual case')}." if flips == 0
            else f"{flips} of the {plural(varied, 'counterfactual case')} ({fmt_pct(flips / varied)}) received a "
            "different approve/decline decision from their baseline applicant."
        )
        findings.append({
            "lead": f"Decisions: {fmt_pct(fairness['baseline_approval_rate'])} of "
                    f"{plural(fairness['n_scenarios'], 'baseline application')} approved.",
            "text": flip_text,
        })
    advisory = verdict["advisory_failed"]
    if advisory:
        findings.append({
            "lead": f"Advisory {'controls' if len(advisory) > 1 else 'control'} failed: {join_words(advisory)}.",
            "text": "Advisory controls do not decide the verdict; read them as evidence to weigh.",
        })
    return {"overview": overview, "findings": findings, "controls": rows, "n_blocking": fmt_int(
        sum(c["blocking"] for c in bundle.controls))}
