"""Principal reasons for adverse action (ECOA / Regulation B, 12 CFR 1002.9(b)(2)).

A creditor that takes adverse action owes the applicant a statement of
specific reasons that indicates the principal reason(s) for the action
(12 CFR 1002.9(b)(2)). The official interpretation (Supplement I to Part
1002) adds that disclosing more than four reasons is not likely to help the
applicant (Comment 9(b)(2)-1) and that the reasons must relate to the factors
actually scored or reviewed (Comments 9(b)(2)-4 and -5). For a model audit
that means: for every case the model decides unfavourably, at most four
reasons, each a legitimate factor that actually pushed this decision toward
the decline, and evidence that a different method or seed would not name a
different reason.

The rule, for every case with ``record["decision"] == "unfavourable"``:

- Principal reasons: the suite's legitimate factors (``suite.factors``) that
  are slots of the case and whose slot score (summed signed word scores)
  under the reason method is negative, i.e. pushed toward the unfavourable
  answer; most negative first, at most ``MAX_REASONS``. A factor that pushed
  toward approval is never a reason for a decline, and a protected attribute
  or any other slot is never offered as a reason.
- Reason method and ensemble: every explanatory, signed method of the run;
  the reason method is the first of them by ``audit.stages.attribution.primary_method``.
  A stochastic method (sampled coalitions or references) runs twice, with the
  run's seed and with seed + 1. Unsigned maps (Saliency) and descriptive ones (attention rollout)
  cannot say which way a slot pushed and are left out. An attribution the
  attribution stage already computed for a declined case with the same
  parameters is reused.
- Stability: the share of the ensemble's other runs whose top reason (same
  rule) is the reason method's top reason; undefined with a single run.
  Overlap: the mean Jaccard overlap of each other run's reason set with the
  reason method's.
- A case is flagged when (a) a protected slot ranks within the top
  ``MAX_REASONS`` of all slots with a negative score and carries at least the
  policy's ``protected_floor`` (default 5 %) of the case's absolute slot
  scores ("protected attribute among top reasons"), (b) its stability is below the policy's stability
  floor, or (c) no legitimate factor pushed toward the decline, so no reason
  can be given. In (a) a protected slot is scored by what its *value* does,
  not by its attribution: attributions are measured against a reference that
  blanks the slot, so the mere presence of a name or an age carries some
  score whatever it says (on the example MiniLM classifier a name whose swap
  moved the decision by 0.0003 log-odds got 5 % of a decline's IG
  attribution, ranked second). A protected slot's score is therefore the
  case's counterfactual shift, its decision score minus its scenario's
  baseline applicant's, for the attribute the case varies, and 0 at the
  baseline's value (the audit's reference); a record without a shift keeps
  the attribution. Both are log-odds, so they rank together. The floor keeps
  out pushes too small to be a principal reason.
- Cost: every declined case pays one attribution per ensemble run (reused
  ones excepted), recorded per case and in total as seconds and forward
  passes. A model that approves every case pays nothing.
"""

from __future__ import annotations

import time
from typing import Any

import explainers
from audit.stages.attribution import configured, primary_method
from audit.progress import Progress
from audit.evidence.results_cache import NO_CACHE, ResultsCache

MAX_REASONS = 4
CITATION = "12 CFR 1002.9(b)(2); Supplement I to Part 1002, Comments 9(b)(2)-1, -4 and -5"


def principal_reasons(slot_scores: dict[str, float], factors: list[str]) -> list[tuple[str, float]]:
    """(factor, score) of the factors with a negative slot score, most negative first, at most ``MAX_REASONS``."""
    negative = [(f, slot_scores[f]) for f in factors if f in slot_scores and slot_scores[f] < 0]
    return sorted(negative, key=lambda item: item[1])[:MAX_REASONS]


def protected_push(record: dict[str, Any], slot_scores: dict[str, float]) -> dict[str, float]:
    """The slot scores with each protected slot scored by its value's counterfactual shift (module docstring)."""
    if record.get("shift") is None:
        return dict(slot_scores)
    pushed = {slot: score for slot, score in slot_scores.items() if slot not in record["protected_slots"]}
    for slot in record["protected_slots"]:
        if slot in slot_scores:
            pushed[slot] = record["shift"] if slot == record["attribute"] else 0.0
    return pushed


