"""The keys and values of a shared prompt prefix, computed once and reused by every row that continues it.

In a causal transformer the keys and values at position t depend on the
tokens 0..t only, so the part of a prompt that precedes the attributed case
text (chat markup, system prompt) has the same keys and values in every row
that continues it: every Integrated Gradients step, every perturbation of a
perturbation method, every erasure of the faithfulness tests. ``PrefixCache``
runs the prefix once; each later forward pass reads it through a read-only
cache and runs only its own tokens, at positions counted on from the prefix.
A real bank prompt carries a system prompt of hundreds of tokens, so the
saving grows with it. Scores agree with the full forward pass to float32
rounding (``tests/models/test_prefix.py``).

The cache is read-only: a forward pass concatenates the prefix's keys and
values with its own rows' in one layer at a time and keeps nothing, so the
prefix is never copied per row into a growing cache (with a 1,000-token
prefix, a 20-row batch of SmolLM2 would otherwise hold 1.2 GB of copies), and
one ``PrefixCache`` serves any number of passes of any batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, DynamicLayer


class _ReadOnlyPrefixLayer(DynamicLayer):
    """One layer's prefix keys and values [1, heads, length, head_dim]: read by every pass, appended to by none."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.keys, self.values = keys, values
        self.device = keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows = key_states.shape[0]
        return (torch.cat([self.keys.expand(rows, -1, -1, -1), key_states], dim=-2),
                torch.cat([self.values.expand(rows, -1, -1, -1), value_states], dim=-2))


@dataclass(frozen=True)
class PrefixCache:
    cache: Cache  # read-only: one layer per decoder layer
    length: int

    @classmethod
    @torch.no_grad()
    def of(cls, model, prefix_embeddings: torch.Tensor) -> "PrefixCache":
        """Run ``prefix_embeddings`` [1, length, d] through ``model`` once and keep its keys and values."""
        length = prefix_embeddings.shape[1]
        output = model(
            inputs_embeds=prefix_embeddings,
            attention_mask=torch.ones((1, length), dtype=torch.long, device=prefix_embeddings.device),
            position_ids=torch.arange(length, device=prefix_embeddings.device)[None],
            use_cache=True,
            logits_to_keep=1,
        )
        layers = [_ReadOnlyPrefixLayer(layer.keys, layer.values) for layer in output.cache.layers]
        return cls(cache=Cache(layers=layers), length=length)

    def sliced(self, length: int) -> "PrefixCache":
        """The first ``length`` positions of this prefix (views, no copy)."""
        layers = [_ReadOnlyPrefixLayer(layer.keys[:, :, :length], layer.values[:, :, :length])
                  for layer in self.cache.layers]
        return PrefixCache(cache=Cache(layers=layers), length=length)

    @torch.no_grad()
    def extended(self, model, embeddings: torch.Tensor) -> "PrefixCache":
        """This prefix followed by ``embeddings`` [1, m, d]; runs only the m new tokens."""
        added = embeddings.shape[1]
        total = self.length + added
        writable = Cache(layers=[DynamicLayer() for _ in self.cache.layers])
        for layer, prefix_layer in zip(writable.layers, self.cache.layers):
            layer.update(prefix_layer.keys, prefix_layer.values)
        model(
            inputs_embeds=embeddings,
            attention_mask=torch.ones((1, total), dtype=torch.long, device=embeddings.device),
            position_ids=torch.arange(self.length, total, device=embeddings.device)[None],
            cache=writable,
            use_cache=True,
            logits_to_keep=1,
        )
        layers = [_ReadOnlyPrefixLayer(layer.keys, layer.values) for layer in writable.layers]
        return PrefixCache(cache=Cache(layers=layers), length=total)
