"""The one retry loop for work that batches itself (``audit.models.batching.retry_with_fewer_rows``): halve the rows
on out-of-memory, say so, keep the size that fitted; and a generated answer's IG run through it gives the numbers
of a run that never ran out."""

from __future__ import annotations

import pytest
import torch

from audit.models import load_model, parse_model_spec
from audit.models.batching import retry_with_fewer_rows
from explainers import generation

OUT_OF_MEMORY = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB"


def test_rows_are_halved_until_the_work_fits_and_other_errors_pass_through():
    tried, noted = [], []

    def run(rows: int) -> str:
        tried.append(rows)
        if rows > 2:
            raise RuntimeError(OUT_OF_MEMORY)
        return f"ran {rows}"

    assert retry_with_fewer_rows(run, 8, noted.append) == ("ran 2", 2)
    assert tried == [8, 4, 2] and noted == [8, 4]
    with pytest.raises(RuntimeError, match="can't allocate"):  # nothing left to halve
        retry_with_fewer_rows(lambda rows: run(rows + 2), 1, noted.append)
    with pytest.raises(ValueError, match="not memory"):
        retry_with_fewer_rows(lambda rows: (_ for _ in ()).throw(ValueError("not memory")), 8, noted.append)
    assert noted == [8, 4], "only out-of-memory retries are noted"


def test_a_generated_answer_ig_pass_that_runs_out_of_memory_is_retried_with_half_the_rows(tiny_llama_dir):
    tiny = load_model(parse_model_spec(str(tiny_llama_dir)))
    ids = torch.tensor([1, 40, 41, 42, 43, 44, 5, 77])
    with torch.no_grad():
        embeddings = tiny.model.get_input_embeddings()(ids).float()
    targets, sources = torch.tensor([5, 77, 301]), torch.arange(2, 8)

    def attribute():
        return generation.integrated_gradients(tiny.model, embeddings, targets, sources, None, n_steps=4,
                                               rows_per_pass=4)

    expected = attribute()

    def refuse_wide(module, args, kwargs):
        inputs = kwargs.get("inputs_embeds")
        if inputs is not None and inputs.shape[0] > 2 and torch.is_grad_enabled():
            raise RuntimeError(OUT_OF_MEMORY)

    handle = tiny.model.register_forward_pre_hook(refuse_wide, with_kwargs=True)
    try:
        found = attribute()
    finally:
        handle.remove()
    assert expected.chunks == [4] and expected.cost["out_of_memory_retries"] == 0
    assert found.chunks == [2, 2] and found.cost["out_of_memory_retries"] == 1
    for row, expected_row in zip(found.matrix, expected.matrix, strict=True):
        assert row == pytest.approx(expected_row, abs=1e-5)
