"""Faithfulness statistics: agreement and gains over random on hand-made numbers."""

from __future__ import annotations

import pytest

from explainers.faithfulness import gain_over_random, rank_agreement, word_order


def test_word_order_follows_the_decision_for_signed_maps_and_magnitude_otherwise():
    scores = [0.1, -0.9, 0.5]
    assert word_order(scores, +1.0, signed=True) == [2, 0, 1]
    assert word_order(scores, -1.0, signed=True) == [1, 0, 2]
    assert word_order(scores, +1.0, signed=False) == [1, 2, 0]


def test_gain_over_random_is_paired_and_oriented():
    method = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    random = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    better = gain_over_random(method, random, higher_is_better=True, seed=0)
    assert better["mean_gain"] == pytest.approx(0.5) and better["ci"] == pytest.approx((0.5, 0.5))
    worse = gain_over_random(method, random, higher_is_better=False, seed=0)
    assert worse["mean_gain"] == pytest.approx(-0.5)


def test_rank_agreement_of_identical_and_reversed_maps():
    cases = {f"c{i}": [float(j) for j in range(8)] for i in range(6)}
    reversed_cases = {k: list(reversed(v)) for k, v in cases.items()}
    result = rank_agreement({"a": cases, "b": cases, "c": reversed_cases}, seed=0, n_resamples=200)
    matrix = result["matrix"]
    assert matrix[0][1] == pytest.approx(1.0)
    # Magnitudes are compared, so a reversed map of non-negative scores disagrees completely.
    assert matrix[0][2] == pytest.approx(-1.0)


def test_normalised_aopc_maps_the_evaluated_range_onto_zero_to_one():
    from explainers.faithfulness import normalised_aopc

    assert normalised_aopc(0.3, worst=0.1, best=0.5) == pytest.approx(0.5)
    assert normalised_aopc(0.5, worst=0.1, best=0.5) == pytest.approx(1.0)
    assert normalised_aopc(0.2, worst=0.2, best=0.2) is None, "no range, no normalisation"
