"""Gradient attributions on the case-text embeddings (captum), one score per token.

Vector attributions over the embedding dimension are summed to one score
per token (for Saliency, whose map is unsigned, the absolute gradients are).

- Integrated Gradients (Sundararajan, Taly & Yan 2017):
  IG_i = (x_i - x'_i) . integral_0^1 dF(x' + a (x - x')) / dx_i da, with
  completeness sum_i IG_i = F(x) - F(x'); the integral uses ``n_steps``
  Gauss-Legendre nodes and the gap |sum_i IG_i - (F(x) - F(x'))| is reported as
  the convergence delta, never hidden. With the filler-token reference
  (``explainers.region``) the median gap on SmolLM2-135M is about 5 % at 32
  steps; a zero-embedding reference stayed near 16 % even at 64 steps.
- Saliency (Simonyan, Vedaldi & Zisserman 2014): |dF/dx_i|, summed over
  the embedding dimension.
- Input x Gradient (Shrikumar et al. 2016): x_i . dF/dx_i.
- GradientSHAP (Lundberg & Lee 2017, captum): the expected gradient over
  references drawn from {filler reference, zero}, each blended with the
  input at a random point, an approximation of SHAP values; seeded.
"""

from __future__ import annotations

import time

import torch
from captum.attr import GradientShap, InputXGradient, IntegratedGradients, Saliency

from explainers.base import Attribution, make_attribution, register, seeded
from explainers.region import DEFAULT_BATCH_TOKENS, Region


@register
class LayerIntegratedGradients:
    name = "ig"
    title = "Integrated Gradients on input embeddings"
    descriptive = False
    signed = True
    stochastic = False

    def __init__(self, n_steps: int = 32, method: str = "gausslegendre", batch_tokens: int = DEFAULT_BATCH_TOKENS):
        self.params = {"n_steps": n_steps, "method": method}
        self.n_steps = n_steps
        self.method = method
        self.batch_tokens = batch_tokens

    def explain(self, adapter, encoded, region: Region | None = None) -> Attribution:
        started = time.perf_counter()
        region = region if region is not None else Region.of(adapter, encoded, self.batch_tokens)
        attributions, delta = IntegratedGradients(region.forward).attribute(
            region.region,
            baselines=region.reference,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=region.rows_per_batch,
            return_convergence_delta=True,
        )
        score, reference_score = region.scores_of_input_and_reference()
        return make_attribution(
            self.name,
            {**self.params, "baseline": region.reference_text},
            encoded,
            attributions.sum(-1)[0].tolist(),
            score=score,
            reference_score=reference_score,
            convergence_delta=float(delta.abs()[0]),
            forward_passes=self.n_steps + 3,
            seconds=time.perf_counter() - started,
        )


class _SingleGradient:
    """Saliency and Input x Gradient: one forward and one backward pass."""

    name = ""
    title = ""
    descriptive = False
    signed = True
    stochastic = False
    captum_class = None
    reduction = ""

    def __init__(self):
        self.params = {"reduction": self.reduction}

    def explain(self, adapter, encoded, region: Region | None = None) -> Attribution:
        started = time.perf_counter()
        region = region if region is not None else Region.of(adapter, encoded)
        method = self.captum_class(region.forward)
        kwargs = {"abs": True} if self.captum_class is Saliency else {}
        attributions = method.attribute(region.region.clone().requires_grad_(), **kwargs)
        score, _ = region.scores_of_input_and_reference()
        return make_attribution(
            self.name, dict(self.params), encoded, attributions.sum(-1)[0].tolist(),
            score=score, forward_passes=1, seconds=time.perf_counter() - started,
        )


@register
class SaliencyMap(_SingleGradient):
    name = "saliency"
    title = "Saliency (absolute gradient)"
    captum_class = Saliency
    signed = False
    reduction = "sum of |dF/dx| over the embedding dimension"


@register
class InputTimesGradient(_SingleGradient):
    name = "input-x-gradient"
    title = "Input x Gradient"
    captum_class = InputXGradient
    reduction = "sum of x * dF/dx over the embedding dimension"


@register
class GradientSHAP:
    name = "gradient-shap"
    title = "GradientSHAP (expected gradients)"
    descriptive = False
    signed = True
    stochastic = True

    def __init__(self, n_samples: int = 8, stdevs: float = 0.0, seed: int = 0):
        self.params = {"n_samples": n_samples, "stdevs": stdevs, "seed": seed}

    def explain(self, adapter, encoded, region: Region | None = None) -> Attribution:
        started = time.perf_counter()
        region = region if region is not None else Region.of(adapter, encoded)
        references = torch.cat([region.reference, torch.zeros_like(region.reference)])
        with seeded(self.params["seed"]):
            attributions = GradientShap(region.forward).attribute(
                region.region, baselines=references, n_samples=self.params["n_samples"], stdevs=self.params["stdevs"]
            )
        score, reference_score = region.scores_of_input_and_reference()
        return make_attribution(
            self.name,
            {**self.params, "baselines": f"{region.reference_text}; zero embedding"},
            encoded,
            attributions.sum(-1)[0].tolist(),
            score=score,
            forward_passes=self.params["n_samples"] + 2,
            seconds=time.perf_counter() - started,
        )
