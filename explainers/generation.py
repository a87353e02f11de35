"""Attributions of a generated answer: every generated token to the prompt and to the tokens before it.

A causal LM wrote the answer t_1 .. t_T after a prompt. The sequence the model reads is
x = (prompt, t_1, .., t_{T-1}) as input embeddings [n, d]; token t_k is predicted at position
n - T + k - 1 (k = 1..T), and the function explained for it is its log-probability

    F_k(x) = log p(t_k | x_<k)    (log-softmax of the logits, in float32).

Only the *sources* are attributed: the embeddings of the text the user wrote and of the generated
tokens. Every other position (chat markup, system prompt) is held fixed at its own embedding, as in
``explainers.region``. Causality makes the attribution of t_k to a source at or after its own
prediction position exactly zero.

- Integrated Gradients (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks"):

      IG_kj = (x_j - x'_j) . integral_0^1 dF_k(x' + a (x - x')) / dx_j da

  with the reference x' equal to x except that every source holds the neutral filler embedding
  (``explainers.region.filler_token``). The integral uses the m-point Gauss-Legendre rule on [0, 1]
  (nodes a_i, weights w_i), so IG_kj ~ (x_j - x'_j) . sum_i w_i dF_k(x_i) / dx_j. Completeness says
  sum_j IG_kj = F_k(x) - F_k(x'); the quadrature leaves a gap |sum_j IG_kj - (F_k(x) - F_k(x'))|,
  reported per token, never hidden.
  Cost: the m interpolated inputs share one forward pass (in chunks that fit memory) and each token
  takes one backward pass through it (``retain_graph``), instead of a forward pass per token:
  about m forward rows and m T backward rows, plus one forward pass for F(x) and F(x').
  What actually ran is counted as it runs (``Meter``), not derived from m and T: a pass that runs out
  of memory is retried with half the rows, and the count says so.
  ``torch.autograd.grad(..., is_grads_batched=True)`` gives the same numbers and was 10-25 % faster on
  SmolLM2-135M (8 tokens, 4 rows, 2 CPU cores), but holds the T vocabulary-sized cotangents of the
  log-softmax at once (about 1.8 GB for 48 tokens and 4 rows), so the backward passes run one at a time.
- Input x Gradient (Shrikumar, Greenside, Shcherbina & Kundaje 2016, "Not Just a Black Box"):
  A_kj = x_j . dF_k(x) / dx_j; one forward pass and one backward pass per token. It has no reference,
  so no completeness gap.

Vector attributions are summed over the embedding dimension: one score per (token, source).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from audit.models.batching import retry_with_fewer_rows
from audit.models.prefix import PrefixCache

METHODS = ("ig", "input-x-gradient")
TITLES = {"ig": "Integrated Gradients", "input-x-gradient": "Input x Gradient"}


@dataclass
class GenerationAttribution:
    """``matrix[k][j]``: attribution of generated token k's log-probability to source j."""

    method: str
    params: dict[str, Any]
    matrix: list[list[float]]
    log_probs: list[float]  # F_k(x)
    reference_log_probs: list[float] | None  # F_k(x'), where the method has a reference
    forward_rows: int  # sequences run forward (interpolation steps count one each), as counted by the meter
    backward_passes: int  # backward passes through a forward graph (one per token and chunk), as counted
    seconds: float
    chunks: list[int] = field(default_factory=list)  # rows of each forward pass with gradients, as run
    cost: dict[str, Any] = field(default_factory=dict)  # Meter.record(): every pass that ran, by purpose

    def completeness(self) -> list[dict[str, float]] | None:
        """Per token: F(x) - F(x'), the attributions' sum, the gap and the gap relative to |F(x) - F(x')|."""
        if self.reference_log_probs is None:
            return None
        rows = []
        for scores, value, reference in zip(self.matrix, self.log_probs, self.reference_log_probs):
            difference, total = value - reference, float(sum(scores))
            gap = abs(total - difference)
            rows.append({"difference": difference, "sum": total, "gap": gap,
                         "relative_gap": gap / abs(difference) if difference else None})
        return rows


