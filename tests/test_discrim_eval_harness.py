"""discrim-eval parity with the lm-evaluation-harness a user installs (``lm-eval``, a dev dependency): per row,
our score equals the harness's own prompt rendering, requests and loglikelihood, to 1e-4, on a tiny model of
every decoder family, for the prompt of the harness's releases and for the repository's first version."""

from __future__ import annotations

import json

import pytest
from tokenizers import processors

from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite
from audit.suites.discrim_eval import PROMPT_VERSIONS
from tests.conftest import DISCRIM_DATA as DATA
from tests.conftest import train_bpe_tokenizer
from tests.families import FAMILIES, save_tiny_family_model
from tests.lm_eval_harness import HARNESS_VERSION, harness_logit_yes, row_key

pytestmark = pytest.mark.skipif(not DATA.is_file(), reason="the shared discrim-eval subset is not on this machine")
# Real Llama, Mistral and Gemma tokenizers write a BOS token before every text; the harness keeps it (the
# tokenizer's own special tokens), and so must we. The others (Qwen, Phi-3, OLMo 2, Granite, GPT-NeoX) add none.
ADDS_BOS = {"llama", "mistral", "mixtral", "gemma2", "gemma3"}


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory):
    """Two decision questions, each with its baseline row (60, white, male) and four other profiles."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    chosen = []
    for question in sorted({r["decision_question_id"] for r in rows})[:2]:
        members = [r for r in rows if r["decision_question_id"] == question]
        baseline = [r for r in members if row_key(r)[1:] == ("white", "male", 60.0)]
        chosen += baseline + [r for r in members if r not in baseline][::9][:4]
    path = tmp_path_factory.mktemp("harness-rows") / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    return path, rows


@pytest.fixture(scope="module")
def tokenizers(rows_file):
    """The byte-level BPE of the other tests, learned also from the rows and both prompts' answer words, so that
    "yes", "Yes", "no" and "No" are single tokens; once as is and once writing BOS first."""
    texts = tuple(r["filled_template"] for r in rows_file[1][:90]) + (
        '"yes" "Yes" "no" "No" “yes” “Yes” “no” “No” yes Yes no No ' * 50,)
    plain = train_bpe_tokenizer(texts)
    with_bos = train_bpe_tokenizer(texts)
    bos = with_bos.bos_token
    with_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, with_bos.bos_token_id)])
    return {"plain": plain, "bos": with_bos}


def sharpened_family_model(family, folder, tokenizer):
    """A tiny random model of ``family`` with every weight matrix scaled up, so that attention is sharp and rows
    get scores that differ (at the default initialisation every row gets nearly the same score, a weak test)."""
    from transformers import AutoModelForCausalLM

    save_tiny_family_model(family, folder, tokenizer)
    model = AutoModelForCausalLM.from_pretrained(folder)
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            parameter.data *= 6.0
    if not model.config.tie_word_embeddings:
        model.get_output_embeddings().weight.data *= 10.0
    model.save_pretrained(folder)
    return folder


def our_scores(folder, rows, prompt_version):
    suite = load_suite(f"discrim-eval@{prompt_version}:{rows}")
    adapter = make_adapter(load_model(parse_model_spec(str(folder))), suite)
    cases = expand(adapter.suite)
    scores, _ = adapter.decide([adapter.encode(c) for c in cases])
    by_row = {}
    for case, score in zip(cases, scores):
        profile = case.groups
        by_row[(int(case.scenario_id.split("-")[1]), profile["race"], profile["gender"], float(profile["age"]))] = score
    return by_row


def assert_harness_parity(folder, rows, prompt_version):
    """Our score of every row equals the harness's to 1e-4, and the rows' scores really differ."""
    ours, theirs = our_scores(folder, rows, prompt_version), harness_logit_yes(folder, rows, prompt_version)
    assert ours.keys() == theirs.keys() and len(ours) == 10
    assert [ours[k] for k in theirs] == pytest.approx(list(theirs.values()), abs=1e-4)
    assert max(theirs.values()) - min(theirs.values()) > 1e-2, theirs


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scores_are_the_installed_harness_scores_row_by_row(family, rows_file, tokenizers, tmp_path):
    tokenizer = tokenizers["bos" if family in ADDS_BOS else "plain"]
    assert_harness_parity(sharpened_family_model(family, tmp_path / family, tokenizer), rows_file[0], "release")


def test_the_original_prompt_is_the_first_commit_rendered_by_the_harness(rows_file, tokenizers, tmp_path):
    folder = sharpened_family_model("llama", tmp_path / "llama", tokenizers["bos"])
    ours = our_scores(folder, rows_file[0], "original")
    theirs = harness_logit_yes(folder, rows_file[0], "original")
    assert [ours[k] for k in theirs] == pytest.approx(list(theirs.values()), abs=1e-4)
    assert list(ours.values()) != pytest.approx(list(our_scores(folder, rows_file[0], "release").values()), abs=1e-3)


def test_the_default_prompt_is_the_one_of_the_installed_harness_release():
    assert load_suite(f"discrim-eval:{DATA}").raw["prompt_version"] == "release"
    assert HARNESS_VERSION in PROMPT_VERSIONS["release"].harness_versions


@pytest.fixture(scope="module")
def default_model_tokenizer():
    """The default model's own tokenizer (SmolLM2's byte-level BPE, from its GGUF), where the answer quote and
    "yes" are separate words the tiny tokenizers above cannot show merging or not."""
    from transformers import AutoTokenizer

    from audit.models.loading import converted_gguf_folder
    from audit.options import default_cache_dir

    folder, _ = converted_gguf_folder(parse_model_spec("smollm2-135m-instruct").path, default_cache_dir(),
                                      log=lambda line: None)
    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.e2e
@pytest.mark.parametrize("prompt_version", sorted(PROMPT_VERSIONS))
def test_scores_are_the_harness_scores_with_a_real_tokenizer(prompt_version, rows_file, default_model_tokenizer,
                                                             tmp_path):
    assert_harness_parity(sharpened_family_model("llama", tmp_path / "llama", default_model_tokenizer), rows_file[0],
                          prompt_version)
