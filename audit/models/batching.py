"""How many rows one forward pass may take, and what to do when a batch does not fit.

Rows are packed by a token budget, not by count (similar lengths together), and
the budget comes from the free memory and an estimate of activation memory
per token. For a decoder with hidden size d, key/value width k, MLP width f,
h heads, L layers and b bytes per element, a token of a row whose context
holds c positions needs about

    inference:  (6 d + 2 k + 3 f + h c) b           one layer's activations at a time
    gradients:  L (8 d + 2 k + 5 f + h c + 2 k c / n) b   every layer's, kept for the backward pass

(n new tokens per row share the c context positions' keys and values). For
SmolLM2-135M a gradient pass costs about 1.8 MB per token, so captum's habit of
integrating all 32 IG steps of a 200-token prompt in one batch needs about
11 GB. On a CPU throughput stops growing long before memory runs out (the
matrix products are already large at a few hundred tokens), so a CPU pass is
also capped at ``CPU_TOKENS_PER_PASS``; this keeps the audit's peak memory near
the weights' size. A GPU takes as much as fits in ``MEMORY_FRACTION`` of its
free memory.

Estimates can be wrong (another process takes memory, an unusual attention
kernel), so a batch that runs out of memory is split in half and retried
instead of failing the audit (``BatchBudget.split_on_out_of_memory``); work
that batches itself (captum's Integrated Gradients, a generated answer's
gradient passes) is run again with half the rows per pass
(``retry_with_fewer_rows``, the one retry loop of the package). Every split and
retry is counted and the report shows it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import torch

CPU_TOKENS_PER_PASS = {False: 1024, True: 256}  # inference, gradients: no faster above these on a CPU (measured)
MEMORY_FRACTION = 0.5  # of the free memory, for activations
T = TypeVar("T")


def token_budget_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped so that rows x longest row stays within ``batch_tokens`` (shortest first)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and (len(current) + 1) * lengths[index] > batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def free_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device``: the CUDA allocator's view, or the kernel's MemAvailable for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass
class BatchBudget:
    """Rows per pass for a model on a device, from free memory and the activation estimate above."""

    hidden: int
    kv_width: int
    mlp_width: int
    heads: int
    layers: int
    element_bytes: int
    free_bytes: int
    on_cpu: bool
    splits: list[str] = field(default_factory=list)  # one line per batch split after running out of memory

    @classmethod
    def for_model(cls, model) -> "BatchBudget":
        config = model.config
        text_config = getattr(config, "get_text_config", lambda: config)()
        hidden = int(getattr(text_config, "hidden_size", 768))
        heads = int(getattr(text_config, "num_attention_heads", 12))
        kv_heads = int(getattr(text_config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(text_config, "head_dim", None) or hidden // heads)
        parameter = next(model.parameters())
        return cls(
            hidden=hidden,
            kv_width=kv_heads * head_dim,
            mlp_width=int(getattr(text_config, "intermediate_size", 4 * hidden)),
            heads=heads,
            layers=int(getattr(text_config, "num_hidden_layers", 12)),
            element_bytes=max(parameter.element_size(), 4 if parameter.device.type == "cpu" else 2),
            free_bytes=free_memory_bytes(parameter.device),
            on_cpu=parameter.device.type == "cpu",
        )

    def bytes_per_row(self, new_tokens: int, context: int, gradients: bool) -> int:
        d, k, f, h, b = self.hidden, self.kv_width, self.mlp_width, self.heads, self.element_bytes
        if gradients:
            return self.layers * b * (new_tokens * (8 * d + 2 * k + 5 * f + h * context) + 2 * k * context)
        return b * new_tokens * (6 * d + 2 * k + 3 * f + h * context)

    def rows(self, new_tokens: int, context: int | None = None, gradients: bool | None = None) -> int:
        """Rows of ``new_tokens`` each (attending over ``context`` positions) that one pass may take; at least 1."""
        gradients = torch.is_grad_enabled() if gradients is None else gradients
        context = max(context or new_tokens, new_tokens)
        by_memory = int(MEMORY_FRACTION * self.free_bytes) // max(1, self.bytes_per_row(new_tokens, context, gradients))
        rows = by_memory
        if self.on_cpu:
            rows = min(rows, CPU_TOKENS_PER_PASS[gradients] // max(1, new_tokens))
        return max(1, rows)

    def tokens(self, gradients: bool = False) -> int:
        """A token budget for packing rows of mixed lengths (``token_budget_batches``) in no-gradient passes."""
        typical = 256
        return max(typical, self.rows(typical, gradients=gradients) * typical)

    def split_on_out_of_memory(self, run: Callable[[T], torch.Tensor], rows: T, what: str) -> torch.Tensor:
        """``run(rows)``; a batch that runs out of memory is halved and each half retried (outputs concatenated)."""
        try:
            return run(rows)
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled, the rest re-raised
            if not is_out_of_memory(error) or len(rows) < 2:
                raise
        _release_cached_memory()
        half = len(rows) // 2
        self.splits.append(f"{what}: a batch of {len(rows)} rows ran out of memory and was split in two")
        return torch.cat([self.split_on_out_of_memory(run, rows[:half], what),
                          self.split_on_out_of_memory(run, rows[half:], what)])


def retry_with_fewer_rows(run: Callable[[int], T], rows: int, on_retry: Callable[[int], None]) -> tuple[T, int]:
    """``run(rows)``; while it runs out of memory, ``on_retry(rows)`` and run again with half the rows.

    Returns the result and the rows it ran with, so a caller working through many batches keeps the size that
    fitted. Any other error is raised, and so is running out of memory with one row: there is nothing left to
    halve. For work that is batched by its own loop (``rows`` per pass); a batch already built is split by
    ``BatchBudget.split_on_out_of_memory`` instead.
    """
    while True:
        try:
            return run(rows), rows
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled, the rest re-raised
            if not is_out_of_memory(error) or rows == 1:
                raise
        _release_cached_memory()
        on_retry(rows)
        rows //= 2


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError`` or the CPU allocator's "can't allocate memory"."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def _release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
