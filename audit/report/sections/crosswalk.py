"""Report context for the regulatory crosswalk: clause -> evidence it needs -> controls that supply it -> status.

The bundle keeps every clause the suite and the controls cite, with its
catalog entry (``audit.regulations``); the report shows the ones that apply in
the audit's jurisdiction (``run.jurisdiction``: the ``--jurisdiction`` flag or
the policy's), and warns about every control none of whose clauses there is
in force, since its result then answers to no rule.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from markupsafe import Markup, escape

from audit.evidence.bundle import EvidenceBundle
from audit.regulations import applies_in, has_force
from audit.regulations.catalog import mentions, referenced_ids

NA = "n/a"
JURISDICTION_NAMES = {"us": "the United States", "eu": "the European Union", "uk": "the United Kingdom",
                      "nyc": "New York City", "intl": "international standard"}
JURISDICTION_SCOPE_TEXT = {
    "us": "U.S. federal law and guidance, and international standards",
    "nyc": "New York City law, U.S. federal law and guidance, and international standards",
    "eu": "EU law and international standards",
    "uk": "UK law and guidance, and international standards",
}


def crosswalk_context(bundle: EvidenceBundle) -> dict[str, Any]:
    """The clauses that apply in the audit's jurisdiction, the controls that evidence them, and a warning for
    every control that rests on no clause in force there."""
    jurisdiction = bundle.run.get("jurisdiction")

    def shown(clause: dict[str, Any]) -> bool:  # a bundle older than the catalog's jurisdictions shows every clause
        return "jurisdiction" not in clause or applies_in(clause, jurisdiction)

    catalog = {c["id"]: c for c in bundle.clauses}
    evidence: dict[str, list[dict[str, str]]] = defaultdict(list)
    for control in bundle.controls:
        for clause in control["clauses"]:
            evidence[clause].append({"id": control["id"], "status": control["status"]})
    suite_clauses = set(bundle.suite["clauses"])
    shown_ids = [c["id"] for c in bundle.clauses if shown(c)]
    # A bundle from 1.6 on records each clause's references; an older one is searched for the ids it holds.
    mentioned = {c["id"]: c["references"] if isinstance(c.get("references"), list) else referenced_ids(c, catalog)
                 for c in bundle.clauses}
    referenced_by = {cid: [other for other in shown_ids if cid in mentioned[other]] for cid in catalog}
    clauses = [
        {
            "id": c["id"],
            "regime": c.get("regime") or NA,
            "citation": c.get("citation") or NA,
            "title": c.get("title") or NA,
            "jurisdiction": JURISDICTION_NAMES.get(c.get("jurisdiction"), NA),
            "status": c.get("status") or NA,
            "in_force": has_force(c),
            "verified": c.get("verified"),
            "status_note": linked(c.get("status_note") or "", mentioned[c["id"]], shown_ids),
            "status_source": c.get("status_source") or "",
            "effective": c.get("effective") or NA,
            "summary": linked(c.get("summary") or "", mentioned[c["id"]], shown_ids),
            "evidence": linked(c.get("evidence") or "", mentioned[c["id"]], shown_ids),
            "referenced_by": referenced_by.get(c["id"], []),
            "url": c.get("url") or "",
            "controls": evidence.get(c["id"], []),
            "cited_by_suite": c["id"] in suite_clauses,
        }
        for c in bundle.clauses
        if shown(c)
    ]
    warnings = []
    for control in bundle.controls:
        applicable = [catalog[cid] for cid in control["clauses"] if cid in catalog and shown(catalog[cid])]
        where = f"in {JURISDICTION_NAMES[jurisdiction]}" if jurisdiction else "anywhere"
        if not applicable:
            warnings.append(f"{control['id']}: none of the clauses it evidences applies {where}; its result is "
                            "evidence for internal review only.")
        elif not any(has_force(c) for c in applicable):
            listed = ", ".join(f"{c['id']} ({c['status']})" for c in applicable)
            warnings.append(f"{control['id']}: every clause it evidences {where} is no longer or not yet in force "
                            f"({listed}); weigh its result accordingly.")
    as_of = sorted({str(c["catalog_as_of"]) for c in bundle.clauses if c.get("catalog_as_of")})
    return {
        "clauses": clauses,
        "as_of": ", ".join(as_of) or NA,
        "jurisdiction": JURISDICTION_NAMES.get(jurisdiction),
        "scope": JURISDICTION_SCOPE_TEXT.get(jurisdiction),
        "warnings": warnings,
        "n_unverified": sum(c["verified"] is False for c in clauses),
    }


def linked(text: str, mentioned: list[str], shown_ids: list[str]) -> Markup:
    """A clause text with each clause id it mentions linked to that clause's entry in the appendix, or, for a
    clause this report does not show, marked as such. The text is escaped; only the links are markup."""
    if not mentioned:
        return Markup(escape(text))
    pieces, last = [], 0
    for match in mentions(mentioned).finditer(text):
        cid = match.group(0)
        pieces.append(escape(text[last:match.start()]))
        if cid in shown_ids:
            pieces.append(Markup('<a class="id" href="#clause-{}">{}</a>').format(cid, cid))
        else:
            pieces.append(Markup('<span class="id">{}</span> (not shown in this report)').format(cid))
        last = match.end()
    pieces.append(escape(text[last:]))
    return Markup("").join(pieces)
