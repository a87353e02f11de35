"""End to end on the real default model, SmolLM2-135M-Instruct, through the installed CLI.

One scenario (all of its counterfactual variants) keeps it to about a minute
on two CPU cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SECTIONS = (
    "Model Audit Report", "Executive summary", "Model identity", "Test set", "Method", "Fairness results",
    "Attributions", "Can these explanations be trusted?", "Principal reasons for adverse decisions",
    "Regulatory crosswalk", "Limitations", "Reproducibility",
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def audit_out(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("e2e") / "audit-out"
    exe = Path(sys.executable).with_name("audit")
    result = subprocess.run([str(exe), "run", "--limit", "1", "--out", str(out)], capture_output=True, text=True)
    return out, result


def test_default_audit_writes_a_readable_report(audit_out):
    from pypdf import PdfReader

    out, result = audit_out
    assert result.returncode in (0, 1, 4), result.stderr[-2000:]
    bundle = json.loads((out / "bundle.json").read_text())
    assert result.returncode == bundle["verdict"]["exit_code"]
    text = "\n".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    flat = " ".join(text.split())
    for title in SECTIONS:
        assert title in flat, title
    fingerprint = bundle["model"]["id"]
    assert fingerprint in flat.replace(" ", "") or fingerprint in text.replace("\n", "")
    for control in bundle["controls"]:
        assert control["id"] in flat, control["id"]
    assert bundle["model"]["architecture"] == "LlamaForCausalLM"
    assert bundle["model"]["source_gguf"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert bundle["fairness"]["answer_mass"]["mean"] >= 0.9, "the suite's prefill makes SmolLM2 answer Yes/No"


def test_bundle_scores_match_a_direct_forward_pass(audit_out):
    """Re-derive the decision score of several cases with plain transformers calls."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = audit_out
    bundle = json.loads((out / "bundle.json").read_text())
    from audit.options import default_cache_dir

    folder = default_cache_dir() / "gguf" / bundle["model"]["source_gguf"]["sha256"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    favourable = [v["id"] for v in bundle["decision"]["verbaliser"]["favourable"]]
    unfavourable = [v["id"] for v in bundle["decision"]["verbaliser"]["unfavourable"]]
    suite = bundle["suite"]
    cases = bundle["cases"]
    for case in cases[:: max(1, len(cases) // 6)]:
        messages = [{"role": "user", "content": f"{case['text']}\n\n{suite['question']}"}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(prompt + suite["answer_prefix"], return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = model(ids).logits[0, -1].float().log_softmax(-1)
        expected = logp[favourable].logsumexp(-1) - logp[unfavourable].logsumexp(-1)
        assert case["score"] == pytest.approx(float(expected), abs=1e-4), case["case_id"]
        assert case["n_tokens"] == ids.shape[1]


def test_trust_checks_ran_on_the_real_model(audit_out):
    out, _ = audit_out
    comparison = json.loads((out / "bundle.json").read_text())["attributions"]["comparison"]
    methods = {m["name"] for m in comparison["methods"]}
    sanity = comparison["sanity"]
    assert sanity["stages"][-1]["randomised_layers"] == sanity["n_layers"] == 30
    assert set(sanity["passes"]) == methods
    # Integrated Gradients' map of the first mortgage case changes once the layers are random (measured: rho 0.42)
    assert sanity["passes"]["ig"] is True
    faithfulness = comparison["faithfulness"]
    assert faithfulness["loo_case_ids"] == faithfulness["case_ids"]
    for name in methods:
        assert faithfulness["methods"][name]["loo_tau"]["n_cases"] == 1
        assert faithfulness["methods"][name]["infidelity"]["mean"] is not None
        assert comparison["sensitivity"]["methods"][name]["mean"] >= 0
