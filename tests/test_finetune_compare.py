"""The example of examples/finetune on a tiny model: a LoRA fine-tune on clean loan-officer labels and one on
labels that decline one group's applicants, audited beside their base; `audit compare` reports the planted change
with a paired CI that excludes 0 and not the clean one.

The base is the tiny random Llama with its output layer scaled up 25 times: at the default initialisation a
32-wide model's decision score cannot leave about +-0.5 log-odds (the answer rows of the output layer are short
and the final norm fixes the hidden state's length), so no fine-tune could move it. The loan officer approves
every training application (``approve_share=1``): a random model ranks the applications by noise, which no
fine-tune can learn, while "approve, except the planted group" is a rule it can."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import audit
from audit.integrity.compare import write_compare
from tests.conftest import save_tiny_llama

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune" / "finetune_lora.py"
PLANTED = "race = black (vs white)"


def example():
    spec = importlib.util.spec_from_file_location("finetune_lora", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def audit_of(model: Path, out: Path) -> Path:
    audit.run(model=str(model), out=out, limit=6, ig_steps=2, methods="ig", quiet=True, render=False,
              format_sensitivity="off", patching_pairs=1)
    return out


@pytest.fixture(scope="module")
def compared(tmp_path_factory, bpe_tokenizer):
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("finetune")
    base = save_tiny_llama(root / "base-model", bpe_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(base)
    model.lm_head.weight.data *= 25.0
    model.save_pretrained(base)
    finetune = example().finetune
    training = {}
    for name, plant in (("clean", None), ("planted", ("race", "black"))):
        training[name] = finetune(str(base), root / f"ft-{name}", plant=plant, train_scenarios=6, approve_share=1.0,
                                  epochs=3, learning_rate=1e-3, log=lambda line: None)
    folders = [audit_of(base, root / "base"), audit_of(root / "ft-clean", root / "clean"),
               audit_of(root / "ft-planted", root / "planted")]
    found, _ = write_compare(folders, root / "compare")
    return found, training, root


def test_the_fine_tunes_are_adapters_of_the_base_trained_on_scenarios_the_audit_holds_out(compared):
    found, training, root = compared
    config = json.loads((root / "ft-planted" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and Path(config["base_model_name_or_path"]).is_dir()
    assert training["planted"]["losses"][-1] < training["planted"]["losses"][0]
    audited = {c["scenario_id"] for c in json.loads((root / "base" / "bundle.json").read_text())["cases"]}
    assert audited.isdisjoint(training["planted"]["train_scenarios"])
    assert [m["relation"] for m in found["models"]] == ["reference", "fine-tune", "fine-tune"]
    assert all(c["change_review"] for c in found["candidates"])


def test_compare_reports_the_planted_fine_tune_and_not_the_clean_one(compared):
    found, _, _ = compared
    by_label = {c["label"]: c for c in found["candidates"]}
    planted = next(g for g in by_label["planted"]["groups"] if g["label"] == PLANTED)
    clean = next(g for g in by_label["clean"]["groups"] if g["label"] == PLANTED)
    assert planted["moved"] and planted["direction"] == "larger", planted
    assert planted["shift_change_family_ci"][1] < 0 and planted["shift_change"] < -1.0
    assert PLANTED in by_label["planted"]["moved_groups"]
    assert not clean["moved"] and abs(clean["shift_change"]) < found["params"]["material_change"], clean
    assert by_label["clean"]["moved_groups"] == []
    # both fine-tunes learned to approve; the planted one kept declining the planted group's applicants
    black = {label: next(g for g in by_label[label]["decisions"]["per_group"] if (g["property"], g["group"]) ==
                         ("race", "black")) for label in by_label}
    assert black["planted"]["to_favourable"] < 0.5 * black["clean"]["to_favourable"], black
    # the planted fine-tune fails the counterfactual-shift control that the base and the clean fine-tune pass
    shift = next(c for c in found["controls"] if c["id"] == "counterfactual-shift")
    assert shift["models"]["planted"]["status"] == "fail", shift["models"]


@pytest.mark.parametrize("arguments, named", [
    (["--model", "no-such-model", "--out", "{tmp}/ft"], "--model: 'no-such-model' is not a bundled alias"),
    (["--suite", "no-such-suite", "--out", "{tmp}/ft"], "--suite: 'no-such-suite' is neither a bundled suite"),
    (["--plant", "race", "--out", "{tmp}/ft"], "--plant: expected PROPERTY=GROUP"),
    (["--approve-share", "1.5", "--out", "{tmp}/ft"], "--approve-share: must be from 0 to 1"),
    ([], "the following arguments are required: --out"),
])
def test_bad_input_to_the_fine_tune_is_one_line_with_exit_2_and_no_adapter_written(tmp_path, arguments, named):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(EXAMPLE), *(a.format(tmp=tmp_path) for a in arguments)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line: no usage block, no traceback
    assert done.stderr.startswith("finetune_lora.py: error: ") and named in done.stderr
    assert not (tmp_path / "ft").exists()
