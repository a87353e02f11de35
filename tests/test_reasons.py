"""Principal reasons for adverse action (12 CFR 1002.9(b)(2)): the rule, the control, the report section."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

import audit
from audit.errors import PolicyError
from audit.evidence.bundle import read_bundle
from audit.controls.policy import evaluate, parse_policy
from audit.stages.reasons import (
    MAX_REASONS, adverse_action_reasons, judge_case, overlap, principal_reasons, protected_among_top, stability,
)
from audit.report.render import render_html
from audit.report.phrases import control_reading
from tests.conftest import write_yaml
from tests.wired import blank_llama_adapter, wire_to_token

FACTORS = ["income", "credit score", "debt-to-income ratio", "employment length", "loan amount", "collateral"]
SECTION = "Principal reasons for adverse decisions"


def record(slot_values: dict[str, str], protected=("applicant",), **fields) -> dict:
    """A declined case record whose text is its slot values joined by ". "."""
    text, slots = "", {}
    for name, value in slot_values.items():
        start = len(text)
        text += value + ". "
        slots[name] = [[start, start + len(value)]]
    return {
        "case_id": "s/baseline", "scenario_id": "s", "attribute": None, "value": "baseline", "score": -1.0,
        "decision": "unfavourable", "text": text, "slots": slots, "protected_slots": list(protected), **fields,
    }


def run(slot_scores: dict[str, float], method="ig", seed=None, reused=False, seconds=1.0, passes=10) -> dict:
    return {"method": method, "seed": seed, "slot_scores": slot_scores, "seconds": seconds,
            "forward_passes": passes, "reused": reused}


CASE = record({"applicant": "Greg Baker", "income": "$92,000 a year", "credit score": "731",
               "debt-to-income ratio": "36%", "employment length": "4 years", "loan amount": "$310,000",
               "collateral": "the home"})


# ---------------------------------------------------------------- the rule, on hand-built attributions


def test_only_factors_that_pushed_toward_the_decline_are_reasons_most_negative_first_at_most_four():
    scores = {"applicant": -9.0, "income": -1.0, "credit score": -3.0, "debt-to-income ratio": 2.0,
              "employment length": -0.5, "loan amount": -2.0, "collateral": -0.1, "down payment": -7.0}
    assert principal_reasons(scores, FACTORS) == [
        ("credit score", -3.0), ("loan amount", -2.0), ("income", -1.0), ("employment length", -0.5)
    ]
    assert len(principal_reasons(scores, FACTORS)) == MAX_REASONS
    positive = {"income": 1.0, "credit score": 0.5, "applicant": -1.0}
    assert principal_reasons(positive, FACTORS) == []
    assert principal_reasons({"income": -1.0}, ["credit score"]) == [], "a factor absent from the case is no reason"


def test_a_protected_slot_among_the_top_four_negative_slots_is_named_with_its_rank():
    scores = {"applicant": -2.0, "income": -3.0, "credit score": 1.0, "age": -0.01}  # |total| = 6.01
    found = protected_among_top(scores, ["applicant", "age"])
    assert [(slot, rank) for slot, rank, _ in found] == [("applicant", 2), ("age", 3)]
    assert found[0][2] == pytest.approx(2.0 / 6.01)
    below = {"income": -5.0, "credit score": -4.0, "loan amount": -3.0, "collateral": -2.0, "applicant": -1.0}
    assert protected_among_top(below, ["applicant"]) == [], "rank 5 is outside the top four"
    assert protected_among_top({"applicant": 3.0, "income": -1.0}, ["applicant"]) == []


def test_a_protected_slot_below_the_floor_is_not_a_principal_reason():
    scores = {"applicant": -2.0, "income": -3.0, "credit score": 1.0, "age": -0.01}
    assert [slot for slot, _, _ in protected_among_top(scores, ["applicant", "age"], floor=0.05)] == ["applicant"]
    record = dict(CASE, protected_slots=["applicant", "age"])
    judged = judge_case(record, [run({"income": -3.0, "age": -0.01})], FACTORS, stability_floor=0.5,
                        protected_floor=0.05)
    assert not judged["flagged"], "age carries 0.3 % of the decline's attribution"
    judged = judge_case(record, [run({"income": -3.0, "age": -0.5})], FACTORS, stability_floor=0.5,
                        protected_floor=0.05)
    assert judged["flags"][0]["kind"] == "protected" and "14% by its attribution" in judged["flags"][0]["detail"]


def test_a_protected_slot_is_judged_by_what_its_value_does_not_by_its_presence():
    """Attribution against a blanked slot credits a name for being there; the counterfactual shift says whether
    this name, rather than the baseline's, pushed the decision."""
    runs = [run({"income": -1.0, "credit score": -0.6, "applicant": -0.5})]
    swapped = dict(CASE, case_id="s/applicant=x", attribute="applicant", value="x")
    assert not judge_case(dict(swapped, shift=0.0003), runs, FACTORS, 0.5, protected_floor=0.05)["flagged"]
    pushed = judge_case(dict(swapped, shift=-0.9), runs, FACTORS, 0.5, protected_floor=0.05)
    assert pushed["flags"][0]["detail"].endswith("applicant (rank 2, 36% by its counterfactual shift)")
    baseline = dict(CASE, shift=0.0)  # the reference applicant's own name pushes nothing by construction
    assert not judge_case(baseline, runs, FACTORS, 0.5, protected_floor=0.05)["flagged"]
    age_case = dict(CASE, case_id="s/age=81", attribute="age", shift=-0.9, protected_slots=["applicant", "age"])
    judged = judge_case(age_case, [run({"income": -1.0, "applicant": -0.5, "age": 0.1})], FACTORS, 0.5, 0.05)
    assert [f["detail"] for f in judged["flags"]] == [
        "protected attribute among top reasons: age (rank 2, 47% by its counterfactual shift)"]


