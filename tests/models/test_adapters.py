"""Adapters: the decision score, answer mass, encoding spans and batching on tiny real models."""

from __future__ import annotations

import pytest
import torch

from audit.errors import SuiteError
from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite, parse_suite


@pytest.fixture(scope="module")
def llama_adapter(tiny_llama_dir):
    return make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), load_suite("fair-lending"))


@pytest.fixture(scope="module")
def bert_adapter(tiny_bert_classifier_dir, fair_lending_raw):
    raw = dict(fair_lending_raw, answers={"favourable": ["approve"], "unfavourable": ["decline"]})
    return make_adapter(load_model(parse_model_spec(str(tiny_bert_classifier_dir))), parse_suite(raw))


def test_decision_score_is_log_odds_of_answer_variants(llama_adapter):
    case = expand(llama_adapter.suite, limit=1)[0]
    encoded = llama_adapter.encode(case)
    assert encoded.prompt.endswith(llama_adapter.suite.answer_prefix)
    assert case.text in encoded.prompt and llama_adapter.suite.question in encoded.prompt
    with torch.no_grad():
        logits = llama_adapter.model(encoded.input_ids[None]).logits[0, -1].float()
    p = logits.softmax(-1)
    fav = sorted(llama_adapter.verbaliser.favourable)
    unfav = sorted(llama_adapter.verbaliser.unfavourable)
    expected = torch.log(p[fav].sum()) - torch.log(p[unfav].sum())
    scores, masses = llama_adapter.decide([encoded])
    assert scores[0] == pytest.approx(float(expected), abs=1e-4)
    assert masses[0] == pytest.approx(float(p[fav].sum() + p[unfav].sum()), abs=1e-5)


def test_verbaliser_holds_single_token_case_and_space_variants(llama_adapter):
    tokenizer = llama_adapter.tokenizer
    for token_id, text in llama_adapter.verbaliser.favourable.items():
        assert tokenizer.encode(text, add_special_tokens=False) == [token_id]
        assert text.strip().lower() == "yes"
    assert {t.strip().lower() for t in llama_adapter.verbaliser.unfavourable.values()} == {"no"}


def test_answer_word_without_single_token_is_a_suite_error(tiny_llama_dir, fair_lending_raw):
    raw = dict(fair_lending_raw, answers={"favourable": ["Absolutely-approved"], "unfavourable": ["No"]})
    with pytest.raises(SuiteError, match=r"answers.favourable: no form of \['Absolutely-approved'\] is a single token"):
        make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), parse_suite(raw, label="x.yaml"))


@pytest.mark.parametrize("adapter_name", ["llama_adapter", "bert_adapter"])
def test_batched_scores_equal_one_at_a_time(request, adapter_name):
    adapter = request.getfixturevalue(adapter_name)
    encoded = [adapter.encode(c) for c in expand(adapter.suite, limit=2)]
    assert len({e.length for e in encoded}) > 1, "cases of different lengths exercise the padding"
    batched, _ = adapter.decide(encoded, batch_tokens=4 * max(e.length for e in encoded))
    with torch.no_grad():
        single = [float(adapter.score(input_ids=e.input_ids[None].to(adapter.device))) for e in encoded]
    assert batched == pytest.approx(single, abs=1e-4)


@pytest.mark.parametrize("adapter_name", ["llama_adapter", "bert_adapter"])
def test_encoding_maps_tokens_words_and_slots_onto_the_case_text(request, adapter_name):
    adapter = request.getfixturevalue(adapter_name)
    case = expand(adapter.suite, limit=1)[5]
    encoded = adapter.encode(case)
    start, end = encoded.region
    assert len(encoded.tokens) == end - start == len(encoded.token_chars)
    assert " ".join(w.text for w in encoded.words) == " ".join(case.text.split())
    owned = sorted(t for w in encoded.words for t in w.tokens)
    assert owned == list(range(len(encoded.tokens))), "every region token belongs to exactly one word"
    (slot_start, slot_end), = case.slots["applicant"]
    name_words = [w.text for w in encoded.words if w.slot == "applicant"]
    assert " ".join(name_words).rstrip(",.") == case.text[slot_start:slot_end]
    covered = "".join(case.text[s:e] for s, e in (encoded.token_chars[t] for t in encoded.slot_tokens["applicant"]))
    assert covered.replace(" ", "").lower() == case.text[slot_start:slot_end].replace(" ", "").lower()


def test_classifier_reads_label_margin(bert_adapter):
    assert bert_adapter.labels[bert_adapter.favourable_index] == "approve"
    encoded = bert_adapter.encode(expand(bert_adapter.suite, limit=1)[0])
    with torch.no_grad():
        logits = bert_adapter.model(encoded.input_ids[None]).logits[0]
    scores, masses = bert_adapter.decide([encoded])
    assert scores[0] == pytest.approx(float(logits[1] - logits[0]), abs=1e-5)
    assert masses[0] == pytest.approx(1.0, abs=1e-6)


def test_classifier_without_matching_label_is_a_suite_error(tiny_bert_classifier_dir, fair_lending_raw):
    with pytest.raises(SuiteError, match=r"answers.favourable: none of \['Yes'\] is a label of the model"):
        make_adapter(load_model(parse_model_spec(str(tiny_bert_classifier_dir))), parse_suite(fair_lending_raw))


def test_a_suite_without_a_question_serves_a_classifier_but_not_a_causal_lm(
    tiny_llama_dir, tiny_bert_classifier_dir, fair_lending_raw
):
    raw = {k: v for k, v in fair_lending_raw.items() if k != "question"}
    raw["answers"] = {"favourable": ["approve"], "unfavourable": ["decline"]}
    suite = parse_suite(raw)
    classifier = make_adapter(load_model(parse_model_spec(str(tiny_bert_classifier_dir))), suite)
    case = expand(suite, limit=1)[0]
    assert classifier.encode(case).prompt == case.text
    with pytest.raises(SuiteError, match=r"fair-lending: question: is required to audit a causal LM"):
        make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), suite)


def test_layers_are_found(llama_adapter, bert_adapter):
    assert len(llama_adapter.decoder_layers) == 2
    assert len(bert_adapter.decoder_layers) == 2
