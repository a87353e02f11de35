"""What the report templates show, computed from the evidence bundle alone.

``build_context(bundle)`` turns the bundle into template-ready pieces, one
per report section: formatted tables, plain-language readings of the
numbers, and SVG charts. Nothing here reads the clock, the model or the
disk, so the same bundle always renders the same report. The first page and
summary are ``audit.report.sections.summary``'s, the limitations
``audit.report.sections.limitations``'s; ``FILTERS`` (``audit.report.numbers``) are
the jinja filters the templates use to format numbers, rates and intervals.

Text from the suite or the model is returned as plain ``str`` and escaped by
jinja's autoescape; the only markup built here (charts, shaded attribution
text) is assembled with ``markupsafe`` so every piece of input text in it is
escaped.
"""

from __future__ import annotations

import math
import shlex
from collections import defaultdict
from typing import Any

from markupsafe import Markup

from audit.report import charts
from audit.evidence.bundle import BUNDLE_FILE, EvidenceBundle
from audit.evidence.manifest import MANIFEST_FILE
from audit.wording import INTERSECTION
from audit.report.sections.bias_audit import bias_audit_context
from audit.report.sections.crosswalk import crosswalk_context
from audit.report.sections.discrimination import discrimination_context
from audit.report.sections.formats import formats_context
from audit.report.sections.internals import internals_context
from audit.report.sections.limitations import SMALL_MODEL_PARAMETERS, limitations
from audit.report.numbers import (
    NA, NBSP, fmt_date, fmt_int, fmt_pct, fmt_pct_ci, fmt_ratio, fmt_ratio_ci, fmt_signed,
)
from audit.report.phrases import (
    control_rows, measurement_status, selection_phrase, shift_effect, shift_sentence, suite_attribute, threshold_of,
)
from audit.report.sections.reasons import reasons_context
from audit.report.sections.signoff import signoff_context
from audit.report.sections.summary import cover_context, summary_context
from audit.report.sections.trust import trust_context
from audit.wording import noun, plural

SHIFT_CONTROL = "counterfactual-shift"
IMPACT_CONTROL = "impact-ratio"
FLIP_CONTROL = "decision-flip-rate"
PROMPT_FORMS = {
    "chat template": "the model's chat template (a user message: the case, then the question)",
    "plain prompt": "plain text (the model has no chat template): the case, then the question",
    "suite prompt template": "the suite's own prompt template (an imported benchmark's, scored as it scores it)",
}
ATTRIBUTION_PARAM_LABELS = {
    "n_steps": "Integration steps",
    "method": "Integration rule",
    "baseline": "Reference input (x′)",
    "tolerance": "Adaptive steps: completeness tolerance",
    "max_steps": "Adaptive steps: step budget",
}


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
            *_adapter_facts(model),
            *([("Expert routing", model["routing"]["note"])] if model.get("routing") else []),
        ],
        "hashes": [
            *(("weights", name, digest) for name, digest in model.get("weights", {}).items()),
            *(("adapter weights", name, digest)
              for name, digest in (model.get("adapter") or {}).get("weights", {}).items()),
            *([("adapter config", "adapter_config.json", model["adapter"]["config_sha256"])]
              if model.get("adapter") else []),
            *(("tokenizer", name, digest) for name, digest in model.get("tokenizer", {}).items()),
            *([("source GGUF", gguf["file"], gguf["sha256"])] if gguf else []),
            ("config", "model configuration", model.get("config_sha256") or NA),
            ("chat template", "chat template text", model.get("chat_template_sha256") or NA),
        ],
        "has_gguf": bool(gguf),
    }


def _adapter_facts(model: dict[str, Any]) -> list[tuple[str, str]]:
    """A fine-tune's adapter: its base, what it changes and that it was merged into the weights audited."""
    adapter = model.get("adapter")
    if not adapter:
        return []
    targets = adapter.get("target_modules")
    return [
        ("Base model", f"{adapter.get('base_spec')} (fingerprint {str(model.get('base_id'))[:16]}...)"),
        ("Adapter", f"{adapter.get('peft_type') or 'PEFT'} rank {adapter.get('rank')}, alpha {adapter.get('alpha')}, "
                    f"on {', '.join(targets) if isinstance(targets, list) else targets}; merged into the base "
                    "weights before the audit"),
    ]


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
        # None for bundles written before the prompt form was recorded: their report renders as it did then
        "prompt_form": PROMPT_FORMS.get(decision["prompt_form"], NA) + (
            f"; the template's date fixed at {decision['prompt_date']}" if decision.get("prompt_date") else "")
        if decision.get("prompt_form") else None,
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
            "selection": selection_phrase(attributions),
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
        readings.append(f"Largest shift: {shift_sentence(bundle, analysis, top)}")
    reference = next((g for g in analysis["groups"] if g["is_reference"]), None)
    if reference and reference["mean_shift"] is not None:
        readings.append(
            f"The other values of the reference group {reference['group']} "
            f"{shift_effect(reference['mean_shift'], reference['shift_ci'])}. They share the baseline's "
            f"{analysis['property']}, so this change is not due to {analysis['property']}: compare the other groups "
            "with it rather than with zero."
        )
    flipped = sum(round((g["flip_rate"] or 0) * g["n_counterfactual"]) for g in others)
    cases = sum(g["n_counterfactual"] for g in others)
    if cases and flipped == 0:
        readings.append(f"No approve/decline decision changed in the {plural(cases, 'counterfactual case')} of other "
                        "groups.")
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
    threshold = threshold_of(bundle, SHIFT_CONTROL)
    statuses = measurement_status(bundle)
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
        attribute = suite_attribute(bundle, analysis["attribute"])
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
        "selection": selection_phrase(attributions),
        "n_cases": len(attributions["cases"]),
        "chart": charts.slot_share_chart(shares, salt="slot-shares") if shares else None,
        "cases": [_attributed_case(bundle, a, titles) for a in attributions["cases"]],
    }



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
            ("Tool", tool_identity(bundle.tool)),
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


def tool_identity(tool: dict[str, Any]) -> str:
    """The tool's name, version and exact source revision (``audit.evidence.revision``; bundles before 1.6 have none)."""
    revision = tool.get("revision")
    if not revision:
        return f"{tool['name']} {tool['version']} (source revision not recorded: bundle before schema 1.6)"
    if revision["kind"] == "git":
        dirty = ", with uncommitted changes to the tool's files" if revision.get("dirty") else ""
        return f"{tool['name']} {tool['version']}, git commit {revision['id']}{dirty}"
    return f"{tool['name']} {tool['version']}, installed files sha256 {revision['id']}"


def _placement(placement: dict[str, Any]) -> str:
    """Where the model ran and whether any batch had to be split after running out of memory."""
    where = placement["device"] + (f", device map {placement['device_map']}" if placement.get("device_map") else "")
    splits = placement.get("out_of_memory_splits") or []
    if not splits:
        return f"{where}; no batch ran out of memory"
    return (f"{where}; {plural(len(splits), 'batch')} ran out of memory and {noun(len(splits), 'was')} split and "
            f"retried (first: {splits[0]})")


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
    rows = control_rows(bundle)
    return {
        "meta": {
            "model": bundle.model["spec"],
            "suite": bundle.suite["title"],
            "suite_id": bundle.suite["id"],
            "tool": f"{bundle.tool['name']} {bundle.tool['version']}",
            "date": fmt_date(bundle.run["finished_at"]),
        },
        "cover": cover_context(bundle),
        "summary": summary_context(bundle, rows),
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
        "limitations": limitations(bundle),
        "repro": _reproducibility(bundle),
        "signoff": signoff_context(bundle),
    }
