"""The report: rendered from the bundle alone, suite text escaped, no URL outside the templates."""

from __future__ import annotations

from pathlib import Path

import pytest

import audit
from audit.evidence.bundle import read_bundle
from audit.report.render import TemplatesOnlyFetcher, check_url, render_html, render_pdf, templates_dir
from tests.conftest import write_yaml

HOSTILE = ('<script>alert("x")</script><img src="https://evil.example/p.png">'
           '<style>@import url(file:///etc/passwd);</style><a href="file:///etc/shadow">card</a>')


@pytest.fixture(scope="module")
def hostile_audit(tmp_path_factory, tiny_llama_dir, fair_lending_raw):
    """An audit of a tiny model on a one-scenario suite whose text carries markup."""
    import copy

    raw = copy.deepcopy(fair_lending_raw)
    raw["scenarios"] = raw["scenarios"][:1]
    raw["scenarios"][0]["title"] = HOSTILE
    first_factor = next(iter(raw["scenarios"][0]["values"]))
    raw["scenarios"][0]["values"][first_factor] = HOSTILE
    folder = tmp_path_factory.mktemp("hostile")
    suite_path = write_yaml(folder / "hostile.yaml", raw)
    result = audit.run(model=str(tiny_llama_dir), suite=str(suite_path), out=folder / "out", ig_steps=4, quiet=True)
    return result


def test_suite_text_is_escaped_in_the_html(hostile_audit):
    html = hostile_audit.paths["report.html"].read_text()
    assert "<script>" not in html and 'src="https://evil.example' not in html
    assert "&lt;script&gt;" in html


def test_hostile_text_is_printed_literally_and_nothing_outside_the_templates_is_fetched(hostile_audit, monkeypatch):
    from io import BytesIO
    from urllib.parse import unquote, urlparse

    from pypdf import PdfReader

    fetched = []
    real_fetch = TemplatesOnlyFetcher.fetch

    def recording_fetch(self, url, headers=None):
        fetched.append(url)
        return real_fetch(self, url, headers)

    monkeypatch.setattr(TemplatesOnlyFetcher, "fetch", recording_fetch)
    bundle = read_bundle(hostile_audit.paths["bundle.json"])
    pdf = render_pdf(render_html(bundle), bundle.run["finished_at"])
    root = templates_dir().resolve()
    assert fetched, "the stylesheet is fetched through the fetcher"
    assert all(urlparse(url).scheme == "file" and Path(unquote(urlparse(url).path)).resolve().is_relative_to(root)
               for url in fetched), fetched
    text = "".join("".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages).split())
    assert "".join(HOSTILE.split()) in text


def test_report_renders_from_the_bundle_alone_and_deterministically(hostile_audit):
    bundle = read_bundle(hostile_audit.paths["bundle.json"])
    assert render_html(bundle) == render_html(bundle) == hostile_audit.paths["report.html"].read_text()


@pytest.mark.parametrize(
    "url", ["https://example.com/style.css", "http://localhost/x.png", "file:///etc/passwd", "ftp://x/y"]
)
def test_fetcher_refuses_urls_outside_the_templates(url):
    with pytest.raises(ValueError, match="refused to fetch"):
        check_url(url)
    with pytest.raises(ValueError, match="refused to fetch"):
        TemplatesOnlyFetcher().fetch(url)


def test_fetcher_serves_the_stylesheet():
    stylesheet = templates_dir() / "report.css"
    response = TemplatesOnlyFetcher().fetch(stylesheet.resolve().as_uri())
    try:
        assert response.read() == stylesheet.read_bytes()
    finally:
        response.close()


def test_faithfulness_readings_separate_methods_that_beat_random():
    from audit.report.sections.trust import _faithfulness_readings

    rows = [
        {"title": "A", "gain_comprehensiveness": {"mean_gain": 0.4, "ci": [0.2, 0.6]}},
        {"title": "B", "gain_comprehensiveness": {"mean_gain": 0.01, "ci": [-0.1, 0.1]}},
        {"title": "random", "gain_comprehensiveness": None},
    ]
    readings = _faithfulness_readings(rows)
    assert readings[0].startswith("Largest comprehensiveness gain over random: A")
    assert "CI above zero): A." in readings[1]
    assert "random word ordering on these cases: B. Its map" in readings[2]


def test_the_report_states_whether_pickle_or_remote_code_was_allowed(hostile_audit):
    html = hostile_audit.paths["report.html"].read_text()
    assert "pickle weight files refused; code shipped with the model refused; offline (HF_HUB_OFFLINE=1)" in html


def test_bidi_overrides_from_the_model_are_shown_not_obeyed_in_the_pdf(audited):
    """Model text cannot be refused like suite text: a model whose name carries a right-to-left override and a
    zero-width space is shown with both written out, and the page never holds the raw characters."""
    from io import BytesIO

    from pypdf import PdfReader

    from audit.report.render import render_report

    bundle = read_bundle(audited)
    bundle.model = {**bundle.model, "spec": "bank/credit-\u202eledom\u202c-v2\u200b"}
    pages = [page.extract_text() for page in PdfReader(BytesIO(render_report(bundle)["report.pdf"])).pages]
    text = "\n".join(pages)
    assert "credit-[U+202E]ledom[U+202C]-v2[U+200B]" in text.replace("\n", "")
    assert not any(c in text for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b")
