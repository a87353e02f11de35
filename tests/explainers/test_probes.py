"""Probes with control tasks on hidden states whose content is known."""

from __future__ import annotations

import numpy as np
import torch

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


# A known answer from a real model: a tiny Llama whose one trained layer writes a planted attribute


N_FILLERS, N_NAMES, LENGTH, PLANTED_LAYER = 40, 160, 8, 2
FIRST_FILLER = 2  # token 0 begins every sequence, token 1 ends it (the read-out position)
FIRST_NAME = FIRST_FILLER + N_FILLERS


def name_group(token: int) -> str:
    return "a" if token < FIRST_NAME + N_NAMES // 2 else "b"


def sequence(name: int, fillers, position: int) -> list[int]:
    """BOS, the fillers with the name inserted at ``position``, the read-out token."""
    tokens = [0, *fillers[: LENGTH - 3]]
    tokens.insert(1 + position, name)
    return tokens + [1]


def tiny_llama(trained: bool):
    """A 4-layer Llama; when ``trained``, only layer PLANTED_LAYER learns (300 Adam steps, ~2 s on CPU) to make the
    name's group linearly readable at the last position, through a linear head on that layer's output."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=FIRST_NAME + N_NAMES, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=16))
    if not trained:
        return model.eval()
    model.requires_grad_(False)
    layer = model.model.layers[PLANTED_LAYER].requires_grad_(True)
    head = torch.nn.Linear(64, 2)
    optimiser = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        names = rng.integers(FIRST_NAME, FIRST_NAME + N_NAMES, 128)
        ids = torch.tensor([sequence(int(name), rng.integers(FIRST_FILLER, FIRST_NAME, LENGTH),
                                     int(rng.integers(0, LENGTH - 2))) for name in names])
        hidden = model(ids, output_hidden_states=True).hidden_states[PLANTED_LAYER + 1][:, -1]
        labels = torch.tensor([name_group(int(n)) == "b" for n in names]).long()
        loss = torch.nn.functional.cross_entropy(head(hidden), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def recorded_states(model):
    """Every name in each of 6 fixed scenarios, read through the audit's recorder at the last position."""
    from types import SimpleNamespace

    from explainers.hidden import HiddenStateRecorder

    rng = np.random.default_rng(1)
    scenarios = [(rng.integers(FIRST_FILLER, FIRST_NAME, LENGTH), int(rng.integers(0, LENGTH - 2))) for _ in range(6)]
    names = range(FIRST_NAME, FIRST_NAME + N_NAMES)
    cases = [(s, name) for s in range(len(scenarios)) for name in names]
    ids = torch.tensor([sequence(name, *scenarios[s]) for s, name in cases])
    view = SimpleNamespace(model=model, embedding_layer=model.model.embed_tokens, decoder_layers=model.model.layers)
    rows = [SimpleNamespace(case=SimpleNamespace(case_id=f"{s}/{name}")) for s, name in cases]
    recorder = HiddenStateRecorder(view, lambda encoded: {"answer": [LENGTH - 1]})
    with torch.no_grad(), recorder.recording(rows, [0] * len(rows)):
        model(ids)
    states = np.stack([recorder.states[row.case.case_id]["answer"] for row in rows])
    return (states, [name_group(name) for _, name in cases], [f"scenario-{s}" for s, _ in cases],
            [str(name) for _, name in cases])


def selective_depths(found) -> list[int]:
    return [layer["depth"] for layer in found["layers"] if layer["selectivity_ci"][0] > 0.1]


def test_probe_finds_the_attribute_where_a_trained_layer_wrote_it_and_nowhere_in_the_random_model():
    trained = probe_layers(*recorded_states(tiny_llama(trained=True)), seed=0)
    planted_depth = PLANTED_LAYER + 1  # depth 0 is the embeddings
    assert selective_depths(trained)[0] == planted_depth, "the first selective depth is the trained layer's output"
    assert trained["layers"][planted_depth]["accuracy"] > 0.9
    assert all(layer["selectivity_ci"][0] <= 0 for layer in trained["layers"][:planted_depth])
    untrained = probe_layers(*recorded_states(tiny_llama(trained=False)), seed=0)
    assert selective_depths(untrained) == []
    assert max(layer["accuracy"] for layer in untrained["layers"]) < 0.7


def test_a_class_seen_in_one_scenario_only_is_probed_without_a_crash():
    """A model that approves everyone but in one scenario: grouped folds train on one class; the probe of such a
    fold predicts that class instead of refusing the data (a fine-tune that approves nearly everyone crashed)."""
    rng = np.random.default_rng(0)
    groups = [f"s{i // 10}" for i in range(60)]
    labels = ["favourable"] * 60
    labels[3], labels[7] = "unfavourable", "unfavourable"  # both in scenario s0
    states = rng.normal(size=(60, 2, 8))
    found = probe_layers(states, labels, groups, [f"w{i}" for i in range(60)], seed=0)
    assert found["evaluated"]
    assert all(0.0 <= layer["accuracy"] <= 1.0 for layer in found["layers"])
    assert found["layers"][0]["accuracy"] >= 58 / 60 - 1e-9  # every favourable case out of the s0 fold is right