def protected_among_top(slot_scores: dict[str, float], protected: list[str],
                        floor: float = 0.0) -> list[tuple[str, int, float]]:
    """(slot, rank, share) of the protected slots within the top ``MAX_REASONS`` of all slots with a negative
    score whose share |score| / sum |slot scores| is at least ``floor``."""
    total = sum(abs(score) for score in slot_scores.values())
    ranked = sorted((item for item in slot_scores.items() if item[1] < 0), key=lambda item: item[1])
    found = []
    for rank, (slot, score) in enumerate(ranked[:MAX_REASONS], 1):
        share = abs(score) / total if total else 0.0
        if slot in protected and share >= floor:
            found.append((slot, rank, share))
    return found


def stability(top: str | None, other_tops: list[str | None]) -> float | None:
    """Share of the other runs whose top reason is ``top``; None with no other run."""
    if not other_tops:
        return None
    return sum(t == top for t in other_tops) / len(other_tops)


def overlap(reasons: set[str], other_reasons: list[set[str]]) -> float | None:
    """Mean Jaccard overlap of ``reasons`` with each other run's reasons (two empty sets overlap fully)."""
    if not other_reasons:
        return None
    return sum(len(reasons & o) / len(reasons | o) if reasons | o else 1.0 for o in other_reasons) / len(other_reasons)


def slot_text(record: dict[str, Any], slot: str) -> str:
    """The text a slot holds in this case (its distinct fills, joined)."""
    return " / ".join(dict.fromkeys(record["text"][start:end] for start, end in record["slots"][slot]))


def judge_case(
    record: dict[str, Any], runs: list[dict[str, Any]], factors: list[str], stability_floor: float,
    protected_floor: float = 0.0,
) -> dict[str, Any]:
    """Reasons, stability and flags of one declined case; ``runs[0]`` is the reason method's run.

    Each run carries ``method``, ``seed``, ``slot_scores``, ``seconds``, ``forward_passes`` and ``reused``.
    With no run (no signed explanatory method among the run's methods) no reason can be derived.
    """
    eligible = [f for f in factors if f in record["slots"]]
    per_run = [principal_reasons(run["slot_scores"], eligible) for run in runs]
    reasons = per_run[0] if runs else []
    tops = [found[0][0] if found else None for found in per_run]
    top_stability = stability(tops[0], tops[1:]) if runs else None
    mean_overlap = overlap({f for f, _ in reasons}, [{f for f, _ in found} for found in per_run[1:]])
    flags = []
    protected = (protected_among_top(protected_push(record, runs[0]["slot_scores"]), record["protected_slots"],
                                     protected_floor) if runs else [])
    if protected:
        scale = "counterfactual shift" if record.get("shift") is not None else "attribution"
        named = ", ".join(f"{slot} (rank {rank}, {share:.0%} by its {scale})" for slot, rank, share in protected)
        flags.append({"kind": "protected", "detail": f"protected attribute among top reasons: {named}"})
    if top_stability is not None and top_stability < stability_floor:
        agree = sum(t == tops[0] for t in tops[1:])
        flags.append({
            "kind": "unstable",
            "detail": f"unstable reasons: the top reason ({tops[0] or 'none'}) is also the top reason in {agree} of "
            f"{len(tops) - 1} other runs ({top_stability:.0%}), below the stability floor of {stability_floor:.0%}",
        })
    if not runs:
        flags.append({"kind": "no-method", "detail": "no signed explanatory method among the run's methods, so no "
                      "reason can be derived"})
    elif not reasons:
        flags.append({"kind": "no-factor", "detail": "no legitimate factor pushed toward the decline"})
    computed = [run for run in runs if not run["reused"]]
    return {
        "case_id": record["case_id"],
        "scenario_id": record["scenario_id"],
        "attribute": record["attribute"],
        "value": record["value"],
        "score": record["score"],
        "reasons": [{"factor": f, "text": slot_text(record, f), "score": s} for f, s in reasons],
        "runs": [
            {"method": run["method"], "seed": run["seed"], "top": top, "reasons": [f for f, _ in found],
             "reused": run["reused"]}
            for run, top, found in zip(runs, tops, per_run)
        ],
        "stability": top_stability,
        "stability_note": None if top_stability is not None
        else f"undefined: the ensemble has {'a single run' if runs else 'no run'}",
        "overlap": mean_overlap,
        "flags": flags,
        "flagged": bool(flags),
        "seconds": sum(run["seconds"] for run in computed),
        "forward_passes": sum(run["forward_passes"] for run in computed),
        "n_reused": len(runs) - len(computed),
    }


