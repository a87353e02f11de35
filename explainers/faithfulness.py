"""How far the explanations can be trusted: agreement between methods.

Agreement (Krishna et al. 2022, "The Disagreement Problem in Explainable
Machine Learning"): for every pair of methods and every case explained by
both, Kendall's tau-b between their word importances |score| (magnitudes, so
that unsigned maps such as Saliency compare with signed ones); the pair's
agreement is the mean tau over cases with a bootstrap 95 % CI over cases.
tau near 1 means the methods rank the words alike; near 0, they disagree.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from audit.fairness import bootstrap_ci


def rank_agreement(word_scores: dict[str, dict[str, list[float]]], *, seed: int, n_resamples: int = 2000,
                   confidence: float = 0.95) -> dict[str, Any]:
    """``word_scores[method][case_id]`` -> mean Kendall tau per method pair, with CIs."""
    methods = list(word_scores)
    pairs = []
    for a, b in combinations(methods, 2):
        shared = [c for c in word_scores[a] if c in word_scores[b]]
        taus = []
        for case_id in shared:
            tau = kendalltau(np.abs(word_scores[a][case_id]), np.abs(word_scores[b][case_id])).statistic
            if np.isfinite(tau):
                taus.append(float(tau))
        values = np.asarray(taus)
        pairs.append({
            "methods": [a, b],
            "n_cases": len(values),
            "mean_tau": float(values.mean()) if len(values) else None,
            "ci": bootstrap_ci(len(values), lambda idx: values[idx].mean(-1), seed=seed,
                               n_resamples=n_resamples, confidence=confidence) if len(values) else None,
        })
    matrix = [[1.0 if a == b else None for b in methods] for a in methods]
    for pair in pairs:
        i, j = (methods.index(m) for m in pair["methods"])
        matrix[i][j] = matrix[j][i] = pair["mean_tau"]
    return {"methods": methods, "statistic": "Kendall tau-b of |word score|, mean over cases", "pairs": pairs,
            "matrix": matrix}