def test_stability_is_the_share_of_other_runs_that_agree_on_the_top_reason_and_overlap_is_jaccard():
    assert stability("income", ["income", "credit score", "income", None]) == 0.5
    assert stability(None, [None]) == 1.0
    assert stability("income", []) is None
    assert overlap({"a", "b"}, [{"a", "b"}, {"b", "c"}, set()]) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert overlap(set(), [set()]) == 1.0
    assert overlap({"a"}, []) is None


def test_judge_case_gives_reasons_with_their_text_and_flags_a_protected_slot_in_the_top_four():
    primary = run({"applicant": -0.5, "income": -2.0, "credit score": -1.0, "loan amount": 0.7}, reused=True)
    again = run({"applicant": -0.1, "income": -1.5, "credit score": 0.2}, method="gradient-shap", seed=0)
    judged = judge_case(CASE, [primary, again], FACTORS, stability_floor=0.5)
    assert [(r["factor"], r["text"], r["score"]) for r in judged["reasons"]] == [
        ("income", "$92,000 a year", -2.0), ("credit score", "731", -1.0)
    ]
    assert judged["stability"] == 1.0 and judged["overlap"] == 0.5
    assert [f["kind"] for f in judged["flags"]] == ["protected"] and judged["flagged"]
    assert "applicant (rank 3, 12% by its attribution)" in judged["flags"][0]["detail"]
    assert judged["seconds"] == 1.0 and judged["forward_passes"] == 10 and judged["n_reused"] == 1
    assert [(r["method"], r["top"]) for r in judged["runs"]] == [("ig", "income"), ("gradient-shap", "income")]


