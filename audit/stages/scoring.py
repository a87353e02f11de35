"""Scoring through the results cache, one scenario at a time.

The cases of a scenario share their prompt up to the first varying slot and are scored together
(``Adapter.decide`` runs that prefix once per scenario), so a scenario is the unit of scoring: when every one of
its cases is in the cache nothing runs; otherwise the whole scenario is scored, exactly as an uninterrupted run
scores it, and its cases are stored as soon as it returns. A kill during scoring keeps every finished scenario,
and a resumed run gives the numbers of an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from audit.evidence.results_cache import NO_CACHE, Entry, ResultsCache, canonical_hash, case_hash

KIND = "score"


def score_cases(adapter, encoded: list, cache: ResultsCache = NO_CACHE, *, stage: str = "scoring", progress=None,
                recorder=None) -> tuple[list[float], list[float]]:
    """Decision scores and answer masses of ``encoded`` (and the recorder's hidden states), reusing cached ones."""
    scores, masses = [0.0] * len(encoded), [0.0] * len(encoded)
    for members in _scenarios(encoded):
        group = [encoded[i] for i in members]
        params = _params(group, recorder)
        entries = _cached_scenario(adapter, group, params, cache, stage)
        if entries is None:
            entries = _score_scenario(adapter, group, params, cache, stage, recorder, progress)
        elif progress is not None:
            progress.advance(len(group))
        for index, item, entry in zip(members, group, entries):
            scores[index], masses[index] = entry.value["score"], entry.value["answer_mass"]
            if recorder is not None:
                recorder.states[item.case.case_id] = entry.arrays
    return scores, masses


def _scenarios(encoded: list) -> list[list[int]]:
    """Indices of the cases of each scenario, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(encoded):
        groups.setdefault(item.case.scenario_id, []).append(index)
    return list(groups.values())


def _params(group: list, recorder) -> list[dict[str, Any]]:
    """Per case: the cases scored with it (they set its batch and shared prefix) and the positions recorded."""
    scored_with = canonical_hash([case_hash(item) for item in group])
    return [{"scored_with": scored_with, "positions": recorder.positions(item) if recorder is not None else None}
            for item in group]


def _cached_scenario(adapter, group: list, params: list[dict], cache: ResultsCache, stage: str) -> list[Entry] | None:
    """Every case's entry when all of them are cached, else None."""
    entries = []
    for item, item_params in zip(group, params):
        entry = cache.fetch(KIND, adapter, item, item_params)
        if entry is None:
            return None
        entries.append(entry)
    cache.tally(stage, hits=len(group))
    return entries


def _score_scenario(adapter, group: list, params: list[dict], cache: ResultsCache, stage: str, recorder,
                    progress) -> list[Entry]:
    cache.tally(stage, misses=len(group))
    scores, masses = adapter.decide(group, progress=progress, recorder=recorder)
    return [
        cache.store(KIND, adapter, item, item_params, {"score": score, "answer_mass": mass},
                    recorder.states[item.case.case_id] if recorder is not None else None)
        for item, item_params, score, mass in zip(group, params, scores, masses)
    ]
