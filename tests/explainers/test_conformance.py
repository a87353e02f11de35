"""Every registered explainer passes the same checks (as scikit-learn's estimator checks do).

Deterministic under a seed, finite scores, one score per token, word scores
summing to token scores, cost recorded, and the region it is handed is the
one it explains; methods with a completeness axiom
report a convergence delta that shrinks with more steps.
"""

from __future__ import annotations

import math

import pytest
import torch

import explainers
from audit.suites import expand
from explainers.region import Region


METHODS = sorted(explainers.REGISTRY)


@pytest.mark.parametrize("family", ["causal-lm", "classifier"])
@pytest.mark.parametrize("name", METHODS)
def test_conformance(adapters, family, name):
    adapter = adapters[family]
    encoded = adapter.encode(expand(adapter.suite, limit=1)[3])
    torch.manual_seed(0)
    first = explainers.get(name).explain(adapter, encoded)
    torch.manual_seed(0)
    second = explainers.get(name).explain(adapter, encoded)
    assert first.token_scores == pytest.approx(second.token_scores, abs=1e-6), "deterministic under a seed"
    assert len(first.token_scores) == len(encoded.tokens) == len(first.tokens)
    assert all(math.isfinite(s) for s in first.token_scores)
    assert sum(first.word_scores) == pytest.approx(sum(first.token_scores), abs=1e-6)
    assert len(first.word_scores) == len(encoded.words)
    for slot, tokens in encoded.slot_tokens.items():
        assert first.slot_scores[slot] == pytest.approx(sum(first.token_scores[t] for t in tokens), abs=1e-6)
    assert 0 <= sum(first.slot_shares.values()) <= 1 + 1e-9
    assert first.forward_passes > 0 and first.seconds > 0
    assert first.params and first.method == name
    with torch.no_grad():
        assert first.score == pytest.approx(float(adapter.score(input_ids=encoded.input_ids[None])), abs=1e-4)
    if "seed" in first.params and not explainers.REGISTRY[name].stochastic:
        other_seed = explainers.get(name, seed=first.params["seed"] + 1).explain(adapter, encoded)
        assert other_seed.token_scores == pytest.approx(first.token_scores, abs=1e-6), "declared seed-independent"
    # the robustness checks hand the method a region: its own gives the same map, a nudged one a different map
    region = Region.of(adapter, encoded)
    torch.manual_seed(0)
    given = explainers.get(name).explain(adapter, encoded, region)
    assert given.token_scores == pytest.approx(first.token_scores, abs=1e-5)
    nudged = region.with_region(region.region + 0.5 * region.region.std() * torch.randn_like(region.region))
    torch.manual_seed(0)
    moved = explainers.get(name).explain(adapter, encoded, nudged)
    assert moved.score != pytest.approx(first.score, abs=1e-6), "the method read the region it was given"


@pytest.mark.parametrize("family", ["causal-lm", "classifier"])
def test_integrated_gradients_completeness_gap_shrinks_with_steps(adapters, family):
    adapter = adapters[family]
    encoded = adapter.encode(expand(adapter.suite, limit=1)[0])
    coarse = explainers.get("ig", n_steps=2, method="riemann_trapezoid").explain(adapter, encoded)
    fine = explainers.get("ig", n_steps=64).explain(adapter, encoded)
    total = fine.score - fine.reference_score
    assert sum(fine.token_scores) == pytest.approx(total, abs=fine.convergence_delta + 1e-6)
    assert fine.convergence_delta <= max(0.02 * abs(total), 1e-4)
    assert fine.convergence_delta <= coarse.convergence_delta + 1e-6


