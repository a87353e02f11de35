"""A PEFT/LoRA adapter folder as ``--model``: its base resolved, merged, fingerprinted, audited and verified."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import audit
from audit.cli import main
from audit.errors import ModelSpecError
from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite


def save_lora(base_dir, folder, *, seed: int = 0, base_name: str | None = None):
    """A rank-4 LoRA on the attention projections of the model in ``base_dir``, with random (non-zero) B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder)
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base_name if base_name is not None else str(base_dir)
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config))
    return folder, peft_model


@pytest.fixture(scope="module")
def lora(tmp_path_factory, tiny_llama_dir):
    return save_lora(tiny_llama_dir, tmp_path_factory.mktemp("lora") / "adapter")


def test_an_adapter_folder_scores_as_the_base_with_the_adapter_applied(lora, tiny_llama_dir):
    folder, peft_model = lora
    suite = load_suite("fair-lending")
    loaded = load_model(parse_model_spec(str(folder)))
    adapter = make_adapter(loaded, suite)
    encoded = [adapter.encode(c) for c in expand(suite, limit=1)[:3]]
    scores, _ = adapter.decide(encoded)
    base = make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), suite)
    base_scores, _ = base.decide(encoded)
    with torch.no_grad():  # the unmerged PEFT model, as peft runs it
        unmerged = [float(adapter.read_out(peft_model(input_ids=e.input_ids[None]).logits[:, -1].float())[0])
                    for e in encoded]
    assert scores == pytest.approx(unmerged, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(scores, base_scores)) > 1e-3, "the adapter changes the decisions"
    fingerprint = loaded.fingerprint
    assert fingerprint["spec_kind"] == "adapter" and fingerprint["base_id"] == base.fingerprint["id"]
    assert fingerprint["id"] != base.fingerprint["id"]
    assert fingerprint["adapter"]["rank"] == 4 and fingerprint["adapter"]["target_modules"] == ["q_proj", "v_proj"]
    assert set(fingerprint["adapter"]["weights"]) == {"adapter_model.safetensors"}


def test_another_adapter_of_the_same_base_has_another_id_and_the_same_base_id(lora, tiny_llama_dir, tmp_path):
    folder, _ = lora
    other, _ = save_lora(tiny_llama_dir, tmp_path / "other", seed=1)
    first = load_model(parse_model_spec(str(folder))).fingerprint
    second = load_model(parse_model_spec(str(other))).fingerprint
    assert first["id"] != second["id"] and first["base_id"] == second["base_id"]


def test_the_base_comes_from_base_model_when_the_adapter_config_names_none_here(lora, tiny_llama_dir, tmp_path):
    folder, _ = lora
    moved = shutil.copytree(folder, tmp_path / "moved")
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "some-org/not-cached-model"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelSpecError, match="base_model_name_or_path 'some-org/not-cached-model'.*--base-model"):
        parse_model_spec(str(moved))
    spec = parse_model_spec(str(moved), base_model=str(tiny_llama_dir))
    assert spec.base.path == tiny_llama_dir.resolve()
    with pytest.raises(ModelSpecError, match="--base-model: .* is not an adapter folder"):
        parse_model_spec(str(tiny_llama_dir), base_model=str(tiny_llama_dir))


def test_a_pickle_only_adapter_is_refused_without_allow_pickle(lora, tmp_path):
    folder, _ = lora
    pickled = shutil.copytree(folder, tmp_path / "pickled")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    result = CliRunner().invoke(main, ["run", "--model", str(pickled), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "adapter_model.bin" in result.output and "--allow-pickle" in result.output
    assert not (tmp_path / "out").exists()


def test_an_adapter_is_audited_and_verified_against_its_folder(lora, tmp_path):
    folder, _ = lora
    out = tmp_path / "out"
    audit.run(model=str(folder), out=out, limit=1, ig_steps=2, methods="ig", quiet=True, render=False,
              format_sensitivity="off", patching_pairs=1)
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["model"]["spec_kind"] == "adapter" and bundle["model"]["adapter"]["merged"] is True
    result = CliRunner().invoke(main, ["verify", str(out), "--model", str(folder)])
    assert result.exit_code == 0, result.output
