"""Activation patching of the attribute span: known answers on a hand-wired model, agreement on tiny real models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite, parse_suite
from explainers.patching import (
    aligned_span_positions,
    hidden_of,
    patch_attribute_span,
    summarise_patching,
    with_hidden,
)
from tests.wired import blank_llama_adapter, wire_to_token


def baseline_and_counterfactuals(adapter):
    """The first scenario's baseline case and its counterfactual cases, encoded."""
    cases = expand(adapter.suite, limit=1)
    baseline = next(c for c in cases if c.is_baseline)
    return adapter.encode(baseline), [adapter.encode(c) for c in cases if not c.is_baseline]


def equal_length_pair(adapter):
    """A counterfactual whose changed span has as many tokens as the baseline's, the rest of the prompt equal."""
    target, sources = baseline_and_counterfactuals(adapter)
    for source in sources:
        positions = aligned_span_positions(target, source, source.case.attribute)
        if positions["target_span_tokens"] == positions["source_span_tokens"] and target.length == source.length:
            return target, source
    raise AssertionError("no equal-length counterfactual pair")


@pytest.fixture(scope="module")
def llama_adapter(tiny_llama_dir):
    return make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), load_suite("fair-lending"))


@pytest.fixture(scope="module")
def bert_adapter(tiny_bert_classifier_dir, fair_lending_raw):
    """The tiny BERT with its weight matrices x10 (std 0.2, about 1/sqrt(hidden size)).

    At BERT's initialisation (std 0.02) [CLS] is nearly blind to any one token: effects of ~1e-6 log-odds, at
    float32 rounding, would make every comparison below meaningless.
    """
    raw = dict(fair_lending_raw, answers={"favourable": ["approve"], "unfavourable": ["decline"]})
    adapter = make_adapter(load_model(parse_model_spec(str(tiny_bert_classifier_dir))), parse_suite(raw))
    with torch.no_grad():
        for parameter in adapter.model.parameters():
            if parameter.dim() == 2:
                parameter.mul_(10.0)
    return adapter


@pytest.fixture(scope="module")
def planted_model(tmp_path_factory, bpe_tokenizer):
    """A 2-layer Llama whose decision depends on one token T of an attribute slot of the baseline prompt.

    The wiring of ``tests.wired`` with the reading head in layer 1: layer 0 is all zeros, so it passes the
    residual stream through unchanged. T's information therefore sits at T's own position in the embeddings and
    at the output of layer 0, and at the answer position only from layer 1 on. T is the last token of the
    baseline's span of a slot that a counterfactual changes to text without T. Returns (adapter, baseline, the
    counterfactual that removes T, a counterfactual that changes another slot).
    """
    suite = load_suite("fair-lending")
    adapter = blank_llama_adapter(tmp_path_factory.mktemp("planted"), bpe_tokenizer, suite, layers=2)
    baseline, counterfactuals = baseline_and_counterfactuals(adapter)
    answers = set(adapter.verbaliser.favourable) | set(adapter.verbaliser.unfavourable)
    ids = baseline.input_ids.tolist()
    for decisive in counterfactuals:
        positions = aligned_span_positions(baseline, decisive, decisive.case.attribute)
        planted = ids[positions["target_positions"][-1]]
        if ids.count(planted) == 1 and planted not in decisive.input_ids.tolist() and planted not in answers:
            break
    else:
        raise AssertionError("no slot token to plant the decision on")
    ignored = next(c for c in counterfactuals if c.case.attribute != decisive.case.attribute)
    wire_to_token(adapter, planted, reading_layer=1)
    return adapter, baseline, decisive, ignored


def nie_by_layer(result) -> dict[int, float | None]:
    return {row["layer"]: row["normalised_indirect_effect"] for row in result["layers"]}


