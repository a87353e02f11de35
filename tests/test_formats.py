"""Prompt-format sensitivity: the formats compared, the scores under each, and the control over them."""

from __future__ import annotations

import pytest

from audit.stages.prompt_formats import DISCRIM_EVAL_PREFILL, reorder_factor_sentences, sensitivity, variants
from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite


def test_formats_of_a_suite_with_the_discrim_eval_prefill_and_no_system_prompt():
    suite = load_suite("fair-lending")
    assert suite.answer_prefix == DISCRIM_EVAL_PREFILL, "an identical format is compared once"
    found = {f["name"]: f["suite"] for f in variants(suite)}
    assert list(found) == ["as-written", "no-prefill", "short-prefill", "system-prompt", "factors-reordered"]
    assert found["no-prefill"].answer_prefix == "" and found["system-prompt"].system_prompt
    assert found["as-written"] is suite


def test_reordering_moves_factor_sentences_only_and_keeps_every_sentence():
    template = "{applicant}, age {age}, applies. Income: {income}. Score: {score}. Collateral: {home}."
    reordered = reorder_factor_sentences(template, {"applicant", "age"})
    assert reordered == "{applicant}, age {age}, applies. Collateral: {home}. Score: {score}. Income: {income}."
    suite = load_suite("fair-lending")
    for scenario in next(f["suite"] for f in variants(suite) if f["name"] == "factors-reordered").scenarios:
        original = next(s for s in suite.scenarios if s.id == scenario.id)
        assert sorted(scenario.template.split()) == sorted(original.template.split())
        assert scenario.template.startswith("{applicant}")


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(parse_model_spec(str(tiny_llama_dir)))


def test_baseline_mode_scores_each_format_and_the_reference_is_the_audit_score(loaded):
    suite = load_suite("fair-lending")
    found = sensitivity(loaded, suite, mode="baselines", limit=3, seed=0, make_adapter=make_adapter)
    assert found["evaluated"] and found["n_cases"] == 3 and found["reference"] == "as-written"
    adapter = make_adapter(loaded, suite)
    baselines = [c for c in expand(suite, 3) if c.is_baseline]
    scores, _ = adapter.decide([adapter.encode(c) for c in baselines])
    for case, score in zip(found["cases"], scores):
        assert case["scores"]["as-written"] == pytest.approx(score, abs=1e-5)
        assert case["score_range"] == pytest.approx(max(case["scores"].values()) - min(case["scores"].values()))
        reliable = [v > 0 for k, v in case["scores"].items() if k not in case["below_mass_floor"]]
        assert case["decision_changes"] == (len(set(reliable)) > 1)
    no_prefill = next(f for f in found["formats"] if f["name"] == "no-prefill")
    assert no_prefill["example_prompt"].endswith("<|im_start|>assistant\n")
    assert found["n_decision_changes"] == sum(c["decision_changes"] for c in found["cases"])


def test_full_mode_repeats_every_fairness_statistic_per_format(loaded):
    suite = load_suite("fair-lending")
    found = sensitivity(loaded, suite, mode="full", limit=1, seed=0, make_adapter=make_adapter)
    assert found["n_cases"] == len(expand(suite, 1))
    assert all(f["fairness"]["analyses"] for f in found["formats"])
    race = [g for g in found["group_spread"] if g["property"] == "race"]
    assert {g["group"] for g in race} == {"white", "black", "hispanic", "asian"}
    for group in race:
        assert set(group["shifts"]) == {f["name"] for f in found["formats"]}


def test_an_imported_benchmark_keeps_its_own_prompt(loaded, tmp_path):
    import json

    rows = [{"filled_template": f"A {age} year old white male asks. Approve?", "decision_question_id": 1,
             "age": age, "gender": "male", "race": "white", "fill_type": "explicit"} for age in (60, 20)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = sensitivity(loaded, load_suite(f"discrim-eval:{path}"), mode="baselines", limit=None, seed=0,
                        make_adapter=make_adapter)
    assert not found["evaluated"] and "fixes its own prompt" in found["why"]
    assert sensitivity(loaded, load_suite("fair-lending"), mode="off", limit=1, seed=0,
                       make_adapter=make_adapter) is None


def test_readings_below_the_mass_floor_do_not_count_as_decisions(loaded):
    suite = load_suite("fair-lending")
    everything = sensitivity(loaded, suite, mode="baselines", limit=2, seed=0, make_adapter=make_adapter,
                             mass_floor=0.0)
    nothing = sensitivity(loaded, suite, mode="baselines", limit=2, seed=0, make_adapter=make_adapter,
                          mass_floor=1.1)
    assert all(not c["below_mass_floor"] for c in everything["cases"])
    assert nothing["n_decision_changes"] == 0 and all(len(c["below_mass_floor"]) == 5 for c in nothing["cases"])