class Meter:
    """What ran, counted while it runs, so a report states the work done and not a formula of the parameters.

    Every completed forward pass of ``model`` is counted by a forward hook on it (passes made inside helpers,
    ``PrefixCache.of`` or ``model.generate``, count too), under the ``purpose`` set when it ran ("prefix",
    "gradients", "endpoints" here, "generation" in ``audit.explain.run``; "other" unless set), with its rows
    (sequences) and the token positions it computed (rows x new positions; positions read from a key-value
    cache are not computed again). ``backward(rows)`` counts a completed backward pass, ``retry()`` a pass
    that ran out of memory and was run again with fewer rows (its completed parts stay counted: they ran).
    """

    def __init__(self, model):
        self.model = model
        self.purpose = "other"
        self.forward: dict[str, dict[str, Any]] = {}
        self.backward_passes = 0
        self.backward_rows = 0
        self.out_of_memory_retries = 0
        self.rows_with_gradients: list[int] = []  # rows of each forward pass with gradients, in order
        self.gradient_tokens = 0  # token positions computed by the forward passes with gradients
        self._handle = None

    def __enter__(self) -> "Meter":
        self._handle = self.model.register_forward_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def _count(self, module, args, kwargs, output) -> None:
        inputs = kwargs.get("inputs_embeds")
        if inputs is None:
            inputs = kwargs.get("input_ids", args[0] if args else None)
        rows, length = (int(inputs.shape[0]), int(inputs.shape[1])) if inputs is not None else (0, 0)
        gradients = torch.is_grad_enabled()
        entry = self.forward.setdefault(self.purpose, {"purpose": self.purpose, "passes": 0, "rows": 0,
                                                       "tokens": 0, "gradients": gradients})
        entry["passes"] += 1
        entry["rows"] += rows
        entry["tokens"] += rows * length
        entry["gradients"] = entry["gradients"] or gradients
        if gradients:
            self.rows_with_gradients.append(rows)
            self.gradient_tokens += rows * length

    def backward(self, rows: int) -> None:
        self.backward_passes += 1
        self.backward_rows += rows

    def retry(self) -> None:
        self.out_of_memory_retries += 1

    @property
    def forward_rows(self) -> int:
        return sum(entry["rows"] for entry in self.forward.values())

    @property
    def tokens(self) -> int:
        return sum(entry["tokens"] for entry in self.forward.values())

    def record(self) -> dict[str, Any]:
        """The counts as explanation.json holds them (``attribution.cost``)."""
        return {"forward": [dict(entry) for entry in self.forward.values()],
                "backward": {"passes": self.backward_passes, "rows": self.backward_rows},
                "out_of_memory_retries": self.out_of_memory_retries}


