"""How far the explanations can be trusted.

- Agreement between methods (Kendall tau of word rankings).
- Erasure faithfulness: ERASER comprehensiveness and sufficiency with AOPC,
  and normalised AOPC (Edin et al. 2024).
- Kendall tau against leave-one-out occlusion.
- captum's infidelity and max-sensitivity (Yeh et al. 2019).
- The cascading model-parameter randomisation sanity check (Adebayo et al. 2018).

Agreement (Krishna et al. 2022, "The Disagreement Problem in Explainable
Machine Learning"): for every pair of methods and every case explained by
both, Kendall's tau-b between their word importances |score| (magnitudes, so
that unsigned maps such as Saliency compare with signed ones); the pair's
agreement is the mean tau over cases with a bootstrap 95 % CI over cases.
tau near 1 means the methods rank the words alike; near 0, they disagree.
"""

from __future__ import annotations

import contextlib
import math
from itertools import combinations
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from scipy.stats import kendalltau, spearmanr

from explainers.intervals import bootstrap_ci


def rank_agreement(word_scores: dict[str, dict[str, list[float]]], *, seed: int, n_resamples: int = 2000,
                   confidence: float = 0.95) -> dict[str, Any]:
    """``word_scores[method][case_id]`` -> mean Kendall tau per method pair, with CIs."""
    methods = list(word_scores)
    pairs = []
    for a, b in combinations(methods, 2):
        shared = [c for c in word_scores[a] if c in word_scores[b]]
        taus = []
        for case_id in shared:
            tau = kendalltau(np.abs(word_scores[a][case_id]), np.abs(word_scores[b][case_id])).statistic
            if np.isfinite(tau):
                taus.append(float(tau))
        values = np.asarray(taus)
        pairs.append({
            "methods": [a, b],
            "n_cases": len(values),
            "mean_tau": float(values.mean()) if len(values) else None,
            "ci": bootstrap_ci(len(values), lambda idx: values[idx].mean(-1), seed=seed,
                               n_resamples=n_resamples, confidence=confidence) if len(values) else None,
        })
    matrix = [[1.0 if a == b else None for b in methods] for a in methods]
    for pair in pairs:
        i, j = (methods.index(m) for m in pair["methods"])
        matrix[i][j] = matrix[j][i] = pair["mean_tau"]
    return {"methods": methods, "statistic": "Kendall tau-b of |word score|, mean over cases", "pairs": pairs,
            "matrix": matrix}


# ---------------------------------------------------------------- erasure (ERASER)

BINS = (0.01, 0.05, 0.10, 0.20, 0.50)


def word_order(word_scores: list[float], decision_sign: float, signed: bool) -> list[int]:
    """Words from most to least important for the decision taken.

    Signed maps rank by the score toward the decision (s * sign of the decision);
    unsigned maps (Saliency, attention) by magnitude. Ties keep text order.
    """
    keys = [decision_sign * s if signed else abs(s) for s in word_scores]
    return sorted(range(len(keys)), key=lambda i: -keys[i])


def erasure_curves(region, order: list[int], full_score: float, bins: tuple[float, ...] = BINS) -> dict[str, Any]:
    """ERASER comprehensiveness and sufficiency (DeYoung et al. 2020) at each bin, and their AOPC.

    With d the sign of the decision, s the decision score and r_k the top k % of
    words (at least one word) under ``order``:
        comprehensiveness_k = d (s(x) - s(x without r_k))   higher is more faithful
        sufficiency_k       = d (s(x) - s(r_k alone))       lower is more faithful
    Removed words take the filler-token reference of ``explainers.region``;
    ``full_score`` is s(x), already known from the attribution run.
    AOPC is the mean over bins (Samek et al. 2017 as used by ERASER).
    """
    import torch

    words = region.encoded.words
    n_words = len(words)
    rows = []
    for fraction in bins:
        k = max(1, math.ceil(fraction * n_words))
        keep_top = torch.zeros(region.region.shape[1], dtype=torch.bool, device=region.region.device)
        for w in order[:k]:
            keep_top[list(words[w].tokens)] = True
        rows.append(torch.where(keep_top[None, :, None], region.reference, region.region))  # without r_k
        rows.append(torch.where(keep_top[None, :, None], region.region, region.reference))  # r_k alone
    with torch.inference_mode():
        batch = torch.cat(rows)
        scores = torch.cat([region.forward(chunk) for chunk in torch.split(batch, region.rows_per_batch)]).tolist()
    full = full_score
    sign = 1.0 if full > 0 else -1.0
    comprehensiveness = [sign * (full - scores[2 * i]) for i in range(len(bins))]
    sufficiency = [sign * (full - scores[2 * i + 1]) for i in range(len(bins))]
    return {
        "bins": list(bins),
        "comprehensiveness": comprehensiveness,
        "sufficiency": sufficiency,
        "aopc_comprehensiveness": float(np.mean(comprehensiveness)),
        "aopc_sufficiency": float(np.mean(sufficiency)),
        "forward_passes": 2 * len(bins),
    }


