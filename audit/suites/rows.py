"""A bank's own applications as scenarios: rows of a CSV or JSONL file rendered through a suite's template.

``audit run --suite template.yaml --rows applications.csv`` takes the suite's
single scenario as the template and makes one scenario per row: the row's
columns fill the template's non-attribute slots (income, credit score, ...),
the protected attributes are varied over every row exactly as in a bundled
suite, and an ``id`` column, if there is one, names the scenario (else
``row-N``). A column the template does not use is ignored, a slot without a
column or an empty cell is an error naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import replace
from pathlib import Path

from audit.errors import SuiteError
from audit.evidence.hashing import sha256_file
from audit.suites.expand import slugify
from audit.suites.jsonl import json_objects, read_text
from audit.text_safety import check_text
from audit.suites.schema import SUITE_ID_PATTERN, Scenario, Suite

ID_COLUMN = "id"


def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a .csv (header line) or .jsonl (one object per line) file, values as text."""
    label = path.name
    if path.suffix.lower() == ".csv":
        return _csv_rows(read_text(path, label), label)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return [{str(k): _cell_text(v, f"{label}: line {number}: column {k!r}") for k, v in row.items()}
                for number, row in json_objects(path, label)]
    raise SuiteError(f"--rows: {label}: must be a .csv or .jsonl file")


def _csv_rows(text: str, label: str) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line; every error names the line (and the column where there is one).

    csv's own errors (an unclosed quote, a cell over its field limit of 128 KiB) become one-line errors; a row
    with more cells than the header, a repeated or empty column name, and hidden characters are refused too.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return []
        header = [name.strip() for name in header]
        for index, name in enumerate(header):
            check_text(name, f"{label}: line 1: column {index + 1}", SuiteError)
            if not name:
                raise SuiteError(f"{label}: line 1: column {index + 1} has no name")
            if name in header[:index]:
                raise SuiteError(f"{label}: line 1: column {name!r} appears twice")
        rows = []
        for cells in reader:
            number = len(rows) + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                raise SuiteError(f"{label}: row {number} (line {reader.line_num}): has {len(cells)} cells, the header "
                                 f"names {len(header)} columns")
            row = dict(zip(header, (cell.strip() for cell in cells)))
            for column, cell in row.items():
                check_text(cell, f"{label}: row {number}: column {column!r}", SuiteError)
            rows.append({**dict.fromkeys(header, ""), **row})
        return rows
    except csv.Error as exc:
        raise SuiteError(f"{label}: line {reader.line_num}: is not valid CSV ({exc})") from None


def _cell_text(value, where: str) -> str:
    """A JSON cell as text: a string or a number; null is an empty cell; a list, object or boolean is refused."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    kind = "a boolean" if isinstance(value, bool) else ("a list" if isinstance(value, list) else "an object")
    raise SuiteError(f"{where}: must be text or a number, got {kind}")


def apply_rows(suite: Suite, rows_path: str) -> Suite:
    """The suite with one scenario per row of ``rows_path``, each rendered through the suite's one template."""
    path = Path(rows_path)
    if not path.is_file():
        raise SuiteError(f"--rows: file {rows_path!r} does not exist")
    if len(suite.scenarios) != 1:
        raise SuiteError(f"--rows: the suite {suite.id!r} must have exactly one scenario, the template each row is "
                         f"rendered through (it has {len(suite.scenarios)})")
    template = suite.scenarios[0]
    attributes = {a.name for a in suite.attributes}
    slots = [s for s in dict.fromkeys(template.slots) if s not in attributes]
    rows = read_table(path)
    if not rows:
        raise SuiteError(f"{path.name}: has no rows")
    missing = [s for s in slots if s not in rows[0]]
    if missing:
        raise SuiteError(f"{path.name}: column {missing[0]!r} is missing (the template's slots: {', '.join(slots)})")
    scenarios, seen = [], set()
    for number, row in enumerate(rows, start=1):
        empty = next((s for s in slots if not row.get(s)), None)
        if empty is not None:
            raise SuiteError(f"{path.name}: row {number}: column {empty!r} is empty")
        scenario_id = slugify(row[ID_COLUMN]) if row.get(ID_COLUMN) else f"row-{number}"
        if not SUITE_ID_PATTERN.fullmatch(scenario_id) or scenario_id in seen:
            raise SuiteError(f"{path.name}: row {number}: id {row.get(ID_COLUMN)!r} is not a unique identifier")
        seen.add(scenario_id)
        scenarios.append(Scenario(id=scenario_id, title=f"{template.title}: {scenario_id}", template=template.template,
                                  values={s: row[s] for s in slots}))
    rows_sha256 = sha256_file(path)
    return replace(suite, scenarios=tuple(scenarios), source=f"{suite.source} with rows {path}",
                   sha256=hashlib.sha256(f"{suite.sha256}:{rows_sha256}".encode()).hexdigest(),
                   raw={**suite.raw, "rows": {"path": str(path), "n_rows": len(rows), "sha256": rows_sha256}})
