"""The regulatory crosswalk: the catalog's statuses, the audit's jurisdiction, and warnings on controls."""

from __future__ import annotations

import copy

import pytest

import audit
from audit.regulations import applies_in, has_force, load_catalog
from audit.controls.registry import CONTROLS
from audit.regulations.catalog import STATUSES, clauses_for, referenced_ids


def test_every_catalog_entry_states_where_it_applies_what_evidence_it_needs_and_whether_it_is_confirmed():
    catalog = load_catalog()
    assert catalog["as_of"]
    for clause in catalog["clauses"].values():
        assert clause["status"] in STATUSES and clause["evidence"] and clause["jurisdiction"]
        assert isinstance(clause.get("verified"), bool), clause["id"]
        assert clause.get("status_source"), f"{clause['id']}: the status names its source"


def test_a_bundle_holds_every_clause_its_clauses_refer_to():
    catalog = load_catalog()["clauses"]
    cited = [cid for control in CONTROLS.values() for cid in control.clauses]
    held = {c["id"] for c in clauses_for(cited)}
    assert set(cited) <= held
    for cid in held:
        assert set(referenced_ids(catalog[cid], catalog)) <= held, cid
    assert "ecoa-reg-b-2026-final-rule" in held, "cited in the notes of 12 CFR 1002.4(a) and 1002.6(b)"


def test_no_control_is_cited_under_a_clause_that_no_longer_supports_what_it_measures():
    catalog = load_catalog()["clauses"]
    excluded = {(cid, control) for cid, clause in catalog.items() for control in clause.get("not_evidenced_by") or ()}
    assert excluded, "the catalog records which clauses no longer support which controls"
    assert {control for _, control in excluded} <= set(CONTROLS)
    for control in CONTROLS.values():
        for cid in control.clauses:
            assert cid in catalog, (control.id, cid)
            assert (cid, control.id) not in excluded, f"{control.id} is cited under {cid}, whose note excludes it"
    assert "ecoa-reg-b-1002.4a" not in CONTROLS["impact-ratio"].clauses, "the 2026 rule removed the effects test"


def test_new_york_city_is_bound_by_federal_law_and_the_eu_is_not():
    catalog = load_catalog()["clauses"]
    ll144, reg_b, ai_act, iso = (catalog[i] for i in ("nyc-ll-144", "ecoa-reg-b-1002.4a", "eu-ai-act-art-13",
                                                       "iso-42001-a.6.2.4"))
    assert applies_in(ll144, "nyc") and applies_in(reg_b, "nyc") and not applies_in(ll144, "us")
    assert applies_in(ai_act, "eu") and not applies_in(reg_b, "eu")
    assert all(applies_in(iso, j) for j in ("us", "eu", "uk", "nyc"))
    assert all(applies_in(c, None) for c in catalog.values())
    assert has_force(reg_b) and not has_force(catalog["cfpb-circular-2022-03"])


@pytest.fixture(scope="module")
def employment_audit(tmp_path_factory, tiny_llama_dir):
    out = tmp_path_factory.mktemp("employment") / "out"
    return audit.run(model=str(tiny_llama_dir), suite="employment-screening", out=out, limit=5, ig_steps=2,
                     methods="ig", patching_pairs=1, quiet=True)


def test_a_suite_runs_under_its_own_policy_and_jurisdiction(employment_audit):
    bundle = employment_audit.bundle
    assert bundle.policy["id"] == "employment-screening" and bundle.run["jurisdiction"] == "nyc"
    clauses = {c["id"] for c in bundle.clauses}
    assert {"nyc-ll-144", "ugesp-29-cfr-1607.4d"} <= clauses


def test_the_report_shows_the_jurisdictions_clauses_and_the_ll144_tables(employment_audit):
    from audit.report.render import render_html

    html = render_html(employment_audit.bundle)
    assert "New York City" in html and "nyc-ll-144" in html
    assert "eu-ai-act-art-13" not in html.split('id="crosswalk"')[1], "EU clauses are not shown for New York City"
    assert "Selection and scoring rates (NYC Local Law 144 form)" in html
    tables = employment_audit.bundle.fairness["bias_audit"]["tables"]
    assert [t["category_type"] for t in tables] == ["sex", "race", "race x sex"]
    white_male = next(r for r in tables[2]["rows"] if r["category"] == "white x male")
    assert white_male["applicants"] == 4 * 5, "4 white male names (the baseline among them) in each of 5 scenarios"


def test_a_control_resting_only_on_clauses_out_of_force_is_flagged(employment_audit):
    from audit.report.sections.crosswalk import crosswalk_context

    bundle = copy.deepcopy(employment_audit.bundle)
    bundle.run["jurisdiction"] = "eu"
    for clause in bundle.clauses:
        if clause.get("jurisdiction") == "eu":
            clause["status"] = "delayed"
    warnings = crosswalk_context(bundle)["warnings"]
    shift = next(w for w in warnings if w.startswith("counterfactual-shift:"))
    assert "no longer or not yet in force" in shift and "(delayed)" in shift
    bundle.run["jurisdiction"] = "us"
    assert not any(w.startswith("counterfactual-shift:") for w in crosswalk_context(bundle)["warnings"])
