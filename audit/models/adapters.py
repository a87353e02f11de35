"""One view of any model: encode a case, score a decision.

The decision score is the log-odds of the favourable against the
unfavourable answer,

    s(x) = log sum_{v in V+} p(v | x) - log sum_{v in V-} p(v | x),

read at the answer position for a causal LM (V+/V- are the single-token case
and leading-space variants of the answer words, the verbaliser of Schick &
Schuetze 2021) and from the label logits of a sequence classifier, where it
reduces to the logit margin z+ - z-. The answer mass p(V+) + p(V-) tells how
much of the model's next-token distribution is a Yes/No answer at all; a low
mass makes the decision unreliable.

Explainers see only this interface (``encode``, ``score``, ``embedding_layer``,
``decoder_layers``), so every method works on both families.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import torch

from audit.errors import ModelSpecError, SuiteError
from audit.models.batching import BatchBudget, token_budget_batches
from audit.models.loading import LoadedModel
from audit.models.prefix import PrefixCache
from audit.suites.expand import Case
from audit.suites.schema import Suite
from explainers.spans import Word, align_words, slot_token_spans

PROMPT_DATE = datetime.date(2026, 1, 1)  # the date every chat template is rendered with (fixed_date_variables)
MIN_PREFIX_TOKENS = 8  # below this a shared prefix saves less than its own forward pass costs


@dataclass
class Encoded:
    """A case as token ids, with the attributed region and its words and slots.

    ``region`` is the token range ``[start, end)`` covering the case text: the
    part a user wrote, which explainers attribute. Chat markup, system prompt,
    question and answer prefix lie outside it and are held fixed.
    """

    case: Case
    prompt: str
    input_ids: torch.Tensor  # [seq]
    region: tuple[int, int]
    tokens: list[str]  # token strings of the region, for display
    token_chars: list[tuple[int, int]]  # char spans of region tokens in case.text
    words: list[Word]
    slot_tokens: dict[str, list[int]]  # indices into the region's tokens

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class Verbaliser:
    favourable: dict[int, str] = field(default_factory=dict)
    unfavourable: dict[int, str] = field(default_factory=dict)


class Adapter:
    """Shared machinery: batching, padding and the decision read-out."""

    family = ""
    padding_side = "right"
    supports_prefix_cache = False  # only causal models: a prefix's keys and values ignore what follows

    def __init__(self, loaded: LoadedModel, suite: Suite):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.fingerprint = loaded.fingerprint
        self.suite = suite
        self.device = self.embedding_layer.weight.device  # where inputs enter (a device map may spread the rest)
        self.budget = loaded.budget or BatchBudget.for_model(self.model)
        self.pad_id = next(
            (t for t in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id) if t is not None), 0
        )

    # -- subclasses -------------------------------------------------------
    def render(self, text: str) -> tuple[str, int, bool]:
        """The full prompt, the character offset of the case text in it, and whether to add special tokens."""
        raise NotImplementedError

    def read_out(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(decision score, answer mass) per row from the model's output logits."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------
    @property
    def embedding_layer(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    @property
    def decoder_layers(self) -> list[torch.nn.Module]:
        base = getattr(self.model, self.model.base_model_prefix, self.model)
        for path in ("layers", "encoder.layer", "transformer.layer", "h", "decoder.layers"):
            module = base
            for part in path.split("."):
                module = getattr(module, part, None)
            if module is not None:
                return list(module)
        raise ModelSpecError(f"--model: cannot find the transformer layers of {type(self.model).__name__}")

    def encode(self, case: Case) -> Encoded:
        prompt, text_start, add_special = self.render(case.text)
        encoding = self.tokenizer(prompt, add_special_tokens=add_special, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        self._check_context(len(ids), case)
        offsets = encoding["offset_mapping"]
        text_end = text_start + len(case.text)
        inside = [
            i for i, (s, e) in enumerate(offsets) if e > s and s < text_end and e > text_start
        ]
        region = (inside[0], inside[-1] + 1)
        token_chars = [
            (max(s, text_start) - text_start, min(e, text_end) - text_start)
            for s, e in offsets[region[0] : region[1]]
        ]
        return Encoded(
            case=case,
            prompt=prompt,
            input_ids=torch.tensor(ids, dtype=torch.long),
            region=region,
            tokens=self.tokenizer.convert_ids_to_tokens(ids[region[0] : region[1]]),
            token_chars=token_chars,
            words=align_words(case.text, token_chars, case.slots),
            slot_tokens=slot_token_spans(token_chars, case.slots),
        )

    def read_out_position(self, encoded: Encoded) -> int:
        """The position whose final state the decision is read from."""
        return encoded.length - 1

    def _check_context(self, length: int, case: Case) -> None:
        """A prompt past the model's position embeddings would be read with positions it never learned."""
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context is not None and length > context:
            raise ModelSpecError(
                f"--model: {self.loaded.spec.text} has a context of {context} tokens, but the prompt of case "
                f"{case.case_id} of suite {self.suite.id} has {length}; shorten the suite's prompt or use a model with a "
                "longer context"
            )

    def _pad(self, rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, item in enumerate(rows):
            if self.padding_side == "left":
                ids[row, width - len(item) :] = item
                mask[row, width - len(item) :] = 1
            else:
                ids[row, : len(item)] = item
                mask[row, : len(item)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def forward_logits(self, input_ids=None, inputs_embeds=None, attention_mask=None, prefix=None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, input_ids=None, inputs_embeds=None, attention_mask=None, prefix=None) -> torch.Tensor:
        """Decision score per row (float32); differentiable with respect to ``inputs_embeds``.

        ``prefix`` (a ``PrefixCache``, causal models only) holds the prompt before these rows' tokens.
        """
        logits = self.forward_logits(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, prefix=prefix
        )
        return self.read_out(logits)[0]

    @torch.inference_mode()
    def decide(self, encoded: list[Encoded], batch_tokens: int | None = None, progress=None, recorder=None):
        """Scores and answer masses of many cases, batched by a token budget (similar lengths together).

        For a causal model the cases of one scenario share their prompt up to the first varying slot; that
        prefix runs once per scenario (``audit.models.prefix``) and each batch runs only the rest. The budget
        comes from ``self.budget`` (free memory, capped on a CPU) unless ``batch_tokens`` is given; a batch
        that runs out of memory is split and retried. ``recorder`` (``explainers.hidden.HiddenStateRecorder``)
        keeps hidden states of the same passes.
        """
        scores = [0.0] * len(encoded)
        masses = [0.0] * len(encoded)
        earliest = recorder.earliest if recorder is not None else (lambda e: e.length)
        for members, prefix in self._prefix_groups(encoded, earliest):
            start = prefix.length if prefix is not None else 0
            rests = [encoded[i].input_ids[start:] for i in members]
            longest = max(len(r) for r in rests)
            budget = batch_tokens or self.budget.rows(longest, context=start + longest, gradients=False) * longest

            def run(chunk: list[int]) -> torch.Tensor:
                padded = self._pad([rests[i] for i in chunk])
                if recorder is None:
                    logits = self.forward_logits(**padded, prefix=prefix)
                else:
                    width = padded["input_ids"].shape[1]
                    pad = [width - len(rests[i]) if self.padding_side == "left" else 0 for i in chunk]
                    with recorder.recording([encoded[members[i]] for i in chunk], [p - start for p in pad]):
                        logits = self.forward_logits(**padded, prefix=prefix)
                return torch.stack(self.read_out(logits), dim=1)

            for chunk in token_budget_batches([len(r) for r in rests], budget):
                read = self.budget.split_on_out_of_memory(run, chunk, "scoring")
                for i, (s, m) in zip(chunk, read.tolist()):
                    scores[members[i]], masses[members[i]] = s, m
                if progress is not None:
                    progress.advance(len(chunk))
        return scores, masses

    def _prefix_groups(self, encoded: list[Encoded], earliest):
        """(case indices, shared prefix or None) per scenario; all cases in one group where no cache applies.

        The prefix ends before ``earliest(case)`` of every member: positions a recorder reads must be run.
        """
        if not self.supports_prefix_cache:
            yield list(range(len(encoded))), None
            return
        groups: dict[str, list[int]] = {}
        for index, item in enumerate(encoded):
            groups.setdefault(item.case.scenario_id, []).append(index)
        for members in groups.values():
            ids = [encoded[i].input_ids for i in members]
            length = min(min(len(i) - 1, earliest(encoded[m])) for i, m in zip(ids, members))
            for other in ids[1:]:
                differs = (ids[0][:length] != other[:length]).nonzero()
                length = int(differs[0]) if len(differs) else length
            if length < MIN_PREFIX_TOKENS:
                yield members, None
                continue
            embeddings = self.embedding_layer(ids[0][None, :length].to(self.device))
            yield members, PrefixCache.of(self.model, embeddings)

class DecisionAdapter(Adapter):
    """A causal LM answering the suite's question through its chat template."""

    family = "causal-lm"
    # Right padding: a row's tokens keep the indices they have alone. Sliding-window attention (Mistral, Gemma 2
    # and 3) masks by index, so a left-padded row would see fewer real tokens in its window than alone.
    padding_side = "right"
    supports_prefix_cache = True

    def __init__(self, loaded: LoadedModel, suite: Suite):
        if not suite.question and suite.prompt_template is None:
            raise SuiteError(f"{suite.id}: question: is required to audit a causal LM (only a sequence classifier, "
                             "which reads the case text alone, does without one)")
        super().__init__(loaded, suite)
        self.verbaliser = build_verbaliser(self.tokenizer, suite)
        self._favourable = torch.tensor(sorted(self.verbaliser.favourable), device=self.device)
        self._unfavourable = torch.tensor(sorted(self.verbaliser.unfavourable), device=self.device)

    def user_message(self, text: str) -> str:
        return f"{text}\n\n{self.suite.question}"

    @property
    def prompt_form(self) -> str:
        """How prompts are written: the suite's own template, the model's chat template, or plain text."""
        if self.suite.prompt_template is not None:
            return "suite prompt template"
        return "chat template" if getattr(self.tokenizer, "chat_template", None) else "plain prompt"

    def render(self, text: str) -> tuple[str, int, bool]:
        if self.suite.prompt_template is not None:  # the suite writes the whole prompt (an imported benchmark's)
            rendered = self.suite.render_prompt(text)
            # As lm-evaluation-harness encodes a context: the tokenizer's own special tokens (the BOS of Llama,
            # Gemma and Mistral tokenizers; nothing for Qwen's), none where the prompt already starts with BOS.
            bos = self.tokenizer.bos_token
            return rendered, rendered.index(text), not (bos and rendered.startswith(bos))
        user = self.user_message(text)
        messages = [{"role": "user", "content": user}]
        if self.suite.system_prompt:
            messages.insert(0, {"role": "system", "content": self.suite.system_prompt})
        if getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **fixed_date_variables())
            add_special = False  # the template writes its own BOS where the model wants one
        else:
            system = f"{self.suite.system_prompt}\n\n" if self.suite.system_prompt else ""
            rendered = f"{system}{user}\n"
            add_special = True
        start = rendered.find(text)
        if start < 0:
            raise ModelSpecError("--model: the chat template altered the case text; cannot locate it in the prompt")
        return rendered + self.suite.answer_prefix, start, add_special

    def forward_logits(self, input_ids=None, inputs_embeds=None, attention_mask=None, prefix=None) -> torch.Tensor:
        reference = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        last = attention_mask.sum(-1, keepdim=True) - 1  # [rows, 1]: each row's answer position (right padding)
        cache = None
        if prefix is not None:
            rows = reference.shape[0]
            position_ids = position_ids + prefix.length
            attention_mask = torch.cat(
                [torch.ones((rows, prefix.length), dtype=attention_mask.dtype, device=attention_mask.device),
                 attention_mask], dim=1,
            )
            cache = prefix.cache
        output = self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=prefix is not None,
            logits_to_keep=last,
        )
        return output.logits[:, -1, :].float()

    def read_out(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = logits.log_softmax(-1)
        favourable = logp[:, self._favourable].logsumexp(-1)
        unfavourable = logp[:, self._unfavourable].logsumexp(-1)
        mass = favourable.exp() + unfavourable.exp()
        return favourable - unfavourable, mass

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "read_out": "log sum p(favourable variants) - log sum p(unfavourable variants) at the answer position",
            "verbaliser": {
                "favourable": [{"id": i, "text": t} for i, t in sorted(self.verbaliser.favourable.items())],
                "unfavourable": [{"id": i, "text": t} for i, t in sorted(self.verbaliser.unfavourable.items())],
            },
            "system_prompt": self.suite.system_prompt,
            "answer_prefix": self.suite.answer_prefix,
            "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
            "prompt_form": self.prompt_form,
            "prompt_date": PROMPT_DATE.isoformat() if self.prompt_form == "chat template" else None,
        }


