"""Counted nouns and lists in report sentences: "1 case", "2 cases", "a, b and c".

Every count the report states is a number from the bundle; these helpers only make the noun agree with it.
"""

from __future__ import annotations

IRREGULAR = {"analysis": "analyses", "was": "were", "is": "are", "has": "have"}


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``n`` and the noun in agreement: plural(1, "case") -> "1 case", plural(2, "case") -> "2 cases"."""
    return f"{n:,} {noun(n, singular, plural_form)}"


def noun(n: int, singular: str, plural_form: str | None = None) -> str:
    """The noun alone, singular for exactly one: noun(3, "scenario") -> "scenarios"."""
    if n == 1:
        return singular
    if plural_form is not None:
        return plural_form
    head, _, last = singular.rpartition(" ")
    word = IRREGULAR.get(last) or (last[:-1] + "ies" if last.endswith("y") and last[-2:-1] not in "aeiou"
                                   else last + "es" if last.endswith(("s", "x", "ch", "sh")) else last + "s")
    return f"{head} {word}" if head else word


def join_words(items: list[str], conjunction: str = "and") -> str:
    """ "a", "a and b", "a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


INTERSECTION = " x "  # joins the groups of an intersectional label: "black x female"

