"""The attribution stage: method selection, the comparison set and the agreement matrix."""

from __future__ import annotations

import pytest

import audit
import explainers
from audit.errors import AuditError
from audit.stages.attribution import DEFAULT_METHODS, parse_methods, primary_method


def test_method_list_parsing():
    assert parse_methods(None) == list(DEFAULT_METHODS)
    assert parse_methods(" lime, ig ,lime") == ["lime", "ig"]
    assert primary_method(["lime", "ig"]) == "ig"
    assert primary_method(["attention-rollout", "lime"]) == "lime"
    with pytest.raises(AuditError, match="--methods: unknown method 'magic'"):
        parse_methods("ig,magic")
    with pytest.raises(AuditError, match="descriptive only"):
        parse_methods("attention-rollout")


def test_default_methods_are_at_least_six_and_mostly_explanatory():
    assert len(DEFAULT_METHODS) >= 6
    assert sum(not explainers.REGISTRY[n].descriptive for n in DEFAULT_METHODS) >= 5


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_llama_dir):
    out = tmp_path_factory.mktemp("explaining") / "out"
    return audit.run(model=str(tiny_llama_dir), out=out, limit=5, ig_steps=4, render=False, quiet=True,
                     methods="ig,saliency,lime,attention-rollout").bundle


def test_primary_method_explains_baselines_and_largest_shifts(bundle):
    from audit.stages.attribution import EXPLAINED_COUNTERFACTUALS

    attributions = bundle.attributions
    assert attributions["method"] == "ig"
    baselines = [c for c in bundle.cases if c["attribute"] is None]
    explained = {c["case_id"] for c in attributions["cases"]}
    assert {c["case_id"] for c in baselines} <= explained
    counterfactuals = explained - {c["case_id"] for c in baselines}
    assert len(counterfactuals) == min(EXPLAINED_COUNTERFACTUALS, len(baselines))
    largest_per_scenario = {}
    for case in bundle.cases:
        best = largest_per_scenario.get(case["pair_id"])
        if case["attribute"] and (best is None or abs(case["shift"]) > abs(best["shift"])):
            largest_per_scenario[case["pair_id"]] = case
    expected = sorted(largest_per_scenario.values(), key=lambda c: -abs(c["shift"]))[:EXPLAINED_COUNTERFACTUALS]
    assert counterfactuals == {c["case_id"] for c in expected}


def test_every_method_explains_the_comparison_cases_and_agreement_is_a_correlation_matrix(bundle):
    comparison = bundle.attributions["comparison"]
    names = [m["name"] for m in comparison["methods"]]
    assert names == ["ig", "saliency", "lime", "attention-rollout"]
    for method in comparison["methods"]:
        assert [c["case_id"] for c in method["cases"]] == comparison["case_ids"]
        assert method["mean_seconds"] > 0 and method["mean_forward_passes"] >= 1
    assert next(m for m in comparison["methods"] if m["name"] == "attention-rollout")["descriptive"]
    matrix = comparison["agreement"]["matrix"]
    for i, row in enumerate(matrix):
        assert row[i] == 1.0
        for j, value in enumerate(row):
            assert value == matrix[j][i] and -1.0 <= value <= 1.0
    for pair in comparison["agreement"]["pairs"]:
        assert pair["n_cases"] == 5
        low, high = pair["ci"]
        assert low <= pair["mean_tau"] <= high


def test_faithfulness_of_every_method_and_of_random(bundle):
    from audit.stages.trust import TrustPlan

    plan = TrustPlan()
    faithfulness = bundle.attributions["comparison"]["faithfulness"]
    methods = {"ig", "saliency", "lime", "attention-rollout"}
    assert set(faithfulness["methods"]) == methods | {"random", "leave-one-out", "leave-one-out reversed"}
    assert len(faithfulness["case_ids"]) == min(plan.faithfulness_cases, 5)
    assert faithfulness["loo_case_ids"] == faithfulness["case_ids"][: plan.loo_cases]
    for name in methods:
        entry = faithfulness["methods"][name]
        assert entry["loo_tau"]["n_cases"] == len(faithfulness["loo_case_ids"])
        assert -1.0 <= entry["loo_tau"]["mean"] <= 1.0
        assert 0.0 <= entry["naopc_comprehensiveness"]["mean"] <= 1.0
        assert entry["infidelity"]["n_cases"] == len(faithfulness["case_ids"])
    # leave-one-out and its reverse bound the comprehensiveness of the orderings on most cases
    assert faithfulness["methods"]["leave-one-out"]["naopc_comprehensiveness"]["mean"] > 0.5
    for name, entry in faithfulness["methods"].items():
        curves = list(entry["cases"].values())
        assert all(len(c["comprehensiveness"]) == len(faithfulness["bins"]) for c in curves)
        if name in methods:
            gain = entry["gain_comprehensiveness"]
            mean_method = entry["aopc_comprehensiveness"]
            mean_random = faithfulness["methods"]["random"]["aopc_comprehensiveness"]
            assert gain["mean_gain"] == pytest.approx(mean_method - mean_random, abs=1e-9)


def test_sensitivity_and_sanity_cover_every_method(bundle):
    comparison = bundle.attributions["comparison"]
    names = {m["name"] for m in comparison["methods"]}
    assert set(comparison["sensitivity"]["methods"]) == names
    assert all(m["mean"] >= 0 for m in comparison["sensitivity"]["methods"].values())
    sanity = comparison["sanity"]
    assert set(sanity["passes"]) == names
    assert sanity["stages"][-1]["randomised_layers"] == sanity["n_layers"]


def test_faithfulness_control_reads_the_primary_methods_gain(bundle):
    control = next(c for c in bundle.controls if c["id"] == "attribution-faithfulness")
    gain = bundle.attributions["comparison"]["faithfulness"]["methods"]["ig"]["gain_comprehensiveness"]
    assert control["value"] == pytest.approx(gain["mean_gain"])
    assert control["ci"] == pytest.approx(gain["ci"])
    assert control["direction"] == "min" and control["status"] in ("pass", "fail", "inconclusive")


def test_adaptive_integrated_gradients_in_the_audit_record_every_rule_tried(tmp_path, tiny_llama_dir):
    bundle = audit.run(model=str(tiny_llama_dir), out=tmp_path / "out", limit=1, ig_steps=2, ig_tolerance=0.01,
                       ig_max_steps=16, methods="ig", render=False, quiet=True, format_sensitivity="off").bundle
    cases = bundle.attributions["cases"]
    assert bundle.attributions["params"]["tolerance"] == 0.01 and bundle.attributions["params"]["max_steps"] == 16
    for case in cases:
        tried = case["extra"]["adaptive"]["rules_tried"]
        assert tried[0]["n_steps"] == 2 and case["params"]["n_steps"] == tried[-1]["n_steps"] <= 16
        gap = case["convergence_delta"] / abs(case["score"] - case["reference_score"])
        assert case["extra"]["adaptive"]["converged"] == (gap <= 0.01)
    assert bundle.run["placement"] == {
        "device": "cpu", "device_map": None, "dtype": "float32", "out_of_memory_splits": [],
        "scores": "float32 log-softmax of the model's logits, whatever the weights' dtype"}
