"""Confidence intervals shared by the methods and the audit: a cluster bootstrap and the Wilson interval.

Here, not in ``audit``, because explainers (probes, patching, faithfulness) report intervals too and import
nothing of the audit but the adapter interface; this module imports neither torch nor any other explainer.
scipy and statsmodels are imported where an interval is computed, so a policy is read and validated (``audit
policy validate``, which imports the controls) without their second of import time.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

MIN_SCENARIOS_FOR_CI = 5  # a bootstrap over fewer clusters gives intervals far too narrow


def bootstrap_ci(
    n_clusters: int, statistic, *, seed: int, n_resamples: int, confidence: float
) -> tuple[float, float] | None:
    """CI of ``statistic`` by resampling clusters; None when it cannot be estimated.

    ``statistic(idx)`` takes integer cluster indices of shape (..., n) and
    returns one value per leading index (it is vectorised, as
    ``scipy.stats.bootstrap`` expects).
    """
    if n_clusters < MIN_SCENARIOS_FOR_CI:
        return None
    from scipy import stats

    indices = np.arange(n_clusters)
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a degenerate BCa interval is detected below and replaced
            try:
                result = stats.bootstrap(
                    (indices,),
                    lambda idx, axis=-1: statistic(np.moveaxis(idx, axis, -1).astype(int)),
                    vectorized=True,
                    n_resamples=n_resamples,
                    confidence_level=confidence,
                    method=method,
                    rng=np.random.default_rng(seed),
                )
            except (ValueError, ZeroDivisionError):
                continue
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high
    return None


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float] | None:
    """Wilson score interval of the proportion ``successes / n`` (Wilson 1927; statsmodels); None when n = 0."""
    if n == 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)
