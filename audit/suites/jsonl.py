"""JSON Lines files of test-set rows: one JSON object per line, errors naming the file and the line.

A row is refused, with its line named, when it is not UTF-8, not JSON, not an object, holds ``NaN`` or
``Infinity`` (which Python's json reads but JSON does not have), a number of more digits than Python converts,
nesting deeper than the parser's recursion, or a character that hides or reorders text (``audit.text_safety``).
A UTF-8 byte-order mark at the start of the file is accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from audit.errors import SuiteError
from audit.strict_yaml import decode, read_bytes
from audit.text_safety import check_tree


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_text(path: Path, label: str) -> str:
    """``path`` as UTF-8 text (a byte-order mark dropped); ``SuiteError`` naming the line of the first bad byte."""
    return decode(read_bytes(path, label, SuiteError), label, SuiteError)


def json_objects(path: Path, label: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of ``path``."""
    for number, line in enumerate(read_text(path, label).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{label}: line {number}: is not valid JSON ({exc.msg} at column {exc.colno})") from None
        except (ValueError, RecursionError) as exc:
            problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
            raise SuiteError(f"{label}: line {number}: is not a row this tool reads ({problem})") from None
        if not isinstance(row, dict):
            raise SuiteError(f"{label}: line {number}: must be a JSON object of column values")
        check_tree(row, f"{label}: line {number}", SuiteError)
        yield number, row