def test_adaptive_integrated_gradients_doubles_steps_until_the_gap_is_within_tolerance(adapters):
    adapter = adapters["causal-lm"]  # the tiny classifier is nearly linear along the path: 2 nodes already suffice
    encoded = adapter.encode(expand(adapter.suite, limit=1)[0])
    fixed = explainers.get("ig", n_steps=2).explain(adapter, encoded)
    total = abs(fixed.score - fixed.reference_score)
    tolerance = 0.5 * fixed.convergence_delta / total  # the 2-node rule misses it, so more nodes are needed
    adaptive = explainers.get("ig", n_steps=2, tolerance=tolerance, max_steps=512).explain(adapter, encoded)
    tried = adaptive.extra["adaptive"]["rules_tried"]
    counts = list(dict.fromkeys(t["n_steps"] for t in tried))
    assert counts == [2 * 2**i for i in range(len(counts))] and len(counts) >= 2
    assert tried[0]["method"] == "gausslegendre"
    assert tried[0]["convergence_delta"] == pytest.approx(fixed.convergence_delta, rel=1e-4)
    for count in counts[:-1]:  # a rule that missed the tolerance was also tried paneled, and missed too
        rules = [t for t in tried if t["n_steps"] == count]
        assert [t["method"] for t in rules] == ["gausslegendre", "gausslegendre-panels"]
        assert all(t["relative_gap"] > tolerance for t in rules), "stops at the first rule within tolerance"
    assert adaptive.extra["adaptive"]["converged"] and adaptive.convergence_delta <= tolerance * total
    last = [t for t in tried if t["n_steps"] == counts[-1]]
    assert adaptive.convergence_delta == pytest.approx(min(t["convergence_delta"] for t in last), rel=1e-6)
    assert adaptive.params["method"] == min(last, key=lambda t: t["convergence_delta"])["method"]
    assert adaptive.params["n_steps"] == counts[-1]
    assert adaptive.forward_passes > fixed.forward_passes
    # a step budget too small to reach the tolerance: stops at the budget and says it did not converge
    capped = explainers.get("ig", n_steps=2, tolerance=tolerance, max_steps=3).explain(adapter, encoded)
    assert capped.params["n_steps"] == 2 and not capped.extra["adaptive"]["converged"]


def test_the_paneled_rule_integrates_a_sharp_switch_that_a_global_rule_of_as_many_nodes_misses():
    """On F(a) = tanh(200 (a - 0.37)) the integrand is a spike of width ~0.01: 64 global Gauss-Legendre nodes
    integrate it to 3.80 instead of 2 (90 % off); the paneled rule narrows its panels around the switch and
    gets within 2 % with the same 64 gradients (and 32 forward-only scores)."""
    import numpy as np

    from explainers.gradient import panel_nodes, scanned_panels

    def f(a):
        return np.tanh(200 * (np.asarray(a) - 0.37))

    def df(a):
        return 200 / np.cosh(200 * (a - 0.37)) ** 2

    exact = f(1.0) - f(0.0)
    unit_nodes, unit_weights = np.polynomial.legendre.leggauss(64)
    global_rule = float(((unit_weights / 2) * df((unit_nodes + 1) / 2)).sum())
    edges, scores = scanned_panels(f, 64)
    nodes, weights = panel_nodes(edges, scores, 64)
    assert len(edges) == 33 and len(nodes) == 64 and weights.sum() == pytest.approx(1.0)
    assert np.diff(edges).min() < 0.01 < np.diff(edges).max(), "narrow panels at the switch, wide ones elsewhere"
    assert abs(global_rule - exact) > 0.5 * abs(exact)
    assert float((weights * df(nodes)).sum()) == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize("family", ["causal-lm", "classifier"])
def test_paneled_integrated_gradients_is_the_same_integral_on_a_real_model(adapters, family):
    adapter = adapters[family]
    encoded = adapter.encode(expand(adapter.suite, limit=1)[0])
    reference = explainers.get("ig", n_steps=128).explain(adapter, encoded)
    paneled = explainers.get("ig", n_steps=64, method="gausslegendre-panels").explain(adapter, encoded)
    assert paneled.params["method"] == "gausslegendre-panels"
    assert paneled.token_scores == pytest.approx(reference.token_scores, abs=1e-3 * max(map(abs, reference.token_scores)))
    assert paneled.convergence_delta <= max(0.02 * abs(paneled.score - paneled.reference_score), 1e-4)
