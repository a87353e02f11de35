"""The properties every explainer must have, one check each, shipped with the package (as scikit-learn ships
``check_estimator``), so a third party's method is held to the rules the built-in ones are.

Every check is a module-level function ``check_<property>(explainer, adapter, encoded)`` that raises
``AssertionError`` with a message saying what is wrong and what to do; ``check_explainer`` runs them all and
raises on the first failure, naming the check. With ``generate_only=True`` it returns the (explainer, check)
pairs instead, for a test to run one at a time (``pytest.mark.parametrize``)::

    for explainer, check in check_explainer(MyMethod(), generate_only=True):
        check(explainer, adapter, encoded)

``adapter`` is any task view of a model (``audit.models.adapters``) and ``encoded`` one of its encoded cases.
The checks run ``explain`` several times: give the explainer small step or sample counts.
"""

from __future__ import annotations

import inspect
import json
import math
from typing import Any, Callable, Iterator

from explainers.base import PROTOCOL_ATTRIBUTES, Attribution, seeded
from explainers.generation import Meter

TOLERANCE = 1e-6  # absolute and relative, for sums of float scores and for reruns of the same computation

Check = Callable[[Any, Any, Any], None]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _differences(first: list[float], second: list[float]) -> list[int]:
    return [i for i, (a, b) in enumerate(zip(first, second)) if not _close(a, b)]


def check_protocol_attributes(explainer, adapter, encoded) -> None:
    """The class says what it is: ``name`` and ``title`` are non-empty strings, ``descriptive``, ``signed`` and
    ``stochastic`` are booleans, ``explain`` is callable and ``params`` a dict. The audit reads these from the
    class before it runs anything: which methods may back a control (not descriptive), which compare by sign
    (signed) and which are run with a second seed (stochastic)."""
    missing = [a for a in (*PROTOCOL_ATTRIBUTES, "params") if not hasattr(explainer, a)]
    assert not missing, f"{type(explainer).__name__} lacks {', '.join(missing)} (explainers.base.Explainer)"
    for attribute in ("name", "title"):
        value = getattr(explainer, attribute)
        assert isinstance(value, str) and value, f"{attribute} must be a non-empty string, not {value!r}"
    for attribute in ("descriptive", "signed", "stochastic"):
        value = getattr(explainer, attribute)
        assert isinstance(value, bool), f"{attribute} must be True or False, not {value!r}"
    assert callable(explainer.explain), "explain must be a method: explain(adapter, encoded, region=None)"
    assert isinstance(explainer.params, dict), f"params must be a dict, not {type(explainer.params).__name__}"


