"""The keys and values of a shared prompt prefix, computed once and reused by every row that continues it.

In a causal transformer the keys and values at position t depend on the
tokens 0..t only, so the part of a prompt that precedes the attributed case
text (chat markup, system prompt) has the same keys and values in every row
that continues it: every Integrated Gradients step, every perturbation of a
perturbation method, every erasure of the faithfulness tests. ``PrefixCache``
runs the prefix once; each later forward pass gets a fresh cache expanded to
its rows and runs only its own tokens, at positions counted on from the
prefix. A real bank prompt carries a system prompt of hundreds of tokens, so
the saving grows with it. Scores agree with the full forward pass to float32
rounding (``tests/models/test_prefix.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass(frozen=True)
class PrefixCache:
    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: [1, heads, length, head_dim] each
    length: int
    config: object

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
        layers = tuple((layer.keys, layer.values) for layer in output.cache.layers)
        return cls(keys_values=layers, length=length, config=model.config)

    def for_rows(self, rows: int) -> DynamicCache:
        """A fresh cache holding the prefix for ``rows`` rows (a forward pass appends to the cache it is given)."""
        return DynamicCache(
            ddp_cache_data=[
                (keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1)) for keys, values in self.keys_values
            ],
            config=self.config,
        )
