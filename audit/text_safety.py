"""Characters that must not reach a report unseen: bidirectional controls, invisible format characters, controls.

A right-to-left override (U+202E) in a suite, a rows file or a model's text makes a PDF show characters in
another order than they are stored ("Trojan Source", Boucher & Anderson 2021, CVE-2021-42574): a prompt that
reads "approve" on the page can hold "evorppa" for the model, and a regulator reading the report cannot tell.
Zero-width characters and C0/C1 controls hide text the same way. The inputs the bank writes (suites,
policies, rows) refuse them with the position named; text the tool cannot refuse (a model's answer, its
tokens, its name) is rendered with each such character written out visibly as ``[U+202E]``.

Unicode's own classes decide (``unicodedata.category``): ``Cf`` (format), ``Cc`` (control), ``Cs``
(surrogates: a JSON ``\\ud800`` escape), ``Co`` (private use), ``Cn`` (unassigned), and the line and
paragraph separators ``Zl``/``Zp``. Kept: tab, line feed and carriage return (multi-line templates and cells), and the zero-width
joiner and non-joiner (U+200D, U+200C), which spell words in Persian, Hindi and emoji and reorder nothing.
"""

from __future__ import annotations

import unicodedata
from typing import Any

REFUSED_CATEGORIES = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Zl", "Zp"})
ALLOWED = frozenset({"\t", "\n", "\r", "\u200c", "\u200d"})


def is_unsafe(character: str) -> bool:
    return character not in ALLOWED and unicodedata.category(character) in REFUSED_CATEGORIES


def first_unsafe(text: str) -> int | None:
    """The index of the first character of ``text`` that could reorder or hide text, else None."""
    return next((i for i, character in enumerate(text) if is_unsafe(character)), None)


def describe(character: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: the code point and its Unicode name, where it has one."""
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X}" + (f" {name}" if name else f" (a {unicodedata.category(character)} character)")


def problem(text: str) -> str | None:
    """``'character 7 is U+202E RIGHT-TO-LEFT OVERRIDE, ...'`` (1-based) for the first unsafe character, else None."""
    index = first_unsafe(text)
    if index is None:
        return None
    return (f"character {index + 1} is {describe(text[index])}, an invisible or control character that can hide "
            "or reorder text in the report; remove it")


def check_text(text: str, where: str, error: type[Exception]) -> str:
    """``text`` unchanged, or ``error('<where>: character N is U+...')``."""
    found = problem(text)
    if found is not None:
        raise error(f"{where}: {found}")
    return text


def check_tree(value: Any, label: str, error: type[Exception], path: str = "") -> None:
    """``check_text`` over every string (keys included) of a nested mapping/list: ``error('<label>: <path>: ...')``."""
    if isinstance(value, str):
        check_text(value, f"{label}: {path}" if path else label, error)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                check_text(key, f"{label}: {where} (the key)", error)
            check_tree(item, label, error, where)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_tree(item, label, error, f"{path}[{index}]")


def visible(text: str) -> str:
    """``text`` with every unsafe character written out as ``[U+202E]``, so the page shows what is stored."""
    if first_unsafe(text) is None:
        return text
    return "".join(f"[U+{ord(c):04X}]" if is_unsafe(c) else c for c in text)
