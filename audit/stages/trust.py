"""The trust stage: how far this audit's attributions can be trusted, measured on this model.

Run on the comparison cases (every scenario's baseline, explained by every
method), in the amounts a ``TrustPlan`` sets, so the default audit stays
within its time budget; the plan lands in the bundle and the report.

- Erasure faithfulness on the first ``faithfulness_cases``: ERASER
  comprehensiveness and sufficiency AOPC per method and for a random word
  ordering; each method's gain over random with a paired bootstrap CI.
- Leave-one-out on the first ``loo_cases``: Kendall tau of each method
  against word occlusion, and normalised AOPC (Edin et al. 2024) with the
  bounds taken from the orderings evaluated (see
  ``explainers.faithfulness.normalised_aopc``).
- captum infidelity on the faithfulness cases, every map on the same word
  erasures; captum max-sensitivity on the first ``sensitivity_cases``.
- The cascading model-parameter randomisation check (Adebayo et al. 2018) on
  the first ``sanity_cases``: the top layers re-initialised, every method
  rerun, Spearman correlation of |scores| with the trained model's maps; a
  method whose maps still correlate at ``sanity_max_correlation`` or more
  with every layer randomised fails: its maps do not depend on what the
  model learned.

Every measurement of one case (an ordering's erasure curves, leave-one-out,
infidelity, a method's max-sensitivity, an attribution under randomised
layers) goes through the results cache (``audit.evidence.results_cache``), keyed by
what it depends on, so a re-run repeats none of them.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

import explainers
from explainers.intervals import bootstrap_ci
from audit.progress import Progress
from audit.evidence.results_cache import NO_CACHE, ResultsCache
from explainers.faithfulness import (
    BINS,
    erasure_curves,
    gain_over_random,
    leave_one_out,
    max_sensitivity,
    normalised_aopc,
    randomised_top_layers,
    rank_correlation,
    reverse_order,
    tau_against,
    word_infidelity,
    word_order,
)
from explainers.region import Region

STAGE = "trust"  # where the cache counts this module's hits and misses
RANDOM = "random"
LOO = "leave-one-out"
LOO_REVERSED = "leave-one-out reversed"


@dataclass(frozen=True)
class TrustPlan:
    faithfulness_cases: int = 5  # five cases: the fewest over which a bootstrap CI is reported
    loo_cases: int = 5
    infidelity_samples: int = 16
    erase_probability: float = 0.2
    sensitivity_cases: int = 1
    sensitivity_samples: int = 2
    sensitivity_radius: float = 0.05  # times the standard deviation of the case-text embeddings
    sanity_cases: int = 1
    sanity_stages: tuple[float, ...] = (0.5, 1.0)  # share of the layers re-initialised, top first
    sanity_max_correlation: float = 0.5


def assess(adapter, encoded: dict, results: dict[str, dict[str, dict]], instances: dict, case_ids: list[str], *,
           seed: int, plan: TrustPlan = TrustPlan(), quiet: bool = False,
           cache: ResultsCache = NO_CACHE) -> dict[str, Any]:
    """Every trust measurement of ``plan`` on ``case_ids`` (ordered; each check takes the first n)."""
    methods = list(instances)
    stages = {
        "faithfulness": case_ids[: plan.faithfulness_cases],
        "sensitivity": case_ids[: plan.sensitivity_cases],
        "sanity": case_ids[: plan.sanity_cases],
    }
    units = (len(stages["faithfulness"]) + len(methods) * len(stages["sensitivity"])
             + len(methods) * len(stages["sanity"]) * len(plan.sanity_stages))
    progress = Progress("trust checks", units, unit="steps", quiet=quiet)
    faithfulness = _faithfulness(adapter, encoded, results, methods, stages["faithfulness"], seed, plan, progress,
                                 cache)
    sensitivity = _sensitivity(adapter, encoded, results, instances, stages["sensitivity"], seed, plan, progress,
                               cache)
    sanity = _sanity(adapter, encoded, results, instances, stages["sanity"], seed, plan, progress, cache)
    progress.close()
    plan_record = {**asdict(plan), "sanity_stages": list(plan.sanity_stages)}  # as JSON reads it back
    return {"plan": plan_record, "faithfulness": faithfulness, "sensitivity": sensitivity, "sanity": sanity}


def _mean_ci(values: list[float], seed: int) -> dict[str, Any]:
    data = np.asarray([v for v in values if v is not None], dtype=float)
    return {
        "mean": float(data.mean()) if len(data) else None,
        "ci": bootstrap_ci(len(data), lambda idx: data[idx].mean(-1), seed=seed, n_resamples=2000,
                           confidence=0.95) if len(data) >= 2 else None,
        "n_cases": len(data),
    }


def _lazy_region(adapter, encoded) -> Callable[[], Region]:
    """``Region.of`` on first use, so a case whose measurements are all cached runs no prompt prefix."""
    return functools.cache(lambda: Region.of(adapter, encoded))


@dataclass
class _FaithfulnessTally:
    """The faithfulness measurements of the cases so far, per ordering (every method, random, leave-one-out)."""

    methods: list[str]
    curves: dict[str, dict[str, dict]]
    taus: dict[str, list]
    naopc: dict[str, dict[str, list]]
    infidelity: dict[str, list]
    forward_passes: int = 0

    @classmethod
    def of(cls, methods: list[str]) -> "_FaithfulnessTally":
        orderings = [*methods, RANDOM]
        curves: dict[str, dict[str, dict]] = {name: {} for name in [*orderings, LOO, LOO_REVERSED]}
        return cls(methods, curves, {name: [] for name in methods},
                   {name: {"comprehensiveness": [], "sufficiency": []} for name in curves},
                   {name: [] for name in orderings})


def _faithfulness(adapter, encoded, results, methods, case_ids, seed, plan, progress,
                  cache: ResultsCache = NO_CACHE) -> dict[str, Any]:
    started = time.perf_counter()
    tally = _FaithfulnessTally.of(methods)
    loo_ids = case_ids[: plan.loo_cases]
    for index, case_id in enumerate(case_ids):
        _faithfulness_of_case(tally, adapter, encoded[case_id], results, case_id, seed + index,
                              case_id in loo_ids, plan, cache)
        progress.advance()
    return {
        **_faithfulness_definitions(plan),
        "bins": list(BINS),
        "case_ids": case_ids,
        "loo_case_ids": loo_ids,
        "methods": _faithfulness_summary(tally, case_ids, loo_ids, seed),
        "forward_passes": tally.forward_passes,
        "seconds": time.perf_counter() - started,
    }


def _faithfulness_of_case(tally: _FaithfulnessTally, adapter, case, results, case_id: str, case_seed: int,
                          with_loo: bool, plan, cache: ResultsCache) -> None:
    """Erasure curves of every ordering of one case's words, leave-one-out (the first ``plan.loo_cases`` cases)
    with its Kendall tau against each method and the normalised AOPC, and captum infidelity."""
    methods = tally.methods
    region = _lazy_region(adapter, case)
    full_score = results[methods[0]][case_id]["score"]
    sign = 1.0 if full_score > 0 else -1.0
    n_words = len(case.words)
    orders = {
        name: word_order(results[name][case_id]["word_scores"], sign, signed=explainers.REGISTRY[name].signed)
        for name in methods
    }
    orders[RANDOM] = [int(i) for i in np.random.default_rng(case_seed).permutation(n_words)]
    word_maps = {name: results[name][case_id]["word_scores"] for name in methods}
    word_maps[RANDOM] = np.random.default_rng(case_seed).standard_normal(n_words).tolist()
    if with_loo:
        loo = cache.remember("leave-one-out", adapter, case, {"full_score": full_score}, stage=STAGE,
                             compute=lambda: leave_one_out(region(), full_score))
        tally.forward_passes += loo["forward_passes"]
        orders[LOO] = word_order(loo["word_scores"], sign, signed=True)
        orders[LOO_REVERSED] = reverse_order(orders[LOO])
        for name in methods:
            tally.taus[name].append(tau_against(loo["word_scores"], word_maps[name], explainers.REGISTRY[name].signed))
    for name, order in orders.items():
        tally.curves[name][case_id] = cache.remember(
            "erasure-curves", adapter, case, {"order": order, "full_score": full_score}, stage=STAGE,
            compute=lambda: erasure_curves(region(), order, full_score),
        )
        tally.forward_passes += tally.curves[name][case_id]["forward_passes"]
    if with_loo:
        for key, sign_of_better in (("comprehensiveness", 1.0), ("sufficiency", -1.0)):
            values = {n: sign_of_better * tally.curves[n][case_id][f"aopc_{key}"] for n in orders}
            worst, best = min(values.values()), max(values.values())
            for name, value in values.items():
                tally.naopc[name][key].append(normalised_aopc(value, worst, best))
    infidelity_params = {"word_maps": word_maps, "full_score": full_score, "n_samples": plan.infidelity_samples,
                         "erase_probability": plan.erase_probability, "seed": case_seed}
    found = cache.remember(
        "infidelity", adapter, case, infidelity_params, stage=STAGE,
        compute=lambda: word_infidelity(region(), word_maps, full_score, n_samples=plan.infidelity_samples,
                                        erase_probability=plan.erase_probability, seed=case_seed),
    )
    tally.forward_passes += found["forward_passes"]
    for name in [*methods, RANDOM]:
        tally.infidelity[name].append(found["methods"][name]["normalised"])


def _faithfulness_summary(tally: _FaithfulnessTally, case_ids: list[str], loo_ids: list[str],
                          seed: int) -> dict[str, Any]:
    """Per ordering: mean AOPCs, normalised AOPCs and infidelity with 95 % CIs; per method, its paired gain over
    the random ordering and its Kendall tau against leave-one-out."""
    methods, curves = tally.methods, tally.curves
    orderings = [*methods, RANDOM]

    def aopc(name: str, key: str, ids: list[str]) -> list[float]:
        return [curves[name][c][key] for c in ids]

    summary = {}
    for name in [*orderings, LOO, LOO_REVERSED]:
        ids = case_ids if name in orderings else loo_ids
        entry = {
            "aopc_comprehensiveness": float(np.mean(aopc(name, "aopc_comprehensiveness", ids))) if ids else None,
            "aopc_sufficiency": float(np.mean(aopc(name, "aopc_sufficiency", ids))) if ids else None,
            "naopc_comprehensiveness": _mean_ci(tally.naopc[name]["comprehensiveness"], seed),
            "naopc_sufficiency": _mean_ci(tally.naopc[name]["sufficiency"], seed),
            "cases": {c: curves[name][c] for c in ids},
        }
        if name in orderings:
            entry["infidelity"] = _mean_ci(tally.infidelity[name], seed)
        if name in methods:
            entry["gain_comprehensiveness"] = gain_over_random(
                aopc(name, "aopc_comprehensiveness", case_ids), aopc(RANDOM, "aopc_comprehensiveness", case_ids),
                higher_is_better=True, seed=seed,
            )
            entry["gain_sufficiency"] = gain_over_random(
                aopc(name, "aopc_sufficiency", case_ids), aopc(RANDOM, "aopc_sufficiency", case_ids),
                higher_is_better=False, seed=seed,
            )
            entry["loo_tau"] = _mean_ci(tally.taus[name], seed)
        summary[name] = entry
    return summary


def _faithfulness_definitions(plan) -> dict[str, str]:
    return {
        "definition": "ERASER comprehensiveness d(s(x) - s(x without top k % words)) and sufficiency "
        "d(s(x) - s(top k % words alone)), d the sign of the decision, removed words replaced by the filler "
        "reference; AOPC = mean over the bins; gain = method AOPC - random-ordering AOPC per case (for "
        "sufficiency, random - method), paired bootstrap 95 % CI over cases",
        "naopc_definition": "normalised AOPC (Edin et al. 2024) = (AOPC - worst) / (best - worst) per case, "
        "sufficiency negated so that 1 is the most faithful for both; best and worst are the extremes of the "
        "orderings evaluated on the case (every method, random, leave-one-out and its reverse), not of all "
        "orderings, so the values are upper estimates",
        "loo_definition": "Kendall tau-b between the method's word scores and leave-one-out occlusion "
        "s(x) - s(x with the word erased) (magnitudes for unsigned maps)",
        "infidelity_definition": f"captum infidelity (Yeh et al. 2019, normalize=True) over "
        f"{plan.infidelity_samples} random erasures of words (each erased with p = {plan.erase_probability}), "
        "the same for every map, divided by the mean squared score drop: 0 = the map predicts every erasure's "
        "effect, 1 = it predicts nothing; random = Gaussian word scores",
    }


def _sensitivity(adapter, encoded, results, instances, case_ids, seed, plan, progress,
                 cache: ResultsCache = NO_CACHE) -> dict[str, Any]:
    started = time.perf_counter()
    values: dict[str, list[float]] = {name: [] for name in instances}
    for case_id in case_ids:
        case = encoded[case_id]
        region = _lazy_region(adapter, case)
        for name, explainer in instances.items():
            params = {"method": name, "params": explainer.params, "n_samples": plan.sensitivity_samples,
                      "radius": plan.sensitivity_radius, "seed": seed}
            found = cache.remember(
                "max-sensitivity", adapter, case, params, stage=STAGE,
                compute=lambda: _max_sensitivity(explainer, adapter, case, region(),
                                                 results[name][case_id]["token_scores"], plan, seed),
            )
            values[name].append(found["max_sensitivity"])
            progress.advance()
    return {
        "definition": f"captum max-sensitivity (Yeh et al. 2019): the largest ||a(x + delta) - a(x)|| / ||a(x)|| "
        f"over {plan.sensitivity_samples} draws of delta uniform in [-r, r] on every embedding dimension of the "
        f"case text, r = {plan.sensitivity_radius} x the standard deviation of its embeddings; lower is more "
        "robust",
        "case_ids": case_ids,
        "methods": {name: {"mean": float(np.mean(v)) if v else None, "cases": v} for name, v in values.items()},
        "seconds": time.perf_counter() - started,
    }


def _max_sensitivity(explainer, adapter, encoded, region, token_scores: list[float], plan: TrustPlan,
                     seed: int) -> dict[str, float]:
    radius = plan.sensitivity_radius * float(region.region.std())
    return {"max_sensitivity": max_sensitivity(explainer, adapter, encoded, region, token_scores,
                                               n_samples=plan.sensitivity_samples, radius=radius, seed=seed)}


def _sanity(adapter, encoded, results, instances, case_ids, seed, plan, progress,
            cache: ResultsCache = NO_CACHE) -> dict[str, Any]:
    started = time.perf_counter()
    n_layers = len(adapter.decoder_layers)
    counts = list(dict.fromkeys(max(1, round(share * n_layers)) for share in plan.sanity_stages))
    stages = []
    for count in counts:
        per_method: dict[str, dict[str, list]] = {n: {"absolute": [], "signed": []} for n in instances}
        scores = []
        with randomised_top_layers(adapter, count, seed):
            for case_id in case_ids:
                for name, explainer in instances.items():
                    randomised = cache.explain(explainer, adapter, encoded[case_id], stage=STAGE,
                                               randomised_layers=count, randomisation_seed=seed)
                    correlation = rank_correlation(results[name][case_id]["word_scores"], randomised["word_scores"])
                    per_method[name]["absolute"].append(correlation["absolute"])
                    per_method[name]["signed"].append(correlation["signed"])
                    progress.advance()
                scores.append(randomised["score"])
        stages.append({
            "randomised_layers": count,
            "decision_scores": scores,
            "methods": {
                name: {key: _mean_or_none(values) for key, values in found.items()}
                for name, found in per_method.items()
            },
        })
    final = stages[-1]["methods"] if stages else {}
    verdicts = {
        name: (None if final.get(name, {}).get("absolute") is None
               else final[name]["absolute"] < plan.sanity_max_correlation)
        for name in instances
    }
    return {
        "definition": "cascading model-parameter randomisation (Adebayo et al. 2018): the top layers "
        "re-initialised (N(0, initializer_range^2) matrices, unit norms, zero biases), top first, embeddings and "
        "output head kept; Spearman correlation of |word scores| (and signed) between the trained and the "
        f"randomised model; a method passes when, with all {n_layers} layers randomised, the mean |score| "
        f"correlation is below {plan.sanity_max_correlation}",
        "n_layers": n_layers,
        "case_ids": case_ids,
        "trained_scores": [results[next(iter(instances))][c]["score"] for c in case_ids],
        "stages": stages,
        "passes": verdicts,
        "seconds": time.perf_counter() - started,
    }


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