def gain_over_random(method: list[float], random: list[float], *, higher_is_better: bool, seed: int,
                     n_resamples: int = 2000, confidence: float = 0.95) -> dict[str, Any]:
    """Mean per-case gain of a method's AOPC over the random ordering's, with a paired bootstrap CI over cases."""
    diffs = np.asarray(method, dtype=float) - np.asarray(random, dtype=float)
    if not higher_is_better:
        diffs = -diffs
    return {
        "mean_gain": float(diffs.mean()) if len(diffs) else None,
        "ci": bootstrap_ci(len(diffs), lambda idx: diffs[idx].mean(-1), seed=seed, n_resamples=n_resamples,
                           confidence=confidence) if len(diffs) else None,
        "n_cases": len(diffs),
    }


def normalised_aopc(value: float, worst: float, best: float) -> float | None:
    """Normalised AOPC (Edin et al. 2024, "Normalized AOPC: Fixing Misleading Faithfulness Metrics"):

        NAOPC = (AOPC - AOPC_worst) / (AOPC_best - AOPC_worst)

    so that 0 is the worst and 1 the best ordering of this case's words,
    whatever the model's own range. Edin et al. search the bounds over all
    orderings (beam search); ``worst`` and ``best`` here are the extremes of the
    orderings actually evaluated on the case (every method, random,
    leave-one-out and its reverse), so the true range is at least as wide and
    this NAOPC is an upper estimate. For sufficiency pass the values negated,
    so that higher is more faithful for both.
    """
    span = best - worst
    if not math.isfinite(span) or span <= 1e-9:
        return None
    return float((value - worst) / span)


# ---------------------------------------------------------------- leave-one-out

def leave_one_out(region, full_score: float) -> dict[str, Any]:
    """Occlusion of one word at a time (Li, Monroe & Jurafsky 2016): loo_w = s(x) - s(x with word w erased).

    Erased tokens take the filler-token reference, as in the erasure curves.
    Positive loo_w: the word pushed the score toward the favourable answer.
    """
    import torch

    words = region.encoded.words
    rows = []
    for word in words:
        erase = torch.zeros(region.region.shape[1], dtype=torch.bool, device=region.region.device)
        erase[list(word.tokens)] = True
        rows.append(torch.where(erase[None, :, None], region.reference, region.region))
    with torch.inference_mode():
        batch = torch.cat(rows)
        scores = torch.cat([region.forward(chunk) for chunk in torch.split(batch, region.rows_per_batch)])
    return {"word_scores": [full_score - float(s) for s in scores], "forward_passes": len(words)}


def tau_against(reference: list[float], scores: list[float], signed: bool) -> float | None:
    """Kendall tau-b between a method's word scores and reference word scores (magnitudes for unsigned maps)."""
    a, b = np.asarray(scores, dtype=float), np.asarray(reference, dtype=float)
    if not signed:
        a, b = np.abs(a), np.abs(b)
    tau = kendalltau(a, b).statistic
    return float(tau) if np.isfinite(tau) else None


def reverse_order(order: list[int]) -> list[int]:
    return list(reversed(order))


# ---------------------------------------------------------------- infidelity

