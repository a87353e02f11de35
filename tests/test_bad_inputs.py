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

# Hostile text, YAML constructs and rows files ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
ROWS_TEMPLATE = ROOT / "examples" / "rows" / "credit-line-template.yaml"
ROWS_HEADER = "id,business,line,revenue,utilisation,years trading\n"
ROWS_GOOD = "app-1,a bakery,$50k,$640k,58%,9 years\n"


def run_on_rows(name: str, content: bytes):
    """``audit run --suite <the rows template> --rows <name>`` on the tiny Llama, with ``content`` as the file."""
    def make(folder, fx):
        (folder / name).write_bytes(content)
        return ["run", "--suite", str(ROWS_TEMPLATE), "--rows", str(folder / name), "--model", str(fx.tiny_llama_dir),
                "--out", str(folder / "out")]
    return make


def csv_rows(*lines: str, encoding: str = "utf-8") -> bytes:
    return (ROWS_HEADER + "".join(lines)).encode(encoding)


def jsonl_rows(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


GOOD_JSON_ROW = ('{"id": "app-1", "business": "a bakery", "line": "$50k", "revenue": "$640k", "utilisation": "58%", '
                 '"years trading": "9 years"}')


def json_row(**changes) -> str:
    row = json.loads(GOOD_JSON_ROW)
    row.update(changes)
    return json.dumps(row)


def suite_text(edit: Callable[[str], str], name: str = "suite.yaml"):
    """The bundled suite's YAML text with a textual edit (for what a mapping cannot express: aliases, repeats)."""
    def make(folder, fx):
        text = (ROOT / "audit" / "suites" / "data" / "fair-lending.yaml").read_text(encoding="utf-8")
        (folder / name).write_text(edit(text), encoding="utf-8")
        return folder / name
    return make


def policy_text(text: str, encoding: str = "utf-8"):
    def make(folder, fx):
        (folder / "policy.yaml").write_text(text, encoding=encoding)
        return ["run", "--policy", str(folder / "policy.yaml"), "--out", str(folder / "out")]
    return make


def set_threshold(control: str, value):
    return policy_file(lambda raw: raw["controls"][control].update(threshold=value))


def first_scenario(**changes):
    return lambda raw: raw["scenarios"][0].update(changes)


def first_value_of(change):
    def edit(raw):
        change(raw["scenarios"][0]["values"])
    return edit


BOMB = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 9))
ALIAS_BOMB = "a: &l0 [lol]\n" + BOMB + "id: bomb\n"
POLICY_HEAD = "id: p\ncontrols:\n  counterfactual-shift:\n    threshold: 0.25\n"


def bundle_field(path: tuple, value):
    """Set one field deep in a copy of the bundle (``path``: keys and list indices)."""
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _with_text(args: list[str], name: str, edit: Callable[[str], str]) -> list[str]:
    """``args`` (a command on a folder), with the file ``name`` in that folder edited as text."""
    path = Path(args[1]) / name
    path.write_text(edit(path.read_text()))
    return args


def bundle_text(text: str):
    """``audit report`` on a copy of the audit whose bundle.json is ``text``."""
    def make(folder, fx):
        args = bundle_folder(lambda data: None)(folder, fx)
        (Path(args[1]) / "bundle.json").write_text(text)
        return args
    return make


def explanation_with(change: Callable[[dict], object]):
    """``audit report`` on a copy of an explanation folder whose explanation.json was changed."""
    def make(folder, fx):
        target = Path(shutil.copytree(fx.explanation_folder, folder / "explained"))
        record = json.loads((target / "explanation.json").read_text())
        change(record)
        (target / "explanation.json").write_text(json.dumps(record))
        return ["report", str(target)]
    return make


def diff_with(change: Callable[[dict], object]):
    def make(folder, fx):
        args = bundle_folder(change)(folder, fx)
        return ["diff", str(fx.unrendered), args[1], "--out", str(folder / "diff")]
    return make


