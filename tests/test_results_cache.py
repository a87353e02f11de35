"""The per-case results cache: a re-run hits every entry, a change of key misses, a broken entry is recomputed,
an interrupted run resumes to the bundle of an uninterrupted one, and --no-cache writes nothing."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import audit
from audit.evidence.results_cache import ResultsCache, case_hash
from audit.suites import expand, load_suite
from tests.conftest import write_yaml
from tests.test_cli import invoke

METHODS = "ig,saliency"


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory, fair_lending_raw) -> Path:
    """Two scenarios, one counterfactual value per attribute: a full audit of the tiny Llama in seconds."""
    raw = copy.deepcopy(fair_lending_raw)
    raw["scenarios"] = raw["scenarios"][:2]
    for attribute in raw["attributes"].values():
        attribute["values"] = attribute["values"][:1]
    return write_yaml(tmp_path_factory.mktemp("suite") / "small.yaml", raw)


def audit_run(model, suite, folder: Path, cache_dir: Path | None, **options):
    folder.mkdir(parents=True, exist_ok=True)
    settings = dict(model=str(model), suite=str(suite), out=folder / "out", ig_steps=4, methods=METHODS,
                    render=False, quiet=True, cache_dir=cache_dir)
    return audit.run(**{**settings, **options}).bundle


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_llama_dir, small_suite):
    """An uninterrupted audit into an empty cache, and that cache."""
    folder = tmp_path_factory.mktemp("first")
    return audit_run(tiny_llama_dir, small_suite, folder, folder / "cache"), folder / "cache"


def comparable(bundle) -> dict:
    """The bundle as JSON, less what is measured afresh on every run: the run record and stage-level timings."""
    data = json.loads(bundle.to_json())
    del data["run"]
    for check in ("faithfulness", "sensitivity", "sanity"):
        del data["attributions"]["comparison"][check]["seconds"]
    del data["adverse_action"]["cost"]["seconds"]
    return data


def without_timings(value):
    """``value`` less every measured time (a recomputed result takes its own)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def stages(bundle) -> dict[str, dict[str, int]]:
    return bundle.run["result_cache"]["stages"]


def entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.json"))


def test_first_run_stores_every_stage(first):
    bundle, cache = first
    assert bundle.run["result_cache"]["enabled"] and bundle.run["result_cache"]["dir"] == str(cache)
    assert set(stages(bundle)) == {"scoring", "prompt_formats", "patching", "attribution", "trust", "reasons"}
    assert all(counts["hits"] == 0 and counts["misses"] > 0 for counts in stages(bundle).values())
    assert stages(bundle)["scoring"]["misses"] == len(bundle.cases)
    work = bundle.run["work"]  # what each stage computed: all of it, the cache being empty
    assert "load_model" not in work and {"score_cases", "internals", "attribution", "reasons"} <= set(work)
    assert work["score_cases"]["tokens"] > 0 and work["score_cases"]["gradient_tokens"] == 0
    assert 0 < work["attribution"]["gradient_tokens"] < work["attribution"]["tokens"]
    assert {p.parent.parent.name for p in entries(cache)} == {bundle.model["id"][:16]}
    assert not list(cache.rglob("*.tmp"))


def test_second_run_hits_everything_and_runs_no_forward_pass(first, tiny_llama_dir, small_suite, tmp_path,
                                                             monkeypatch):
    from transformers import LlamaForCausalLM, LlamaModel

    bundle, cache = first

    def no_forward_pass(*args, **kwargs):
        raise AssertionError("a cached re-run ran the model")

    monkeypatch.setattr(LlamaForCausalLM, "forward", no_forward_pass)
    monkeypatch.setattr(LlamaModel, "forward", no_forward_pass)
    again = audit_run(tiny_llama_dir, small_suite, tmp_path, cache)
    assert {stage: counts["misses"] for stage, counts in stages(again).items()} == dict.fromkeys(stages(bundle), 0)
    assert {stage: counts["hits"] for stage, counts in stages(again).items()} == {
        stage: counts["misses"] for stage, counts in stages(bundle).items()}
    for part in ("cases", "fairness", "controls", "verdict"):
        assert getattr(again, part) == getattr(bundle, part), part
    assert comparable(again) == comparable(bundle)
    assert set(again.run["work"]) == set(bundle.run["work"])
    assert all(work == {"tokens": 0, "gradient_tokens": 0} for work in again.run["work"].values())


