"""The explainer protocol, the attribution record and the registry by name.

Like captum's ``attribute()``, every method has one signature:
``explain(adapter, encoded, region=None) -> Attribution``. ``region``
(``explainers.region.Region``) defaults to the case's own embeddings; the
robustness checks pass one whose case-text embeddings are perturbed. Methods are constructed with
their parameters (``get("ig", n_steps=32)``) and attribute the case-text
region of the prompt only; chat markup, the question and the answer prefix
are held fixed. Token scores are aggregated to words and slots by summation
(``explainers.spans``), so word scores always sum to token scores.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from explainers.spans import aggregate


@dataclass
class Attribution:
    method: str
    params: dict[str, Any]
    case_id: str
    tokens: list[str]
    token_scores: list[float]
    words: list[str]
    word_scores: list[float]
    word_slots: list[str | None]
    slot_scores: dict[str, float]
    slot_shares: dict[str, float]  # |score| mass of each slot over the |score| mass of all tokens
    score: float  # f(x): the decision score of the case
    reference_score: float | None = None  # f(x'): the score at the method's baseline, where defined
    convergence_delta: float | None = None  # |sum of scores - (f(x) - f(x'))|, where defined
    forward_passes: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Explainer(Protocol):
    name: str
    title: str
    descriptive: bool  # True where the scores describe the model but do not explain its decision
    signed: bool  # False where scores are magnitudes (no direction toward an answer)
    stochastic: bool  # True where the scores depend on the seed, so a second seed measures their stability
    params: dict[str, Any]

    def explain(self, adapter, encoded, region=None) -> Attribution: ...


def seed_everything(seed: int) -> None:
    """Seed every generator a method may draw from: Python's ``random``, numpy's and torch's (CPU and CUDA).

    The one seeding helper: ``audit run`` and ``audit explain`` call it once with ``--seed``, and ``seeded``
    around each stochastic method call."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed every generator (``seed_everything``) for one method call, then restore their state."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    seed_everything(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


REGISTRY: dict[str, Callable[..., Explainer]] = {}


def register(cls):
    REGISTRY[cls.name] = cls
    return cls


def get(name: str, **params) -> Explainer:
    if name not in REGISTRY:
        raise KeyError(name)
    return REGISTRY[name](**params)


def make_attribution(method: str, params: dict, encoded, token_scores: list[float], **fields) -> Attribution:
    """Aggregate token scores to words and slots and wrap them in an ``Attribution``."""
    word_scores = aggregate(token_scores, [w.tokens for w in encoded.words])
    slot_scores = {
        name: float(sum(token_scores[t] for t in tokens)) for name, tokens in encoded.slot_tokens.items()
    }
    total = sum(abs(s) for s in token_scores) or 1.0
    slot_shares = {
        name: float(sum(abs(token_scores[t]) for t in tokens) / total) for name, tokens in encoded.slot_tokens.items()
    }
    return Attribution(
        method=method,
        params=params,
        case_id=encoded.case.case_id,
        tokens=list(encoded.tokens),
        token_scores=[float(s) for s in token_scores],
        words=[w.text for w in encoded.words],
        word_scores=word_scores,
        word_slots=[w.slot for w in encoded.words],
        slot_scores=slot_scores,
        slot_shares=slot_shares,
        **fields,
    )
