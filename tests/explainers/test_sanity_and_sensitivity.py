"""The randomisation sanity check and max-sensitivity on a tiny random Llama."""

from __future__ import annotations

import time

import pytest
import torch

import explainers
from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite
from audit.stages.trust import TrustPlan, _sanity
from audit.progress import Progress
from explainers.base import make_attribution
from explainers.faithfulness import max_sensitivity, randomised_top_layers
from explainers.region import Region


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir):
    return make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), load_suite("fair-lending"))


class EmbeddingNorm:
    """A map that ignores the model: each token scored by the norm of its input embedding."""

    name, title, descriptive, signed, params = "embedding-norm", "Embedding norm", False, False, {}

    def explain(self, adapter, encoded, region=None):
        region = region if region is not None else Region.of(adapter, encoded)
        started = time.perf_counter()
        norms = region.region[0].norm(dim=-1).tolist()
        with torch.no_grad():
            score = float(region.forward(region.region))
        return make_attribution(self.name, {}, encoded, norms, score=score, forward_passes=1,
                                seconds=time.perf_counter() - started)


def test_randomising_layers_changes_the_model_and_restores_it(adapter):
    encoded = adapter.encode(expand(adapter.suite, limit=1)[0])
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    trained, _ = adapter.decide([encoded])
    with randomised_top_layers(adapter, 1, seed=0):
        randomised, _ = adapter.decide([encoded])
        top = adapter.decoder_layers[-1]
        assert not torch.equal(next(top.parameters()), before[next(k for k in before if ".layers.1." in k)])
    assert randomised[0] != pytest.approx(trained[0], abs=1e-4)
    after = adapter.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_sanity_check_fails_a_map_that_ignores_the_model_and_passes_ig(adapter):
    cases = expand(adapter.suite, limit=1)[:2]
    encoded = {c.case_id: adapter.encode(c) for c in cases}
    instances = {"ig": explainers.get("ig", n_steps=8), "embedding-norm": EmbeddingNorm()}
    results = {name: {cid: e.explain(adapter, encoded[cid]).to_dict() for cid in encoded}
               for name, e in instances.items()}
    plan = TrustPlan(sanity_cases=2, sanity_stages=(0.5, 1.0))
    sanity = _sanity(adapter, encoded, results, instances, list(encoded), 0, plan,
                     Progress("test", 1, quiet=True))
    assert [s["randomised_layers"] for s in sanity["stages"]] == [1, 2]
    assert sanity["passes"]["embedding-norm"] is False
    assert sanity["stages"][-1]["methods"]["embedding-norm"]["absolute"] == pytest.approx(1.0)
    assert sanity["passes"]["ig"] is True


def test_max_sensitivity_is_zero_without_noise_and_positive_with_it(adapter):
    encoded = adapter.encode(expand(adapter.suite, limit=1)[0])
    region = Region.of(adapter, encoded)
    explainer = explainers.get("input-x-gradient")
    scores = explainer.explain(adapter, encoded).token_scores
    still = max_sensitivity(explainer, adapter, encoded, region, scores, n_samples=2, radius=0.0, seed=0)
    moved = max_sensitivity(explainer, adapter, encoded, region, scores, n_samples=2,
                            radius=0.5 * float(region.region.std()), seed=0)
    assert still == pytest.approx(0.0, abs=1e-6)
    assert moved > 1e-3
