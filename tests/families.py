"""Tiny randomly initialised decoders of every family a bank deploys, built from their transformers configs.

Each family's config keeps what makes the family differ (the embedding scale of Gemma, the logit soft-cap of
Gemma 2, the multipliers of Granite, sliding-window and hybrid attention, mixture-of-experts routing, tied
embeddings, the fused projections of Phi-3 and GPT-NeoX) and shrinks the rest to 2 layers of 32 dimensions,
so each model builds and runs in well under a second. The sliding window is 96 tokens, shorter than every
prompt of the bundled suites (about 190 tokens), so the windowed layers really mask, yet long enough that two
layers carry the case text to the answer.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=2048)
WINDOW = 96

# family name -> (config class, model class, what differs from Llama)
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": WINDOW}),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                {"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": True}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16, "tie_word_embeddings": True}),
    "qwen3-moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  {"head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                   "decoder_sparse_step": 1}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               {"head_dim": 8, "sliding_window": WINDOW, "final_logit_softcapping": 30.0,
                "attn_logit_softcapping": 50.0, "query_pre_attn_scalar": 8}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {"head_dim": 8, "sliding_window": WINDOW, "query_pre_attn_scalar": 8,
                "layer_types": ["sliding_attention", "full_attention"]}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"tie_word_embeddings": False}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
    "granite": ("GraniteConfig", "GraniteForCausalLM",
                {"embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.015625,
                 "logits_scaling": 8.0}),
    "gpt-neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 {"rotary_pct": 0.25, "use_parallel_residual": True, "num_key_value_heads": None}),
}

# Families whose chat template writes the BOS token first (Gemma's "{{ bos_token }}<start_of_turn>user ...").
NEEDS_BOS = {"gemma2", "gemma3"}
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' "
    "else 'user') + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
MIXTURE_OF_EXPERTS = {"mixtral", "qwen3-moe"}


def save_tiny_family_model(family: str, folder: Path, tokenizer, seed: int = 0) -> Path:
    """A tiny ``family`` model with random weights (``seed``) and ``tokenizer``, saved as a safetensors folder."""
    import transformers

    config_name, model_name, overrides = FAMILIES[family]
    settings = {**SMALL, **overrides}
    settings = {key: value for key, value in settings.items() if value is not None}
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, **settings,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config)
    if family in NEEDS_BOS:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.chat_template = GEMMA_TEMPLATE
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def plant_dependence(adapter, cases, favourable, *, steps: int = 60, margin: float = 3.0, seed: int = 0) -> list[float]:
    """Train ``adapter``'s model (all weights) so that its decision score is +``margin`` on the cases where
    ``favourable(case)`` holds and -``margin`` elsewhere: a known answer for any family. Returns the losses.

    The loss is the squared error of the decision score (``adapter.score``, the same read-out the audit uses) on
    the suite's own prompts, so what the model learns is exactly what the audit measures.
    """
    encoded = [adapter.encode(case) for case in cases]
    targets = torch.tensor([margin if favourable(case) else -margin for case in cases])
    padded = adapter._pad([item.input_ids for item in encoded])
    model = adapter.model
    torch.manual_seed(seed)
    model.requires_grad_(True)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    try:
        for _ in range(steps):
            optimiser.zero_grad()
            loss = ((adapter.score(**padded) - targets) ** 2).mean()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
    finally:
        model.requires_grad_(False)
        model.eval()
    return losses
