"""The attribution stage: which methods run on which cases, and what goes into the bundle.

- The primary method (Integrated Gradients unless ``--methods`` leaves it
  out) explains the *explained cases*: every scenario's baseline case and
  the ``EXPLAINED_COUNTERFACTUALS`` counterfactual cases whose decision moved
  most (at most one per scenario). The report shades their words and the
  attribution controls read them.
- Every method of ``--methods`` explains the *comparison cases* (the
  baseline case of every scenario), so methods can be compared case by case
  (cost, slot shares, rank agreement).
- Erasure faithfulness (ERASER comprehensiveness and sufficiency) of every
  method, and of a random word ordering as the floor, on the first
  ``FAITHFULNESS_CASES`` comparison cases; each method's gain over random
  carries a paired bootstrap CI.
"""

from __future__ import annotations

from typing import Any

import explainers
from audit.errors import AuditError
from audit.progress import Progress
from explainers.faithfulness import BINS, erasure_curves, gain_over_random, rank_agreement, word_order
from explainers.region import Region

DEFAULT_METHODS = ("ig", "saliency", "input-x-gradient", "gradient-shap", "feature-ablation", "attention-rollout")
PRIMARY_PREFERENCE = "ig"
FAITHFULNESS_CASES = 6
EXPLAINED_COUNTERFACTUALS = 6
RANDOM = "random"


def parse_methods(text: str | None) -> list[str]:
    """``"ig,lime"`` -> ["ig", "lime"]; unknown names and descriptive-only sets are bad input."""
    if text is None:
        return list(DEFAULT_METHODS)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in explainers.REGISTRY]
    if unknown or not names:
        known = ", ".join(sorted(explainers.REGISTRY))
        raise AuditError(f"--methods: unknown method {unknown[0] if unknown else text!r} (known: {known})")
    if all(explainers.REGISTRY[n].descriptive for n in names):
        raise AuditError(f"--methods: {', '.join(names)} is descriptive only; add an explanatory method such as ig")
    return names


def primary_method(methods: list[str]) -> str:
    if PRIMARY_PREFERENCE in methods:
        return PRIMARY_PREFERENCE
    return next(n for n in methods if not explainers.REGISTRY[n].descriptive)


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
    adapter, encoded: dict, records: list[dict[str, Any]], methods: list[str], *, ig_steps: int, seed: int,
    quiet: bool = False,
) -> dict[str, Any]:
    """Attributions of the primary method on the explained cases and of every method on the comparison cases."""
    primary = primary_method(methods)
    instances = {n: explainers.get(n, n_steps=ig_steps) if n == "ig" else explainers.get(n) for n in methods}
    explained = select_explained(records, EXPLAINED_COUNTERFACTUALS)
    comparison = [case_id for case_id, reason in explained if reason == "baseline applicant"]
    jobs = [(primary, case_id) for case_id, _ in explained]
    jobs += [(n, case_id) for n in methods if n != primary for case_id in comparison]
    results: dict[str, dict[str, dict]] = {n: {} for n in methods}
    progress = Progress("attribution", len(jobs), unit="method x case runs", quiet=quiet)
    for name, case_id in jobs:
        attribution = instances[name].explain(adapter, encoded[case_id]).to_dict()
        attribution["protected_slots"] = list(encoded[case_id].case.protected_slots)
        results[name][case_id] = attribution
        progress.advance()
    progress.close()

    faithfulness = erasure_faithfulness(
        adapter, encoded, results, methods, comparison[:FAITHFULNESS_CASES], seed=seed, quiet=quiet
    )
    reasons = dict(explained)
    primary_cases = [{**results[primary][case_id], "why": reasons[case_id]} for case_id, _ in explained]
    return {
        "method": primary,
        "title": instances[primary].title,
        "params": primary_cases[0]["params"] if primary_cases else instances[primary].params,
        "selection": f"the baseline case of every scenario and the {EXPLAINED_COUNTERFACTUALS} counterfactual cases "
        "whose decision score moved most (at most one per scenario)",
        "cases": primary_cases,
        "comparison": {
            "selection": "the baseline case of every scenario, explained by every method",
            "case_ids": comparison,
            "methods": [_method_summary(instances[n], results[n], comparison) for n in methods],
            "agreement": rank_agreement(
                {n: {c: results[n][c]["word_scores"] for c in comparison} for n in methods}, seed=seed
            ),
            "faithfulness": faithfulness,
        },
    }


def erasure_faithfulness(
    adapter, encoded: dict, results: dict[str, dict[str, dict]], methods: list[str], case_ids: list[str], *,
    seed: int, quiet: bool = False,
) -> dict[str, Any]:
    """AOPC comprehensiveness and sufficiency per method and for a random ordering, with gains over random."""
    import numpy as np

    curves: dict[str, dict[str, dict]] = {name: {} for name in [*methods, RANDOM]}
    progress = Progress("faithfulness", len(case_ids) * (len(methods) + 1), unit="method x case runs", quiet=quiet)
    for index, case_id in enumerate(case_ids):
        region = Region.of(adapter, encoded[case_id])
        full_score = results[methods[0]][case_id]["score"]
        sign = 1.0 if full_score > 0 else -1.0
        for name in methods:
            scores = results[name][case_id]["word_scores"]
            order = word_order(scores, sign, signed=explainers.REGISTRY[name].signed)
            curves[name][case_id] = erasure_curves(region, order, full_score)
            progress.advance()
        shuffled = list(np.random.default_rng(seed + index).permutation(len(encoded[case_id].words)))
        curves[RANDOM][case_id] = erasure_curves(region, [int(i) for i in shuffled], full_score)
        progress.advance()
    progress.close()

    def aopc(name: str, key: str) -> list[float]:
        return [curves[name][c][key] for c in case_ids]

    summary = {}
    for name in [*methods, RANDOM]:
        summary[name] = {
            "aopc_comprehensiveness": float(np.mean(aopc(name, "aopc_comprehensiveness"))) if case_ids else None,
            "aopc_sufficiency": float(np.mean(aopc(name, "aopc_sufficiency"))) if case_ids else None,
            "cases": {c: curves[name][c] for c in case_ids},
        }
        if name != RANDOM:
            summary[name]["gain_comprehensiveness"] = gain_over_random(
                aopc(name, "aopc_comprehensiveness"), aopc(RANDOM, "aopc_comprehensiveness"),
                higher_is_better=True, seed=seed,
            )
            summary[name]["gain_sufficiency"] = gain_over_random(
                aopc(name, "aopc_sufficiency"), aopc(RANDOM, "aopc_sufficiency"), higher_is_better=False, seed=seed,
            )
    return {
        "definition": "ERASER comprehensiveness d(s(x) - s(x without top k % words)) and sufficiency "
        "d(s(x) - s(top k % words alone)), d the sign of the decision, removed words replaced by the filler "
        "reference; AOPC = mean over the bins; gain = method AOPC - random-ordering AOPC per case (for "
        "sufficiency, random - method), paired bootstrap 95 % CI over cases",
        "bins": list(BINS),
        "case_ids": case_ids,
        "methods": summary,
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