def sign_as(signer: str):
    def make(folder, fx):
        return ["sign", str(fx.unrendered), "--key", str(folder / "absent.key"), "--signer", signer]
    return make


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
    # YAML constructs: aliases, repeated keys, nesting, values of the wrong type, identifiers
    "suite: alias bomb": Case(run_on_suite(text_file("bomb.yaml", ALIAS_BOMB.encode())),
                              ("bomb.yaml", "line 2", "aliases are not allowed")),
    "suite: one harmless alias": Case(run_on_suite(suite_text(lambda t: t.replace(
        "answers: {favourable: [\"Yes\"], unfavourable: [\"No\"]}",
        "answers: {favourable: &yes [\"Yes\"], unfavourable: *yes}"))), ("suite.yaml", "alias *yes")),
    "suite: repeated question": Case(run_on_suite(suite_text(lambda t: t + "question: Should the lender decline?\n")),
                                     ("suite.yaml", "key 'question' repeats the key of line")),
    "suite: repeated key in a scenario": Case(run_on_suite(suite_text(lambda t: t.replace(
        "  - id: ", "  - id: dup\n    id: ", 1))), ("suite.yaml", "key 'id' repeats")),
    "suite: nested 200 deep": Case(run_on_suite(text_file("deep.yaml", b"id: " + b"[" * 200 + b"]" * 200)),
                                   ("deep.yaml", "nested deeper than 64")),
    "suite: JSON nested past the recursion limit": Case(
        run_on_suite(text_file("deeper.yaml", b"[" * 5000 + b"]" * 5000)), ("deeper.yaml", "nested deeper")),
    "suite: a list where text goes in the prompt": Case(
        run_on_suite(suite_file(first_value_of(lambda values: values.update(income=[640000, "USD"])))),
        ("suite.yaml", "scenarios[0].values.income", "must be text or a number, got a list")),
    "suite: a mapping as the question": Case(run_on_suite(suite_file(lambda raw: raw.update(question={"q": 1}))),
                                             ("suite.yaml", "question", "got a mapping")),
    "suite: an unquoted yes as an answer": Case(
        run_on_suite(suite_file(lambda raw: raw["answers"].update(favourable=[True]))),
        ("suite.yaml", "answers.favourable[0]", "boolean true", "quotes")),
    "suite: a group label that is a list": Case(run_on_suite(suite_file(
        lambda raw: next(iter(raw["attributes"].values()))["baseline"].update(race=["white", "male"]))),
        ("suite.yaml", "baseline.race", "got a list")),
    "suite: infinity as a value": Case(run_on_suite(suite_file(first_value_of(lambda v: v.update(income=float("inf"))))),
                                       ("suite.yaml", "values.income", "the number inf")),
    "suite: id with a trailing newline": Case(run_on_suite(suite_file(lambda raw: raw.update(id="fair-lending\n"))),
                                              ("suite.yaml", "id", "lowercase")),
    "suite: scenario id with a trailing newline": Case(run_on_suite(suite_file(first_scenario(id="s-1\n"))),
                                                       ("suite.yaml", "scenarios[0].id", "lowercase")),
    "suite: scenario id with a slash": Case(run_on_suite(suite_file(first_scenario(id="../etc"))),
                                            ("suite.yaml", "scenarios[0].id")),
    # invisible and reordering characters
    "suite: right-to-left override in a template": Case(run_on_suite(suite_file(first_scenario(
        template="{applicant} asks for \u202evorppa\u202c a loan of {loan}"))), ("suite.yaml", "U+202E", "line")),
    "suite: left-to-right isolate in a name": Case(run_on_suite(suite_file(
        lambda raw: next(iter(raw["attributes"].values()))["values"][0].update(text="Lakisha\u2066 Washington"))),
        ("suite.yaml", "U+2066 LEFT-TO-RIGHT ISOLATE")),
    "suite: zero-width space in the question": Case(run_on_suite(suite_file(
        lambda raw: raw.update(question="Should the lender appro\u200bve this?"))), ("suite.yaml", "U+200B")),
    "suite: a control character in a value": Case(run_on_suite(suite_file(first_value_of(
        lambda v: v.update(income="$50,000\x1b[2J")))), ("suite.yaml", "U+001B")),
    "suite: a right-to-left mark in a key": Case(run_on_suite(suite_file(
        lambda raw: raw["scenarios"][0]["values"].update({"inc\u200fome": "1"}))), ("suite.yaml", "U+200F")),
    "policy: pop directional formatting in the title": Case(policy_text(
        "id: p\ntitle: \"Strict \u202c policy\"\ncontrols:\n  impact-ratio: {threshold: 0.8}\n"),
        ("policy.yaml", "U+202C")),
    # rows files
    "rows: Latin-1 CSV": Case(run_on_rows("rows.csv", csv_rows("app-1,caf\xe9,$1,$2,3%,4 years\n",
                                                                encoding="latin-1")),
                              ("rows.csv", "line 2", "not UTF-8", "expected UTF-8")),
    "rows: UTF-16 CSV": Case(run_on_rows("rows.csv", csv_rows(ROWS_GOOD, encoding="utf-16")),
                             ("rows.csv", "not UTF-8")),
    "rows: a cell over csv's field limit": Case(run_on_rows("rows.csv", csv_rows(
        "app-1,\"" + "x" * 200_000 + "\",$1,$2,3%,4 years\n")), ("rows.csv", "line 2", "field limit")),
    "rows: NUL in a cell": Case(run_on_rows("rows.csv", csv_rows("app-1,a ba\x00kery,$1,$2,3%,4 years\n")),
                                ("rows.csv", "row 1", "column 'business'", "U+0000")),
    "rows: right-to-left override in a cell": Case(run_on_rows("rows.csv", csv_rows(
        "app-1,a \u202eyrekab,$1,$2,3%,4 years\n")), ("rows.csv", "row 1", "column 'business'", "U+202E")),
    "rows: a row with more cells than the header": Case(run_on_rows("rows.csv", csv_rows(
        "app-1,a bakery,$1,$2,3%,4 years,surplus\n")), ("rows.csv", "row 1", "7 cells", "6 columns")),
    "rows: a column named twice": Case(run_on_rows("rows.csv", b"id,business,business\napp-1,a,b\n"),
                                       ("rows.csv", "line 1", "'business' appears twice")),
    "rows: an unclosed quote": Case(run_on_rows("rows.csv", csv_rows(ROWS_GOOD, 'app-2,"a bakery,$1\n')),
                                    ("rows.csv", "not valid CSV")),
    "rows: two rows with one id": Case(run_on_rows("rows.csv", csv_rows(ROWS_GOOD, ROWS_GOOD.replace("bakery", "deli"))),
                                       ("rows.csv", "row 2", "not a unique identifier")),
    "rows: JSONL with a list cell": Case(run_on_rows("rows.jsonl", jsonl_rows(json_row(revenue=[640000, "USD"]))),
                                         ("rows.jsonl", "line 1", "column 'revenue'", "got a list")),
    "rows: JSONL with an object cell": Case(run_on_rows("rows.jsonl", jsonl_rows(json_row(line={"usd": 1}))),
                                            ("rows.jsonl", "line 1", "column 'line'", "got an object")),
    "rows: JSONL with a boolean cell": Case(run_on_rows("rows.jsonl", jsonl_rows(GOOD_JSON_ROW, json_row(line=True))),
                                            ("rows.jsonl", "line 2", "got a boolean")),
    "rows: JSONL with NaN": Case(run_on_rows("rows.jsonl", jsonl_rows(GOOD_JSON_ROW.replace('"$640k"', "NaN"))),
                                 ("rows.jsonl", "line 1", "NaN is not a JSON number")),
    "rows: JSONL with a 5000-digit number": Case(run_on_rows("rows.jsonl", jsonl_rows(
        GOOD_JSON_ROW.replace('"$640k"', "9" * 5000))), ("rows.jsonl", "line 1", "digits")),
    "rows: JSONL nested past the recursion limit": Case(run_on_rows("rows.jsonl", jsonl_rows(
        '{"id": ' + "[" * 100_000 + "]" * 100_000 + "}")), ("rows.jsonl", "line 1", "nested too deeply")),
    "rows: JSONL not UTF-8": Case(run_on_rows("rows.jsonl", GOOD_JSON_ROW.replace("bakery", "caf\xe9").encode("latin-1")),
                                  ("rows.jsonl", "line 1", "not UTF-8")),
    "rows: JSONL lone surrogate": Case(run_on_rows("rows.jsonl", jsonl_rows(json_row(business="a \\ud800 shop")
                                                                            .replace("\\\\", "\\"))),
                                       ("rows.jsonl", "line 1", "U+D800")),
    "rows: JSONL zero-width joiner-free invisible key": Case(run_on_rows("rows.jsonl", jsonl_rows(
        GOOD_JSON_ROW.replace('"business"', '"busi\u2060ness"'))), ("rows.jsonl", "line 1", "U+2060")),
    # policy thresholds against each control's range
    "policy: negative shift threshold": Case(set_threshold("counterfactual-shift", -0.1),
                                             ("controls.counterfactual-shift.threshold", "at least 0", "-0.1")),
    "policy: impact ratio above 1": Case(set_threshold("impact-ratio", 1.5),
                                         ("controls.impact-ratio.threshold", "from 0 to 1", "1.5")),
    "policy: flip rate above 1": Case(set_threshold("decision-flip-rate", 2),
                                      ("controls.decision-flip-rate.threshold", "from 0 to 1")),
    "policy: infinite threshold": Case(set_threshold("counterfactual-shift", float("inf")),
                                       ("controls.counterfactual-shift.threshold", "finite", "inf")),
    "policy: NaN threshold": Case(set_threshold("attribution-faithfulness", float("nan")),
                                  ("controls.attribution-faithfulness.threshold", "finite", "nan")),
    "policy: negative share": Case(set_threshold("protected-attribution-share", -0.5),
                                   ("controls.protected-attribution-share.threshold", "from 0 to 1")),
    "policy: NaN answer-mass floor": Case(policy_file(
        lambda raw: raw["controls"]["answer-reliability"].update(mass_floor=float("nan"))), ("mass_floor",)),
    "policy: alias": Case(policy_text("id: p\nbase: &t {threshold: 0.2}\ncontrols:\n  impact-ratio: *t\n"),
                          ("policy.yaml", "alias *t")),
    "policy: repeated threshold": Case(policy_text(POLICY_HEAD + "    threshold: 9\n"),
                                       ("policy.yaml", "line 5", "key 'threshold' repeats the key of line 4")),
    "policy: a list as the title": Case(policy_text("id: p\ntitle: [a, b]\n" + POLICY_HEAD[6:]),
                                        ("policy.yaml", "title", "must be text")),
    "policy: Latin-1": Case(policy_text("id: caf\xe9\n", encoding="latin-1"), ("policy.yaml", "UTF-8")),
    # flags beyond what the seeding and integration accept
    "--seed with 22 digits": Case(run_with("--seed", "1" * 22), ("--seed", "4294967295")),
    "--seed of 2**32": Case(run_with("--seed", str(2**32)), ("--seed", "4294967295")),
    "--ig-steps of a billion": Case(run_with("--ig-steps", "1000000000"), ("--ig-steps", "at most 4096")),
    "--ig-max-steps of a billion": Case(run_with("--ig-tolerance", "0.05", "--ig-max-steps", "1000000000"),
                                        ("--ig-max-steps", "at most 4096")),
    "--ig-tolerance nan": Case(run_with("--ig-tolerance", "nan"), ("--ig-tolerance",)),
    "explain: --seed with 22 digits": Case(explain_with("--seed", "9" * 22), ("--seed", "4294967295")),
    "explain: right-to-left override in the prompt": Case(explain_with(prompt="Can I \u202eworrob?"),
                                                          ("--prompt", "U+202E")),
    "explain: control character in the system prompt": Case(explain_with("--system", "be \x07 brief"),
                                                            ("--system", "U+0007")),
    "sign: right-to-left override in the signer": Case(sign_as("Jane \u202eeoD"), ("--signer", "U+202E")),
    # bundles whose values have the wrong type
    "bundle: a score that is a string": Case(bundle_folder(bundle_field(("cases", 0, "score"), "0.5")),
                                             ("bundle.json", "cases[0].score", "got string")),
    "bundle: fairness that is a list": Case(bundle_folder(bundle_field(("fairness",), [])),
                                            ("bundle.json", "fairness", "must be object, got array")),
    "bundle: a control status that is a number": Case(bundle_folder(bundle_field(("controls", 0, "status"), 7)),
                                                      ("bundle.json", "controls[0].status")),
    "bundle: a group missing its shift": Case(bundle_folder(
        lambda data: data["fairness"]["analyses"][0]["groups"][0].pop("mean_shift")),
        ("bundle.json", "fairness.analyses[0].groups[0].mean_shift: missing")),
    "bundle: a verdict that is text": Case(bundle_folder(bundle_field(("verdict",), "pass")),
                                           ("bundle.json", "verdict", "got string")),
    "bundle: a 5000-digit number": Case(bundle_text('{"schema_version": "1.5", "n": ' + "9" * 5000 + "}"),
                                        ("bundle.json", "not valid JSON", "digits")),
    "bundle: nested past the recursion limit": Case(bundle_text("[" * 100_000 + "]" * 100_000),
                                                    ("bundle.json", "nested too deeply")),
    "explanation: a token score that is text": Case(explanation_with(bundle_field(("attribution", "matrix", 0, 0), "1")),
                                                    ("explanation.json", "attribution.matrix[0][0]")),
    "explanation: the answer's tokens missing": Case(explanation_with(lambda r: r["tokens"].pop("generated")),
                                                     ("explanation.json", "tokens.generated: missing")),
    "explanation: a matrix row too short": Case(explanation_with(lambda r: r["attribution"]["matrix"][0].pop()),
                                                ("explanation.json", "attribution.matrix", "one row per")),
    "explanation: a source index past the prompt": Case(explanation_with(
        bundle_field(("attribution", "sources", 0, "index"), 10**6)), ("explanation.json", "sources[0].index")),
    "explanation: character span as floats": Case(explanation_with(
        bundle_field(("tokens", "prompt", 0, "chars"), [0.0, 1.0])), ("explanation.json", "tokens.prompt[0].chars")),
    "explanation: Infinity as a log-probability": Case(
        lambda folder, fx: _with_text(explanation_with(lambda r: None)(folder, fx), "explanation.json",
                                      lambda t: t.replace('"log_probs": [', '"log_probs": [Infinity, ', 1)),
        ("explanation.json", "Infinity is not a JSON number")),
    "bundle: 1e400 as a score": Case(lambda folder, fx: _with_text(bundle_folder(lambda d: None)(folder, fx), "bundle.json",
                                                                   lambda t: t.replace('"score": ', '"score": 1e400, "x": ', 1)),
                                     ("bundle.json", "1e400 is not a finite number")),
    "diff: a candidate whose controls are a mapping": Case(diff_with(bundle_field(("controls",), {})),
                                                           ("bundle.json", "controls", "must be array")),
    "diff: a base whose schema version is a list": Case(
        lambda folder, fx: ["diff", bundle_folder(bundle_field(("schema_version",), ["1.5"]))(folder, fx)[1],
                            str(fx.unrendered), "--out", str(folder / "diff")], ("bundle.json", "schema_version")),
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
