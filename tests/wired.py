"""A tiny Llama wired by hand so that its decision depends on one token only: the known answer of several tests.

Every token embedding has a constant component (dimension 2); the chosen
token T also has dimension 0. One attention head, in the reading layer, reads
the answer position's constant component as its query and dimension 0 as
every key, in a rotary pair whose frequency is ~1e-9 rad per position
(rope_theta = 1e12), so the answer position attends to T and to nothing else
when T is present. The value and output projections copy T's dimension 0 into
dimension 1, and the unembedding reads dimension 1 as +Yes / -No (or, with
``favourable_sign=-1``, as +No / -Yes). Every other weight is zero (norms
one), so the layers below the reading layer pass the residual stream through
unchanged: T's information sits at T's own position up to the reading layer
and reaches the answer position only there.
"""

from __future__ import annotations

import torch

from audit.models import load_model, make_adapter, parse_model_spec


def blank_llama_adapter(folder, tokenizer, suite, *, layers: int = 1):
    """An adapter over a 1-head, 8-dimensional Llama with ``layers`` layers, saved in ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=8, intermediate_size=4, num_hidden_layers=layers,
        num_attention_heads=1, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        rope_theta=1e12, tie_word_embeddings=False, rms_norm_eps=1e-6,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return make_adapter(load_model(parse_model_spec(str(folder))), suite)


def wire_to_token(adapter, token_id: int, *, reading_layer: int = 0, favourable_sign: float = 1.0) -> None:
    """Set the weights so the decision reads token ``token_id`` only, in layer ``reading_layer``."""
    model = adapter.model
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        model.model.norm.weight.fill_(1.0)
        embed = model.model.embed_tokens.weight
        embed[:, 2] = 1.0
        embed[token_id, 0] = 1.0
        attention = model.model.layers[reading_layer].self_attn
        attention.q_proj.weight[3, 2] = 10.0  # rotary pair (3, 7) turns by ~1e-9 rad per position
        attention.k_proj.weight[3, 0] = 10.0
        attention.v_proj.weight[0, 0] = 1.0
        attention.o_proj.weight[1, 0] = 1.0
        for token in adapter.verbaliser.favourable:
            model.lm_head.weight[token, 1] = 5.0 * favourable_sign
        for token in adapter.verbaliser.unfavourable:
            model.lm_head.weight[token, 1] = -5.0 * favourable_sign
