"""The shared-prefix KV cache gives the scores and gradients of the full forward pass."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite
from explainers.region import Region


@pytest.fixture(scope="module")
def llama_adapter(tiny_llama_dir):
    return make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), load_suite("fair-lending"))


def full_forward_scores(region: Region, batch: torch.Tensor) -> torch.Tensor:
    rows = batch.shape[0]
    full = torch.cat([region.before.expand(rows, -1, -1), batch, region.after.expand(rows, -1, -1)], dim=1)
    return region.adapter.score(inputs_embeds=full)


def test_cached_prefix_scores_and_gradients_equal_the_full_forward_pass(llama_adapter):
    encoded = llama_adapter.encode(expand(llama_adapter.suite, limit=1)[3])
    region = Region.of(llama_adapter, encoded)
    assert region.prefix is not None and region.prefix.length == encoded.region[0] > 0
    # rows that differ inside the region: the input, the reference, and a blend
    batch = torch.cat([region.region, region.reference, 0.5 * (region.region + region.reference)])
    cached_input = batch.clone().requires_grad_()
    full_input = batch.clone().requires_grad_()
    cached = region.forward(cached_input)
    full = full_forward_scores(region, full_input)
    assert cached.detach() == pytest.approx(full.detach(), abs=1e-4)
    assert len(set(cached.tolist())) == 3, "the rows must give different scores, or the test proves nothing"
    cached.sum().backward()
    full.sum().backward()
    torch.testing.assert_close(cached_input.grad, full_input.grad, atol=1e-4, rtol=1e-3)


def test_the_cache_survives_repeated_use(llama_adapter):
    encoded = llama_adapter.encode(expand(llama_adapter.suite, limit=1)[0])
    region = Region.of(llama_adapter, encoded)
    with torch.no_grad():
        first = region.forward(region.region.expand(2, -1, -1))
        second = region.forward(region.region)
        scores, _ = llama_adapter.decide([encoded])
    assert first.tolist() == pytest.approx([scores[0]] * 2, abs=1e-4)
    assert float(second[0]) == pytest.approx(scores[0], abs=1e-4)


def test_classifier_regions_run_whole_sequences(tiny_bert_classifier_dir, fair_lending_raw):
    from audit.suites import parse_suite

    raw = dict(fair_lending_raw, answers={"favourable": ["approve"], "unfavourable": ["decline"]})
    adapter = make_adapter(load_model(parse_model_spec(str(tiny_bert_classifier_dir))), parse_suite(raw))
    region = Region.of(adapter, adapter.encode(expand(adapter.suite, limit=1)[0]))
    assert region.prefix is None
    with torch.no_grad():
        assert torch.isfinite(region.forward(region.region)).all()


def test_rows_that_share_a_start_with_the_input_or_the_reference_skip_it_and_score_the_same(llama_adapter):
    """Without gradients a perturbed row runs only from its first token that leaves the input (or the reference)."""
    encoded = llama_adapter.encode(expand(llama_adapter.suite, limit=1)[3])
    region = Region.of(llama_adapter, encoded)
    n = region.region.shape[1]
    keep = torch.ones((6, n), dtype=torch.bool)
    keep[1, n // 2:] = False  # the input up to the middle, then the reference
    keep[2, -1] = False  # differs from the input only at the last token
    keep[3] = False
    keep[3, n // 3] = True  # the reference up to a third, one input token, the reference again
    keep[4, 0] = False  # differs from the first token on: nothing shared
    keep[5, : n // 4] = False  # the reference for a quarter, then the input
    rows = torch.where(keep[:, :, None], region.region, region.reference)
    with torch.no_grad():
        anchored = region.forward(rows)
        full = full_forward_scores(region, rows)
    assert anchored.tolist() == pytest.approx(full.tolist(), abs=1e-4)
    assert len({round(s, 4) for s in full.tolist()}) >= 4, "rows must differ, or the test proves nothing"
    with torch.no_grad():  # an empty "after" (the case text ends the prompt) still runs one token
        bare = dataclasses.replace(region, after=region.after[:, :0])
        assert bare.forward(region.region).tolist() == pytest.approx(
            bare.adapter.score(inputs_embeds=torch.cat([bare.before, bare.region], dim=1)).tolist(), abs=1e-4)
