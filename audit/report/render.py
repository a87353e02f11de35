"""Bundle -> HTML (jinja2, autoescaped) -> PDF (WeasyPrint).

Rendering reads the evidence bundle alone and never touches the model, so a
validator can re-render a report without weights. Every string from the
suite or the model is escaped by jinja2's autoescape and shows its hidden characters
(``show_hidden_characters``); charts are SVG made by
matplotlib from bundle numbers. WeasyPrint is given a URL fetcher that
serves files from the package's ``report_templates`` folder and refuses any
other URL, so a report never reaches the network or the local disk.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from weasyprint.urls import URLFetcher

from audit.report.folder import REPORT_HTML, REPORT_PDF
from audit.errors import AuditError
from audit.evidence.bundle import EvidenceBundle
from audit.text_safety import visible

TEMPLATE_PACKAGE = "report_templates"
ROOT_TEMPLATE = "report.html.j2"


def templates_dir() -> Path:
    return Path(str(resources.files(TEMPLATE_PACKAGE)))


class TemplatesOnlyFetcher(URLFetcher):
    """WeasyPrint URL fetcher that serves ``file:`` URLs inside the templates folder and refuses the rest."""

    def __init__(self):
        super().__init__(allowed_protocols=("file",), allow_redirects=False, fail_on_errors=True)

    def fetch(self, url, headers=None):
        check_url(url)
        return super().fetch(url, headers)


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is a file inside ``report_templates/``."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    if parsed.scheme == "file":
        target = Path(unquote(parsed.path)).resolve()
        root = templates_dir().resolve()
        if root in target.parents:
            return
    raise ValueError(f"report: refused to fetch {url!r}; only files under {TEMPLATE_PACKAGE}/ may be loaded")


def show_hidden_characters(value: Any) -> Any:
    """jinja2's ``finalize``: every value a template prints, with bidirectional overrides, zero-width and control
    characters written out as ``[U+202E]`` (``audit.text_safety``), so text from a model or a bundle cannot
    reorder or hide what the page shows. Markup stays markup: the replacement holds no HTML-special character."""
    if isinstance(value, markupsafe.Markup):
        return markupsafe.Markup(visible(str(value)))
    return visible(value) if isinstance(value, str) else value


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        finalize=show_hidden_characters,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from audit.report.numbers import FILTERS

    env.filters.update(FILTERS)
    return env


def render_html(bundle: EvidenceBundle) -> str:
    from audit.report import view as report_view

    context: dict[str, Any] = report_view.build_context(bundle)
    return environment().get_template(ROOT_TEMPLATE).render(**context)


def render_pdf(html: str, created: str) -> bytes:
    """PDF bytes; ``created`` (ISO 8601, from the bundle) fixes every embedded date so renders are identical."""
    from datetime import datetime

    from weasyprint import HTML

    epoch = str(int(datetime.fromisoformat(created).timestamp()))
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = epoch  # fontTools stamps font subsets with it
    try:
        document = HTML(string=html, base_url=str(templates_dir()) + "/", url_fetcher=TemplatesOnlyFetcher())
        return document.write_pdf()
    finally:
        if previous is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous


def render_report(bundle: EvidenceBundle) -> dict[str, bytes]:
    """The report as HTML and PDF bytes, ready for an atomic write."""
    try:
        html = render_html(bundle)
    except jinja2.TemplateError as exc:
        raise AuditError(f"report: template error in {TEMPLATE_PACKAGE}/: {exc}") from None
    return {REPORT_HTML: html.encode("utf-8"), REPORT_PDF: render_pdf(html, bundle.run["finished_at"])}


def render_packet(template: str, found: dict[str, Any], stem: str, created: str) -> dict[str, bytes]:
    """``STEM.json`` (the findings, strict JSON), ``STEM.html`` (``template`` rendered with ``d=found``) and
    ``STEM.pdf`` (dates fixed from ``created``): the files of an ``audit diff`` or ``audit compare``."""
    html = environment().get_template(template).render(d=found)
    return {
        f"{stem}.json": (json.dumps(found, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"),
        f"{stem}.html": html.encode("utf-8"),
        f"{stem}.pdf": render_pdf(html, created),
    }
