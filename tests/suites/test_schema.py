"""Suite validation: the bundled suite meets its brief; bad suites fail naming the field."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from audit.errors import SuiteError
from audit.regulations import load_catalog
from audit.suites import expand, load_suite, parse_suite
from tests.conftest import write_yaml


BUNDLED = ("fair-lending", "employment-screening", "insurance-underwriting", "tenant-screening")


def test_the_bundled_suites_are_listed():
    from audit.suites import bundled_suite_names

    assert set(bundled_suite_names()) == set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_suite_meets_its_brief(name):
    suite = load_suite(name)
    assert len(suite.scenarios) >= 10
    assert len(expand(suite)) <= 600, "each suite stays a few minutes of scoring for a 135M model on 2 cores"
    assert suite.baseline and suite.answer_prefix and suite.description and suite.domain
    applicant = suite.attribute("applicant")
    cells = Counter((v.groups["race"], v.groups["sex"]) for v in (applicant.baseline, *applicant.values))
    for race in ("white", "black", "hispanic", "asian"):
        for sex in ("male", "female"):
            assert cells[(race, sex)] >= 4, (race, sex)
    assert all(v.source for v in (applicant.baseline, *applicant.values)), "every name records its source"
    assert all(a.description for a in suite.attributes)
    assert set(suite.clauses) <= set(load_catalog()["clauses"]), "a suite cites catalogued clauses only"
    for scenario in suite.scenarios:
        assert {a.name for a in suite.attributes} | set(suite.factors) <= set(scenario.slots), scenario.id
        assert not re.search(r"\b(he|she|his|her|him|hers|himself|herself)\b", scenario.template, re.I), scenario.id


def test_fair_lending_varies_every_ecoa_basis_it_can_signal():
    protected = set(load_suite("fair-lending").protected_properties)
    assert {"race", "sex", "age", "marital status", "national origin", "public assistance"} <= protected


def test_every_clause_a_control_cites_is_in_the_catalog():
    from audit.controls.registry import CONTROLS

    catalog = load_catalog()["clauses"]
    cited = {c for d in CONTROLS.values() for c in d.clauses}
    assert cited <= set(catalog), sorted(cited - set(catalog))


def test_load_by_path_hashes_the_file(tmp_path, suite_raw):
    path = write_yaml(tmp_path / "mine.yaml", suite_raw)
    suite = load_suite(str(path))
    import hashlib

    assert suite.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(expand(suite)) == len(expand(load_suite("fair-lending")))


@pytest.mark.parametrize(
    "breakage, field",
    [
        (lambda r: r.update(question=["Yes", "No"]), "question"),
        (lambda r: r["answers"].pop("favourable"), "answers.favourable"),
        (lambda r: r["scenarios"][1].update(template="{applicant} earns {incom}."), "scenarios[1].template"),
        (lambda r: r["scenarios"][0].update(template="{applicant} and {applicant} {age}"), "scenarios[0].template"),
        (lambda r: r["attributes"]["age"].update(values=[]), "attributes.age.values"),
        (lambda r: r["attributes"]["applicant"]["values"][2].pop("race"), "attributes.applicant.values[2].race"),
        (lambda r: r.update(colour="blue"), "colour"),
        (lambda r: r["scenarios"].append(dict(r["scenarios"][0])), "scenarios"),
        (lambda r: r.update(id="Fair Lending!"), "id"),
        (lambda r: r["answers"].update(unfavourable=["Yes"]), "answers"),
    ],
)
def test_malformed_suite_names_file_and_field(suite_raw, breakage, field):
    breakage(suite_raw)
    with pytest.raises(SuiteError) as raised:
        parse_suite(suite_raw, label="mine.yaml")
    message = str(raised.value)
    assert message.startswith(f"mine.yaml: {field}"), message
    assert "\n" not in message


def test_unknown_suite_and_bad_yaml(tmp_path):
    with pytest.raises(SuiteError, match="--suite: 'no-such-suite'"):
        load_suite("no-such-suite")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nscenarios: [\n")
    with pytest.raises(SuiteError, match=r"bad.yaml: line \d+ is not valid YAML"):
        load_suite(str(bad))