class ClassifierAdapter(Adapter):
    """A sequence classifier whose label names include the suite's answer words.

    An encoder (BERT, RoBERTa, DeBERTa, DistilBERT, ...) reads its decision from the first token ([CLS], <s>); a
    decoder with a classification head (``LlamaForSequenceClassification`` and its kin, whose head is ``score``)
    from the last token that is not padding. Rows are padded on the right, so a decoder's real tokens keep their
    positions, and the model is told the padding id, which it needs to find each row's last token.
    """

    family = "classifier"
    padding_side = "right"

    def __init__(self, loaded: LoadedModel, suite: Suite):
        super().__init__(loaded, suite)
        self.reads_last_token = getattr(self.model, "score", None) is not None and not hasattr(self.model, "classifier")
        if self.reads_last_token and self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.pad_id
        labels = {str(name).lower(): int(i) for i, name in self.model.config.id2label.items()}
        self.labels = dict(self.model.config.id2label)

        def index(words: tuple[str, ...], field_name: str) -> int:
            for word in words:
                if word.lower() in labels:
                    return labels[word.lower()]
            raise SuiteError(
                f"{suite.id}: answers.{field_name}: none of {list(words)} is a label of the model "
                f"(labels: {', '.join(map(str, self.labels.values()))}); a classifier needs a suite whose answers name "
                "its labels, e.g. examples/classifier/loan-officer-notes.yaml"
            )

        self.favourable_index = index(suite.answers.favourable, "favourable")
        self.unfavourable_index = index(suite.answers.unfavourable, "unfavourable")

    def render(self, text: str) -> tuple[str, int, bool]:
        return text, 0, True

    def read_out_position(self, encoded: Encoded) -> int:
        return encoded.length - 1 if self.reads_last_token else 0

    def forward_logits(self, input_ids=None, inputs_embeds=None, attention_mask=None, prefix=None) -> torch.Tensor:
        if prefix is not None:
            raise ValueError("a bidirectional classifier cannot reuse a prefix cache")
        output = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return output.logits.float()

    def read_out(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = logits.softmax(-1)
        margin = logits[:, self.favourable_index] - logits[:, self.unfavourable_index]
        mass = probabilities[:, self.favourable_index] + probabilities[:, self.unfavourable_index]
        return margin, mass

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "read_out": "logit(favourable label) - logit(unfavourable label)",
            "read_out_token": "last" if self.reads_last_token else "first ([CLS])",
            "labels": {str(k): v for k, v in self.labels.items()},
            "favourable_label": self.labels[self.favourable_index],
            "unfavourable_label": self.labels[self.unfavourable_index],
        }


