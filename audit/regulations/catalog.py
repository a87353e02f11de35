"""Load the clause catalog (``data/clauses.yaml``) and look clauses up by id."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import yaml

REQUIRED = ("id", "regime", "citation", "title", "summary", "status")


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Any]:
    raw = yaml.safe_load((resources.files("audit.regulations") / "data" / "clauses.yaml").read_bytes())
    clauses = {}
    for entry in raw["clauses"]:
        missing = [k for k in REQUIRED if not entry.get(k)]
        if missing:
            raise ValueError(f"clauses.yaml: {entry.get('id', '?')}: missing {missing}")
        clauses[entry["id"]] = entry
    return {"as_of": str(raw.get("as_of", "")), "clauses": clauses}


def clauses_for(ids: Iterable[str]) -> list[dict[str, Any]]:
    """Catalog entries for the given ids, in first-seen order; unknown ids are marked as such."""
    catalog = load_catalog()["clauses"]
    seen: dict[str, dict[str, Any]] = {}
    for cid in ids:
        if cid not in seen:
            seen[cid] = catalog.get(cid) or {"id": cid, "title": "not in the clause catalog", "status": "unknown"}
    return list(seen.values())