def word_infidelity(region, word_scores: dict[str, list[float]], full_score: float, *, n_samples: int,
                    erase_probability: float, seed: int) -> dict[str, Any]:
    """captum's infidelity (Yeh et al. 2019) of several word-level maps, all on the same perturbations.

    The input is the vector of word presences (all ones); a perturbation I
    erases a random set of words (each with ``erase_probability``, at least
    one) to the filler reference. With a the word scores and
    df = s(x) - s(x with the words of I erased),

        INFD(a) = min_beta E_I[(beta a.I - df)^2]          (captum, normalize=True)

    and ``normalised`` divides it by E_I[df^2]: 0 when the scores predict every
    erasure's effect exactly (up to scale), 1 when they predict nothing. Every
    map sees the same erasures, whose forward passes run once (memoised).
    """
    import torch
    from captum.metrics import infidelity

    n_words = len(region.encoded.words)
    generator = np.random.default_rng(seed)
    erasures = generator.random((n_samples, n_words)) < erase_probability
    for row in erasures:
        if not row.any():
            row[generator.integers(n_words)] = True
    bank = torch.as_tensor(erasures, dtype=torch.float32)
    token_word = torch.zeros(region.region.shape[1], dtype=torch.long)
    for index, word in enumerate(region.encoded.words):
        token_word[list(word.tokens)] = index
    memo: dict[bytes, float] = {}

    def score_presence(presence: torch.Tensor) -> torch.Tensor:
        keys = [row.to(torch.bool).numpy().tobytes() for row in presence]
        missing = list(dict.fromkeys(k for k in keys if k not in memo))
        if missing:
            keep = torch.stack([torch.from_numpy(np.frombuffer(k, dtype=bool).copy()) for k in missing])
            blended = torch.where(keep[:, token_word][:, :, None].to(region.region.device), region.region,
                                  region.reference)
            with torch.inference_mode():
                scores = torch.cat([region.forward(c) for c in torch.split(blended, region.rows_per_batch)])
            memo.update({k: float(s) for k, s in zip(missing, scores)})
        return torch.tensor([memo[k] for k in keys])

    def perturb(inputs: torch.Tensor):
        perturbations = bank.repeat(inputs.shape[0] // n_samples, 1)
        return perturbations, inputs - perturbations

    names = list(word_scores)
    inputs = torch.ones((len(names), n_words))
    attributions = torch.tensor([word_scores[n] for n in names], dtype=torch.float32)
    values = infidelity(score_presence, perturb, inputs, attributions, n_perturb_samples=n_samples, normalize=True)
    drops = full_score - score_presence(1.0 - bank)
    mean_square_drop = float((drops ** 2).mean())
    return {
        "methods": {
            name: {
                "infidelity": float(value),
                "normalised": float(value) / mean_square_drop if mean_square_drop > 0 else None,
            }
            for name, value in zip(names, values.tolist())
        },
        "forward_passes": len(memo),
    }


# ---------------------------------------------------------------- max-sensitivity

def max_sensitivity(explainer, adapter, encoded, region, token_scores: list[float], *, n_samples: int,
                    radius: float, seed: int) -> float:
    """captum's max-sensitivity (Yeh et al. 2019): max over perturbations |delta| <= r of
    ||a(x + delta) - a(x)|| / ||a(x)||, with delta uniform in [-r, r] on every embedding dimension of the
    case text. ``token_scores`` is a(x), already computed; each perturbation reruns the method.
    """
    import torch
    from captum.metrics import sensitivity_max

    from explainers.base import seeded

    original = torch.tensor(token_scores, dtype=torch.float32)[None]

    def explanation(inputs) -> tuple[torch.Tensor]:
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        if inputs.shape[0] == 1 and torch.equal(inputs, region.region):
            return (original,)
        rows = []
        with torch.enable_grad():
            for row in inputs:
                attribution = explainer.explain(adapter, encoded, region.with_region(row[None].detach()))
                rows.append(attribution.token_scores)
        return (torch.tensor(rows, dtype=torch.float32),)

    with seeded(seed):
        value = sensitivity_max(explanation, region.region, perturb_radius=radius, n_perturb_samples=n_samples)
    return float(value[0])


# ---------------------------------------------------------------- model-parameter randomisation

@contextlib.contextmanager
def randomised_top_layers(adapter, count: int, seed: int) -> Iterator[None]:
    """Re-initialise the top ``count`` transformer layers (Adebayo et al. 2018, cascading randomisation).

    Matrices are drawn from N(0, initializer_range^2) of the model's config,
    biases set to 0 and norm weights to 1, from a seeded generator; the
    trained weights are restored on exit. They wait in temporary safetensors
    files, one per layer, not in memory: a copy of every layer would add most
    of the model's size to the audit's peak memory.
    """
    import tempfile

    import torch
    from safetensors.torch import load_file, save_file

    first = len(adapter.decoder_layers) - count
    layers = adapter.decoder_layers[first:]
    std = float(getattr(adapter.model.config, "initializer_range", 0.02))
    generator = torch.Generator().manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="oss-model-audit-sanity-") as folder:
        files = [Path(folder) / f"layer-{first + i}.safetensors" for i in range(count)]
        for layer, file in zip(layers, files):  # one layer at a time: the serialised copy is one layer's size
            save_file({k: v.detach().cpu().contiguous() for k, v in layer.state_dict().items()}, str(file))
        try:
            with torch.no_grad():
                for layer in layers:
                    for name, parameter in layer.named_parameters():
                        if parameter.dim() >= 2:
                            drawn = torch.randn(parameter.shape, generator=generator) * std
                            parameter.copy_(drawn.to(parameter.dtype))
                        elif name.endswith("bias"):
                            parameter.zero_()
                        else:
                            parameter.fill_(1.0)
            yield
        finally:
            for layer, file in zip(layers, files):
                layer.load_state_dict(load_file(str(file)))


def rank_correlation(trained: list[float], randomised: list[float]) -> dict[str, float | None]:
    """Spearman rank correlation of two maps of one case: of |scores| (Adebayo et al.'s main measure) and signed."""
    a, b = np.asarray(trained, dtype=float), np.asarray(randomised, dtype=float)

    def rho(x, y):
        value = spearmanr(x, y).statistic
        return float(value) if np.isfinite(value) else None

    return {"absolute": rho(np.abs(a), np.abs(b)), "signed": rho(a, b)}
