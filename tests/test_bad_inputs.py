"""The catalogue of bad inputs: each one gets a one-line error naming the file, field or flag, exit code 2, and
nothing written.

Every entry builds its bad input in a fresh folder, runs the command line in-process (the same ``main`` as
the console script; tests/test_cli.py runs the installed script itself), and checks that stderr is one line
``audit: error: ...`` containing the expected fragments, that stdout is empty and that no file appeared in
the folder besides the inputs the entry made. Progress lines (loading the model) may precede the error.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
from click.testing import CliRunner

from audit.cli import main
from tests.conftest import save_tiny_llama, write_yaml


@dataclass
class Case:
    """``make(folder, fixtures) -> argv``; the error line must contain every fragment (``{folder}`` expands)."""

    make: Callable[[Path, "Fixtures"], list[str]]
    fragments: tuple[str, ...]


class Fixtures:
    """Lazy access to the session fixtures an entry needs."""

    def __init__(self, request):
        self._request = request

    def __getattr__(self, name):
        return self._request.getfixturevalue(name)


def run_with(*extra: str) -> Callable[[Path, Fixtures], list[str]]:
    return lambda folder, fx: ["run", "--out", str(folder / "out"), *extra]


def run_on_model(make_model: Callable[[Path, Fixtures], Path], *extra: str):
    return lambda folder, fx: ["run", "--model", str(make_model(folder, fx)), "--out", str(folder / "out"), *extra]


def run_on_suite(make_suite: Callable[[Path, Fixtures], Path], model: str | None = "tiny"):
    def make(folder, fx):
        args = ["run", "--suite", str(make_suite(folder, fx)), "--out", str(folder / "out")]
        return args + (["--model", str(fx.tiny_llama_dir)] if model == "tiny" else [])
    return make


def suite_file(change: Callable[[dict], object], name: str = "suite.yaml"):
    def make(folder, fx):
        raw = copy.deepcopy(fx.fair_lending_raw)
        change(raw)
        return write_yaml(folder / name, raw)
    return make


def text_file(name: str, content: bytes):
    def make(folder, fx):
        (folder / name).write_bytes(content)
        return folder / name
    return make


def policy_file(change: Callable[[dict], object]):
    def make(folder, fx):
        raw = yaml.safe_load((Path(__file__).parents[1] / "audit" / "policies" / "default.yaml").read_text())
        change(raw)
        path = write_yaml(folder / "policy.yaml", raw)
        return ["run", "--policy", str(path), "--out", str(folder / "out")]
    return make


# Models -------------------------------------------------------------------------------------------------------

def pickle_only(folder, fx):
    import torch
    from safetensors.torch import load_file

    model = Path(shutil.copytree(fx.tiny_llama_dir, folder / "pickled"))
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    return model


def corrupted_safetensors(folder, fx):
    model = Path(shutil.copytree(fx.tiny_llama_dir, folder / "corrupted"))
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return model


def truncated_gguf(folder, fx):
    path = folder / "model.gguf"
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (10).to_bytes(8, "little"))
    return path


def short_context(folder, fx):
    return save_tiny_llama(folder / "short-context", fx.bpe_tokenizer, max_position_embeddings=32)


def needs_remote_code(folder, fx):
    """A model whose config names code shipped with the weights (``auto_map``)."""
    model = Path(shutil.copytree(fx.tiny_llama_dir, folder / "remote"))
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "custom-bank-model"
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig",
                          "AutoModelForCausalLM": "modeling_custom.CustomModel"}
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    return model


def rename_key(old: str, new: str):
    def change(raw):
        raw[new] = raw.pop(old)
    return change


def first_attribute_without_baseline(raw):
    attribute = next(iter(raw["attributes"].values()))
    attribute.pop("baseline")


def duplicate_scenario(raw):
    raw["scenarios"].append(copy.deepcopy(raw["scenarios"][0]))


def slot_without_value(raw):
    del raw["scenarios"][0]["values"]["income"]


def answers_that_are_not_single_tokens(raw):
    raw["answers"] = {"favourable": ["Affirmativelyness"], "unfavourable": ["Negativelyness"]}


def bundle_folder(change: Callable[[dict], object], command: str = "report"):
    def make(folder, fx):
        target = Path(shutil.copytree(fx.unrendered, folder / "audit"))
        data = json.loads((target / "bundle.json").read_text())
        change(data)
        (target / "bundle.json").write_text(json.dumps(data))
        return [command, str(target)]
    return make


def set_schema(version):
    return lambda data: data.update(schema_version=version)


def out_is_a_file(folder, fx):
    (folder / "taken").write_text("x")
    return ["run", "--out", str(folder / "taken")]


def public_key_that_is_no_key(folder, fx):
    (folder / "k.pub").write_text("nope")
    return ["verify", str(fx.unrendered), "--pubkey", str(folder / "k.pub")]


def not_writable(folder, fx):
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses even root
        return ["run", "--out", "/sys/oss-model-audit-out"]
    locked = folder / "locked"
    locked.mkdir(mode=0o500)
    return ["run", "--out", str(locked / "out")]


def explain_with(*extra: str, model: Callable[[Path, Fixtures], Path] | None = None,
                 prompt: str | None = "Can I borrow?"):
    """``audit explain`` with ``extra`` flags (and ``--prompt`` unless None), on the tiny Llama unless ``model``
    makes another model."""
    def make(folder, fx):
        spec = model(folder, fx) if model is not None else fx.tiny_llama_dir
        asked = ["--prompt", prompt] if prompt is not None else []
        return ["explain", "--model", str(spec), *asked, "--out", str(folder / "out"), *extra]
    return make


def explain_unwritable(folder, fx):
    return ["explain", "--prompt", "Can I borrow?", *not_writable(folder, fx)[1:]]


CATALOGUE: dict[str, Case] = {
    # the model
    "missing model path": Case(run_with("--model", "no-such-folder/model"), ("--model", "no-such-folder/model")),
    "hub id not cached": Case(run_with("--model", "nobody/nothing-cached"),
                              ("--model", "not in the local Hugging Face cache")),
    "pickle weights only": Case(run_on_model(pickle_only), ("--model", "--allow-pickle")),
    "corrupted safetensors": Case(run_on_model(corrupted_safetensors), ("--model", "model.safetensors")),
    "truncated GGUF": Case(run_on_model(truncated_gguf), ("--model", "model.gguf", "truncated")),
    "remote code without the flag": Case(run_on_model(needs_remote_code), ("--model", "--trust-remote-code")),
    "answer words not single tokens": Case(run_on_suite(suite_file(answers_that_are_not_single_tokens)),
                                           ("answers.favourable", "single token")),
    "prompt longer than the context": Case(run_on_model(short_context, "--limit", "1"),
                                           ("--model", "context of 32 tokens")),
    # the suite
    "empty suite file": Case(run_on_suite(text_file("empty.yaml", b"")), ("empty.yaml", "is empty")),
    "suite without scenarios": Case(run_on_suite(suite_file(lambda raw: raw.update(scenarios=[]))),
                                    ("suite.yaml", "scenarios", "non-empty")),
    "YAML syntax error": Case(run_on_suite(text_file("broken.yaml", b"id: x\nquestion: [unclosed\nanswers: {}\n")),
                              ("broken.yaml", "line", "not valid YAML")),
    "unknown field": Case(run_on_suite(suite_file(rename_key("scenarios", "scenarois"))),
                          ("suite.yaml", "scenarois", "did you mean 'scenarios'")),
    "template slot with no value": Case(run_on_suite(suite_file(slot_without_value)),
                                        ("suite.yaml", "scenarios[0].template", "{income}")),
    "attribute with no baseline": Case(run_on_suite(suite_file(first_attribute_without_baseline)),
                                       ("suite.yaml", "baseline")),
    "duplicate scenario ids": Case(run_on_suite(suite_file(duplicate_scenario)), ("suite.yaml", "duplicate scenario id")),
    "non-UTF-8 suite": Case(run_on_suite(text_file("latin1.yaml", "id: caf\xe9\n".encode("latin-1"))),
                            ("latin1.yaml", "UTF-8")),
    "missing suite": Case(run_with("--suite", "no-such-suite"), ("--suite", "no-such-suite")),
    # the policy
    "policy threshold of the wrong type": Case(
        policy_file(lambda raw: raw["controls"]["counterfactual-shift"].update(threshold="high")),
        ("policy.yaml", "controls.counterfactual-shift.threshold", "number")),
    "unknown control in the policy": Case(
        policy_file(lambda raw: raw["controls"].update({"counterfactual-shfit": {"threshold": 1}})),
        ("policy.yaml", "counterfactual-shfit", "did you mean 'counterfactual-shift'")),
    "missing policy": Case(run_with("--policy", "absent.yaml"), ("--policy", "absent.yaml")),
    # the flags
    "unknown method name": Case(run_with("--methods", "ig,telepathy"), ("--methods", "telepathy")),
    "--limit 0": Case(run_with("--limit", "0"), ("--limit", "at least 1")),
    "--limit not a number": Case(run_with("--limit", "many"), ("--limit", "many")),
    "negative seed": Case(run_with("--seed", "-1"), ("--seed",)),
    "IG tolerance out of range": Case(run_with("--ig-tolerance", "5"), ("--ig-tolerance", "between 0 and 1")),
    "unknown device": Case(run_with("--device", "tpu"), ("--device", "tpu")),
    "--patching-pairs 0": Case(run_with("--patching-pairs", "0"), ("--patching-pairs", "at least 1")),
    "--junit into a missing folder": Case(lambda folder, fx: ["run", "--out", str(folder / "out"), "--junit",
                                                              str(folder / "absent" / "junit.xml")],
                                          ("--junit", "does not exist")),
    # the output
    "--out is a file": Case(out_is_a_file, ("--out", "is a file")),
    "output folder not writable": Case(not_writable, ("--out", "not writable")),
    # audit explain
    "explain: empty prompt": Case(explain_with(prompt="   "), ("--prompt", "is empty")),
    "explain: no prompt": Case(explain_with(prompt=None), ("--prompt", "missing")),
    "explain: missing prompt file": Case(explain_with("--prompt-file", "absent.txt", prompt=None),
                                         ("--prompt-file", "absent.txt", "does not exist")),
    "explain: --max-new-tokens 0": Case(explain_with("--max-new-tokens", "0"), ("--max-new-tokens", "at least 1")),
    "explain: --ig-steps 0": Case(explain_with("--ig-steps", "0"), ("--ig-steps", "at least 1")),
    "explain: a sequence classifier": Case(explain_with(model=lambda folder, fx: fx.tiny_bert_classifier_dir),
                                           ("--model", "sequence classifier", "causal LM")),
    "explain: prompt longer than the context": Case(explain_with(model=short_context, prompt="Greg Baker " * 40),
                                                    ("--prompt", "context is 32 tokens")),
    "explain: output folder not writable": Case(explain_unwritable, ("--out", "not writable")),
    # bundles
    "bundle of a newer schema": Case(bundle_folder(set_schema("9.0")), ("bundle.json", "schema_version '9.0'")),
    "bundle missing a section": Case(bundle_folder(lambda data: data.pop("controls")),
                                     ("bundle.json", "controls: missing")),
    "bundle without a schema version": Case(bundle_folder(lambda data: data.pop("schema_version")),
                                            ("bundle.json", "schema_version None")),
    "verify a folder that is no audit": Case(lambda folder, fx: ["verify", str(folder)], ("manifest.sha256", "missing")),
    "verify with a public key that is no key": Case(public_key_that_is_no_key,
                                                    ("--pubkey", "k.pub", "not a PEM public key")),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, request, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    case = CATALOGUE[name]
    args = case.make(tmp_path, Fixtures(request))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, f"{name}: exit {result.exit_code}\n{result.output}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("audit: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # progress lines may come before it
    for fragment in case.fragments:
        assert fragment in errors[0], f"{name}: {fragment!r} not in {errors[0]!r}"
    assert result.stdout == ""
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "something was written"


def test_the_catalogue_covers_at_least_25_bad_inputs():
    assert len(CATALOGUE) >= 25


def test_a_full_disk_leaves_the_previous_report_intact(unrendered, tmp_path, monkeypatch):
    """Rendering into a folder whose disk fills up: exit 2 naming --out, the old files untouched, no staging
    folder left behind. The full disk is simulated: every write into the staging folder fails with ENOSPC."""
    folder = Path(shutil.copytree(unrendered, tmp_path / "audit"))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_write = Path.write_bytes

    def full_disk(self, data):
        if ".tmp-" in str(self.parent.name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 2
    assert "No space left on device" in result.stderr and str(folder) in result.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]