def test_other_ig_steps_miss_the_ig_entries_but_hit_scoring(first, tiny_llama_dir, small_suite, tmp_path):
    bundle, cache = first
    other = audit_run(tiny_llama_dir, small_suite, tmp_path, cache, ig_steps=5, limit=1)
    assert stages(other)["scoring"] == {"hits": sum(c["scenario_id"] == bundle.cases[0]["scenario_id"]
                                                    for c in bundle.cases), "misses": 0}
    attribution = stages(other)["attribution"]
    explained = len(other.attributions["cases"])  # IG, the primary method, on these cases: all new
    comparison = len(other.attributions["comparison"]["case_ids"])  # saliency on these: cached
    assert attribution == {"hits": comparison, "misses": explained}
    assert other.attributions["cases"][0]["params"]["n_steps"] == 5


def test_a_model_with_other_weights_misses(first, tiny_llama_dir, small_suite, tmp_path):
    from safetensors.torch import load_file, save_file

    bundle, cache = first
    changed = tmp_path / "changed-llama"
    shutil.copytree(tiny_llama_dir, changed)
    weights = load_file(changed / "model.safetensors")
    name = next(k for k in weights if k.endswith("norm.weight"))
    weights[name] = weights[name] * 1.5
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})
    other = audit_run(changed, small_suite, tmp_path, cache, limit=1, format_sensitivity="off")
    assert other.model["id"] != bundle.model["id"]
    assert all(counts["hits"] == 0 for counts in stages(other).values())
    assert (cache / other.model["id"][:16]).is_dir()


def test_a_truncated_or_deleted_entry_is_recomputed_and_an_interrupted_run_resumes(first, tiny_llama_dir,
                                                                                  small_suite, tmp_path):
    """An audit killed after its first scenario, then entries lost or cut short, resumes to the same bundle."""
    bundle, _ = first
    cache = tmp_path / "cache"
    audit_run(tiny_llama_dir, small_suite, tmp_path / "interrupted", cache, limit=1)
    stored = entries(cache)
    needed_again = [p for p in stored if json.loads(p.read_text())["kind"] in ("score", "attribution")]
    truncated = needed_again[::2]
    for path in truncated:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for path in [p for p in stored if p not in truncated][::3]:
        path.unlink()
    resumed = audit_run(tiny_llama_dir, small_suite, tmp_path, cache)
    assert sum(counts["hits"] for counts in stages(resumed).values()) > 0
    assert stages(resumed)["scoring"]["misses"] > 0 and stages(resumed)["attribution"]["misses"] > 0
    assert without_timings(comparable(resumed)) == without_timings(comparable(bundle))
    for path in truncated:
        assert json.loads(path.read_text())["key"] == path.stem  # recomputed and overwritten whole


def test_no_cache_writes_nothing(tiny_llama_dir, small_suite, tmp_path):
    cache = tmp_path / "cache"
    result = invoke("run", "--model", str(tiny_llama_dir), "--suite", str(small_suite), "--limit", "1",
                    "--methods", "ig", "--ig-steps", "2", "--format-sensitivity", "off", "--patching-pairs", "1",
                    "--out", str(tmp_path / "out"), "--no-cache", "--cache-dir", str(cache))
    assert result.exit_code in (0, 1, 4), result.output
    assert not cache.exists()
    bundle = json.loads((tmp_path / "out" / "bundle.json").read_text())
    assert bundle["run"]["result_cache"] == {"enabled": False, "dir": None, "unavailable": None, "stages": {}}


