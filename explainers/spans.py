"""Token <-> word <-> slot alignment through the tokenizer's offset mapping.

Words are maximal runs of non-space characters of the case text, so the text
is rebuilt exactly by joining words with the whitespace between them. A token
belongs to the word that contains its first non-space character; this works
alike for byte-level BPE (leading-space tokens such as ``Ġname``), WordPiece
(``##`` continuations) and SentencePiece (``▁``), because it relies only on
character offsets and never on the token strings. A token of
whitespace only belongs to the word that follows it, so every token has
exactly one word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Word:
    text: str
    chars: tuple[int, int]  # span in the case text
    tokens: tuple[int, ...]  # indices into the attributed token list
    slot: str | None  # the slot the word lies in, if any


def words_of(text: str) -> list[tuple[str, tuple[int, int]]]:
    return [(m.group(0), (m.start(), m.end())) for m in WORD.finditer(text)]


def token_word_index(text: str, token_chars: list[tuple[int, int]]) -> list[int | None]:
    """For each token (char span in ``text``), the index of the word it belongs to.

    A token belongs to the word holding its first non-space character; a token
    of whitespace only (a lone ``Ġ`` or ``▁``) belongs to the word that follows
    it, as its space does. Every token of the text thus has exactly one word,
    so word scores sum to token scores.
    """
    spans = [span for _, span in words_of(text)]
    owners: list[int | None] = []
    for start, end in token_chars:
        first = start
        while first < len(text) and text[first].isspace():
            first += 1
        owner = next((k for k, (s, e) in enumerate(spans) if first < e), None)
        if owner is None and spans and end > start:
            owner = len(spans) - 1
        owners.append(owner)
    return owners


def align_words(
    text: str, token_chars: list[tuple[int, int]], slots: dict[str, list[tuple[int, int]]]
) -> list[Word]:
    """Words of ``text`` with their tokens and the slot each word lies in."""
    owners = token_word_index(text, token_chars)
    words = []
    for index, (word, (start, end)) in enumerate(words_of(text)):
        tokens = tuple(t for t, owner in enumerate(owners) if owner == index)
        slot = next(
            (name for name, spans in slots.items() for s, e in spans if s < end and start < e),
            None,
        )
        words.append(Word(text=word, chars=(start, end), tokens=tokens, slot=slot))
    return words


def slot_token_spans(token_chars: list[tuple[int, int]], slots: dict[str, list[tuple[int, int]]]) -> dict[str, list[int]]:
    """Token indices overlapping each slot's character spans."""
    result: dict[str, list[int]] = {}
    for name, spans in slots.items():
        result[name] = [
            t for t, (ts, te) in enumerate(token_chars) if te > ts and any(ts < e and s < te for s, e in spans)
        ]
    return result


def aggregate(scores: list[float], groups: list[tuple[int, ...]]) -> list[float]:
    """Sum token scores within each group (a word's or a slot's tokens)."""
    return [float(sum(scores[t] for t in group)) for group in groups]
