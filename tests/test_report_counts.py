"""Every count the report states is the bundle's, for bundles of different shapes.

Reports are rendered from audits of five shapes: one scenario of a causal LM, a whole (small) suite, a
classifier, discrim-eval rows, and a classifier that declines every application. For each, the sentences that
state a count (cases, scenarios, attributed cases, controls, the verdict's blocking controls) are found in the
report's text and their numbers compared with the bundle's; no noun disagrees with its number ("1 cases"); no
caveat speaks of intervals that do not exist; no group is compared with itself; every clause id the report
mentions is a clause the report holds; the contents list every section.
"""

from __future__ import annotations

import copy
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import audit
from audit.evidence.bundle import read_bundle
from audit.regulations import load_catalog
from audit.report.render import render_html
from tests.conftest import DISCRIM_DATA, write_yaml

CLASSIFIER_SUITE = Path(__file__).resolve().parents[1] / "examples" / "classifier" / "loan-officer-notes.yaml"
QUICK = dict(ig_steps=2, methods="ig", quiet=True, render=False, format_sensitivity="off", patching_pairs=1)
NOUNS = ("case", "scenario", "pair", "value", "decline", "control", "group", "method", "run", "application",
         "prompt", "format", "applicant", "measurement", "layer", "word", "reason")


class _Text(HTMLParser):
    """The text a reader sees: tags dropped, <style> and <head> content skipped, whitespace collapsed."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("style", "head", "svg")

    def handle_endtag(self, tag):
        self.skip -= tag in ("style", "head", "svg")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return re.sub(r"\s+", " ", html.unescape(" ".join(parser.parts))).replace("\u00a0", " ")


def _declining_classifier(source: Path, folder: Path) -> Path:
    """The tiny BERT classifier with its decline logit raised far above approve: it declines everything."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(source)
    with torch.no_grad():
        model.classifier.bias[model.config.label2id["decline"]] = 50.0
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def shapes(request, tmp_path_factory, tiny_llama_dir, tiny_bert_classifier_dir, fair_lending_raw, unrendered):
    root = tmp_path_factory.mktemp("shapes")
    small = copy.deepcopy(fair_lending_raw)
    small["id"], small["scenarios"] = "fair-lending-three", small["scenarios"][:3]
    suite = write_yaml(root / "three.yaml", small)
    runs = {
        "whole suite": dict(model=str(tiny_llama_dir), suite=str(suite)),
        "classifier": dict(model=str(tiny_bert_classifier_dir), suite=str(CLASSIFIER_SUITE), limit=2),
        "declines everything": dict(model=str(_declining_classifier(tiny_bert_classifier_dir, root / "decliner")),
                                    suite=str(CLASSIFIER_SUITE), limit=2),
    }
    if DISCRIM_DATA.is_file():
        discrim_llama_dir = request.getfixturevalue("discrim_llama_dir")
        runs["discrim-eval"] = dict(model=str(discrim_llama_dir), suite=f"discrim-eval:{DISCRIM_DATA}", limit=3)
    found = {"one scenario": read_bundle(unrendered)}
    for name, arguments in runs.items():
        out = root / name.replace(" ", "-")
        audit.run(out=out, **QUICK, **arguments)
        found[name] = read_bundle(out)
    return {name: (bundle, render_html(bundle)) for name, bundle in found.items()}


SHAPES = ["one scenario", "whole suite", "classifier", "declines everything", "discrim-eval"]


@pytest.fixture(params=SHAPES)
def shape(request, shapes):
    if request.param not in shapes:
        pytest.skip("the shared discrim-eval subset is not on this machine")
    bundle, page = shapes[request.param]
    return request.param, bundle, page, visible_text(page)


def test_the_shapes_differ_as_intended(shapes):
    one = shapes["one scenario"][0]
    whole = shapes["whole suite"][0]
    decliner = shapes["declines everything"][0]
    assert one.suite["n_scenarios_used"] == 1 < one.suite["n_scenarios_total"]
    assert whole.suite["n_scenarios_used"] == whole.suite["n_scenarios_total"] == 3
    assert shapes["classifier"][0].decision["family"] == "classifier"
    assert all(case["decision"] == "unfavourable" for case in decliner.cases)


