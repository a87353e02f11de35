"""Hidden states recorded during scoring, and the logit lens read from them, on tiny real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.suites import expand
from explainers.hidden import HiddenStateRecorder, answer_and_slot_positions
from explainers.lens import forming_layer, lens_scores


@pytest.mark.parametrize("family", ["causal-lm", "classifier"])
def test_recorded_states_are_the_models_hidden_states_and_the_lens_ends_at_the_score(adapters, family):
    adapter = adapters[family]
    encoded = [adapter.encode(c) for c in expand(adapter.suite, limit=2)[::9]]
    recorder = HiddenStateRecorder(adapter, answer_and_slot_positions(adapter))
    scores, _ = adapter.decide(encoded, batch_tokens=3 * max(e.length for e in encoded), recorder=recorder)
    plain, _ = adapter.decide(encoded)
    assert scores == pytest.approx(plain, abs=1e-5), "recording does not change the scores"
    n_layers = len(adapter.decoder_layers)
    for item in encoded[:3]:
        with torch.no_grad():
            hidden = adapter.model(item.input_ids[None], output_hidden_states=True).hidden_states
        states = recorder.states[item.case.case_id]
        answer = item.length - 1 if family == "causal-lm" else 0
        assert states["answer"].shape == (n_layers + 1, hidden[0].shape[-1])
        for depth in range(n_layers):  # the model's last entry has the final norm applied; ours is the raw stream
            np.testing.assert_allclose(states["answer"][depth], hidden[depth][0, answer].numpy(), atol=1e-4)
        slot_tokens = [item.region[0] + t for t in item.slot_tokens["applicant"]]
        np.testing.assert_allclose(states["slot:applicant"][1], hidden[1][0, slot_tokens].mean(0).numpy(), atol=1e-4)
    lens = lens_scores(adapter, {c: s["answer"] for c, s in recorder.states.items()})
    for item, score in zip(encoded, scores):
        curve = lens[item.case.case_id]
        assert len(curve) == n_layers + 1
        assert curve[-1] == pytest.approx(score, abs=1e-4), "the lens at the last layer is the decision score"


def test_forming_layer_is_where_the_curve_settles_on_the_final_side():
    assert forming_layer([0.5, -0.2, -0.1, 0.3, 0.8]) == 3
    assert forming_layer([-1.0, -0.5, -0.2]) == 0
    assert forming_layer([0.4, 0.0]) is None
