"""JSON Lines files of test-set rows: one JSON object per line, errors naming the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from audit.errors import SuiteError


def json_objects(path: Path, label: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of ``path``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{label}: line {number}: is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise SuiteError(f"{label}: line {number}: must be a JSON object of column values")
        yield number, row