def test_the_planted_token_is_carried_by_its_own_position_until_the_layer_that_reads_it(planted_model):
    adapter, baseline, decisive, _ = planted_model
    result = patch_attribute_span(adapter, baseline, decisive)
    assert abs(result["total_effect"]) > 5.0
    assert result["prefix_tokens"] == min(result["target_positions"]) > 0
    nie = nie_by_layer(result)
    assert nie[-1] == pytest.approx(1.0, abs=1e-3), "the source's embeddings remove T"
    assert nie[0] == pytest.approx(1.0, abs=1e-3), "layer 0 passes T through at its own position"
    assert nie[1] == pytest.approx(0.0, abs=1e-3), "after layer 1 the answer position already holds T"


def test_a_slot_the_model_ignores_has_no_effect_at_any_layer(planted_model):
    adapter, baseline, _, ignored = planted_model
    result = patch_attribute_span(adapter, baseline, ignored)
    assert abs(result["total_effect"]) < 1e-3
    assert result["nie_undefined"] is not None and "no gap to mediate" in result["nie_undefined"]
    for row in result["layers"]:
        assert abs(row["indirect_effect"]) < 1e-3
        assert row["normalised_indirect_effect"] is None


def test_summary_of_planted_pairs_finds_layer_0_and_sets_the_null_pair_aside(planted_model):
    adapter, baseline, decisive, ignored = planted_model
    pairs = [patch_attribute_span(adapter, baseline, source) for source in (decisive, ignored)]
    summary = summarise_patching(pairs, seed=0)
    assert summary["n_pairs"] == 2 and summary["n_pairs_total_effect_below_floor"] == 1
    assert summary["peak_layer"] == 0
    assert summary["mediated_fraction"]["mean"] == pytest.approx(1.0, abs=1e-3)
    assert summary["mediated_fraction"]["ci"] is None, "no CI under 5 pairs"
    assert [row["layer"] for row in summary["layers"]] == [-1, 0, 1]
    assert summary["layers"][0]["indirect_effect"]["n_pairs"] == 2


def reference_patch(adapter, target, source, layer: int) -> float:
    """s(target with decoder layer ``layer``'s output at the span set to the source's): one full forward each."""
    positions = aligned_span_positions(target, source, source.case.attribute)
    module = adapter.decoder_layers[layer]
    kept = {}

    def keep(_, __, output):
        kept["states"] = hidden_of(output)[0, positions["source_positions"]].clone()

    def put(_, __, output):
        hidden = hidden_of(output).clone()
        hidden[0, positions["target_positions"]] = kept["states"]
        return with_hidden(output, hidden)

    with torch.no_grad():
        handle = module.register_forward_hook(keep)
        adapter.score(input_ids=source.input_ids[None])
        handle.remove()
        handle = module.register_forward_hook(put)
        score = float(adapter.score(input_ids=target.input_ids[None])[0])
        handle.remove()
    return score


# Effects on the tiny random Llama are ~1e-3 log-odds, so agreement must hold well below that.
AGREE = 1e-6


def test_embedding_row_reproduces_the_source_and_batched_rows_equal_one_layer_at_a_time(llama_adapter):
    target, source = equal_length_pair(llama_adapter)
    result = patch_attribute_span(llama_adapter, target, source)
    assert result["embedding_check_gap"] is not None and result["embedding_check_gap"] < AGREE
    assert result["layers"][0]["patched_score"] == pytest.approx(result["source_score"], abs=AGREE)
    scores = [row["patched_score"] for row in result["layers"]]
    assert len({round(s, 5) for s in scores}) > 1, "the rows must differ, or the test proves nothing"
    for layer in range(len(llama_adapter.decoder_layers)):
        assert result["layers"][1 + layer]["patched_score"] == pytest.approx(
            reference_patch(llama_adapter, target, source, layer), abs=AGREE)
    assert result["forward_passes"] == 1 + 1 + len(scores)
    assert result["seconds"] > 0


