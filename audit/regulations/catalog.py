"""Load the clause catalog (``data/clauses.yaml``), look clauses up by id, and say where and whether they apply.

Every entry names its jurisdiction (``us``, ``eu``, ``uk``, ``nyc``, or
``intl`` for an international standard) and its status (``STATUSES``). An
audit run for a jurisdiction shows the clauses that apply there
(``SCOPES``: New York City is also bound by U.S. federal law, and
international standards apply everywhere); a control all of whose clauses in
that jurisdiction have lost force (rescinded, superseded, withdrawn) or not
yet gained it (proposed, delayed) is flagged in the report's crosswalk.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import yaml

REQUIRED = ("id", "regime", "citation", "title", "summary", "status", "jurisdiction", "evidence")
STATUSES = ("in force", "voluntary", "rescinded", "superseded", "withdrawn", "proposed", "delayed")
BINDING_OR_FOLLOWED = {"in force", "voluntary"}
SCOPES = {"us": {"us", "intl"}, "nyc": {"nyc", "us", "intl"}, "eu": {"eu", "intl"}, "uk": {"uk", "intl"}}
CLAUSE_JURISDICTIONS = ("us", "eu", "uk", "nyc", "intl")


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Any]:
    raw = yaml.safe_load((resources.files("audit.regulations") / "data" / "clauses.yaml").read_bytes())
    clauses = {}
    for entry in raw["clauses"]:
        where = f"clauses.yaml: {entry.get('id', '?')}"
        missing = [k for k in REQUIRED if not entry.get(k)]
        if missing:
            raise ValueError(f"{where}: missing {missing}")
        if entry["status"] not in STATUSES:
            raise ValueError(f"{where}: status {entry['status']!r} is not one of {', '.join(STATUSES)}")
        if entry["jurisdiction"] not in CLAUSE_JURISDICTIONS:
            raise ValueError(f"{where}: jurisdiction {entry['jurisdiction']!r} is not one of "
                             f"{', '.join(CLAUSE_JURISDICTIONS)}")
        clauses[entry["id"]] = entry
    return {"as_of": str(raw.get("as_of", "")), "clauses": clauses}


TEXT_FIELDS = ("summary", "evidence", "status_note")


def clauses_for(ids: Iterable[str]) -> list[dict[str, Any]]:
    """Catalog entries for the given ids, in first-seen order, followed by every clause their texts refer to
    (transitively), so a report never cites a clause it does not hold; each entry lists the ids its texts refer
    to (``references``), so a report links them from the bundle alone. Unknown ids are marked as such."""
    catalog = load_catalog()["clauses"]
    seen: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    while pending:
        cid = pending.pop(0)
        if cid in seen:
            continue
        entry = catalog.get(cid) or {"id": cid, "title": "not in the clause catalog", "status": "unknown"}
        seen[cid] = {**entry, "references": referenced_ids(entry, catalog)}
        pending += [ref for ref in seen[cid]["references"] if ref not in seen]
    return list(seen.values())


def mentions(ids: Iterable[str]) -> re.Pattern:
    """A pattern matching any of ``ids`` as a whole id in prose (not inside a longer id; a sentence's full stop
    may follow), the longest first."""
    return re.compile("|".join(rf"(?<![\w.-]){re.escape(cid)}(?![\w-]|\.\w)"
                               for cid in sorted(ids, key=len, reverse=True)))


def referenced_ids(clause: dict[str, Any], known: Iterable[str]) -> list[str]:
    """The ids of ``known`` clauses that ``clause``'s texts mention, in order of first mention."""
    text = " ".join(str(clause.get(name) or "") for name in TEXT_FIELDS)
    others = [cid for cid in known if cid != clause.get("id")]
    found: dict[str, int] = {}
    for match in mentions(others).finditer(text) if others else ():
        found.setdefault(match.group(0), match.start())
    return sorted(found, key=found.get)


def applies_in(clause: dict[str, Any], jurisdiction: str | None) -> bool:
    """Whether a clause binds (or guides) a use deployed in ``jurisdiction``; every clause applies when None."""
    return jurisdiction is None or clause.get("jurisdiction") in SCOPES[jurisdiction]


def has_force(clause: dict[str, Any]) -> bool:
    """In force, or a voluntary framework the user can follow; not rescinded, superseded, withdrawn or pending."""
    return clause.get("status") in BINDING_OR_FOLLOWED