def fixed_date_variables() -> dict[str, Any]:
    """Template variables that pin the date a chat template writes (Llama 3.1 and later write "Today Date: ..."
    from ``strftime_now``, unless ``date_string`` is given), so that two runs on different days render the same
    prompt. Passed as render variables, they shadow transformers' ``strftime_now`` global."""
    return {"date_string": PROMPT_DATE.strftime("%d %b %Y"), "strftime_now": PROMPT_DATE.strftime}


def build_verbaliser(tokenizer, suite: Suite) -> Verbaliser:
    """Single-token case and leading-space variants of each answer word (with ``answer_forms: exact``, each word
    only as written, every one a single token); none at all is a suite error."""

    exact = suite.answer_forms == "exact"

    def variants(words: tuple[str, ...], field_name: str) -> dict[int, str]:
        found: dict[int, str] = {}
        for word in words:
            forms = (word,) if exact else (word, word.lower(), word.capitalize(), word.upper())
            for form in dict.fromkeys(forms):
                for spaced in (form,) if exact else (form, " " + form):
                    ids = tokenizer.encode(spaced, add_special_tokens=False)
                    if len(ids) == 1:
                        found.setdefault(ids[0], spaced)
        missing = [w for w in words if exact and w not in found.values()]
        if missing:
            raise SuiteError(f"{suite.id}: answers.{field_name}: {missing[0]!r} is not a single token for this "
                             "tokenizer, and answer_forms: exact scores each answer as one token")
        if not found:
            raise SuiteError(
                f"{suite.id}: answers.{field_name}: no form of {list(words)} is a single token for this tokenizer"
            )
        return found

    favourable = variants(suite.answers.favourable, "favourable")
    unfavourable = variants(suite.answers.unfavourable, "unfavourable")
    shared = set(favourable) & set(unfavourable)
    if shared:
        raise SuiteError(f"{suite.id}: answers: favourable and unfavourable share the token {favourable[min(shared)]!r}")
    return Verbaliser(favourable=favourable, unfavourable=unfavourable)


def make_adapter(loaded: LoadedModel, suite: Suite) -> Adapter:
    return ClassifierAdapter(loaded, suite) if loaded.family == "classifier" else DecisionAdapter(loaded, suite)