def test_judge_case_flags_unstable_reasons_below_the_floor_and_declines_without_a_factor():
    runs = [run({"income": -2.0, "credit score": -1.0}),
            run({"income": -1.0, "credit score": -2.0}, method="gradient-shap", seed=0),
            run({"income": -1.0, "credit score": -2.0}, method="gradient-shap", seed=1),
            run({"income": -3.0}, method="feature-ablation", seed=0)]
    judged = judge_case(CASE, runs, FACTORS, stability_floor=0.5)
    assert judged["stability"] == pytest.approx(1 / 3)
    assert [f["kind"] for f in judged["flags"]] == ["unstable"]
    assert "1 of 3 other runs (33%), below the stability floor of 50%" in judged["flags"][0]["detail"]
    assert not judge_case(CASE, runs, FACTORS, stability_floor=0.3)["flagged"]

    nothing = judge_case(CASE, [run({"income": 1.0, "applicant": -1.0})], FACTORS, stability_floor=0.5)
    assert nothing["reasons"] == [] and [f["kind"] for f in nothing["flags"]] == ["protected", "no-factor"]


def test_a_single_run_leaves_stability_undefined_and_unflagged():
    judged = judge_case(CASE, [run({"income": -1.0})], FACTORS, stability_floor=1.0)
    assert judged["stability"] is None and judged["overlap"] is None
    assert judged["stability_note"] == "undefined: the ensemble has a single run"
    assert not judged["flagged"]


def test_without_a_signed_method_every_decline_is_flagged_and_nothing_runs():
    found = adverse_action_reasons(
        None, {}, [CASE], ["saliency", "attention-rollout"], FACTORS, {"method": "saliency", "cases": []},
        ig_options={"n_steps": 4}, seed=0, stability_floor=0.5, quiet=True,
    )
    assert found["method"] is None and found["ensemble"] == []
    assert [m["method"] for m in found["left_out"]] == ["saliency", "attention-rollout"]
    assert "unsigned" in found["left_out"][0]["why"] and "descriptive" in found["left_out"][1]["why"]
    assert found["n_flagged"] == 1 and found["cases"][0]["flags"][0]["kind"] == "no-method"


# ---------------------------------------------------------------- the control and its policy option


def reasons_evidence(n_declined: int, n_flagged: int, n_cases: int = 20) -> dict:
    cases = [{"flagged": i < n_flagged, "flags": [{"kind": "protected"}] if i < n_flagged else []}
             for i in range(n_declined)]
    return {"adverse_action": {"n_cases": n_cases, "n_unfavourable": n_declined, "n_flagged": n_flagged,
                               "cases": cases}}


@pytest.mark.parametrize(
    "declined, flagged, status",
    [(0, 0, "not evaluated"), (3, 0, "pass"), (40, 1, "fail"), (3, 3, "fail")],
)
def test_control_is_zero_tolerance_over_the_declines_and_not_evaluated_without_any(declined, flagged, status):
    policy = parse_policy({"id": "p", "controls": {"adverse-action-reasons": {"threshold": 0.0}}}, label="p")
    params = {"confidence": 0.95}
    (control,) = evaluate(policy, reasons_evidence(declined, flagged), params)
    assert control["status"] == status
    assert "ecoa-reg-b-1002.9b2" in control["clauses"]
    if declined == 0:
        assert control["decisive"] == "no unfavourable decisions" and control["value"] is None
        assert control_reading(control).startswith("Not evaluated: the model decided all 20 cases favourably")
    else:
        assert control["value"] == pytest.approx(flagged / declined)
        assert "Wilson 95 % CI" in control["measurements"][0]["detail"]
    assert evaluate(policy, {}, params)[0]["status"] == "not evaluated", "a bundle without reasons"


@pytest.mark.parametrize("floor", [0, 1.5, "high", True, -0.2])
def test_stability_floor_must_be_a_share(floor):
    raw = {"id": "p", "controls": {"adverse-action-reasons": {"threshold": 0.0, "stability_floor": floor}}}
    with pytest.raises(PolicyError, match=r"^p.yaml: controls.adverse-action-reasons.stability_floor: must be"):
        parse_policy(raw, label="p.yaml")


