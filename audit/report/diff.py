"""diff.json, diff.html and diff.pdf of an ``audit diff``, rendered like the audit report (autoescaped jinja2,
WeasyPrint with the templates-only URL fetcher, creation date fixed from the candidate bundle)."""

from __future__ import annotations

from typing import Any

DIFF_TEMPLATE = "diff.html.j2"


def render_diff(diff: dict[str, Any]) -> dict[str, bytes]:
    from audit.report.render import render_packet

    return render_packet(DIFF_TEMPLATE, diff, "diff", diff["candidate"]["audited_at"])