def check_get_params(explainer, adapter, encoded) -> None:
    """scikit-learn's convention: ``get_params()`` holds exactly the named parameters of ``__init__`` (no
    ``*args`` or ``**kwargs``, which could not be read back), each the attribute of its name, and constructing
    the class from it gives a method with the same ``get_params()`` and ``params``. The audit and its cache
    rebuild a method from its parameters, so a parameter that does not survive the round trip is lost."""
    assert callable(getattr(explainer, "get_params", None)), (
        "get_params() is missing: derive the class from explainers.base.BaseExplainer, or return {name: value} of "
        "every __init__ parameter")
    cls = type(explainer)
    init = cls.__init__
    parameters = [] if init is object.__init__ else list(inspect.signature(init).parameters.values())[1:]
    unnamed = [str(p) for p in parameters if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not unnamed, f"{cls.__name__}.__init__ takes {', '.join(unnamed)}: name every parameter"
    found = explainer.get_params()
    names = [p.name for p in parameters]
    assert set(found) == set(names), f"get_params() has {sorted(found)}, but __init__ takes {sorted(names)}"
    stored = {name: getattr(explainer, name, "<missing>") for name in names}
    assert stored == found, f"__init__'s parameters are not stored as attributes of their names: {stored} != {found}"
    rebuilt = cls(**found)
    assert rebuilt.get_params() == found, f"{cls.__name__}(**get_params()) has {rebuilt.get_params()}, not {found}"
    assert rebuilt.params == explainer.params, (
        f"{cls.__name__}(**get_params()) records params {rebuilt.params}, not {explainer.params}")


def check_params_json(explainer, adapter, encoded) -> None:
    """``params``, ``get_params()`` and the params an attribution records are plain JSON (no NaN or infinity),
    and the attribution names the method: the bundle and the results cache store them as JSON."""
    attribution = explainer.explain(adapter, encoded)
    for what, value in (("params", explainer.params), ("get_params()", explainer.get_params()),
                        ("the attribution's params", attribution.params)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise AssertionError(f"{what} is not JSON-serialisable ({error}): {value!r}") from None
    assert attribution.method == explainer.name, (
        f"the attribution names the method {attribution.method!r}, not {explainer.name!r}")


def check_one_finite_score_per_token(explainer, adapter, encoded) -> None:
    """One finite score per case-text token, listed with the case's tokens, and one word score per word: the
    report and the controls index scores by token and word position, and a NaN would poison every sum."""
    attribution = explainer.explain(adapter, encoded)
    n_tokens = len(encoded.tokens)
    assert len(attribution.token_scores) == n_tokens, (
        f"{len(attribution.token_scores)} token scores for {n_tokens} case-text tokens")
    assert list(attribution.tokens) == list(encoded.tokens), "the attribution lists other tokens than the case's"
    bad = [i for i, s in enumerate(attribution.token_scores) if not math.isfinite(s)]
    assert not bad, f"token scores at {bad} are not finite: {[attribution.token_scores[i] for i in bad]}"
    assert len(attribution.word_scores) == len(encoded.words), (
        f"{len(attribution.word_scores)} word scores for {len(encoded.words)} words")
    assert math.isfinite(attribution.score), f"the decision score {attribution.score} is not finite"


def check_scores_sum_to_words_and_slots(explainer, adapter, encoded) -> None:
    """Each word's score is the sum of its tokens' scores (so all word scores sum to the token scores), each
    slot's score the sum of its tokens', and slot shares lie in [0, 1] with a total of at most 1: the report
    reads a slot's share of the decision from these sums (``explainers.base.make_attribution`` builds them)."""
    attribution = explainer.explain(adapter, encoded)
    scores = attribution.token_scores
    for index, word in enumerate(encoded.words):
        expected = sum(scores[t] for t in word.tokens)
        assert _close(attribution.word_scores[index], expected), (
            f"word {index} ({word.text!r}) scores {attribution.word_scores[index]}, its tokens sum to {expected}")
    assert _close(sum(attribution.word_scores), sum(scores)), (
        f"word scores sum to {sum(attribution.word_scores)}, token scores to {sum(scores)}")
    assert set(attribution.slot_scores) == set(encoded.slot_tokens), (
        f"slot scores for {sorted(attribution.slot_scores)}, the case has slots {sorted(encoded.slot_tokens)}")
    for slot, tokens in encoded.slot_tokens.items():
        expected = sum(scores[t] for t in tokens)
        assert _close(attribution.slot_scores[slot], expected), (
            f"slot {slot!r} scores {attribution.slot_scores[slot]}, its tokens sum to {expected}")
    shares = attribution.slot_shares
    assert all(0 <= s <= 1 + TOLERANCE for s in shares.values()), f"slot shares outside [0, 1]: {shares}"
    assert sum(shares.values()) <= 1 + TOLERANCE, f"slot shares sum to {sum(shares.values())}, more than 1"


def check_deterministic_under_seed(explainer, adapter, encoded) -> None:
    """The same method with the same parameters (its ``seed`` among them, if it has one) gives the same scores,
    whatever the global random state: run once after seeding torch, numpy and ``random`` with 0 and once with 1.
    Nothing random without a seed that lands in the bundle, so a rerun of an audit reproduces its maps."""
    with seeded(0):
        first = explainer.explain(adapter, encoded).token_scores
    with seeded(1):
        second = explainer.explain(adapter, encoded).token_scores
    moved = _differences(first, second)
    assert not moved, (
        f"token scores at {moved} changed with the global random state ({[first[i] for i in moved]} then "
        f"{[second[i] for i in moved]}); draw random numbers under explainers.base.seeded(seed) with a seed "
        "parameter")


def check_seed_declared(explainer, adapter, encoded) -> None:
    """A stochastic method has a ``seed`` parameter that it records in ``params`` (so the bundle says how to
    reproduce it); a method declared not stochastic gives the same scores under another ``seed``. That a new seed
    changes a stochastic method's scores is not required: few samples can coincide."""
    found = explainer.get_params()
    if explainer.stochastic:
        assert "seed" in found and "seed" in explainer.params, (
            "a stochastic method takes a seed parameter and records it in params")
        return
    if "seed" not in found:
        return
    first = explainer.explain(adapter, encoded).token_scores
    other = type(explainer)(**{**found, "seed": found["seed"] + 1}).explain(adapter, encoded).token_scores
    moved = _differences(first, other)
    assert not moved, f"declared not stochastic, but token scores at {moved} change with the seed"


def check_cost_recorded(explainer, adapter, encoded) -> None:
    """The attribution records what it cost: ``forward_passes`` at least 1 and equal to the sequences a forward
    hook on the model counted while ``explain`` ran (a batch of b rows counts b, as
    ``explainers.generation.Meter`` counts), and ``seconds`` finite and not negative. The report states this
    cost; a number derived from the parameters drifts from what ran (``explainers.base.counted`` counts it)."""
    with Meter(adapter.model) as meter:
        attribution: Attribution = explainer.explain(adapter, encoded)
    assert attribution.forward_passes >= 1, f"forward_passes is {attribution.forward_passes}; at least 1 ran"
    assert attribution.forward_passes == meter.forward_rows, (
        f"records {attribution.forward_passes} forward passes, but a hook on the model counted "
        f"{meter.forward_rows} sequences run forward during explain")
    assert math.isfinite(attribution.seconds) and attribution.seconds >= 0, f"seconds is {attribution.seconds}"


def check_convergence_delta(explainer, adapter, encoded) -> None:
    """Where the method defines a convergence delta (a completeness gap |sum of scores - (f(x) - f(x'))|), it is
    finite and not negative: the completeness control reads it, and a gap is reported, never hidden."""
    delta = explainer.explain(adapter, encoded).convergence_delta
    if delta is None:
        return
    assert math.isfinite(delta) and delta >= 0, f"convergence_delta is {delta}; a gap is finite and >= 0"


def check_score_matches_the_adapter(explainer, adapter, encoded) -> None:
    """The attribution's ``score`` is the adapter's decision score of the case: the controls set attributions
    against the decision they explain, so a method must not explain another number."""
    import torch

    with torch.no_grad():
        expected = float(adapter.score(input_ids=encoded.input_ids[None].to(adapter.device)))
    score = explainer.explain(adapter, encoded).score
    assert math.isclose(score, expected, rel_tol=1e-4, abs_tol=1e-4), (
        f"score {score} is not the adapter's decision score {expected} of the case")


def check_explains_the_region_given(explainer, adapter, encoded) -> None:
    """Given the case's own region (``explainers.region.Region``) the method gives the map it gives without one,
    and given a nudged region it explains that one (its score moves): the trust stage's robustness checks hand
    methods perturbed regions, and a method that ignored them would look perfectly stable."""
    import torch

    from explainers.region import Region

    region = Region.of(adapter, encoded)
    with seeded(0):
        plain = explainer.explain(adapter, encoded)
    with seeded(0):
        given = explainer.explain(adapter, encoded, region)
    moved = [i for i, (a, b) in enumerate(zip(plain.token_scores, given.token_scores))
             if not math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)]
    assert not moved, f"token scores at {moved} differ when the case's own region is given"
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(region.region.shape, generator=generator).to(region.region)
    nudged = region.with_region(region.region + 0.5 * region.region.std() * noise)
    with seeded(0):
        changed = explainer.explain(adapter, encoded, nudged)
    assert not math.isclose(changed.score, plain.score, rel_tol=0, abs_tol=1e-6), (
        "the score did not move with a nudged region: explain(adapter, encoded, region) must read the region")


CHECKS: tuple[Check, ...] = (
    check_protocol_attributes,
    check_get_params,
    check_params_json,
    check_one_finite_score_per_token,
    check_scores_sum_to_words_and_slots,
    check_deterministic_under_seed,
    check_seed_declared,
    check_cost_recorded,
    check_convergence_delta,
    check_score_matches_the_adapter,
    check_explains_the_region_given,
)


def check_explainer(explainer_or_class, adapter=None, encoded=None, *, generate_only: bool = False
                    ) -> Iterator[tuple[Any, Check]] | None:
    """Run every check (``CHECKS``) on an explainer (a class is constructed with its defaults), raising
    ``AssertionError`` on the first failure with the check's name; with ``generate_only``, return the
    (explainer, check) pairs instead, each run as ``check(explainer, adapter, encoded)``."""
    explainer = explainer_or_class() if isinstance(explainer_or_class, type) else explainer_or_class
    if generate_only:
        return ((explainer, check) for check in CHECKS)
    if adapter is None or encoded is None:
        raise TypeError("check_explainer runs the method: give it an adapter and an encoded case")
    for check in CHECKS:
        try:
            check(explainer, adapter, encoded)
        except AssertionError as error:
            raise AssertionError(f"{check.__name__} failed for {getattr(explainer, 'name', explainer)!r}: "
                                 f"{error}") from error
    return None