class _Sequence:
    """The model as a function of the embeddings after the fixed prefix: log-probabilities of the targets."""

    def __init__(self, model, embeddings: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor, meter: Meter):
        self.model = model
        self.meter = meter
        self.dtype = next(model.parameters()).dtype
        self.start = int(sources.min())
        meter.purpose = "prefix"
        self.prefix = PrefixCache.of(model, embeddings[None, :self.start].to(self.dtype)) if self.start else None
        self.rest = embeddings[self.start:].float()  # [m, d]: sources and the fixed positions between them
        self.sources = sources - self.start  # source positions within ``rest``
        self.targets = targets

    def log_probs(self, rows: torch.Tensor) -> torch.Tensor:
        """F_k for a batch [b, m, d] of embeddings after the prefix: [b, T], float32."""
        count, length = rows.shape[:2]
        width = len(self.targets)
        mask = torch.ones((count, self.start + length), dtype=torch.long, device=rows.device)
        positions = torch.arange(self.start, self.start + length, device=rows.device)[None].expand(count, -1)
        output = self.model(
            inputs_embeds=rows.to(self.dtype), attention_mask=mask, position_ids=positions,
            cache=None if self.prefix is None else self.prefix.cache, use_cache=self.prefix is not None,
            logits_to_keep=width,
        )
        log_probs = output.logits.float().log_softmax(-1)
        return log_probs.gather(-1, self.targets.expand(count, width)[..., None])[..., 0]

    def gradients(self, rows: torch.Tensor, weights: torch.Tensor, on_backward: Callable[[int], None]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_i weights_i dF_k(rows_i) / d rows_i for every token k [T, m, d], F [b, T]): one forward pass and
        T backward passes through it; ``on_backward(rows)`` after each."""
        rows = rows.detach().requires_grad_()
        self.meter.purpose = "gradients"
        log_probs = self.log_probs(rows)
        last = log_probs.shape[1] - 1
        gradients = torch.zeros((last + 1, *rows.shape[1:]), device=rows.device)
        for k in range(last + 1):
            gradients[k] = torch.autograd.grad((weights * log_probs[:, k]).sum(), rows, retain_graph=k < last)[0].sum(0)
            self.meter.backward(rows.shape[0])
            on_backward(rows.shape[0])
        return gradients, log_probs.detach()


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``n_steps``-point Gauss-Legendre rule on [0, 1] (numpy's rule on [-1, 1], mapped)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return (nodes + 1) / 2, weights / 2


def integrated_gradients(
    model, embeddings: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor, reference: torch.Tensor | None,
    *, n_steps: int = 32, rows_per_pass: int = 8, reference_text: str = "zero embedding",
    on_backward: Callable[[int], None] = lambda rows: None,
) -> GenerationAttribution:
    """IG of every target's log-probability to every source (module docstring).

    ``embeddings`` [n, d]: the sequence's input embeddings; ``targets`` [T]: token ids predicted at the last T
    positions; ``sources`` [S]: the attributed positions; ``reference`` [d]: the filler embedding of x' (None:
    zero). The steps run ``rows_per_pass`` at a time; a pass that runs out of memory is retried with half
    (``audit.models.batching.retry_with_fewer_rows``).
    ``on_backward(rows)`` is called after every backward pass (progress).
    """
    started = time.perf_counter()
    with Meter(model) as meter:
        found = _integrated_gradients(model, embeddings, targets, sources, reference, n_steps, rows_per_pass,
                                      on_backward, meter)
    return GenerationAttribution(
        method="ig",
        params={"n_steps": n_steps, "method": "gausslegendre", "baseline": reference_text},
        matrix=found[0], log_probs=found[1], reference_log_probs=found[2],
        forward_rows=meter.forward_rows, backward_passes=meter.backward_passes,
        seconds=time.perf_counter() - started, chunks=meter.rows_with_gradients, cost=meter.record(),
    )


def _integrated_gradients(model, embeddings, targets, sources, reference, n_steps: int, rows_per_pass: int,
                          on_backward: Callable[[int], None], meter: Meter
                          ) -> tuple[list[list[float]], list[float], list[float]]:
    sequence = _Sequence(model, embeddings, targets, sources, meter)
    x = sequence.rest
    baseline = x.clone()
    baseline[sequence.sources] = 0.0 if reference is None else reference.float().to(x.device)
    delta = x - baseline
    alphas, weights = (torch.tensor(a, dtype=torch.float32, device=x.device) for a in gauss_legendre(n_steps))
    total = torch.zeros((len(targets), *x.shape), device=x.device)

    def chunk(start: int, rows: int) -> tuple[torch.Tensor, int]:
        """The weighted gradients of the steps ``start .. start + rows`` and how many steps that was."""
        inputs = baseline + alphas[start:start + rows, None, None] * delta
        return sequence.gradients(inputs, weights[start:start + rows], on_backward)[0], inputs.shape[0]

    done, rows = 0, rows_per_pass
    while done < n_steps:
        (gradients, ran), rows = retry_with_fewer_rows(partial(chunk, done), rows, lambda rows: meter.retry())
        total += gradients
        done += ran
    matrix = (total * delta).sum(-1)[:, sequence.sources]
    meter.purpose = "endpoints"
    with torch.no_grad():
        ends = sequence.log_probs(torch.stack([x, baseline]))
    return matrix.tolist(), ends[0].tolist(), ends[1].tolist()


def input_x_gradient(model, embeddings: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor,
                     on_backward: Callable[[int], None] = lambda rows: None) -> GenerationAttribution:
    """x_j . dF_k(x)/dx_j for every target k and source j: one forward pass, one backward pass per target."""
    started = time.perf_counter()
    with Meter(model) as meter:
        sequence = _Sequence(model, embeddings, targets, sources, meter)
        x = sequence.rest
        gradients, log_probs = sequence.gradients(x[None], torch.ones(1, device=x.device), on_backward)
    return GenerationAttribution(
        method="input-x-gradient", params={"reduction": "sum of x * dF/dx over the embedding dimension"},
        matrix=(gradients * x).sum(-1)[:, sequence.sources].tolist(), log_probs=log_probs[0].tolist(),
        reference_log_probs=None, forward_rows=meter.forward_rows, backward_passes=meter.backward_passes,
        seconds=time.perf_counter() - started, chunks=meter.rows_with_gradients, cost=meter.record(),
    )