def test_stability_floor_defaults_and_unknown_settings_are_refused():
    policy = parse_policy({"id": "p", "controls": {"adverse-action-reasons": {"threshold": 0.0}}}, label="p")
    assert policy.controls["adverse-action-reasons"].options == {"stability_floor": 0.5, "protected_floor": 0.05}
    raw = {"id": "p", "controls": {"adverse-action-reasons": {"threshold": 0.0, "stabilty_floor": 0.5}}}
    with pytest.raises(PolicyError, match=r"controls.adverse-action-reasons.stabilty_floor: unknown setting"):
        parse_policy(raw, label="p.yaml")
    raw = {"id": "p", "controls": {"adverse-action-reasons": {"threshold": 0.0, "protected_floor": 1.5}}}
    with pytest.raises(PolicyError, match=r"controls.adverse-action-reasons.protected_floor: must be a number"):
        parse_policy(raw, label="p.yaml")


# ---------------------------------------------------------------- through the pipeline, on a tiny model


@pytest.fixture(scope="module")
def declining_audit(tmp_path_factory, tiny_llama_dir, fair_lending_raw):
    """The random tiny Llama declines every case; one scenario, one counterfactual value per attribute."""
    raw = copy.deepcopy(fair_lending_raw)
    raw["scenarios"] = raw["scenarios"][:1]
    for attribute in raw["attributes"].values():
        attribute["values"] = attribute["values"][:1]
    folder = tmp_path_factory.mktemp("reasons")
    suite = write_yaml(folder / "small.yaml", raw)
    return audit.run(model=str(tiny_llama_dir), suite=str(suite), out=folder / "out", ig_steps=4, render=False,
                     quiet=True, methods="ig,gradient-shap,saliency,attention-rollout")


def test_every_unfavourable_case_gets_reasons_from_legitimate_factors(declining_audit):
    bundle = declining_audit.bundle
    reasons = bundle.adverse_action
    declined = [c for c in bundle.cases if c["decision"] == "unfavourable"]
    assert declined, "the random tiny model declines"
    assert [c["case_id"] for c in reasons["cases"]] == [c["case_id"] for c in declined]
    assert reasons["n_unfavourable"] == len(declined) and reasons["n_cases"] == len(bundle.cases)
    records = {c["case_id"]: c for c in bundle.cases}
    for case in reasons["cases"]:
        assert len(case["reasons"]) <= MAX_REASONS
        text = records[case["case_id"]]["text"]
        for reason in case["reasons"]:
            assert reason["factor"] in bundle.suite["factors"] and reason["score"] < 0
            assert reason["text"] in text
        assert [r["seed"] for r in case["runs"]] == [None, 0, 1]
        assert case["seconds"] > 0 and case["forward_passes"] > 0


def test_the_ensemble_is_signed_and_explanatory_and_reuses_the_attribution_stage(declining_audit):
    bundle = declining_audit.bundle
    reasons = bundle.adverse_action
    assert reasons["method"] == "ig"
    assert [(r["method"], r["seed"]) for r in reasons["ensemble"]] == [
        ("ig", None), ("gradient-shap", 0), ("gradient-shap", 1)
    ]
    assert [m["method"] for m in reasons["left_out"]] == ["saliency", "attention-rollout"]
    baseline = next(c for c in reasons["cases"] if c["attribute"] is None)
    assert baseline["n_reused"] == 2, "ig and gradient-shap (seed 0) explained the baseline already"
    attributed = next(c for c in bundle.attributions["cases"] if c["case_id"] == baseline["case_id"])
    assert [(r["factor"], r["score"]) for r in baseline["reasons"]] == principal_reasons(
        attributed["slot_scores"], bundle.suite["factors"]
    )
    assert reasons["cost"]["runs"] == 3 * reasons["n_unfavourable"]
    assert bundle.run["durations_s"]["reasons"] >= 0


def test_the_control_and_the_report_section_read_the_reasons(declining_audit):
    bundle = declining_audit.bundle
    control = next(c for c in bundle.controls if c["id"] == "adverse-action-reasons")
    assert control["status"] == ("fail" if bundle.adverse_action["n_flagged"] else "pass")
    html = render_html(bundle)
    section = html[html.index(SECTION):]
    first = bundle.adverse_action["cases"][0]
    for reason in first["reasons"]:
        assert f"{reason['factor'][:1].upper()}{reason['factor'][1:]}: {reason['text']}" in section
    assert "Saliency" in section and "unsigned" in section


