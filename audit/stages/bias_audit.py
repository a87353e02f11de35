"""Bias-audit tables in the form NYC Local Law 144's rules prescribe (6 RCNY §5-300, §5-301).

Definitions of 6 RCNY §5-300, with the audit's decision as the tool's output:

    selection rate  = applicants of the category selected / applicants of the category
                      (selected: the model's decision is favourable)
    scoring rate    = share of the category's applicants scored above the sample's median score
                      (score: the decision log-odds, ``audit.models.adapters``)
    impact ratio    = rate of the category / rate of the most selected (or highest scoring) category

§5-301 asks for both rates and ratios per sex category, per race/ethnicity
category and per intersectional category (race/ethnicity x sex), with the
number of applicants in each; an auditor may exclude a category holding less
than 2 % of the sample from the impact-ratio calculation, reporting its count
and rate all the same (``EXCLUSION_SHARE``).

The sample is the counterfactual applicant pool of an attribute that carries
race and/or sex (a name): the baseline case and every case that varies that
attribute, in every scenario, so each category holds the same scenarios.
These are test data in the sense of §5-303 (synthetic applicants), not the
historical data a bias audit of a tool in use is built on. The rule defines
point figures; each impact ratio here also carries a 95 % bootstrap interval
over scenarios (the applicants of one scenario resampled together, the median
held at the sample's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.wording import INTERSECTION
from explainers.intervals import bootstrap_ci
from audit.suites.schema import Suite

CATEGORY_PROPERTIES = ("sex", "race")  # the categories §5-301 names, and their intersection
EXCLUSION_SHARE = 0.02


def bias_audit_tables(suite: Suite, records: list[dict[str, Any]], *, seed: int, n_resamples: int = 2000,
                      confidence: float = 0.95) -> list[dict[str, Any]]:
    """One table per category type (sex, race, race x sex) of every attribute that carries sex or race."""
    tables = []
    for attribute in suite.attributes:
        props = [p for p in CATEGORY_PROPERTIES if p in attribute.protected]
        if not props:
            continue
        pool = [r for r in records if r["attribute"] == attribute.name
                or (r["attribute"] is None and attribute.name in r["protected_slots"])]
        if not any(r["attribute"] == attribute.name for r in pool):
            continue
        median = float(np.median([r["score"] for r in pool]))
        kinds = [(p,) for p in props] + ([tuple(reversed(props))] if len(props) > 1 else [])
        for kind in kinds:
            tables.append({
                "attribute": attribute.name,
                "category_type": INTERSECTION.join(kind),
                **_table(pool, kind, median, seed=seed, n_resamples=n_resamples, confidence=confidence),
            })
    return tables


def _table(pool: list[dict[str, Any]], kind: tuple[str, ...], median: float, *, seed: int, n_resamples: int,
           confidence: float) -> dict[str, Any]:
    def category(record):
        return INTERSECTION.join(record["groups"][p] for p in kind)

    categories = sorted({category(r) for r in pool})
    scenarios = sorted({r["pair_id"] for r in pool})
    shape = (len(categories), len(scenarios))
    applicants, selected, above = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for record in pool:
        c, s = categories.index(category(record)), scenarios.index(record["pair_id"])
        applicants[c, s] += 1
        selected[c, s] += record["decision"] == "favourable"
        above[c, s] += record["score"] > median
    share = applicants.sum(1) / applicants.sum()
    included = share >= EXCLUSION_SHARE

    def ratios(counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Impact ratio of every category, for scenario indices ``idx`` [..., n] (vectorised over resamples)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = counts[:, idx].sum(-1) / applicants[:, idx].sum(-1)  # [categories, ...]
            return rates / np.where(included[(slice(None),) + (None,) * (rates.ndim - 1)], rates, -np.inf).max(0)

    everything = np.arange(len(scenarios))
    rows = []
    for c, name in enumerate(categories):
        row = {"category": name, "applicants": int(applicants[c].sum()), "share": float(share[c]),
               "excluded_from_ratio": not bool(included[c])}
        for label, counts in (("selection", selected), ("scoring", above)):
            ratio = float(ratios(counts, everything)[c])
            row[f"{label}_count"] = int(counts[c].sum())
            row[f"{label}_rate"] = float(counts[c].sum() / applicants[c].sum())
            row[f"{label}_impact_ratio"] = None if not included[c] or not np.isfinite(ratio) else ratio
            row[f"{label}_impact_ratio_ci"] = None if row[f"{label}_impact_ratio"] is None else bootstrap_ci(
                len(scenarios), lambda idx, counts=counts, c=c: ratios(counts, idx)[c], seed=seed,
                n_resamples=n_resamples, confidence=confidence)
        rows.append(row)
    return {
        "n_applicants": int(applicants.sum()),
        "n_scenarios": len(scenarios),
        "median_score": median,
        "rows": rows,
    }


DEFINITIONS = {
    "selection_rate": "applicants of the category the model decided favourably / applicants of the category "
    "(6 RCNY §5-300)",
    "scoring_rate": "share of the category's applicants whose decision log-odds lie above the sample's median "
    "(6 RCNY §5-300)",
    "impact_ratio": "rate of the category / rate of the most selected (highest scoring) category; a category "
    f"under {EXCLUSION_SHARE:.0%} of the sample is left out of the ratio and still reported (6 RCNY §5-301)",
    "sample": "the counterfactual applicant pool of the attribute: its baseline case and every case varying it, "
    "in every scenario; synthetic test data in the sense of 6 RCNY §5-303",
    "interval": "95 % bootstrap over scenarios, the median held at the sample's",
}
