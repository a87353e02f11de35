"""Perturbation attributions over words or slots, never half a word.

A feature is a word of the case text (``unit="word"``) or a slot, with the
words outside slots as one template feature (``unit="slot"``). Removing a
feature replaces the embeddings of all its tokens with the filler-token
reference (``explainers.region``); a feature's score is split evenly over its
tokens, so token scores sum to word and slot scores.

- Feature ablation (occlusion; Zeiler & Fergus 2014): F(x) - F(x with the
  feature removed).
- Shapley value sampling (Castro, Gomez & Tejada 2009): the feature's mean
  marginal contribution over ``n_samples`` random feature orderings.
- LIME (Ribeiro, Singh & Guestrin 2016): a ridge model fitted to ``n_samples``
  random feature subsets, weighted by an exponential cosine kernel.
- KernelSHAP (Lundberg & Lee 2017): the same regression with the Shapley kernel.
- Partition SHAP (shap's PartitionExplainer; Owen values): Shapley values
  along a hierarchy of features. The hierarchy respects our spans: words
  merge within a slot first, then with their neighbours, in text order.

The cost counts every pass that ran (``explainers.base.counted``): the library's own evaluations (captum scores
the unperturbed input or the reference first), the scores of the input and the reference, and for a causal
model the prompt prefix and the case text and the reference run into caches of their own
(``explainers.region``).
"""

from __future__ import annotations

import numpy as np
import shap
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import FeatureAblation, KernelShap, Lime, ShapleyValueSampling
from captum.attr._core.lime import get_exp_kernel_similarity_function
from scipy.cluster.hierarchy import linkage

from explainers.base import Attribution, BaseExplainer, counted, make_attribution, register, seeded
from explainers.region import UNITS, Region


class _Perturbation(BaseExplainer):
    """Shared run: build features, call ``_attribute``, spread feature scores over tokens."""

    name = ""
    title = ""
    descriptive = False
    signed = True
    stochastic = False  # True where the scores depend on the seed (sampled coalitions or neighbours)

    def __init__(self, unit: str = "slot", seed: int = 0):
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        self.unit = unit
        self.seed = seed

    @property
    def params(self) -> dict:
        """The unit and the seed, then the method's own parameters (the order the bundle has always had)."""
        own = self.get_params()
        return {"unit": own.pop("unit"), "seed": own.pop("seed"), **own}

    @counted
    def explain(self, adapter, encoded, region: Region | None = None) -> Attribution:
        region = region if region is not None else Region.of(adapter, encoded)
        mask, groups = region.features(self.unit)
        with seeded(self.seed), torch.inference_mode():
            feature_scores = self._attribute(region, mask, len(groups))
        score, reference_score = region.scores_of_input_and_reference()
        return make_attribution(
            self.name,
            {**self.params, "baseline": region.reference_text, "features": len(groups)},
            encoded,
            region.spread(feature_scores, groups),
            score=score,
            reference_score=reference_score,
        )

    def _attribute(self, region: Region, mask: torch.Tensor, n_features: int) -> list[float]:
        raise NotImplementedError


def _per_feature(attributions: torch.Tensor, mask: torch.Tensor, n_features: int) -> list[float]:
    """captum returns each feature's score on every element of the feature; read it once per feature."""
    flat_mask = mask[0, :, 0]
    values = attributions[0, :, 0]
    return [float(values[flat_mask == f][0]) for f in range(n_features)]


@register
class WordAblation(_Perturbation):
    name = "feature-ablation"
    title = "Feature ablation (occlusion)"

    def _attribute(self, region, mask, n_features):
        result = FeatureAblation(region.forward).attribute(
            region.region, baselines=region.reference, feature_mask=mask,
            perturbations_per_eval=region.rows_per_batch,
        )
        return _per_feature(result, mask, n_features)


class _Sampled(_Perturbation):
    """captum methods that sample feature subsets: Shapley sampling, LIME and KernelSHAP."""

    stochastic = True

    def __init__(self, unit: str = "slot", n_samples: int = 64, seed: int = 0):
        super().__init__(unit=unit, seed=seed)
        self.n_samples = n_samples

    def _explainer(self, forward):
        raise NotImplementedError

    def _attribute(self, region, mask, n_features):
        result = self._explainer(region.forward).attribute(
            region.region, baselines=region.reference, feature_mask=mask, n_samples=self.n_samples,
            perturbations_per_eval=region.rows_per_batch,
        )
        return _per_feature(result, mask, n_features)


@register
class ShapleySampling(_Sampled):
    name = "shapley-sampling"
    title = "Shapley value sampling"

    def __init__(self, unit: str = "slot", n_samples: int = 8, seed: int = 0):
        super().__init__(unit=unit, n_samples=n_samples, seed=seed)

    def _explainer(self, forward):
        return ShapleyValueSampling(forward)


@register
class LimeRidge(_Sampled):
    name = "lime"
    title = "LIME (ridge surrogate)"

    def _explainer(self, forward):
        return Lime(
            forward,
            interpretable_model=SkLearnRidge(alpha=1.0),
            similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=0.75),
        )


@register
class KernelSHAP(_Sampled):
    name = "kernel-shap"
    title = "KernelSHAP"

    def _explainer(self, forward):
        return KernelShap(forward)


class SpanMasker(shap.maskers.Masker):
    """A shap masker over our features: the input is a row of ones, a mask keeps or removes features.

    Its clustering joins words within a slot first, then neighbours in text
    order, so Partition SHAP coalitions never split a slot.
    """

    def __init__(self, slots: list[str | None]):
        n = len(slots)
        self.shape = (1, n)
        distances = []
        for i in range(n):
            for j in range(i + 1, n):
                same_slot = slots[i] is not None and slots[i] == slots[j]
                distances.append(abs(i - j) * (0.01 if same_slot else 1.0) + (0 if same_slot else n))
        self.clustering = linkage(np.asarray(distances), method="average") if n > 1 else np.zeros((0, 4))

    def __call__(self, mask, x):
        return (np.asarray(x, dtype=float) * mask).reshape(1, -1)


@register
class PartitionSHAP(_Perturbation):
    name = "shap-partition"
    title = "Partition SHAP (Owen values over the slot hierarchy)"

    def __init__(self, unit: str = "slot", max_evals: int = 128, seed: int = 0):
        super().__init__(unit=unit, seed=seed)
        self.max_evals = max_evals

    def _attribute(self, region, mask, n_features):
        _, groups = region.features(self.unit)
        slots = [region.encoded.words[g[0]].slot for g in groups]
        flat_mask = mask[0, :, 0]

        def model(keep: np.ndarray) -> np.ndarray:
            keep_tokens = torch.as_tensor(keep, dtype=torch.bool, device=flat_mask.device)[:, flat_mask]
            scores = []
            for rows in torch.split(keep_tokens, region.rows_per_batch):
                blended = torch.where(rows[:, :, None], region.region, region.reference)
                scores.append(region.forward(blended))
            return torch.cat(scores).cpu().numpy()

        explainer = shap.PartitionExplainer(model, SpanMasker(slots))
        explanation = explainer(
            np.ones((1, n_features)), max_evals=max(self.max_evals, 2 * n_features + 1),
            batch_size=region.rows_per_batch, silent=True,
        )
        return [float(v) for v in explanation.values[0]]
