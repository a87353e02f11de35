"""Hidden states of every layer at chosen positions, recorded during the forward passes the audit runs anyway.

The audit scores every case once (``Adapter.decide``); a ``HiddenStateRecorder``
passed to it hooks the embedding layer and every transformer layer and keeps,
for each case and each named set of positions (the answer position, the
tokens of a protected attribute's slot), the mean hidden state over those
positions at every depth: an array [layers + 1, d] in float32 on the CPU.
Probes and the logit lens read these arrays; nothing runs a second forward
pass, and only the positions asked for are kept, so memory grows with cases x
layers x position sets x d, not with the prompt length.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch

Positions = Callable[[object], dict[str, list[int]]]  # Encoded -> {name: absolute token positions}


def answer_and_slot_positions(adapter, slots: set[str] | None = None) -> Positions:
    """The read-out position (the answer position of a causal LM, [CLS] of an encoder classifier) and the tokens of each
    slot in ``slots`` (every slot when None)."""

    def positions(encoded) -> dict[str, list[int]]:
        start = encoded.region[0]
        found = {"answer": [adapter.read_out_position(encoded)]}
        for slot, tokens in encoded.slot_tokens.items():
            if tokens and (slots is None or slot in slots):
                found[f"slot:{slot}"] = [start + t for t in tokens]
        return found

    return positions


def input_block(adapter) -> torch.nn.Module:
    """The module whose output is the residual stream before the first layer (BERT adds positions and a norm)."""
    model = adapter.model
    block = getattr(getattr(model, model.base_model_prefix, model), "embeddings", None)
    return block if isinstance(block, torch.nn.Module) else adapter.embedding_layer


class HiddenStateRecorder:
    def __init__(self, adapter, positions: Positions):
        self.layers = [input_block(adapter), *adapter.decoder_layers]
        self.positions = positions
        self.states: dict[str, dict[str, np.ndarray]] = {}  # case id -> position set -> [layers + 1, d]

    def earliest(self, encoded) -> int:
        """The first absolute position this recorder needs from a case (a shared prefix must end before it)."""
        return min(p for found in self.positions(encoded).values() for p in found)

    @contextlib.contextmanager
    def recording(self, rows: list, offsets: list[int]) -> Iterator[None]:
        """Record during one batched forward pass; absolute position p of row r sits at index p + offsets[r]."""
        wanted = [self.positions(e) for e in rows]
        collected: list[dict[str, list]] = [{name: [None] * len(self.layers) for name in found} for found in wanted]

        def hook(depth: int):
            def record(module, args, output):
                hidden = output[0] if isinstance(output, tuple) else output
                for row, found in enumerate(wanted):
                    for name, positions in found.items():
                        index = torch.tensor([p + offsets[row] for p in positions], device=hidden.device)
                        collected[row][name][depth] = hidden[row, index].float().mean(0).cpu().numpy()
            return record

        handles = [layer.register_forward_hook(hook(depth)) for depth, layer in enumerate(self.layers)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        for encoded, found in zip(rows, collected):
            self.states[encoded.case.case_id] = {name: np.stack(layers) for name, layers in found.items()}
