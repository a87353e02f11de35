"""Token <-> word <-> slot alignment for byte-level BPE and WordPiece tokenizers."""

from __future__ import annotations

import pytest

from explainers.spans import align_words, slot_token_spans, token_word_index
from tests.conftest import train_bpe_tokenizer, train_wordpiece_tokenizer

TEXT = "Lakisha Washington, age 81, asks for $5,000."
SLOTS = {"applicant": [(0, 18)], "age": [(24, 26)]}


def test_whitespace_tokens_join_the_following_word():
    text = "a  bc d"
    # tokens: "a", " ", " b", "c", " d"
    assert token_word_index(text, [(0, 1), (1, 2), (2, 4), (4, 5), (5, 7)]) == [0, 1, 1, 1, 2]


@pytest.mark.parametrize("train", [train_bpe_tokenizer, train_wordpiece_tokenizer])
def test_words_partition_the_tokens_and_slots_find_their_words(train):
    tokenizer = train()
    encoding = tokenizer(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    chars = [tuple(span) for span in encoding["offset_mapping"]]
    words = align_words(TEXT, chars, SLOTS)
    assert [w.text for w in words] == TEXT.split()
    assert sorted(t for w in words for t in w.tokens) == list(range(len(chars)))
    assert [w.slot for w in words] == ["applicant", "applicant", None, "age", None, None, None]
    slots = slot_token_spans(chars, SLOTS)
    assert "".join(TEXT[slice(*chars[t])] for t in slots["age"]).strip() == "81"