def _ensemble(methods: list[str], ig_options: dict[str, Any], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The runs of the reason ensemble (reason method first) and the methods left out, with why."""
    signed = [n for n in methods if not explainers.REGISTRY[n].descriptive and explainers.REGISTRY[n].signed]
    left_out = [
        {
            "method": n,
            "title": explainers.REGISTRY[n].title,
            "why": "descriptive: it shows where information can flow, not why the model decided"
            if explainers.REGISTRY[n].descriptive
            else "unsigned: its scores are magnitudes, so it cannot say whether a factor pushed toward approval or "
            "toward the decline",
        }
        for n in methods
        if n not in signed
    ]
    first = primary_method(signed) if signed else None
    runs = []
    for name in sorted(signed, key=lambda n: n != first):
        stochastic = explainers.REGISTRY[name].stochastic
        for run_seed in (seed, seed + 1) if stochastic else (None,):
            explainer = configured(name, ig_options, seed if run_seed is None else run_seed)
            runs.append({"method": name, "title": explainer.title, "seed": run_seed, "explainer": explainer})
    return runs, left_out


def _computed(attributions: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(method, parameters, case attribution) of every attribution the attribution stage recorded."""
    found = [(attributions["method"], case["params"], case) for case in attributions["cases"]]
    for method in (attributions.get("comparison") or {}).get("methods", []):
        found += [(method["name"], method["params"], case) for case in method["cases"]]
    return found


def _reusable(computed, run: dict[str, Any], case_id: str) -> dict[str, Any] | None:
    """An attribution of ``case_id`` by the run's method with every one of the run's parameters, if any."""
    params = run["explainer"].params
    return next(
        (
            case for method, recorded, case in computed
            if method == run["method"] and case["case_id"] == case_id
            and all(recorded.get(k) == v for k, v in params.items())
        ),
        None,
    )


def adverse_action_reasons(
    adapter, encoded: dict, records: list[dict[str, Any]], methods: list[str], factors: list[str],
    attributions: dict[str, Any], *, ig_options: dict[str, Any], seed: int, stability_floor: float,
    protected_floor: float = 0.0, quiet: bool = False, cache: ResultsCache = NO_CACHE,
) -> dict[str, Any]:
    """Principal reasons of every unfavourable decision, with their stability, flags and cost (see the module)."""
    runs, left_out = _ensemble(methods, ig_options, seed)
    declined = [r for r in records if r["decision"] == "unfavourable"]
    computed = _computed(attributions)
    started = time.monotonic()
    progress = Progress("reasons", len(declined) * len(runs), unit="method x case runs", quiet=quiet)
    cases = []
    for record in declined:
        results = []
        for run in runs:
            attribution = _reusable(computed, run, record["case_id"])
            reused = attribution is not None
            if not reused:
                attribution = cache.explain(run["explainer"], adapter, encoded[record["case_id"]], stage="reasons")
            results.append({
                "method": run["method"], "seed": run["seed"], "slot_scores": attribution["slot_scores"],
                "seconds": attribution["seconds"], "forward_passes": attribution["forward_passes"], "reused": reused,
            })
            progress.advance(cached=True if reused else None)  # a reused attribution costs nothing: not in the rate
        cases.append(judge_case(record, results, list(factors), stability_floor, protected_floor))
    progress.close()
    n_runs = len(declined) * len(runs)
    n_reused = sum(c["n_reused"] for c in cases)
    return {
        "citation": CITATION,
        "max_reasons": MAX_REASONS,
        "stability_floor": stability_floor,
        "protected_floor": protected_floor,
        "factors": list(factors),
        "method": runs[0]["method"] if runs else None,
        "title": runs[0]["title"] if runs else None,
        "ensemble": [{"method": r["method"], "title": r["title"], "seed": r["seed"], "params": r["explainer"].params}
                     for r in runs],
        "left_out": left_out,
        "n_cases": len(records),
        "n_unfavourable": len(declined),
        "n_flagged": sum(c["flagged"] for c in cases),
        "cost": {
            "seconds": time.monotonic() - started,
            "attribution_seconds": sum(c["seconds"] for c in cases),
            "forward_passes": sum(c["forward_passes"] for c in cases),
            "runs": n_runs,
            "reused_runs": n_reused,
            "seconds_per_case": sum(c["seconds"] for c in cases) / len(cases) if cases else None,
            "forward_passes_per_case": sum(c["forward_passes"] for c in cases) / len(cases) if cases else None,
        },
        "cases": cases,
    }
