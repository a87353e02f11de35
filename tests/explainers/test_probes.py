"""Probes with control tasks on hidden states whose content is known."""

from __future__ import annotations

import numpy as np

from explainers.probes import control_labels, probe_layers


def planted_states(seed: int = 0):
    """Depth 0: word identity only (a random vector per word type); depth 1: the label along one direction."""
    rng = np.random.default_rng(seed)
    n_types, per_type, d = 24, 8, 16
    type_vectors = rng.standard_normal((n_types, d)) * 3
    type_labels = np.array(["a", "b"] * (n_types // 2))
    direction = rng.standard_normal(d)
    rows, labels, groups, types = [], [], [], []
    for t in range(n_types):
        for k in range(per_type):
            sign = 1.0 if type_labels[t] == "a" else -1.0
            identity = type_vectors[t] + 0.1 * rng.standard_normal(d)
            attribute = sign * direction + 0.5 * rng.standard_normal(d)
            rows.append(np.stack([identity * 0 + rng.standard_normal(d), attribute]))
            labels.append(type_labels[t])
            groups.append(f"scenario-{k}")
            types.append(f"word-{t}")
    return np.asarray(rows), labels, groups, types, type_vectors


def test_probe_finds_the_planted_layer_and_control_stays_at_chance():
    states, labels, groups, types, _ = planted_states()
    found = probe_layers(states, labels, groups, types, seed=0)
    noise, planted = found["layers"]
    assert found["evaluated"] and found["majority"] == 0.5
    assert planted["accuracy"] > 0.95 and planted["accuracy_ci"][0] > 0.9
    assert planted["control_accuracy"] < 0.75, "random labels per word cannot be read off the attribute direction"
    assert planted["selectivity"] > 0.25 and planted["selectivity_ci"][0] > 0
    assert noise["accuracy"] < 0.7
    assert found["most_selective_depth"] == 1


def test_a_probe_that_memorises_words_has_no_selectivity():
    _, labels, groups, types, type_vectors = planted_states()
    rng = np.random.default_rng(1)
    # the states carry word identity only, so task and control labels (both functions of the word) are equally easy
    identity = np.stack([type_vectors[int(t.split("-")[1])] + 0.1 * rng.standard_normal(16) for t in types])
    found = probe_layers(identity[:, None, :], labels, groups, types, seed=0)
    (layer,) = found["layers"]
    assert layer["accuracy"] > 0.9
    assert abs(layer["selectivity"]) < 0.15


def test_control_labels_are_one_per_word_type_and_one_class_is_not_probed():
    labels = ["x", "y"] * 10
    words = [f"w{i % 5}" for i in range(20)]
    control = control_labels(labels, words, seed=0)
    for word in set(words):
        assert len({c for c, w in zip(control, words) if w == word}) == 1
    found = probe_layers(np.zeros((6, 2, 3)), ["only"] * 6, ["s1", "s2"] * 3, ["w"] * 6, seed=0)
    assert not found["evaluated"] and "2 class" not in found["why"]
