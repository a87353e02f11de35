"""The attributed region as a differentiable function of its embeddings.

Every method attributes the decision score F to the embeddings of the
case-text tokens only. ``Region`` holds the fixed embeddings before and after
the case text (chat markup, question, answer prefix), the case-text
embeddings x, and the reference input x' that replaces them: the embedding
of a neutral filler token (a lone space where the tokenizer has one, else
its padding token, else zero). ``Region.forward`` maps a batch of case-text
embeddings to decision scores, so captum methods see one plain tensor input.

Perturbation methods work on features, never half a word: ``feature_mask``
gives each token the index of its word (``unit="word"``) or of its slot, with
all words outside slots as one template feature (``unit="slot"``).

For a causal model the fixed text before the case text is run once
(``audit.models.prefix.PrefixCache``); each forward pass then runs only the
case text and what follows it. Passes without gradients go further: the case
text and the reference are each run once more into caches of their own, and a
perturbed row (a word removed, a coalition of features kept) runs only from
the first token where it leaves the one of them it shares the longer start
with. Feature ablation of the k-th word thus skips the k-1 words before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch

from audit.models.prefix import PrefixCache

UNITS = ("word", "slot")


def filler_token(tokenizer) -> tuple[int | None, str]:
    """The neutral token that replaces the case text in the reference input, and its description."""
    ids = tokenizer.encode(" ", add_special_tokens=False)
    if len(ids) == 1:
        return ids[0], f"case-text tokens replaced by the space token (id {ids[0]})"
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id, f"case-text tokens replaced by the padding token (id {tokenizer.pad_token_id})"
    return None, "case-text tokens replaced by the zero embedding"


@dataclass
class Region:
    adapter: object
    encoded: object
    before: torch.Tensor  # [1, s, d] fixed
    region: torch.Tensor  # [1, n, d] attributed
    after: torch.Tensor  # [1, t, d] fixed
    reference: torch.Tensor  # [1, n, d] the reference input x'
    reference_text: str
    prefix: PrefixCache | None = None  # keys and values of ``before``, where the model is causal

    @classmethod
    def of(cls, adapter, encoded) -> "Region":
        start, end = encoded.region
        input_ids = encoded.input_ids[None].to(adapter.device)
        with torch.no_grad():
            embeddings = adapter.embedding_layer(input_ids).float()
        region = embeddings[:, start:end]
        filler_id, reference_text = filler_token(adapter.tokenizer)
        if filler_id is None:
            reference = torch.zeros_like(region)
        else:
            with torch.no_grad():
                filler = adapter.embedding_layer(torch.tensor([[filler_id]], device=adapter.device)).float()
            reference = filler.expand_as(region).clone()
        before = embeddings[:, :start]
        prefix = None
        if adapter.supports_prefix_cache and start > 0:
            prefix = PrefixCache.of(adapter.model, before.to(next(adapter.model.parameters()).dtype))
        return cls(
            adapter=adapter, encoded=encoded, before=before, region=region, after=embeddings[:, end:],
            reference=reference, reference_text=reference_text, prefix=prefix,
        )

    def with_region(self, embeddings: torch.Tensor) -> "Region":
        """The same prompt with other case-text embeddings [1, n, d] (a perturbed input); the prefix still holds."""
        return replace(self, region=embeddings)

    @property
    def rows_per_batch(self) -> int:
        """How many rows one forward pass may take (``audit.models.batching``): fewer where autograd is recording,
        since a backward pass keeps every layer's activations."""
        new_tokens = self.encoded.length - (self.prefix.length if self.prefix is not None else 0)
        return self.adapter.budget.rows(new_tokens, context=self.encoded.length)

    def forward(self, region_embeddings: torch.Tensor) -> torch.Tensor:
        """Decision scores [batch] for a batch of case-text embeddings [batch, n, d].

        Without autograd a batch that runs out of memory is split and retried; with autograd the caller
        shrinks its batches (splitting inside one graph would keep both halves' activations anyway).
        """
        if torch.is_grad_enabled():
            return self._scores(region_embeddings)
        run = self._anchored_scores if self.prefix is not None else self._scores
        return self.adapter.budget.split_on_out_of_memory(run, region_embeddings, "attribution")

    def _scores(self, region_embeddings: torch.Tensor) -> torch.Tensor:
        rows = region_embeddings.shape[0]
        dtype = next(self.adapter.model.parameters()).dtype
        if self.prefix is not None:
            rest = torch.cat([region_embeddings, self.after.expand(rows, -1, -1)], dim=1)
            return self.adapter.score(inputs_embeds=rest.to(dtype), prefix=self.prefix)
        full = torch.cat(
            [self.before.expand(rows, -1, -1), region_embeddings, self.after.expand(rows, -1, -1)], dim=1
        )
        return self.adapter.score(inputs_embeds=full.to(dtype))

    @cached_property
    def _anchors(self) -> list[tuple[torch.Tensor, PrefixCache]]:
        """The case text [n, d] and the reference [n, d], each with the keys and values of the prompt up to the
        region's end."""
        dtype = next(self.adapter.model.parameters()).dtype
        return [(known[0], self.prefix.extended(self.adapter.model, known.to(dtype)))
                for known in (self.region, self.reference)]

    def _anchored_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """Scores without gradients; each row runs only from its first token that differs from the anchor (case
        text or reference) it shares the longer start with, reading the anchor's keys and values before it."""
        length, after = rows.shape[1], self.after.shape[1]
        last_start = length if after else length - 1  # at least one token runs
        plans: dict[tuple[int, int], list[int]] = {}
        for row_index, row in enumerate(rows):
            best = (0, 0)
            for anchor_index, (known, _) in enumerate(self._anchors):
                differs = (row != known).any(-1).nonzero()
                shared = min(int(differs[0]) if len(differs) else length, last_start)
                best = max(best, (shared, anchor_index))
            plans.setdefault(best, []).append(row_index)
        dtype = next(self.adapter.model.parameters()).dtype
        scores = torch.empty(rows.shape[0], device=rows.device)
        for (shared, anchor_index), members in plans.items():
            prefix = self._anchors[anchor_index][1].sliced(self.prefix.length + shared) if shared else self.prefix
            running = length - shared + after
            per_pass = self.adapter.budget.rows(running, context=prefix.length + running)
            for chunk in torch.split(torch.tensor(members, device=rows.device), per_pass):
                rest = torch.cat([rows[chunk, shared:], self.after.expand(len(chunk), -1, -1)], dim=1)
                scores[chunk] = self.adapter.score(inputs_embeds=rest.to(dtype), prefix=prefix).to(scores.dtype)
        return scores

    @torch.no_grad()
    def scores_of_input_and_reference(self) -> tuple[float, float]:
        scores = self.forward(torch.cat([self.region, self.reference]))
        return float(scores[0]), float(scores[1])

    def features(self, unit: str) -> tuple[torch.Tensor, list[list[int]]]:
        """(feature mask [1, n, 1] of feature ids per token, the word indices of each feature)."""
        words = self.encoded.words
        if unit == "word":
            groups = [[i] for i in range(len(words))]
        elif unit == "slot":
            slots = list(dict.fromkeys(w.slot for w in words if w.slot is not None))
            groups = [[i for i, w in enumerate(words) if w.slot == s] for s in slots]
            template = [i for i, w in enumerate(words) if w.slot is None]
            if template:
                groups.append(template)
        else:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        mask = torch.zeros(len(self.encoded.tokens), dtype=torch.long)
        for feature, word_indices in enumerate(groups):
            for w in word_indices:
                mask[list(words[w].tokens)] = feature
        return mask.view(1, -1, 1).to(self.region.device), groups

    def spread(self, feature_scores: list[float], groups: list[list[int]]) -> list[float]:
        """Token scores from feature scores: each feature's score split evenly over its tokens."""
        token_scores = [0.0] * len(self.encoded.tokens)
        for score, word_indices in zip(feature_scores, groups):
            tokens = [t for w in word_indices for t in self.encoded.words[w].tokens]
            for t in tokens:
                token_scores[t] = score / len(tokens)
        return token_scores
