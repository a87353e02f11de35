"""The internals stage: what the model represents and where its decision forms, from states already recorded.

Reads the hidden states that ``explainers.hidden.HiddenStateRecorder`` kept
while every case was scored (no extra forward pass) and runs:

- the logit lens of the decision score (``explainers.lens``) for every case:
  the baselines' mean lens curve with a bootstrap CI over scenarios, the depth
  at which each baseline's decision settles on its final side, and, for every
  protected group, the per-depth shift of its cases against their scenario's
  baseline (paired by scenario), with the depth from which the gap stays at
  half its final size or more;
- linear probes with control tasks (``explainers.probes``) for every
  protected property the suite varies (on the baseline cases and the cases
  that vary that property's attribute) at the answer position, and for the
  decision itself. Over the attribute's own words a probe reads word
  identity, which its control task matches (selectivity ~0 on every model we
  ran), so those positions are not probed;
- activation patching (``explainers.patching``) of the attribute span, layer
  by layer, for ``PATCHED_PAIRS`` counterfactual pairs by default (the
  scenarios' largest decision shifts, ``patched_pairs``) or as many as the
  caller asks, every pair included: the one part that runs the model
  again, one batched pass per pair (about 7.5 s per pair for SmolLM2-135M on
  two CPU cores, so all 552 pairs of the bundled suite would take over an
  hour).

Each part shows a progress bar (``audit.progress``): cases read through the lens, probe layers fitted
(every probe target times every depth), counterfactual pairs patched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explainers.intervals import bootstrap_ci
from audit.options import PATCHED_PAIRS
from audit.progress import Progress
from audit.evidence.results_cache import NO_CACHE, ResultsCache, case_hash
from explainers.lens import LensUnavailable, forming_layer, lens_scores
from explainers.patching import patch_attribute_span, summarise_patching
from explainers.probes import probe_layers

TOTAL_EFFECT_FLOOR = 0.05  # log-odds; below it IE / TE is dominated by noise (seen on SmolLM2 at |TE| ~ 0.01)


def _curve_ci(curves: np.ndarray, seed: int) -> list[tuple[float, float] | None]:
    """Per depth, the bootstrap 95 % CI of the mean over rows (one row per scenario)."""
    return [
        bootstrap_ci(len(curves), lambda idx, d=d: curves[idx, d].mean(-1), seed=seed, n_resamples=2000,
                     confidence=0.95)
        for d in range(curves.shape[1])
    ]


def _settling_depth(curve: np.ndarray) -> int | None:
    """The first depth from which |gap| stays at half its final size or more (None for no final gap)."""
    final = abs(curve[-1])
    if final < 1e-6:
        return None
    depth = len(curve) - 1
    while depth > 0 and abs(curve[depth - 1]) >= final / 2 and np.sign(curve[depth - 1]) == np.sign(curve[-1]):
        depth -= 1
    return depth


LENS_READING = {
    "causal-lm": "the model's final norm and output head at the answer position",
    "classifier": "the model's own classification head (pooler or final norm, then the label layer) at its read-out "
                  "token ([CLS] for an encoder)",
}


def lens_summary(adapter, states: dict[str, dict[str, np.ndarray]], records: list[dict[str, Any]], suite, *,
                 seed: int, quiet: bool = False) -> dict[str, Any]:
    progress = Progress("logit lens", len(states), unit="cases", quiet=quiet)
    try:
        curves = lens_scores(adapter, {case_id: found["answer"] for case_id, found in states.items()},
                             on_case=progress.advance)
    except LensUnavailable as why:
        progress.stop()
        return {"evaluated": False, "why": str(why)}
    progress.close()
    baselines = {r["pair_id"]: r for r in records if r["attribute"] is None}
    base_curves = np.array([curves[r["case_id"]] for r in baselines.values()])
    forming = [forming_layer(curves[r["case_id"]]) for r in baselines.values()]
    groups = []
    for attribute in suite.attributes:
        for prop in attribute.protected:
            by_group: dict[str, dict[str, list]] = {}
            for record in records:
                if record["attribute"] != attribute.name:
                    continue
                shift = np.asarray(curves[record["case_id"]]) - np.asarray(curves[baselines[record["pair_id"]]["case_id"]])
                by_group.setdefault(record["groups"][prop], {}).setdefault(record["pair_id"], []).append(shift)
            for group, per_scenario in by_group.items():
                paired = np.array([np.mean(shifts, axis=0) for shifts in per_scenario.values()])
                mean = paired.mean(0)
                groups.append({
                    "attribute": attribute.name, "property": prop, "group": group,
                    "n_scenarios": len(paired), "mean_shift": mean.tolist(), "shift_ci": _curve_ci(paired, seed),
                    "settles_at": _settling_depth(mean),
                })
    return {
        "evaluated": True,
        "definition": f"decision log-odds read through {LENS_READING[adapter.family]} after the embeddings (depth "
        "0) and after every layer (nostalgebraist 2020); group curves are the "
        "per-depth shift of a group's cases against their scenario's baseline case, averaged per scenario and then "
        "over scenarios, bootstrap 95 % CI over scenarios",
        "depths": base_curves.shape[1],
        "baseline_mean": base_curves.mean(0).tolist(),
        "baseline_ci": _curve_ci(base_curves, seed),
        "forming_depths": forming,
        "groups": groups,
        "cases": curves,
    }


def probe_summary(states: dict[str, dict[str, np.ndarray]], records: list[dict[str, Any]], suite, *,
                  seed: int, quiet: bool = False) -> list[dict[str, Any]]:
    found = []
    baseline_ids = {r["case_id"] for r in records if r["attribute"] is None}
    depths = len(next(iter(states.values()))["answer"]) if states else 0
    targets = sum(len(attribute.protected) for attribute in suite.attributes) + 1
    progress = Progress("probes", targets * depths, unit="probe layers", quiet=quiet)

    def probed(result: dict[str, Any], before: int) -> dict[str, Any]:
        progress.advance(max(before + depths - progress.done, 0))  # the depths of a probe that was not evaluated
        return result
    for attribute in suite.attributes:
        chosen = [r for r in records if r["attribute"] == attribute.name or r["case_id"] in baseline_ids]
        words = [" / ".join(r["text"][s:e] for s, e in r["slots"][attribute.name]) for r in chosen]
        for prop in attribute.protected:
            labels = [r["groups"][prop] for r in chosen]
            features = np.stack([states[r["case_id"]]["answer"] for r in chosen])
            before = progress.done
            found.append({
                "target": prop, "attribute": attribute.name, "position": "answer",
                **probed(probe_layers(features, labels, [r["scenario_id"] for r in chosen], words, seed=seed,
                                      on_depth=progress.advance), before),
            })
    decisions = [r["decision"] for r in records]
    features = np.stack([states[r["case_id"]]["answer"] for r in records])
    before = progress.done
    found.append({
        "target": "decision", "attribute": None, "position": "answer",
        **probed(probe_layers(features, decisions, [r["scenario_id"] for r in records],
                              [r["case_id"] for r in records], seed=seed, on_depth=progress.advance), before),
    })
    progress.close()
    return found


def patched_pairs(records: list[dict[str, Any]], count: int | None) -> list[dict[str, Any]]:
    """The ``count`` counterfactual cases (every one when None) to patch, spread over scenarios.

    Each scenario's counterfactual cases are ranked by |shift|; the first pick is every scenario's largest
    (largest first), then every scenario's second largest, and so on, so a few pairs cover as many scenarios as
    they can and the pairs whose decision moved most come first.
    """
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["attribute"] is not None:
            by_scenario.setdefault(record["pair_id"], []).append(record)
    ranked = [sorted(found, key=lambda r: -abs(r["shift"])) for found in by_scenario.values()]
    order = []
    for rank in range(max((len(found) for found in ranked), default=0)):
        order.extend(sorted((found[rank] for found in ranked if rank < len(found)), key=lambda r: -abs(r["shift"])))
    return order if count is None else order[:count]


def _selection(count: int | None, available: int) -> str:
    if count is None or count >= available:
        return f"all {available} counterfactual cases, each patched into its scenario's baseline case"
    return (f"{count} of the {available} counterfactual cases, each patched into its scenario's baseline case: "
            "every scenario's case whose decision moved most, largest first, then every scenario's second largest, "
            "and so on (audit run --patching-pairs sets how many; all patches every case)")


def patching_summary(adapter, encoded: dict, records: list[dict[str, Any]], *, seed: int,
                     pairs_wanted: int | None = PATCHED_PAIRS, quiet: bool = False,
                     cache: ResultsCache = NO_CACHE) -> dict[str, Any]:
    baselines = {r["pair_id"]: r["case_id"] for r in records if r["attribute"] is None}
    chosen = patched_pairs(records, pairs_wanted)
    progress = Progress("activation patching", len(chosen), unit="pairs", quiet=quiet)
    pairs = []
    for record in chosen:
        target, source = encoded[baselines[record["pair_id"]]], encoded[record["case_id"]]
        params = {"target": case_hash(target), "slot": record["attribute"], "total_effect_floor": TOTAL_EFFECT_FLOOR}
        pairs.append(cache.remember(
            "patching", adapter, source, params, stage="patching",
            compute=lambda: patch_attribute_span(adapter, target, source, record["attribute"],
                                                 total_effect_floor=TOTAL_EFFECT_FLOOR),
        ))
        progress.advance()
    progress.close()
    return {
        "selection": _selection(pairs_wanted, len(patched_pairs(records, None))),
        "pairs_wanted": pairs_wanted,
        "total_effect_floor": TOTAL_EFFECT_FLOOR,
        "summary": summarise_patching(pairs, seed=seed),
        "pairs": pairs,
    }


def internals(adapter, states: dict[str, dict[str, np.ndarray]], records: list[dict[str, Any]], suite,
              encoded: dict, *, seed: int, patching_pairs: int | None = PATCHED_PAIRS,
              quiet: bool = False, cache: ResultsCache = NO_CACHE) -> dict[str, Any]:
    """``patching_pairs``: how many counterfactual pairs activation patching runs on (None: every pair);
    ``cache`` keeps each pair's patching."""
    return {
        "lens": lens_summary(adapter, states, records, suite, seed=seed, quiet=quiet),
        "probes": probe_summary(states, records, suite, seed=seed, quiet=quiet),
        "patching": patching_summary(adapter, encoded, records, seed=seed, pairs_wanted=patching_pairs, quiet=quiet,
                                     cache=cache),
        "probe_definition": "multinomial logistic regression (scikit-learn, standardised features, C = 0.1) on "
        "the hidden state after each layer, out-of-fold accuracy under stratified k-fold grouped by scenario; "
        "control task (Hewitt & Liang 2019): one random label per word type (value text); selectivity = accuracy - "
        "control accuracy; Wilson 95 % CIs for accuracies, bootstrap over scenarios for selectivity",
    }