def test_prefix_cache_gives_the_scores_of_the_full_forward_pass(llama_adapter):
    target, sources = baseline_and_counterfactuals(llama_adapter)
    source = next(s for s in sources if s.case.value == "Lakisha Washington")
    cached = patch_attribute_span(llama_adapter, target, source)
    full = patch_attribute_span(llama_adapter, target, source, use_prefix_cache=False)
    assert cached["prefix_tokens"] > 0 and full["prefix_tokens"] == 0
    assert cached["tokens"] < full["tokens"]
    assert cached["target_score"] == pytest.approx(full["target_score"], abs=AGREE)
    assert abs(cached["layers"][1]["indirect_effect"]) > 100 * AGREE, "layer 0's patch must move the score"
    for with_cache, without in zip(cached["layers"], full["layers"]):
        assert with_cache["patched_score"] == pytest.approx(without["patched_score"], abs=AGREE)


def test_unequal_spans_patch_the_last_k_tokens_of_each(llama_adapter):
    target, sources = baseline_and_counterfactuals(llama_adapter)
    source = next(s for s in sources if s.case.value == "Lakisha Washington")
    result = patch_attribute_span(llama_adapter, target, source)
    target_span = [target.region[0] + t for t in target.slot_tokens["applicant"]]
    source_span = [source.region[0] + t for t in source.slot_tokens["applicant"]]
    assert len(target_span) != len(source_span), "the tokenizer must split the two names differently"
    k = min(len(target_span), len(source_span))
    assert result["patched_tokens"] == k
    assert (result["target_span_tokens"], result["source_span_tokens"]) == (len(target_span), len(source_span))
    assert result["target_positions"] == target_span[-k:] and result["source_positions"] == source_span[-k:]
    assert result["embedding_check_gap"] is None, "the patched target is not the source prompt"
    assert all(math.isfinite(row["indirect_effect"]) for row in result["layers"])


def test_bidirectional_classifier_gives_finite_effects_and_none_above_the_last_layer(bert_adapter):
    assert not bert_adapter.supports_prefix_cache
    target, source = equal_length_pair(bert_adapter)
    result = patch_attribute_span(bert_adapter, target, source)
    layers = len(bert_adapter.decoder_layers)
    assert [row["layer"] for row in result["layers"]] == list(range(-1, layers))
    assert result["prefix_tokens"] == 0
    assert all(math.isfinite(row["indirect_effect"]) for row in result["layers"])
    assert abs(result["total_effect"]) > 1e-3
    assert result["embedding_check_gap"] < 1e-5
    # the classifier reads [CLS] only, so changing other positions after the last layer changes nothing
    assert result["layers"][-1]["indirect_effect"] == pytest.approx(0.0, abs=1e-6)
    assert abs(result["layers"][1]["indirect_effect"]) > 1e-4, "a patch below the last layer reaches [CLS]"


def test_summary_means_and_confidence_intervals_over_pairs(llama_adapter):
    target, sources = baseline_and_counterfactuals(llama_adapter)
    # the tiny random model moves its decision by ~1e-3 log-odds, so the floor comes down to keep the pairs
    pairs = [patch_attribute_span(llama_adapter, target, source, total_effect_floor=1e-5) for source in sources[:6]]
    summary = summarise_patching(pairs, seed=0, n_resamples=500)
    defined = [p for p in pairs if p["nie_undefined"] is None]
    assert len(defined) >= 5, "no CI under 5 pairs"
    for index, row in enumerate(summary["layers"]):
        values = [p["layers"][index]["normalised_indirect_effect"] for p in defined]
        assert row["normalised_indirect_effect"]["mean"] == pytest.approx(np.mean(values))
        low, high = row["normalised_indirect_effect"]["ci"]
        assert low <= np.mean(values) <= high
        assert row["indirect_effect"]["n_pairs"] == len(pairs)
    means = {row["layer"]: abs(row["normalised_indirect_effect"]["mean"]) for row in summary["layers"]}
    assert summary["peak_layer"] == max((layer for layer in means if layer >= 0), key=means.__getitem__)
    assert summary["mediated_fraction"]["mean"] == pytest.approx(
        np.mean([p["layers"][1]["normalised_indirect_effect"] for p in defined]))
    assert summary["mediated_fraction"]["ci"] is not None