def test_the_scope_line_states_the_bundles_cases_and_scenarios(shape):
    _, bundle, _, text = shape
    suite = bundle.suite
    found = re.search(r"Scope (\d[\d,]*) cases? from (\d+) of the suite's (\d+) scenarios?", text)
    assert found, "page 1 states the scope"
    assert [int(g.replace(",", "")) for g in found.groups()] == [
        bundle.fairness["n_cases"], suite["n_scenarios_used"], suite["n_scenarios_total"]]
    assert f"Of {len(bundle.controls)} controls" in text


def test_the_verdict_box_counts_the_blocking_controls(shape):
    _, bundle, _, text = shape
    blocking = [c for c in bundle.controls if c["blocking"]]
    undecided = [c for c in blocking if c["status"] in ("inconclusive", "not evaluated")]
    failed = [c for c in blocking if c["status"] == "fail"]
    label = bundle.verdict["status"].upper()
    assert re.search(rf"Verdict {label}\b", text)
    if bundle.verdict["status"] == "inconclusive":
        assert f"but {len(undecided)} of the {len(blocking)} could not be decided" in text
    elif failed:
        assert f"{len(failed)} of the {len(blocking)} blocking controls failed" in text
    for control in failed + undecided:
        assert control["title"] in text.split("Scope limits that matter most")[0]


def test_the_attributed_cases_are_counted_from_the_attributions(shape):
    _, bundle, _, text = shape
    cases = bundle.attributions["cases"]
    baseline = sum(c["why"] == "baseline applicant" for c in cases)
    moved = len(cases) - baseline
    found = re.search(r"on (\d+) cases?: (\d+) baseline cases?, one per scenario, and (no|\d+) counterfactual cases?",
                      text)
    assert found, "the attribution section states which cases were attributed"
    total, base, other = found.groups()
    assert (int(total), int(base), 0 if other == "no" else int(other)) == (len(cases), baseline, moved)


def test_no_noun_disagrees_with_its_number(shape):
    _, _, _, text = shape
    wrong = re.findall(rf"(?<![\d.,])1 (?:{'|'.join(NOUNS)})s\b", text)
    assert not wrong, wrong


def test_no_caveat_about_intervals_that_could_not_be_computed(shape):
    _, bundle, _, text = shape
    groups = [g for a in bundle.fairness["analyses"] for g in a["groups"]]
    if not any(g["shift_ci"] or g["impact_ci"] for g in groups):
        assert "too narrow" not in text


def test_no_group_is_compared_with_itself(shape):
    _, _, _, text = shape
    assert not re.search(r"= ([\w ]+?) \(vs \1\)", text)


def test_every_clause_id_the_report_mentions_is_a_clause_it_holds(shape):
    _, bundle, page, text = shape
    held = set(re.findall(r'id="clause-([^"]+)"', page))
    mentioned = {cid for cid in load_catalog()["clauses"] if re.search(rf"(?<![\w.-]){re.escape(cid)}(?![\w-])", text)}
    assert mentioned - held <= {cid for cid in mentioned if f"{cid} (not shown in this report)" in text}
    assert held, "the appendix holds the clauses"


def test_no_control_is_cited_under_a_clause_that_no_longer_supports_it(shape):
    _, bundle, _, _ = shape
    clauses = {c["id"]: c for c in bundle.clauses}
    for control in bundle.controls:
        for cid in control["clauses"]:
            assert control["id"] not in (clauses.get(cid, {}).get("not_evidenced_by") or []), (control["id"], cid)


def test_the_contents_list_every_section(shape):
    _, _, page, _ = shape
    sections = set(re.findall(r'<section class="major[^"]*" id="([^"]+)"', page))
    listed = set(re.findall(r'<li[^>]*><a href="#([^"]+)"', page.split('id="contents"')[1].split("</nav>")[0]))
    assert sections == listed