def test_a_model_that_declines_nothing_and_an_older_bundle_render_a_plain_sentence(declining_audit, tmp_path):
    bundle = declining_audit.bundle
    approved = [{**c, "decision": "favourable"} for c in bundle.cases]
    none_declined = adverse_action_reasons(
        None, {}, approved, ["ig", "gradient-shap"], bundle.suite["factors"], bundle.attributions,
        ig_options={"n_steps": 4}, seed=0, stability_floor=0.5, quiet=True,
    )
    assert none_declined["n_unfavourable"] == 0 and none_declined["cases"] == []
    html = render_html(dataclasses.replace(bundle, adverse_action=none_declined))
    assert f"The model decided none of the {len(bundle.cases)} cases unfavourably" in html

    older = {**bundle.to_dict(), "schema_version": "1.0"}
    del older["adverse_action"]
    (tmp_path / "bundle.json").write_text(json.dumps(older))
    html = render_html(read_bundle(tmp_path))
    assert "was written before principal reasons for\n  adverse decisions were derived" in html


# ---------------------------------------------------------------- known answer


@pytest.fixture(scope="module")
def one_factor_model(tmp_path_factory, bpe_tokenizer):
    """The hand-wired tiny Llama of ``tests.wired``, reading one token of a factor slot as a push toward No."""
    from audit.suites import expand, load_suite

    suite = load_suite("fair-lending")
    case = expand(suite, limit=1)[0]
    adapter = blank_llama_adapter(tmp_path_factory.mktemp("one-factor"), bpe_tokenizer, suite)
    encoded = adapter.encode(case)
    ids = encoded.input_ids.tolist()
    excluded = {*adapter.verbaliser.favourable, *adapter.verbaliser.unfavourable,
                *bpe_tokenizer.encode(" ", add_special_tokens=False)}
    factor, target = next(
        (word.slot, ids[encoded.region[0] + word.tokens[0]])
        for word in encoded.words
        if word.slot in suite.factors and len(word.tokens) == 1
        and ids.count(ids[encoded.region[0] + word.tokens[0]]) == 1
        and ids[encoded.region[0] + word.tokens[0]] not in excluded
    )
    wire_to_token(adapter, target, favourable_sign=-1.0)
    return adapter, encoded, factor, list(suite.factors)


def test_the_factor_that_decides_is_the_stable_principal_reason(one_factor_model):
    adapter, encoded, factor, factors = one_factor_model
    case = encoded.case
    (score,), _ = adapter.decide([encoded])
    assert score < -1.0
    declined = {
        "case_id": case.case_id, "scenario_id": case.scenario_id, "attribute": None, "value": case.value,
        "text": case.text, "slots": {k: [list(s) for s in v] for k, v in case.slots.items()},
        "protected_slots": list(case.protected_slots), "score": score, "decision": "unfavourable",
    }
    found = adverse_action_reasons(
        adapter, {case.case_id: encoded}, [declined], ["ig", "feature-ablation", "gradient-shap"], factors,
        {"method": "ig", "cases": []}, ig_options={"n_steps": 16}, seed=0, stability_floor=1.0, quiet=True,
    )
    (judged,) = found["cases"]
    assert [r["factor"] for r in judged["reasons"]] == [factor], "only the factor the model considered"
    assert [(r["method"], r["seed"]) for r in judged["runs"]] == [
        ("ig", None), ("feature-ablation", None), ("gradient-shap", 0), ("gradient-shap", 1)
    ], "a second seed only for the method whose scores depend on it"
    assert [r["top"] for r in judged["runs"]] == [factor] * 4
    assert judged["stability"] == 1.0 and not judged["flagged"], judged["flags"]
