"""Every kind of sequence-classification head the adapter reads: encoders that read [CLS] through a pooler, a
context pooler, a pre-classifier or a two-layer head, and a decoder that reads its last token.

The invariants a validator relies on, per architecture: a case scores the same alone and padded in a batch, the
score is the favourable-minus-unfavourable logit margin of the model's own forward pass, the logit lens at the
last layer is that score (so the lens reads through the real head), and attributions are finite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explainers
from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, parse_suite
from explainers.hidden import HiddenStateRecorder, answer_and_slot_positions
from explainers.lens import lens_scores
from tests.conftest import train_wordpiece_tokenizer

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_labels=2,
             id2label={0: "decline", 1: "approve"}, label2id={"decline": 0, "approve": 1})


def roberta(vocab: int, tokenizer):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    return RobertaForSequenceClassification(RobertaConfig(vocab_size=vocab, max_position_embeddings=520,
                                                          pad_token_id=tokenizer.pad_token_id, **SMALL))


def distilbert(vocab: int, tokenizer):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=vocab, dim=32, hidden_dim=64, n_layers=2, n_heads=4, num_labels=2,
                              id2label=SMALL["id2label"], label2id=SMALL["label2id"], pad_token_id=tokenizer.pad_token_id)
    return DistilBertForSequenceClassification(config)


def deberta(vocab: int, tokenizer):
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    return DebertaV2ForSequenceClassification(DebertaV2Config(vocab_size=vocab, max_position_embeddings=512,
                                                              pad_token_id=tokenizer.pad_token_id, **SMALL))


def llama(vocab: int, tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=vocab, num_key_value_heads=2, max_position_embeddings=2048, **SMALL)
    return LlamaForSequenceClassification(config)  # no pad_token_id: the adapter supplies it


BUILDERS = {"roberta": roberta, "distilbert": distilbert, "deberta-v2": deberta, "llama": llama}


@pytest.fixture(scope="module", params=list(BUILDERS))
def adapter(request, tmp_path_factory, fair_lending_raw, bpe_tokenizer):
    tokenizer = bpe_tokenizer if request.param == "llama" else train_wordpiece_tokenizer()
    torch.manual_seed(0)
    model = BUILDERS[request.param](len(tokenizer), tokenizer)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    raw = dict(fair_lending_raw, answers={"favourable": ["approve"], "unfavourable": ["decline"]})
    return make_adapter(load_model(parse_model_spec(str(folder))), parse_suite(raw))


def test_scores_are_the_label_margin_alone_or_padded_in_a_batch(adapter):
    encoded = [adapter.encode(c) for c in expand(adapter.suite, limit=1)[::7]]
    assert len({e.length for e in encoded}) > 1, "the batch needs padding"
    batched, masses = adapter.decide(encoded, batch_tokens=10_000)
    for item, score in zip(encoded, batched):
        with torch.no_grad():
            logits = adapter.model(item.input_ids[None]).logits[0]
        assert score == pytest.approx(float(logits[adapter.favourable_index] - logits[adapter.unfavourable_index]),
                                      abs=1e-4)
    assert masses == pytest.approx([1.0] * len(encoded), abs=1e-5)  # two labels: all the mass is on them


def test_the_lens_reads_through_the_real_head_and_ends_at_the_score(adapter):
    encoded = [adapter.encode(c) for c in expand(adapter.suite, limit=1)[:4]]
    recorder = HiddenStateRecorder(adapter, answer_and_slot_positions(adapter))
    scores, _ = adapter.decide(encoded, recorder=recorder)
    item = encoded[0]
    with torch.no_grad():
        hidden = adapter.model(item.input_ids[None], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(recorder.states[item.case.case_id]["answer"][1],
                               hidden[1][0, adapter.read_out_position(item)].numpy(), atol=1e-4)
    lens = lens_scores(adapter, {c: s["answer"] for c, s in recorder.states.items()})
    assert [lens[e.case.case_id][-1] for e in encoded] == pytest.approx(scores, abs=1e-4)


def test_a_decoder_classifier_reads_its_last_token_and_an_encoder_its_first(adapter):
    item = adapter.encode(expand(adapter.suite, limit=1)[0])
    expected = item.length - 1 if type(adapter.model).__name__.startswith("Llama") else 0
    assert adapter.read_out_position(item) == expected
    assert adapter.describe()["read_out_token"] == ("last" if expected else "first ([CLS])")


def test_attributions_are_finite_with_one_score_per_token(adapter):
    item = adapter.encode(expand(adapter.suite, limit=1)[0])
    for explainer in (explainers.get("ig", n_steps=4), explainers.get("attention-rollout")):
        found = explainer.explain(adapter, item)
        assert len(found.token_scores) == item.region[1] - item.region[0]
        assert np.isfinite(found.token_scores).all()
