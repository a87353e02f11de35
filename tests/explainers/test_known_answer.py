"""Known answer: a tiny Llama wired by hand so that its decision depends on one token only (``tests.wired``),
so every method must put that token's word first."""

from __future__ import annotations

import pytest
import torch

import explainers
from audit.suites import expand, load_suite
from tests.wired import blank_llama_adapter, wire_to_token

WORD_UNIT = {"feature-ablation", "shapley-sampling", "lime", "kernel-shap", "shap-partition"}
SAMPLES = {"lime": {"n_samples": 400}, "kernel-shap": {"n_samples": 400}, "shapley-sampling": {"n_samples": 4}}


def pick_target(tokenizer, encoded, excluded: set[int]) -> tuple[int, int]:
    """(word index, token id) of a one-token word whose token occurs once in the whole prompt."""
    ids = encoded.input_ids.tolist()
    start = encoded.region[0]
    for index, word in enumerate(encoded.words):
        if len(word.tokens) == 1:
            token_id = ids[start + word.tokens[0]]
            if ids.count(token_id) == 1 and token_id not in excluded:
                return index, token_id
    raise AssertionError("no suitable target token")


@pytest.fixture(scope="module")
def one_token_model(tmp_path_factory, bpe_tokenizer):
    suite = load_suite("fair-lending")
    case = expand(suite, limit=1)[0]
    adapter = blank_llama_adapter(tmp_path_factory.mktemp("one-token"), bpe_tokenizer, suite)
    encoded = adapter.encode(case)
    filler = bpe_tokenizer.encode(" ", add_special_tokens=False)
    answers = set(adapter.verbaliser.favourable) | set(adapter.verbaliser.unfavourable)
    word_index, target = pick_target(bpe_tokenizer, encoded, answers | set(filler))
    wire_to_token(adapter, target)
    return adapter, encoded, word_index, target


def test_the_decision_depends_on_the_target_token_only(one_token_model):
    adapter, encoded, word_index, target = one_token_model
    ids = encoded.input_ids[None]
    with torch.no_grad():
        base = float(adapter.score(input_ids=ids))
        start = encoded.region[0]
        for t in range(len(encoded.tokens)):
            changed = ids.clone()
            changed[0, start + t] = adapter.tokenizer.encode(" ", add_special_tokens=False)[0]
            moved = abs(float(adapter.score(input_ids=changed)) - base)
            if encoded.words[word_index].tokens == (t,):
                assert moved > 5.0
            else:
                assert moved < 1e-3


@pytest.mark.parametrize("name", sorted(explainers.REGISTRY))
def test_every_method_ranks_the_target_word_first(one_token_model, name):
    adapter, encoded, word_index, _ = one_token_model
    params = {**({"unit": "word"} if name in WORD_UNIT else {}), **SAMPLES.get(name, {})}
    attribution = explainers.get(name, **params).explain(adapter, encoded)
    magnitudes = [abs(s) for s in attribution.word_scores]
    ranked = sorted(range(len(magnitudes)), key=magnitudes.__getitem__, reverse=True)
    assert ranked[0] == word_index, (attribution.words[ranked[0]], attribution.words[word_index])
    assert magnitudes[ranked[0]] > 2 * magnitudes[ranked[1]]


def test_erasure_faithfulness_finds_the_target_word(one_token_model):
    from explainers.faithfulness import erasure_curves, word_order
    from explainers.region import Region

    adapter, encoded, word_index, _ = one_token_model
    region = Region.of(adapter, encoded)
    attribution = explainers.get("ig").explain(adapter, encoded)
    sign = 1.0 if attribution.score > 0 else -1.0
    order = word_order(attribution.word_scores, sign, signed=True)
    assert order[0] == word_index
    faithful = erasure_curves(region, order, attribution.score)
    # Removing the one word that matters moves the decision fully at every bin; keeping it alone changes nothing.
    full_change = abs(attribution.score - attribution.reference_score)
    assert all(c == pytest.approx(full_change, rel=1e-3) for c in faithful["comprehensiveness"])
    assert all(abs(s) < 1e-3 for s in faithful["sufficiency"])
    worst_first = list(reversed(order))
    unfaithful = erasure_curves(region, worst_first, attribution.score)
    assert unfaithful["aopc_comprehensiveness"] < faithful["aopc_comprehensiveness"]
    assert unfaithful["aopc_sufficiency"] > faithful["aopc_sufficiency"]


def test_leave_one_out_and_infidelity_single_out_the_target_word(one_token_model):
    from explainers.faithfulness import leave_one_out, tau_against, word_infidelity
    from explainers.region import Region

    adapter, encoded, word_index, _ = one_token_model
    region = Region.of(adapter, encoded)
    attribution = explainers.get("ig").explain(adapter, encoded)
    loo = leave_one_out(region, attribution.score)
    assert loo["forward_passes"] == len(encoded.words)
    full_change = attribution.score - attribution.reference_score
    for index, value in enumerate(loo["word_scores"]):
        assert value == pytest.approx(full_change if index == word_index else 0.0, abs=1e-3)
    assert tau_against(loo["word_scores"], attribution.word_scores, signed=True) > 0

    noise = torch.Generator().manual_seed(0)
    maps = {"ig": attribution.word_scores,
            "random": torch.randn(len(encoded.words), generator=noise).tolist()}
    found = word_infidelity(region, maps, attribution.score, n_samples=32, erase_probability=0.3, seed=0)
    # IG predicts every erasure's effect (erasing the target moves the score fully, anything else not at all)
    assert found["methods"]["ig"]["normalised"] < 1e-3
    assert found["methods"]["random"]["normalised"] > 0.3
    assert found["forward_passes"] <= 32 + 1, "the input and 32 erasures, shared by the maps"
