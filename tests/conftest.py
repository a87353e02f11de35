"""Shared fixtures: tiny randomly initialised models with tokenizers trained in the test.

The tiny models have the real architectures (Llama decoder, BERT classifier),
so every code path that reads a model's internals runs for real, in
milliseconds instead of seconds.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

import audit
from audit.evidence.results_cache import RESULTS_CACHE_ENV
from audit.suites import load_suite

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus() -> list[str]:
    """Text the tiny tokenizers learn from: the bundled suite, its question and answers."""
    suite = load_suite("fair-lending")
    lines = [suite.question, suite.answer_prefix, "Yes No yes no " * 50]
    for scenario in suite.scenarios:
        lines.append(scenario.template)
        lines.extend(scenario.values.values())
    for attribute in suite.attributes:
        lines.extend([attribute.baseline.text, *(v.text for v in attribute.values)])
    return lines


def train_bpe_tokenizer(extra_lines: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer with a ChatML template, learned from the bundled suite (and ``extra_lines``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus() + list(extra_lines), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    return fast


def train_wordpiece_tokenizer():
    """A BERT WordPiece tokenizer whose vocabulary is built from the bundled suite, the same on every run.

    tokenizers' WordPieceTrainer is not deterministic (its vocabulary and ids differ between runs), which made
    the tiny BERT a different model in every session. The vocabulary here is the special tokens, every
    character alone and as a ``##`` continuation, then every word of the corpus, most frequent first (ties in
    alphabetical order); a word outside the corpus splits into characters.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word for line in corpus() for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
    )
    characters = sorted({character for word in counts for character in word} | set("0123456789$,.-"))
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocabulary = specials + characters + [f"##{c}" for c in characters] + words
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="session", autouse=True)
def results_cache_of_the_session(tmp_path_factory) -> Path:
    """Audits run by the tests (in process and as subprocesses) keep their per-case results in a folder of this
    session, never in the user's cache. Only the results cache moves: the GGUF conversion cache, which the
    end-to-end tests rely on being warm, stays in ``default_cache_dir()``."""
    folder = tmp_path_factory.mktemp("results-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RESULTS_CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def bpe_tokenizer():
    return train_bpe_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    """A 2-layer Llama with random weights, saved as a standard safetensors folder."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), bpe_tokenizer)


def save_tiny_llama(folder: Path, bpe_tokenizer, max_position_embeddings: int = 2048) -> Path:
    """A 2-layer Llama with random weights (seed 0) and ``bpe_tokenizer``, saved in ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(bpe_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_position_embeddings,
        pad_token_id=bpe_tokenizer.pad_token_id, eos_token_id=bpe_tokenizer.eos_token_id,
        bos_token_id=bpe_tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    bpe_tokenizer.save_pretrained(folder)
    return folder


DISCRIM_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "discrim-eval-explicit-subset.jsonl"


@pytest.fixture(scope="session")
def discrim_llama_dir(tmp_path_factory):
    """The tiny Llama with a tokenizer that also learned the discrim-eval rows, so that "yes", "Yes", "no" and
    "No" are single tokens, as they are for SmolLM2 (lm-eval scores multi-token choices too; we refuse them)."""
    rows = [json.loads(line)["filled_template"] for line in DISCRIM_DATA.read_text().splitlines()[:90]]
    tokenizer = train_bpe_tokenizer(tuple(rows) + ("“yes” “Yes” “no” “No” yes Yes no No " * 50,))
    return save_tiny_llama(tmp_path_factory.mktemp("discrim-llama"), tokenizer)


@pytest.fixture(scope="session")
def tiny_bert_classifier_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT sequence classifier with labels approve / decline."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = train_wordpiece_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=512, num_labels=2,
        id2label={0: "decline", 1: "approve"}, label2id={"decline": 0, "approve": 1},
    )
    model = BertForSequenceClassification(config)
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def fair_lending_raw() -> dict:
    from importlib import resources

    return yaml.safe_load((resources.files("audit.suites") / "data" / "fair-lending.yaml").read_text())


@pytest.fixture
def suite_raw(fair_lending_raw) -> dict:
    """A mutable copy of the bundled suite's mapping, for tests that break it."""
    return copy.deepcopy(fair_lending_raw)


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def adapters(tiny_llama_dir, tiny_bert_classifier_dir, fair_lending_raw):
    """The tiny Llama (decision adapter) and tiny BERT (classifier adapter), keyed by family."""
    from audit.models import load_model, make_adapter, parse_model_spec
    from audit.suites import parse_suite

    llama = make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), load_suite("fair-lending"))
    raw = dict(fair_lending_raw, answers={"favourable": ["approve"], "unfavourable": ["decline"]})
    bert = make_adapter(load_model(parse_model_spec(str(tiny_bert_classifier_dir))), parse_suite(raw))
    return {"causal-lm": llama, "classifier": bert}


@pytest.fixture(scope="session")
def audited(tmp_path_factory, tiny_llama_dir) -> Path:
    """A one-scenario audit of the tiny Llama with its PDF report."""
    out = tmp_path_factory.mktemp("audited") / "out"
    audit.run(model=str(tiny_llama_dir), out=out, limit=1, ig_steps=2, methods="ig", quiet=True,
              format_sensitivity="off", patching_pairs=1)
    return out


@pytest.fixture(scope="session")
def unrendered(tmp_path_factory, tiny_llama_dir) -> Path:
    """The same audit without HTML/PDF: verification re-renders only junit.xml, so tampering tests stay fast."""
    out = tmp_path_factory.mktemp("unrendered") / "out"
    audit.run(model=str(tiny_llama_dir), out=out, limit=1, ig_steps=2, methods="ig", quiet=True, render=False,
              format_sensitivity="off", patching_pairs=1)
    return out


@pytest.fixture(scope="session")
def another_audited(tmp_path_factory, tiny_llama_dir) -> Path:
    """A second rendered audit (another suite), whose files a forger could swap into the first."""
    out = tmp_path_factory.mktemp("another") / "out"
    audit.run(model=str(tiny_llama_dir), suite="employment-screening", out=out, limit=1, ig_steps=2, methods="ig",
              quiet=True, format_sensitivity="off", patching_pairs=1)
    return out


@pytest.fixture(scope="session")
def explanation_folder(tmp_path_factory, tiny_llama_dir) -> Path:
    """An ``audit explain`` folder of the tiny Llama (four answer tokens, Integrated Gradients)."""
    from audit.explain.run import explain

    out = tmp_path_factory.mktemp("explanation") / "out"
    explain(model=str(tiny_llama_dir), prompt="Should the lender approve Greg Baker?", max_new_tokens=4, ig_steps=4,
            out=out, quiet=True)
    return out
