"""Activation patching of the protected-attribute span: how much of a counterfactual's effect each layer carries.

A counterfactual pair is two prompts that differ only in one protected slot:
the target (the baseline case, e.g. "Greg Baker") and the source (the
counterfactual case, e.g. "Lakisha Washington"). With s the decision score
(log-odds, ``audit.models.adapters``) and h_l the residual stream at the
output of decoder layer l,

    TE    = s(source) - s(target)                                      total effect
    IE_l  = s(target | h_l at the span := the source's h_l at its span) - s(target)
    NIE_l = IE_l / TE                                                  normalised indirect effect

(Vig et al. 2020, "Investigating Gender Bias in Language Models Using Causal
Mediation Analysis": the indirect effect of a mediator is the change in the
outcome when the mediator alone takes its value under the other input). The
mediator here is the attribute span's residual stream at one layer, as in
causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations
in GPT", which restores the subject tokens' states layer by layer).

Following the best practices of Heimersheim & Nanda 2024 ("How to use and
interpret activation patching") and Zhang & Nanda 2024 ("Towards Best
Practices of Activation Patching in Language Models"), the metric and the
direction are stated with every result: the metric is the decision log-odds
(not a probability, which saturates), and the direction is always source
states into the target run (in their terms denoising, a test of sufficiency),
so NIE_l near 1 says the span's states at layer l suffice to carry the whole
counterfactual gap into the target prompt, and NIE_l near 0 says that at layer
l the attribute has already moved on to other positions (or never mattered).
NIE is undefined when |TE| < ``TOTAL_EFFECT_FLOOR``.

Spans of different token lengths are aligned from their end, and the last
k = min(len source span, len target span) positions are patched: in a causal
model the last token of a name aggregates it (Meng et al. 2022 patch the last
subject token). Values that share their last tokens ("married" and
"unmarried") thus patch equal embeddings there: row -1 shows no effect, the
later rows show what the last token gathered. Row "layer -1" patches the input
embeddings at the span; when both spans have equal length (and the rest of the
prompts are equal) it turns the target into the source exactly, so IE_-1 = TE,
a built-in correctness check recorded as ``embedding_check_gap``. The row of
the last decoder layer is 0 by construction wherever the read-out position lies
outside the span (a causal LM's answer position, a classifier's [CLS]): nothing
reads those states after the last layer.

Cost: one forward pass of the source, hooked to keep each layer's states at its
span positions, and one batched forward pass of L + 2 copies of the target
(unpatched, embeddings patched, and one per decoder layer), each row patched at
its layer by a forward hook. A causal model runs the target's tokens before the
first patched position once (``audit.models.prefix.PrefixCache``: patching
never changes the past) and each row only the rest. A bidirectional classifier
has no prefix cache; there a patch at layer l changes every position above l.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

from explainers.intervals import bootstrap_ci
from audit.models.prefix import PrefixCache

TOTAL_EFFECT_FLOOR = 1e-3  # log-odds: below it the counterfactual gap is noise and NIE = IE / TE is undefined
EMBEDDING_LAYER = -1
METRIC = "decision log-odds s = log p(favourable) - log p(unfavourable)"
DIRECTION = "source (counterfactual) span states patched into the target (baseline) run"


def hidden_of(output):
    """A layer's output hidden states, whether the layer returns a tensor or a tuple led by one."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def forward_hooks(modules: list[torch.nn.Module], hooks: list[Callable]) -> Iterator[None]:
    handles = [module.register_forward_hook(hook) for module, hook in zip(modules, hooks)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def span_positions(encoded, slot: str) -> list[int]:
    """Absolute prompt positions of the slot's tokens (a suite uses an attribute slot at most once per template)."""
    if slot not in encoded.slot_tokens:
        raise ValueError(f"case {encoded.case.case_id} has no slot {slot!r}")
    return [encoded.region[0] + t for t in encoded.slot_tokens[slot]]


def aligned_span_positions(target, source, slot: str) -> dict[str, Any]:
    """Target and source positions to patch: the last k = min(lengths) tokens of each span."""
    target_span, source_span = span_positions(target, slot), span_positions(source, slot)
    k = min(len(target_span), len(source_span))
    if k == 0:
        raise ValueError(f"slot {slot!r} covers no token in case {target.case.case_id} or {source.case.case_id}")
    return {
        "target_positions": target_span[len(target_span) - k :],
        "source_positions": source_span[len(source_span) - k :],
        "target_span_tokens": len(target_span),
        "source_span_tokens": len(source_span),
        "patched_tokens": k,
    }


def capture_span_states(sites: list[torch.nn.Module], positions: list[int]):
    """Hooks that keep each site's output at ``positions`` of row 0 (float32, CPU), and the list they fill."""
    states: list[torch.Tensor | None] = [None] * len(sites)

    def keeper(index: int):
        def hook(module, args, output):
            states[index] = hidden_of(output)[0, positions].float().cpu()

        return hook

    return [keeper(i) for i in range(len(sites))], states


def patch_row(row: int, positions: torch.Tensor, states: torch.Tensor):
    """A hook that writes ``states`` [k, d] into row ``row`` of its module's output at ``positions``."""

    def hook(module, args, output):
        hidden = hidden_of(output).clone()
        hidden[row, positions] = states.to(hidden.device, hidden.dtype)
        return with_hidden(output, hidden)

    return hook


def embedding_check_applies(target, source, positions: dict[str, Any]) -> bool:
    """True when writing the source's span tokens into the target yields the source prompt exactly."""
    if target.length != source.length:
        return False
    patched = target.input_ids.clone()
    patched[positions["target_positions"]] = source.input_ids[positions["source_positions"]]
    return bool(torch.equal(patched, source.input_ids))


@torch.inference_mode()
def patch_attribute_span(adapter, target, source, slot: str | None = None, *, use_prefix_cache: bool = True,
                         total_effect_floor: float = TOTAL_EFFECT_FLOOR) -> dict[str, Any]:
    """IE and NIE of the ``slot`` span's residual stream at every layer for one counterfactual pair.

    ``target`` and ``source`` are ``Encoded`` cases (``adapter.encode``); ``slot`` defaults to the
    attribute the source changes. Returns the pair's scores, TE, one row per patch site (layer -1 =
    embeddings, then every decoder layer) with its patched score, IE and NIE, the aligned positions, and
    the cost.
    """
    started = time.perf_counter()
    slot = slot or source.case.attribute
    if slot is None:
        raise ValueError("name the slot to patch: the source case changes no attribute")
    positions = aligned_span_positions(target, source, slot)
    sites = [adapter.embedding_layer, *adapter.decoder_layers]
    device = adapter.device

    keepers, source_states = capture_span_states(sites, positions["source_positions"])
    with forward_hooks(sites, keepers):
        source_score = float(adapter.score(input_ids=source.input_ids[None].to(device))[0])

    first = min(positions["target_positions"])
    prefix = None
    if use_prefix_cache and adapter.supports_prefix_cache and first > 0:
        prefix_embeddings = adapter.embedding_layer(target.input_ids[None, :first].to(device))
        prefix = PrefixCache.of(adapter.model, prefix_embeddings)
    offset = prefix.length if prefix is not None else 0
    rest = target.input_ids[offset:].to(device)
    rows = len(sites) + 1  # row 0 unpatched, row 1 + i patched at site i
    local = torch.tensor(positions["target_positions"], device=device) - offset
    patchers = [patch_row(1 + i, local, states) for i, states in enumerate(source_states)]
    with forward_hooks(sites, patchers):
        scores = adapter.score(input_ids=rest[None].expand(rows, -1), prefix=prefix).tolist()

    target_score = scores[0]
    total_effect = source_score - target_score
    defined = abs(total_effect) >= total_effect_floor
    layers = []
    for i, patched in enumerate(scores[1:]):
        indirect = patched - target_score
        layers.append({
            "layer": EMBEDDING_LAYER + i,
            "site": "input embeddings" if i == 0 else f"output of decoder layer {i - 1}",
            "patched_score": patched,
            "indirect_effect": indirect,
            "normalised_indirect_effect": indirect / total_effect if defined else None,
        })
    return {
        "target_case_id": target.case.case_id,
        "source_case_id": source.case.case_id,
        "slot": slot,
        "metric": METRIC,
        "direction": DIRECTION,
        **positions,
        "target_score": target_score,
        "source_score": source_score,
        "total_effect": total_effect,
        "nie_undefined": None if defined else (
            f"|total effect| = {abs(total_effect):.2g} < {total_effect_floor:g} log-odds: no gap to mediate"),
        "embedding_check_gap": (
            abs(layers[0]["indirect_effect"] - total_effect) if embedding_check_applies(target, source, positions)
            else None),
        "layers": layers,
        "prefix_tokens": offset,
        "forward_passes": 1 + rows,  # prompts evaluated: the source, and the target rows (each after the prefix)
        "tokens": source.length + offset + rows * len(rest),
        "seconds": time.perf_counter() - started,
    }


def mean_with_ci(values: list[float], *, seed: int, n_resamples: int, confidence: float) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    return {
        "n_pairs": len(array),
        "mean": float(array.mean()) if len(array) else None,
        "ci": bootstrap_ci(len(array), lambda idx: array[idx].mean(-1), seed=seed, n_resamples=n_resamples,
                           confidence=confidence),  # None under 5 pairs
    }


def summarise_patching(pairs: list[dict[str, Any]], *, seed: int, n_resamples: int = 2000,
                       confidence: float = 0.95) -> dict[str, Any]:
    """Per layer, the mean NIE and mean IE over pairs with bootstrap CIs over pairs (None under 5 pairs).

    NIE means use the pairs whose TE clears the floor. ``peak_layer`` is the decoder layer of the largest
    |mean NIE|. The mediated fraction of a pair is its NIE at the output of the first decoder layer: how much
    of the counterfactual gap still flows through the attribute's own positions after one layer.
    """
    layer_ids = [row["layer"] for row in pairs[0]["layers"]] if pairs else []
    if any([row["layer"] for row in pair["layers"]] != layer_ids for pair in pairs):
        raise ValueError("pairs patched on models with different layers cannot be summarised together")
    ci = {"seed": seed, "n_resamples": n_resamples, "confidence": confidence}
    defined = [pair for pair in pairs if pair["nie_undefined"] is None]

    def normalised_at(index: int) -> list[float]:
        return [pair["layers"][index]["normalised_indirect_effect"] for pair in defined]

    per_layer = [
        {
            "layer": layer,
            "site": pairs[0]["layers"][index]["site"],
            "normalised_indirect_effect": mean_with_ci(normalised_at(index), **ci),
            "indirect_effect": mean_with_ci([pair["layers"][index]["indirect_effect"] for pair in pairs], **ci),
        }
        for index, layer in enumerate(layer_ids)
    ]
    decoder_rows = [row for row in per_layer if row["layer"] != EMBEDDING_LAYER]
    peak = max(decoder_rows, key=lambda row: abs(row["normalised_indirect_effect"]["mean"])) if defined else None
    return {
        "metric": METRIC,
        "direction": DIRECTION,
        "n_pairs": len(pairs),
        "n_pairs_total_effect_below_floor": len(pairs) - len(defined),
        "layers": per_layer,
        "peak_layer": peak["layer"] if peak is not None else None,
        "mediated_fraction": {"layer": 0, **mean_with_ci(normalised_at(layer_ids.index(0)) if pairs else [], **ci)},
        **ci,
    }
