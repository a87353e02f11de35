"""How far the explanations can be trusted: agreement between methods and erasure faithfulness.

Agreement (Krishna et al. 2022, "The Disagreement Problem in Explainable
Machine Learning"): for every pair of methods and every case explained by
both, Kendall's tau-b between their word importances |score| (magnitudes, so
that unsigned maps such as Saliency compare with signed ones); the pair's
agreement is the mean tau over cases with a bootstrap 95 % CI over cases.
tau near 1 means the methods rank the words alike; near 0, they disagree.
"""

from __future__ import annotations

import math
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


# ---------------------------------------------------------------- erasure (ERASER)

BINS = (0.01, 0.05, 0.10, 0.20, 0.50)


def word_order(word_scores: list[float], decision_sign: float, signed: bool) -> list[int]:
    """Words from most to least important for the decision taken.

    Signed maps rank by the score toward the decision (s * sign of the decision);
    unsigned maps (Saliency, attention) by magnitude. Ties keep text order.
    """
    keys = [decision_sign * s if signed else abs(s) for s in word_scores]
    return sorted(range(len(keys)), key=lambda i: -keys[i])


def erasure_curves(region, order: list[int], full_score: float, bins: tuple[float, ...] = BINS) -> dict[str, Any]:
    """ERASER comprehensiveness and sufficiency (DeYoung et al. 2020) at each bin, and their AOPC.

    With d the sign of the decision, s the decision score and r_k the top k % of
    words (at least one word) under ``order``:
        comprehensiveness_k = d (s(x) - s(x without r_k))   higher is more faithful
        sufficiency_k       = d (s(x) - s(r_k alone))       lower is more faithful
    Removed words take the filler-token reference of ``explainers.region``;
    ``full_score`` is s(x), already known from the attribution run.
    AOPC is the mean over bins (Samek et al. 2017 as used by ERASER).
    """
    import torch

    words = region.encoded.words
    n_words = len(words)
    rows = []
    for fraction in bins:
        k = max(1, math.ceil(fraction * n_words))
        keep_top = torch.zeros(region.region.shape[1], dtype=torch.bool, device=region.region.device)
        for w in order[:k]:
            keep_top[list(words[w].tokens)] = True
        rows.append(torch.where(keep_top[None, :, None], region.reference, region.region))  # without r_k
        rows.append(torch.where(keep_top[None, :, None], region.region, region.reference))  # r_k alone
    with torch.inference_mode():
        batch = torch.cat(rows)
        scores = torch.cat([region.forward(chunk) for chunk in torch.split(batch, region.rows_per_batch)]).tolist()
    full = full_score
    sign = 1.0 if full > 0 else -1.0
    comprehensiveness = [sign * (full - scores[2 * i]) for i in range(len(bins))]
    sufficiency = [sign * (full - scores[2 * i + 1]) for i in range(len(bins))]
    return {
        "bins": list(bins),
        "comprehensiveness": comprehensiveness,
        "sufficiency": sufficiency,
        "aopc_comprehensiveness": float(np.mean(comprehensiveness)),
        "aopc_sufficiency": float(np.mean(sufficiency)),
        "forward_passes": 2 * len(bins),
    }


def gain_over_random(method: list[float], random: list[float], *, higher_is_better: bool, seed: int,
                     n_resamples: int = 2000, confidence: float = 0.95) -> dict[str, Any]:
    """Mean per-case gain of a method's AOPC over the random ordering's, with a paired bootstrap CI over cases."""
    diffs = np.asarray(method, dtype=float) - np.asarray(random, dtype=float)
    if not higher_is_better:
        diffs = -diffs
    return {
        "mean_gain": float(diffs.mean()) if len(diffs) else None,
        "ci": bootstrap_ci(len(diffs), lambda idx: diffs[idx].mean(-1), seed=seed, n_resamples=n_resamples,
                           confidence=confidence) if len(diffs) else None,
        "n_cases": len(diffs),
    }
