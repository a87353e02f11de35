"""Batches sized from memory, and a batch that runs out of memory split and retried, not a failed audit.

Out-of-memory is injected into a tiny real model's forward pass for batches
above a row count; every result must equal the unconstrained run's.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch

import explainers
from audit.models import load_model, make_adapter, parse_model_spec
from audit.models.batching import BatchBudget, is_out_of_memory
from audit.suites import expand, load_suite
from explainers.region import Region


@pytest.fixture()
def adapter(tiny_llama_dir):
    return make_adapter(load_model(parse_model_spec(str(tiny_llama_dir))), load_suite("fair-lending"))


@contextlib.contextmanager
def out_of_memory_above(adapter, max_rows: int):
    """The model's forward pass raises torch.OutOfMemoryError for more than ``max_rows`` rows."""
    forward = adapter.forward_logits
    seen = []

    def limited(**kwargs):
        reference = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
        seen.append(reference.shape[0])
        if reference.shape[0] > max_rows:
            raise torch.OutOfMemoryError("injected: out of memory")
        return forward(**kwargs)

    adapter.forward_logits = limited
    try:
        yield seen
    finally:
        adapter.forward_logits = forward


def test_scoring_splits_a_batch_that_runs_out_of_memory(adapter):
    encoded = [adapter.encode(case) for case in expand(adapter.suite, limit=1)[:8]]
    expected, expected_masses = adapter.decide(encoded, batch_tokens=8 * max(e.length for e in encoded))
    with out_of_memory_above(adapter, 2) as seen:
        scores, masses = adapter.decide(encoded, batch_tokens=8 * max(e.length for e in encoded))
    assert max(seen) > 2 and scores == pytest.approx(expected, abs=1e-5) and masses == pytest.approx(expected_masses)
    assert adapter.budget.splits and all("scoring" in line for line in adapter.budget.splits)


def test_perturbation_passes_split_and_integrated_gradients_halve_their_steps_per_batch(adapter):
    encoded = adapter.encode(expand(adapter.suite, limit=1)[0])
    adapter.budget.on_cpu, adapter.budget.free_bytes = False, 2**36  # room for many rows per pass, until injected
    region = Region.of(adapter, encoded)
    noisy = region.region + 0.1 * torch.randn((4, *region.region.shape[1:]), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected_scores = region.forward(noisy)
    expected_ablation = explainers.get("feature-ablation").explain(adapter, encoded).token_scores
    expected_ig = explainers.get("ig", n_steps=8).explain(adapter, encoded).token_scores
    with out_of_memory_above(adapter, 1):
        with torch.no_grad():
            scores = region.forward(noisy)
        ablation = explainers.get("feature-ablation").explain(adapter, encoded).token_scores
        ig = explainers.get("ig", n_steps=8).explain(adapter, encoded).token_scores
    assert scores.tolist() == pytest.approx(expected_scores.tolist(), abs=1e-5)
    assert ablation == pytest.approx(expected_ablation, abs=1e-5)
    assert ig == pytest.approx(expected_ig, abs=1e-5)
    assert any(line.startswith("attribution") for line in adapter.budget.splits)
    assert any(line.startswith("integrated gradients") for line in adapter.budget.splits)


def test_other_errors_are_not_taken_for_out_of_memory(adapter):
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    region = Region.of(adapter, adapter.encode(expand(adapter.suite, limit=1)[0]))
    with pytest.raises(RuntimeError, match="shape mismatch"), torch.no_grad():
        adapter.budget.split_on_out_of_memory(lambda rows: (_ for _ in ()).throw(RuntimeError("shape mismatch")),
                                              region.region.expand(4, -1, -1), "attribution")


def test_rows_follow_free_memory_and_a_backward_pass_takes_fewer(adapter):
    budget = adapter.budget
    assert budget.rows(200, gradients=True) < budget.rows(200, gradients=False)
    assert budget.rows(100) >= budget.rows(400)
    assert budget.bytes_per_row(100, 1100, gradients=True) > budget.bytes_per_row(100, 100, gradients=True)
    scarce = replace(budget, free_bytes=3 * budget.bytes_per_row(100, 100, gradients=True), on_cpu=False)
    assert scarce.rows(100, gradients=True) == 1  # half the free memory holds one row
    assert replace(budget, free_bytes=0).rows(100) == 1, "always at least one row"
    gpu = replace(budget, free_bytes=80 * 2**30, on_cpu=False)
    assert gpu.rows(100, gradients=False) > budget.rows(100, gradients=False), "a CPU pass is capped"


def test_smollm2_sized_gradient_rows_estimate(adapter):
    """The estimate for SmolLM2-135M's shape: about 1.8 MB per token of a 200-token row with gradients."""
    smollm2 = BatchBudget(hidden=576, kv_width=192, mlp_width=1536, heads=9, layers=30, element_bytes=4,
                          free_bytes=0, on_cpu=True)
    per_token = smollm2.bytes_per_row(200, 200, gradients=True) / 200
    assert 1.5e6 < per_token < 2.2e6
