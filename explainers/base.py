"""The explainer protocol, the attribution record and the registry by name.

Like captum's ``attribute()``, every method has one signature:
``explain(adapter, encoded, region=None) -> Attribution``. ``region``
(``explainers.region.Region``) defaults to the case's own embeddings; the
robustness checks pass one whose case-text embeddings are perturbed. Methods are constructed with
their parameters (``get("ig", n_steps=32)``), named keyword arguments of ``__init__`` that ``get_params``
reads back (``BaseExplainer``, scikit-learn's convention), and attribute the case-text
region of the prompt only; chat markup, the question and the answer prefix
are held fixed. Token scores are aggregated to words and slots by summation
(``explainers.spans``), so word scores always sum to token scores. What a method ran is counted while it runs
(``counted``), never derived from its parameters.

A third party's method is a class with the protocol's attributes, named in the entry-point group
``oss_model_audit.explainers`` of its distribution (the name is the method's ``name``)::

    [project.entry-points."oss_model_audit.explainers"]
    bank-equal-shares = "my_bank.explainers:EqualShares"

It is loaded the first time the registry is consulted (``get``, ``available``, a lookup in ``REGISTRY``), and
``explainers.checks.check_explainer`` holds it to the same properties as the built-in methods.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
import sys
import time
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from explainers.generation import Meter
from explainers.spans import aggregate

ENTRY_POINT_GROUP = "oss_model_audit.explainers"  # a third party's method: name = module:Class
PROTOCOL_ATTRIBUTES = ("name", "title", "descriptive", "signed", "stochastic", "explain")  # read from the class


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
    forward_passes: int = 0  # sequences run forward through the model (a batch of b rows counts b), as counted
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
    params: dict[str, Any]  # what the bundle records with every attribution

    def get_params(self) -> dict[str, Any]: ...  # the __init__ parameters: type(e)(**e.get_params()) rebuilds e

    def explain(self, adapter, encoded, region=None) -> Attribution: ...


class BaseExplainer:
    """What the built-in methods share, after scikit-learn's ``BaseEstimator``: every parameter is a named
    keyword argument of ``__init__``, stored as the attribute of the same name, so ``get_params`` reads them back
    through the signature and ``type(e)(**e.get_params())`` constructs the same method."""

    @classmethod
    def param_names(cls) -> list[str]:
        """The parameters of ``__init__`` in signature order (scikit-learn sorts them; here the order is the one
        ``params`` records). ``*args`` and ``**kwargs`` are refused: a parameter without a name cannot be read
        back."""
        if cls.__init__ is object.__init__:
            return []
        names = []
        for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ takes {parameter}: an explainer's parameters are named "
                                "keyword arguments, each stored as the attribute of its name")
            names.append(parameter.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """{parameter: value} of every ``__init__`` parameter, read from the attribute of its name."""
        return {name: getattr(self, name) for name in self.param_names()}

    @property
    def params(self) -> dict[str, Any]:
        """What the bundle records with every attribution (and the results cache keys on): ``get_params()``,
        unless a method records something else (a description of its reduction, an option only when set)."""
        return self.get_params()


def counted(explain: Callable[..., Attribution]) -> Callable[..., Attribution]:
    """Wraps a method's ``explain``: the attribution's cost is what ran while it ran, the sequences a forward hook
    on the model saw (``explainers.generation.Meter``: a batch of b rows counts b; the prompt prefix, the
    scores of the input and the reference and every pass inside captum or shap count too) and the seconds it
    took."""

    @functools.wraps(explain)
    def run(self, adapter, encoded, region=None) -> Attribution:
        started = time.perf_counter()
        with Meter(adapter.model) as meter:
            attribution = explain(self, adapter, encoded, region)
        attribution.forward_passes = meter.forward_rows
        attribution.seconds = time.perf_counter() - started
        return attribution

    return run


def seed_everything(seed: int) -> None:
    """Seed every generator a method may draw from: Python's ``random``, numpy's and torch's (CPU and CUDA).

    The one seeding helper: ``audit run`` and ``audit explain`` call it once with ``--seed``, and ``seeded``
    around each stochastic method call."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed every generator (``seed_everything``) for one method call, then restore the CPU generators' state
    (Python's, numpy's, torch's; a CUDA generator stays seeded)."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    seed_everything(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


class EntryPointError(RuntimeError):
    """A method installed through ``ENTRY_POINT_GROUP`` that cannot be used; the message names the entry point."""


class Registry(MutableMapping):
    """Methods by name: those registered in this process (``register``: the built-in ones) and those installed
    through the entry-point group ``ENTRY_POINT_GROUP``, looked up on first use and again whenever ``sys.path``
    has changed since (a folder added at run time, a test's throwaway distribution)."""

    def __init__(self, group: str):
        self.group = group
        self._registered: dict[str, Callable[..., Explainer]] = {}
        self._installed: dict[str, Callable[..., Explainer]] = {}
        self._scanned: tuple[str, ...] | None = None  # sys.path when the entry points were last looked up
        self._scanning = False

    def _methods(self) -> dict[str, Callable[..., Explainer]]:
        if self._scanned != tuple(sys.path) and not self._scanning:  # a plugin consulting the registry on import
            self._scanning = True  # sees what is known so far, not a second scan
            try:
                path, self._installed = tuple(sys.path), self._load_entry_points()
            finally:
                self._scanning = False
            self._scanned = path
        return {**self._installed, **self._registered}

    def _load_entry_points(self) -> dict[str, Callable[..., Explainer]]:
        installed = {}
        for entry in entry_points(group=self.group):
            origin = f"explainer entry point {entry.name} = {entry.value} (group {self.group})"
            try:
                cls = entry.load()
            except Exception as error:  # a third party's module: any failure is named, never a bare traceback
                raise EntryPointError(f"{origin}: cannot be loaded ({type(error).__name__}: {error})") from error
            missing = [a for a in PROTOCOL_ATTRIBUTES if not hasattr(cls, a)]
            if missing:
                raise EntryPointError(f"{origin}: {entry.value} lacks the explainer protocol's "
                                      f"{', '.join(missing)} (explainers.base.Explainer)")
            if cls.name != entry.name:
                raise EntryPointError(f"{origin}: the class is named {cls.name!r}; the entry point's name must be "
                                      "the method's name")
            if self._registered.get(entry.name, cls) is not cls:
                raise EntryPointError(f"{origin}: {entry.name!r} is already the name of "
                                      f"{self._registered[entry.name].__qualname__}")
            installed[entry.name] = cls
        return installed

    def __getitem__(self, name: str) -> Callable[..., Explainer]:
        return self._methods()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods())

    def __len__(self) -> int:
        return len(self._methods())

    def __setitem__(self, name: str, cls: Callable[..., Explainer]) -> None:
        self._registered[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._registered[name]


REGISTRY = Registry(ENTRY_POINT_GROUP)


def register(cls):
    REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """The names of every method: the built-in ones and those installed through ``ENTRY_POINT_GROUP``."""
    return sorted(REGISTRY)


def get(name: str, **params) -> Explainer:
    """The method ``name`` constructed with ``params`` (its ``__init__`` keyword arguments)."""
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