def test_a_cache_dir_that_is_a_file_is_bad_input(tiny_llama_dir, tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    result = invoke("run", "--model", str(tiny_llama_dir), "--cache-dir", str(tmp_path / "cache"),
                    "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "--cache-dir" in result.output and "is a file" in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the store itself


@pytest.fixture(scope="module")
def llama_and_case(adapters):
    adapter = adapters["causal-lm"]
    return adapter, adapter.encode(expand(load_suite("fair-lending"), 1)[0])


def test_entries_round_trip_with_arrays_and_corrupt_ones_miss(llama_and_case, tmp_path):
    adapter, case = llama_and_case
    cache = ResultsCache(tmp_path)
    states = {"answer": np.arange(12, dtype=np.float32).reshape(3, 4)}
    assert cache.fetch("score", adapter, case, {"p": 1}) is None
    cache.store("score", adapter, case, {"p": 1}, {"score": 0.25, "answer_mass": np.float32(0.5)}, states)
    found = cache.fetch("score", adapter, case, {"p": 1})
    assert found.value == {"score": 0.25, "answer_mass": 0.5}
    assert found.arrays["answer"].dtype == np.float32 and np.array_equal(found.arrays["answer"], states["answer"])
    assert cache.fetch("score", adapter, case, {"p": 2}) is None
    (path,) = entries(tmp_path)
    assert path.parent.parent.name == adapter.fingerprint["id"][:16] and path.parent.name == path.stem[:2]
    for broken in (b"", b'{"key": "', b"[1, 2]", json.dumps({"key": path.stem, "value": {}, "arrays": {
            "answer": {"dtype": "<f4", "shape": [5], "data": "AAAA"}}}).encode()):
        path.write_bytes(broken)
        assert cache.fetch("score", adapter, case, {"p": 1}) is None


def test_the_key_covers_model_runtime_case_and_format_but_not_the_tool_version(llama_and_case, adapters,
                                                                              monkeypatch):
    import audit.evidence.results_cache as results_cache

    adapter, case = llama_and_case
    cache = ResultsCache(None)
    key = cache.key("attribution", adapter, case, {"n_steps": 4})
    monkeypatch.setattr(audit, "__version__", "99.0")
    assert cache.key("attribution", adapter, case, {"n_steps": 4}) == key
    other_case = adapter.encode(expand(load_suite("fair-lending"), 1)[1])
    assert case_hash(other_case) != case_hash(case)
    assert cache.key("attribution", adapter, other_case, {"n_steps": 4}) != key
    assert cache.key("attribution", adapter, case, {"n_steps": 5}) != key
    assert cache.key("sanity", adapter, case, {"n_steps": 4}) != key
    monkeypatch.setitem(adapter.fingerprint, "dtype", "bfloat16")
    assert cache.key("attribution", adapter, case, {"n_steps": 4}) != key
    monkeypatch.undo()
    monkeypatch.setattr(results_cache, "CACHE_FORMAT", results_cache.CACHE_FORMAT + 1)
    assert cache.key("attribution", adapter, case, {"n_steps": 4}) != key


def test_an_unwritable_folder_warns_once_and_stores_nothing(llama_and_case, tmp_path, capsys):
    adapter, case = llama_and_case
    (tmp_path / "file").write_text("")
    cache = ResultsCache(tmp_path / "file" / "cache")
    assert not cache.enabled and "running without the cache" in capsys.readouterr().err
    entry = cache.store("score", adapter, case, {}, {"score": 1.0})
    assert entry.value == {"score": 1.0} and cache.fetch("score", adapter, case, {}) is None
    assert cache.summary()["unavailable"].startswith(f"cannot write to {tmp_path / 'file' / 'cache'}")
    assert capsys.readouterr().err == ""
