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
from dataclasses import replace
from pathlib import Path

from audit.errors import SuiteError
from audit.hashing import sha256_file
from audit.suites.expand import slugify
from audit.suites.jsonl import json_objects
from audit.suites.schema import SUITE_ID_PATTERN, Scenario, Suite

ID_COLUMN = "id"


def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a .csv (header line) or .jsonl (one object per line) file, values as text."""
    label = path.name
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in csv.DictReader(handle)]
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return [{str(k): "" if v is None else str(v).strip() for k, v in row.items()}
                for _, row in json_objects(path, label)]
    raise SuiteError(f"--rows: {label}: must be a .csv or .jsonl file")


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
        if not SUITE_ID_PATTERN.match(scenario_id) or scenario_id in seen:
            raise SuiteError(f"{path.name}: row {number}: id {row.get(ID_COLUMN)!r} is not a unique identifier")
        seen.add(scenario_id)
        scenarios.append(Scenario(id=scenario_id, title=f"{template.title}: {scenario_id}", template=template.template,
                                  values={s: row[s] for s in slots}))
    rows_sha256 = sha256_file(path)
    return replace(suite, scenarios=tuple(scenarios), source=f"{suite.source} with rows {path}",
                   sha256=hashlib.sha256(f"{suite.sha256}:{rows_sha256}".encode()).hexdigest(),
                   raw={**suite.raw, "rows": {"path": str(path), "n_rows": len(rows), "sha256": rows_sha256}})
