"""The attribution stage: which methods run on which cases, and what goes into the bundle.

- The primary method (Integrated Gradients unless ``--methods`` leaves it
  out) explains the *explained cases*: every scenario's baseline case and
  the ``EXPLAINED_COUNTERFACTUALS`` counterfactual cases whose decision moved
  most (at most one per scenario). The report shades their words and the
  attribution controls read them.
- Every method of ``--methods`` explains the *comparison cases* (the
  baseline case of every scenario), so methods can be compared case by case
  (cost, slot shares, rank agreement).
- The trust checks of ``audit.stages.trust`` (erasure faithfulness against a
  random ordering, leave-one-out, normalised AOPC, infidelity,
  max-sensitivity, the randomisation sanity check) on the comparison cases.
"""

from __future__ import annotations

from typing import Any

import explainers
from explainers.base import EntryPointError
from audit.errors import AuditError
from audit.options import DEFAULT_METHODS
from audit.progress import Progress
from audit.evidence.results_cache import NO_CACHE, ResultsCache
from audit.stages.trust import TrustPlan, assess
from explainers.faithfulness import rank_agreement

PRIMARY_PREFERENCE = "ig"
EXPLAINED_COUNTERFACTUALS = 4


def parse_methods(text: str | None) -> list[str]:
    """``"ig,lime"`` -> ["ig", "lime"]; unknown names and descriptive-only sets are bad input, and so is an
    installed method (entry-point group ``oss_model_audit.explainers``) that cannot be used."""
    try:
        available = explainers.available()
    except EntryPointError as exc:
        raise AuditError(str(exc)) from None
    if text is None:
        return list(DEFAULT_METHODS)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        known = ", ".join(available)
        raise AuditError(f"--methods: unknown method {unknown[0] if unknown else text!r} (known: {known})")
    if all(explainers.REGISTRY[n].descriptive for n in names):
        raise AuditError(f"--methods: {', '.join(names)} is descriptive only; add an explanatory method such as ig")
    return names


def primary_method(methods: list[str]) -> str:
    if PRIMARY_PREFERENCE in methods:
        return PRIMARY_PREFERENCE
    return next(n for n in methods if not explainers.REGISTRY[n].descriptive)


def configured(name: str, ig_options: dict[str, Any], seed: int):
    """The method ``name`` with the run's parameters: IG's steps (``--ig-steps``, ``--ig-tolerance``) and, for a
    method that samples (GradientSHAP, Shapley sampling, LIME, KernelSHAP), ``--seed``."""
    params = dict(ig_options) if name == "ig" else {}
    if explainers.REGISTRY[name].stochastic:
        params["seed"] = seed
    return explainers.get(name, **params)


def select_explained(records: list[dict[str, Any]], max_counterfactuals: int) -> list[tuple[str, str]]:
    """Every scenario's baseline case, plus the counterfactual cases whose decision moved most.

    Each scenario offers its largest-|shift| counterfactual; the ``max_counterfactuals`` largest of those are
    kept, listed after their scenario's baseline. Returns (case id, reason) pairs.
    """
    candidates = {}
    for pair in dict.fromkeys(r["pair_id"] for r in records):
        variants = [r for r in records if r["pair_id"] == pair and r["attribute"] is not None]
        if variants:
            candidates[pair] = max(variants, key=lambda r: abs(r["shift"]))
    kept = sorted(candidates.values(), key=lambda r: -abs(r["shift"]))[:max_counterfactuals]
    kept_ids = {r["case_id"] for r in kept}
    chosen = []
    for record in records:
        if record["attribute"] is None:
            chosen.append((record["case_id"], "baseline applicant"))
            moved = candidates.get(record["pair_id"])
            if moved is not None and moved["case_id"] in kept_ids:
                chosen.append((moved["case_id"], f"one of the {max_counterfactuals} largest counterfactual shifts "
                               f"({moved['shift']:+.3f})"))
    return chosen


def run_explainers(
    adapter, encoded: dict, records: list[dict[str, Any]], methods: list[str], *, ig_options: dict[str, Any], seed: int,
    plan: TrustPlan = TrustPlan(), quiet: bool = False, cache: ResultsCache = NO_CACHE,
) -> dict[str, Any]:
    """Attributions of the primary method on the explained cases and of every method on the comparison cases;
    ``cache`` keeps each attribution and trust measurement."""
    primary = primary_method(methods)
    instances = {n: configured(n, ig_options, seed) for n in methods}
    explained = select_explained(records, EXPLAINED_COUNTERFACTUALS)
    comparison = [case_id for case_id, reason in explained if reason == "baseline applicant"]
    jobs = [(primary, case_id) for case_id, _ in explained]
    jobs += [(n, case_id) for n in methods if n != primary for case_id in comparison]
    results: dict[str, dict[str, dict]] = {n: {} for n in methods}
    progress = Progress("attribution", len(jobs), unit="method x case runs", quiet=quiet)
    for name, case_id in jobs:
        attribution = cache.explain(instances[name], adapter, encoded[case_id])
        attribution["protected_slots"] = list(encoded[case_id].case.protected_slots)
        results[name][case_id] = attribution
        progress.advance()
    progress.close()

    trust = assess(adapter, encoded, results, instances, comparison, seed=seed, plan=plan, quiet=quiet, cache=cache)
    reasons = dict(explained)
    primary_cases = [{**results[primary][case_id], "why": reasons[case_id]} for case_id, _ in explained]
    return {
        "method": primary,
        "title": instances[primary].title,
        "params": primary_cases[0]["params"] if primary_cases else instances[primary].params,
        "selection": f"the baseline case of every scenario and up to {EXPLAINED_COUNTERFACTUALS} counterfactual cases "
        "whose decision score moved most (at most one per scenario)",
        "cases": primary_cases,
        "comparison": {
            "selection": "the baseline case of every scenario, explained by every method",
            "case_ids": comparison,
            "methods": [_method_summary(instances[n], results[n], comparison) for n in methods],
            "agreement": rank_agreement(
                {n: {c: results[n][c]["word_scores"] for c in comparison} for n in methods}, seed=seed
            ),
            **trust,
        },
    }


def _method_summary(explainer, results: dict[str, dict], case_ids: list[str]) -> dict[str, Any]:
    cases = [results[c] for c in case_ids]
    return {
        "name": explainer.name,
        "title": explainer.title,
        "descriptive": explainer.descriptive,
        "params": cases[0]["params"] if cases else explainer.params,
        "mean_seconds": sum(c["seconds"] for c in cases) / len(cases) if cases else None,
        "mean_forward_passes": sum(c["forward_passes"] for c in cases) / len(cases) if cases else None,
        "cases": [
            {
                "case_id": c["case_id"],
                "word_scores": c["word_scores"],
                "slot_shares": c["slot_shares"],
                "slot_scores": c["slot_scores"],
                "protected_slots": c["protected_slots"],
                "score": c["score"],
                "convergence_delta": c["convergence_delta"],
                "seconds": c["seconds"],
                "forward_passes": c["forward_passes"],
            }
            for c in cases
        ],
    }
