"""The internals stage through the pipeline: logit lens and probes from the states recorded while scoring."""

from __future__ import annotations

import pytest

import audit


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_llama_dir):
    out = tmp_path_factory.mktemp("internals") / "out"
    return audit.run(model=str(tiny_llama_dir), out=out, limit=5, ig_steps=2, methods="ig", render=False,
                     quiet=True).bundle


def test_the_lens_ends_at_every_case_score_and_groups_are_paired_shifts(bundle):
    lens = bundle.internals["lens"]
    assert lens["evaluated"] and lens["depths"] == 3  # embeddings + 2 layers of the tiny Llama
    for record in bundle.cases:
        assert lens["cases"][record["case_id"]][-1] == pytest.approx(record["score"], abs=1e-4)
    race = {g["group"]: g for g in lens["groups"] if g["property"] == "race"}
    assert set(race) == {"white", "black", "hispanic", "asian"}
    assert all(g["n_scenarios"] == 5 for g in race.values())
    # at the last depth a group's lens shift is its mean decision shift (every scenario has the same names)
    shifts = [c["shift"] for c in bundle.cases if c["groups"]["race"] == "black" and c["attribute"] == "applicant"]
    assert race["black"]["mean_shift"][-1] == pytest.approx(sum(shifts) / len(shifts), abs=1e-4)


def test_every_protected_property_is_probed_at_the_answer_position(bundle):
    probes = bundle.internals["probes"]
    targets = {(p["target"], p["position"]) for p in probes}
    for attribute in bundle.suite["attributes"]:
        for prop in attribute["protected"]:
            assert (prop, "answer") in targets
    race = next(p for p in probes if p["target"] == "race" and p["position"] == "answer")
    assert race["evaluated"] and len(race["layers"]) == 3 and race["folds"] == 3
    for layer in race["layers"]:
        low, high = layer["accuracy_ci"]
        assert low <= layer["accuracy"] <= high
        assert layer["selectivity"] == pytest.approx(layer["accuracy"] - layer["control_accuracy"])
    decision = next(p for p in probes if p["target"] == "decision")
    assert decision["evaluated"] == (len({c["decision"] for c in bundle.cases}) == 2)


def test_the_report_has_the_inside_the_model_section(bundle):
    from audit.report.render import render_html

    html = render_html(bundle)
    assert "Inside the model" in html and "Where the decision forms" in html and "linear probes" in html
    assert "activation patching" in html


def test_patching_covers_the_largest_shift_of_the_chosen_scenarios(bundle):
    from audit.stages.internals import PATCHED_PAIRS

    patching = bundle.internals["patching"]
    largest = {}
    for case in bundle.cases:
        if case["attribute"] and abs(case["shift"]) > abs(largest.get(case["pair_id"], {"shift": 0})["shift"]):
            largest[case["pair_id"]] = case
    expected = sorted(largest.values(), key=lambda c: -abs(c["shift"]))[:PATCHED_PAIRS]
    assert [p["source_case_id"] for p in patching["pairs"]] == [c["case_id"] for c in expected]
    for pair, case in zip(patching["pairs"], expected):
        assert pair["target_case_id"] == f"{case['pair_id']}/baseline"
        assert pair["total_effect"] == pytest.approx(case["shift"], abs=1e-4)
    assert len(patching["summary"]["layers"]) == 3  # input embeddings + 2 layers


def test_pairs_are_spread_over_scenarios_before_a_scenario_gives_a_second():
    from audit.stages.internals import patched_pairs

    records = [{"case_id": f"{s}/baseline", "pair_id": s, "attribute": None, "shift": 0.0} for s in "ab"]
    records += [{"case_id": f"{s}/{k}", "pair_id": s, "attribute": "age", "shift": shift}
                for s, shifts in {"a": [0.9, -0.8, 0.1], "b": [0.2, 0.3]}.items() for k, shift in enumerate(shifts)]
    chosen = [r["case_id"] for r in patched_pairs(records, None)]
    assert chosen == ["a/0", "b/1", "a/1", "b/0", "a/2"]
    assert [r["case_id"] for r in patched_pairs(records, 2)] == ["a/0", "b/1"]


def test_every_counterfactual_pair_is_patched_when_asked(adapters):
    from audit.stages.internals import patching_summary
    from audit.suites import expand

    adapter = adapters["causal-lm"]
    encoded = {case.case_id: adapter.encode(case) for case in expand(adapter.suite, limit=1)}
    records = [{"case_id": c, "pair_id": e.case.pair_id, "attribute": e.case.attribute, "shift": 0.0}
               for c, e in encoded.items()]
    found = patching_summary(adapter, encoded, records, seed=0, pairs_wanted=None, quiet=True)
    counterfactuals = [c for c, e in encoded.items() if not e.case.is_baseline]
    assert sorted(p["source_case_id"] for p in found["pairs"]) == sorted(counterfactuals)
    assert found["selection"].startswith(f"all {len(counterfactuals)} counterfactual cases")
    assert found["summary"]["n_pairs"] == len(counterfactuals)


def test_the_mediation_control_reads_the_patching_summary(bundle):
    control = next(c for c in bundle.controls if c["id"] == "protected-span-mediation")
    mediated = bundle.internals["patching"]["summary"]["mediated_fraction"]
    assert control["blocking"] is False
    if mediated["mean"] is None:
        assert control["status"] == "not evaluated"
    else:
        assert control["value"] == pytest.approx(mediated["mean"])
