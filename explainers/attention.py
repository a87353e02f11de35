"""Attention rollout (Abnar & Zuidema 2020): descriptive, not an explanation.

With A_l the attention of layer l averaged over heads, each layer's mixing
is modelled as 0.5 A_l + 0.5 I (the residual stream), rows renormalised, and
the rollout is their product R = A'_L ... A'_1. The score of a case-text
token is R[q, j] for the read-out position q (the answer position of a
causal LM, [CLS] of a classifier). Attention weights say where information
could flow, not what the decision depends on (Jain & Wallace 2019), so the
report labels this method descriptive and no control relies on it.
"""

from __future__ import annotations

import torch

from explainers.base import Attribution, BaseExplainer, counted, make_attribution, register
from explainers.region import Region


@register
class AttentionRollout(BaseExplainer):
    name = "attention-rollout"
    title = "Attention rollout (descriptive)"
    descriptive = True
    signed = False
    stochastic = False

    def __init__(self, residual_weight: float = 0.5):
        self.residual_weight = residual_weight

    @counted
    @torch.inference_mode()
    def explain(self, adapter, encoded, region: Region | None = None) -> Attribution:
        model = adapter.model
        if region is None:
            inputs = {"input_ids": encoded.input_ids[None].to(adapter.device)}
        else:
            embeddings = torch.cat([region.before, region.region, region.after], dim=1)
            inputs = {"inputs_embeds": embeddings.to(next(model.parameters()).dtype)}
        previous = model.config._attn_implementation
        model.set_attn_implementation("eager")  # fused kernels do not return attention weights
        try:
            output = model(**inputs, output_attentions=True)
        finally:
            model.set_attn_implementation(previous)
        weight = self.residual_weight
        rollout = None
        for attention in output.attentions:
            mixed = attention[0].float().mean(0)
            mixed = weight * torch.eye(mixed.shape[-1], device=mixed.device) + (1 - weight) * mixed
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rollout = mixed if rollout is None else mixed @ rollout
        query = adapter.read_out_position(encoded)
        start, end = encoded.region
        score = float(adapter.score(**inputs))
        return make_attribution(self.name, self.params, encoded, rollout[query, start:end].tolist(), score=score)
