"""discrim-eval import: rows become cases, scores are lm-evaluation-harness's, the discrimination score is fitted."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import audit
from audit.errors import SuiteError
from audit.suites import expand, load_suite
from tests.conftest import DISCRIM_DATA as DATA
from tests.lm_eval_harness import harness_logit_yes

needs_data = pytest.mark.skipif(not DATA.is_file(), reason="the shared discrim-eval subset is not on this machine")


@needs_data
def test_rows_become_one_scenario_per_question_with_the_60_year_old_white_male_as_baseline():
    suite = load_suite(f"discrim-eval:{DATA}")
    cases = expand(suite)
    assert len(suite.scenarios) == 14 and len(cases) == 630
    baselines = [c for c in cases if c.is_baseline]
    assert len(baselines) == 14 and all(c.groups == {"race": "white", "gender": "male", "age": "60"} for c in baselines)
    black_woman = next(c for c in cases if c.groups == {"race": "black", "gender": "female", "age": "20"})
    marked = [black_woman.text[s:e] for s, e in black_woman.slots["demographics"]]
    assert "20" in marked and any("Black" in m for m in marked) and any("female" in m for m in marked)
    assert len(expand(suite, limit=2)) == 90


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "line 1: is not valid JSON"),
        (json.dumps({"filled_template": "x", "decision_question_id": 1, "age": 60, "gender": "male",
                     "race": "white"}), "line 1: fill_type: is missing"),
        (json.dumps({"filled_template": "x", "decision_question_id": "1", "age": 60, "gender": "male",
                     "race": "white", "fill_type": "explicit"}),
         "line 1: decision_question_id: has the wrong type str"),
        (json.dumps({"filled_template": "x", "decision_question_id": 1, "age": 20, "gender": "male",
                     "race": "white", "fill_type": "explicit"}), "decision_question_id 1: has no baseline row"),
    ],
)
def test_a_malformed_file_names_the_line_and_column(tmp_path, line, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(SuiteError, match=f"^rows.jsonl: {message}"):
        load_suite(f"discrim-eval:{path}")
    with pytest.raises(SuiteError, match="discrim-eval file .*absent.jsonl' does not exist"):
        load_suite(f"discrim-eval:{tmp_path / 'absent.jsonl'}")


@pytest.fixture(scope="module")
def discrim_audit(tmp_path_factory, discrim_llama_dir):
    out = tmp_path_factory.mktemp("discrim-eval") / "out"
    return audit.run(model=str(discrim_llama_dir), suite=f"discrim-eval:{DATA}", out=out, limit=5, ig_steps=2,
                     methods="ig", patching_pairs=1, quiet=True)


@pytest.mark.parametrize("spec, message", [
    ("discrim-eval@v2:{data}", "discrim-eval prompt version 'v2' is unknown (one of release, original)"),
    ("discrim-eval@release:", "write discrim-eval:PATH.jsonl or discrim-eval@VERSION:PATH.jsonl"),
])
def test_an_unknown_prompt_version_is_refused_naming_the_versions(spec, message):
    with pytest.raises(SuiteError, match=re.escape(message)):
        load_suite(spec.format(data=DATA))


@needs_data
def test_the_prompt_version_is_chosen_in_the_suite_spec_and_recorded():
    release, original = load_suite(f"discrim-eval:{DATA}"), load_suite(f"discrim-eval@original:{DATA}")
    assert release.render_prompt("CASE").startswith('CASE\nPlease answer the above question with either "yes"')
    assert original.render_prompt("CASE").startswith("Human: CASE\n")
    assert release.sha256 == original.sha256  # the same rows; the bundle tells the prompts apart
    assert (release.source, original.source) == (f"discrim-eval@release:{DATA}", f"discrim-eval@original:{DATA}")


def test_an_answer_that_is_not_one_token_is_refused_naming_it(tiny_llama_dir, tmp_path):
    from audit.models import load_model, make_adapter, parse_model_spec

    rows = [{"filled_template": "A 60 year old white male asks. Approve?", "decision_question_id": 1, "age": 60,
             "gender": "male", "race": "white", "fill_type": "explicit"}]
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    loaded = load_model(parse_model_spec(str(tiny_llama_dir)))
    with pytest.raises(SuiteError, match="answers.favourable: 'yes' is not a single token"):
        make_adapter(loaded, load_suite(f"discrim-eval:{path}"))


@needs_data
def test_scores_are_lm_evaluation_harness_scores(discrim_audit, discrim_llama_dir, tmp_path):
    """The audit's per-case scores are the installed harness's (tests/test_discrim_eval_harness.py: every family)."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    question = rows[0]["decision_question_id"]
    path = tmp_path / "question.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["decision_question_id"] == question))
    theirs = harness_logit_yes(discrim_llama_dir, path)
    ours = {(question, c["groups"]["race"], c["groups"]["gender"], float(c["groups"]["age"])): c["score"]
            for c in discrim_audit.bundle.cases if c["scenario_id"] == f"question-{question}"}
    assert len(ours) == len(theirs) > 40
    assert [ours[k] for k in theirs] == pytest.approx(list(theirs.values()), abs=1e-4)
    assert discrim_audit.bundle.suite["prompt_harness"].startswith("lm-evaluation-harness 0.4.10 to 0.4.13")


@needs_data
def test_the_discrimination_score_and_the_usual_evidence_reach_the_report(discrim_audit):
    from audit.report.render import render_html

    bundle = discrim_audit.bundle
    fitted = bundle.fairness["mixed_effects"]
    assert fitted["evaluated"] and fitted["n_questions"] == 5 and fitted["n_rows"] == 225
    labels = {t["label"] for t in fitted["terms"]}
    assert {"race = black (vs white)", "gender = female (vs male)", "age (per standard deviation)"} <= labels
    assert bundle.adverse_action is None, "discrim-eval rows carry no legitimate factors to give as reasons"
    properties = {a["property"] for a in bundle.fairness["analyses"]}
    assert {"race", "gender", "age", "race x gender"} == properties
    html = render_html(bundle)
    assert "Discrimination score (discrim-eval)" in html and "race = black (vs white)" in html


def test_the_mixed_model_recovers_planted_effects():
    from audit.stages.discrimination_score import mixed_effects_discrimination

    rng = np.random.default_rng(0)
    records = []
    for question in range(8):
        offset = rng.normal(0, 1)
        for race in ("white", "black", "asian"):
            for gender in ("male", "female"):
                for age in (20, 60, 100):
                    score = offset - 0.5 * (race == "black") + 0.3 * (gender == "female") - 0.01 * age
                    records.append({"score": score + rng.normal(0, 0.1), "pair_id": f"q{question}",
                                    "groups": {"race": race, "gender": gender, "age": str(age)}})
    fitted = mixed_effects_discrimination(records)
    terms = {t["label"]: t for t in fitted["terms"]}
    black, female, age = (terms[k] for k in ("race = black (vs white)", "gender = female (vs male)",
                                              "age (per standard deviation)"))
    assert black["ci"][0] < -0.5 < black["ci"][1] and black["p_value"] < 1e-3
    assert female["coefficient"] == pytest.approx(0.3, abs=0.05)
    assert age["coefficient"] == pytest.approx(-0.01 * fitted["age_sd"], abs=0.05)
    assert abs(terms["race = asian (vs white)"]["coefficient"]) < 0.05, "no effect planted for asian"
