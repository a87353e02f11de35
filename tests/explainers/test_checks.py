"""Every registered method passes every check of ``explainers.checks`` on a causal LM and a classifier, and a
method broken on purpose fails the check named for what is broken (and only that one)."""

from __future__ import annotations

import pytest
import torch

import explainers
from audit.suites import expand
from explainers.base import BaseExplainer, counted, make_attribution
from explainers.region import Region
from explainers.checks import (
    CHECKS,
    check_cost_recorded,
    check_deterministic_under_seed,
    check_explainer,
    check_get_params,
)

FAST = {  # few steps and samples: the checks run every method several times
    "ig": {"n_steps": 4}, "gradient-shap": {"n_samples": 4}, "shapley-sampling": {"n_samples": 2},
    "lime": {"n_samples": 8}, "kernel-shap": {"n_samples": 8}, "shap-partition": {"max_evals": 16},
}
CASES = [
    (name, check)
    for name in explainers.available()
    for _, check in check_explainer(explainers.get(name, **FAST.get(name, {})), generate_only=True)
]


def case_of(adapter):
    return adapter.encode(expand(adapter.suite, limit=1)[3])


@pytest.mark.parametrize("family", ["causal-lm", "classifier"])
@pytest.mark.parametrize(("name", "check"), CASES, ids=[f"{n}-{c.__name__}" for n, c in CASES])
def test_every_method_passes_every_check(adapters, family, name, check):
    adapter = adapters[family]
    check(explainers.get(name, **FAST.get(name, {})), adapter, case_of(adapter))


class EqualShares(BaseExplainer):
    """Every case-text token gets an equal share of the decision score: passes every check."""

    name = "toy-equal-shares"
    title = "Equal shares (toy)"
    descriptive = False
    signed = True
    stochastic = False

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def _scores(self, adapter, encoded, region) -> tuple[list[float], float]:
        region = region or Region.of(adapter, encoded)  # a perturbed region is read, not the case's ids
        with torch.no_grad():
            score = float(region.forward(region.region)[0])
        return [self.scale * score / len(encoded.tokens)] * len(encoded.tokens), score

    @counted
    def explain(self, adapter, encoded, region=None):
        scores, score = self._scores(adapter, encoded, region)
        return make_attribution(self.name, self.params, encoded, scores, score=score)


class UnderCounted(EqualShares):
    """Broken: scores the case twice but records one forward pass, a count derived instead of counted."""

    def explain(self, adapter, encoded, region=None):
        self._scores(adapter, encoded, region)
        scores, score = self._scores(adapter, encoded, region)
        return make_attribution(self.name, self.params, encoded, scores, score=score, forward_passes=1)


class GlobalNoise(EqualShares):
    """Broken: adds noise drawn from torch's global generator, not from a seed of its own."""

    @counted
    def explain(self, adapter, encoded, region=None):
        scores, score = self._scores(adapter, encoded, region)
        noisy = (torch.tensor(scores) + torch.randn(len(scores))).tolist()
        return make_attribution(self.name, self.params, encoded, noisy, score=score)


class KeywordBag(EqualShares):
    """Broken: takes its parameters as ``**params`` (and lists them by hand), so the signature names none."""

    def __init__(self, **params):
        super().__init__(**params)

    def get_params(self):
        return {"scale": self.scale}


@pytest.mark.parametrize(("toy", "failing"), [
    (UnderCounted, check_cost_recorded),
    (GlobalNoise, check_deterministic_under_seed),
    (KeywordBag, check_get_params),
])
def test_a_broken_method_fails_the_check_named_for_its_fault(adapters, toy, failing):
    adapter = adapters["causal-lm"]
    encoded = case_of(adapter)
    check_explainer(EqualShares, adapter, encoded)  # the toy itself is sound
    with pytest.raises(AssertionError, match=failing.__name__):
        check_explainer(toy, adapter, encoded)
    for check in CHECKS:
        if check is failing:
            with pytest.raises(AssertionError):
                check(toy(), adapter, encoded)
        else:
            check(toy(), adapter, encoded)
