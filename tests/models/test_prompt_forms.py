"""How a prompt is written: a chat template's date is fixed, a base model gets a plain prompt, and a suite's own
prompt template gets the BOS token wherever the tokenizer adds one (as lm-evaluation-harness encodes it)."""

from __future__ import annotations

import copy

import pytest

from audit.models import load_model, make_adapter, parse_model_spec
from audit.suites import expand, load_suite
from tests.conftest import DISCRIM_DATA, save_tiny_llama

DATED_TEMPLATE = (
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '26 Jul 2024' %}"
    "{%- endif %}{%- endif %}<|im_start|>system\nToday Date: {{ date_string }}<|im_end|>\n"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def adapter_with(tmp_path, tokenizer, suite="fair-lending"):
    folder = save_tiny_llama(tmp_path / "model", tokenizer)
    return make_adapter(load_model(parse_model_spec(str(folder))), load_suite(suite))


def test_a_template_that_writes_todays_date_renders_the_fixed_date(tmp_path, bpe_tokenizer):
    tokenizer = copy.deepcopy(bpe_tokenizer)
    tokenizer.chat_template = DATED_TEMPLATE
    adapter = adapter_with(tmp_path, tokenizer)
    prompt = adapter.encode(expand(adapter.suite, limit=1)[0]).prompt
    assert "Today Date: 01 Jan 2026" in prompt
    described = adapter.describe()
    assert described["prompt_form"] == "chat template" and described["prompt_date"] == "2026-01-01"


def test_a_model_without_a_chat_template_gets_a_plain_prompt_and_says_so(tmp_path, bpe_tokenizer):
    tokenizer = copy.deepcopy(bpe_tokenizer)
    tokenizer.chat_template = None
    adapter = adapter_with(tmp_path, tokenizer)
    case = expand(adapter.suite, limit=1)[0]
    prompt = adapter.encode(case).prompt
    assert prompt.startswith(case.text) and "<|im_start|>" not in prompt
    assert adapter.describe()["prompt_form"] == "plain prompt" and adapter.describe()["prompt_date"] is None


@pytest.mark.skipif(not DISCRIM_DATA.is_file(), reason="the shared discrim-eval subset is not on this machine")
def test_a_suite_prompt_template_gets_the_bos_a_tokenizer_adds_and_never_twice(tmp_path, discrim_llama_dir):
    from tokenizers import processors
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(discrim_llama_dir)
    suite = f"discrim-eval:{DISCRIM_DATA}"
    plain = adapter_with(tmp_path / "plain", tokenizer, suite)
    case = expand(plain.suite, limit=1)[0]
    assert int(plain.encode(case).input_ids[0]) != tokenizer.bos_token_id, "this tokenizer adds no BOS"
    bos = copy.deepcopy(tokenizer)  # a Llama/Gemma-style tokenizer: its post-processor prepends BOS
    bos._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos.bos_token} $A", special_tokens=[(bos.bos_token, bos.bos_token_id)])
    with_bos = adapter_with(tmp_path / "bos", bos, suite)
    encoded = with_bos.encode(case)
    assert int(encoded.input_ids[0]) == bos.bos_token_id and int(encoded.input_ids[1]) != bos.bos_token_id
    assert encoded.tokens == plain.encode(case).tokens, "the case text is the same region"
    assert with_bos.describe()["prompt_form"] == "suite prompt template"
