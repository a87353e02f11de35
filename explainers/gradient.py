"""Gradient attributions.

Integrated Gradients (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution
for Deep Networks") on the input embeddings of the case-text tokens:

    IG_i(x) = (x_i - x'_i) . integral_0^1 dF(x' + a (x - x')) / dx_i da,

summed over the embedding dimension to give one score per token. The
baseline x' equals the input everywhere outside the case text (chat markup,
system prompt, question and answer prefix are not attributed) and, on the
case-text tokens, the embedding of a neutral filler token: a lone space where
the tokenizer has one, else its padding token, else the zero vector. (A zero
embedding is far from every real input of a modern LM; measured on
SmolLM2-135M its completeness gap stayed near 16 % at 64 steps.) Completeness says sum_i IG_i = F(x) - F(x');
the integral is approximated with ``n_steps`` Gauss-Legendre nodes (captum),
and the gap |sum_i IG_i - (F(x) - F(x'))| is reported as the convergence
delta, never hidden.
"""

from __future__ import annotations

import time

import torch
from captum.attr import IntegratedGradients

from explainers.base import Attribution, make_attribution, register

DEFAULT_BATCH_TOKENS = 4096


@register
class LayerIntegratedGradients:
    name = "ig"
    title = "Integrated Gradients on input embeddings"

    def __init__(self, n_steps: int = 32, method: str = "gausslegendre", batch_tokens: int = DEFAULT_BATCH_TOKENS):
        self.params = {"n_steps": n_steps, "method": method}
        self.n_steps = n_steps
        self.method = method
        self.batch_tokens = batch_tokens

    def explain(self, adapter, encoded) -> Attribution:
        started = time.perf_counter()
        start, end = encoded.region
        input_ids = encoded.input_ids[None].to(adapter.device)
        with torch.no_grad():
            embeddings = adapter.embedding_layer(input_ids).float()
        before, region, after = embeddings[:, :start], embeddings[:, start:end], embeddings[:, end:]
        filler_id, filler_text = filler_token(adapter.tokenizer)
        if filler_id is None:
            reference = torch.zeros_like(region)
        else:
            with torch.no_grad():
                filler = adapter.embedding_layer(torch.tensor([[filler_id]], device=adapter.device)).float()
            reference = filler.expand_as(region).clone()
        model_dtype = next(adapter.model.parameters()).dtype

        def decision(region_embeddings: torch.Tensor) -> torch.Tensor:
            rows = region_embeddings.shape[0]
            full = torch.cat([before.expand(rows, -1, -1), region_embeddings, after.expand(rows, -1, -1)], dim=1)
            return adapter.score(inputs_embeds=full.to(model_dtype))

        internal_batch = max(1, self.batch_tokens // encoded.length)
        attributions, delta = IntegratedGradients(decision).attribute(
            region,
            baselines=reference,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=internal_batch,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            scores = decision(torch.cat([region, reference]))
        token_scores = attributions.sum(-1)[0].tolist()
        return make_attribution(
            self.name,
            {**self.params, "baseline": filler_text},
            encoded,
            token_scores,
            score=float(scores[0]),
            reference_score=float(scores[1]),
            convergence_delta=float(delta.abs()[0]),
            forward_passes=self.n_steps + 3,
            seconds=time.perf_counter() - started,
        )


def filler_token(tokenizer) -> tuple[int | None, str]:
    """The neutral token that replaces the case text in the IG baseline, and its description."""
    ids = tokenizer.encode(" ", add_special_tokens=False)
    if len(ids) == 1:
        return ids[0], f"case-text tokens replaced by the space token (id {ids[0]})"
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id, f"case-text tokens replaced by the padding token (id {tokenizer.pad_token_id})"
    return None, "case-text tokens replaced by the zero embedding"
