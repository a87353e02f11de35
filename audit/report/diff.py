"""diff.json, diff.html and diff.pdf of an ``audit diff``, rendered like the audit report (autoescaped jinja2,
WeasyPrint with the templates-only URL fetcher, creation date fixed from the candidate bundle)."""

from __future__ import annotations

import json
from typing import Any

DIFF_TEMPLATE = "diff.html.j2"


def render_diff(diff: dict[str, Any]) -> dict[str, bytes]:
    from audit.report.render import environment, render_pdf

    html = environment().get_template(DIFF_TEMPLATE).render(d=diff)
    return {
        "diff.json": (json.dumps(diff, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"),
        "diff.html": html.encode("utf-8"),
        "diff.pdf": render_pdf(html, diff["candidate"]["audited_at"]),
    }
