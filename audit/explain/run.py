"""``audit explain``: generate a chat answer and attribute every generated token to the prompt.

    validate inputs -> load the causal LM -> render the chat prompt -> greedy answer
    -> attribution of every token's log-probability (explainers.generation) -> explanation record
    -> HTML and PDF rendered from the record (audit.explain.report) -> atomic write

The record (``explanation.json``) is the contract between computing and presenting, as the evidence
bundle is for ``audit run``: the report is rendered from it alone, and ``audit report`` re-renders it
without the model. Every input is checked before the model is loaded and nothing is written until the
record and its report exist in memory, so bad input or a crash leaves no partial output.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError

from audit.evidence.revision import TOOL_NAME, TOOL_VERSION
from audit.errors import AuditError, ModelSpecError
from audit.evidence.files import check_output_dir, write_outputs
from audit.evidence.environment import environment
from audit.evidence.bundle import json_bytes, utc_now
from audit.options import ExplainOptions
from audit.models import load_model, parse_model_spec
from audit.models.loading import check_runtime, check_weights
from audit.progress import Progress, note
from audit.explain.report import EXPLANATION_FILE, KIND, SCHEMA_VERSION, render_explanation
from audit.text_safety import check_text
from explainers import generation as method
from explainers.base import seed_everything
from explainers.region import filler_token

HELD_FIXED = ("The chat markup and the system prompt are held fixed at their own embeddings: they are the same for "
              "every question put to this model, so only the text the user wrote and the answer's own tokens are "
              "attributed, as in the audit's attributions.")


@dataclass
class ExplainResult:
    record: dict[str, Any]
    paths: dict[str, Path]


@dataclass
class RenderedPrompt:
    """The chat prompt as token ids, with the tokens of the user's text and their characters in that text."""

    text: str
    ids: list[int]
    region: tuple[int, int]  # token positions [start, end) of the user's text
    chars: list[tuple[int, int]]  # per region token: its span in the user's text
    chat_template: bool


def explain(**flags: Any) -> ExplainResult:
    """``explain_answer`` with the options given as keyword arguments (``audit.options.ExplainOptions``)."""
    return explain_answer(ExplainOptions(**flags))


def explain_answer(options: ExplainOptions) -> ExplainResult:
    """Answer the prompt greedily with the model, attribute every answer token, write the record and report to
    ``options.out`` (explanation.json, explanation.html, explanation.pdf, manifest.sha256)."""
    started_at, started = utc_now(), time.monotonic()
    durations: dict[str, float] = {}
    text = _prompt_text(options.prompt, options.prompt_file)
    if options.method_name not in method.METHODS:
        raise AuditError(f"--method: must be one of {', '.join(method.METHODS)}, got {options.method_name!r}")
    check_runtime(options.device, options.dtype)
    check_output_dir(options.out)
    spec = parse_model_spec(options.model, options.base_model)
    check_weights(spec, options.allow_pickle)
    seed_everything(options.seed)

    stage = time.monotonic()
    loaded = _load_causal_lm(spec, options)
    durations["load_model"] = time.monotonic() - stage

    stage = time.monotonic()
    rendered = render_prompt(loaded.tokenizer, text, options.system)
    _check_context(loaded.model, len(rendered.ids), options.max_new_tokens)
    eos = eos_token_ids(loaded.tokenizer, loaded.model)
    note(f"answering greedily (at most {options.max_new_tokens} tokens)", quiet=options.quiet)
    with method.Meter(loaded.model) as generation_meter:
        generation_meter.purpose = "generation"
        generated = generate_greedy(loaded.model, rendered.ids, options.max_new_tokens, eos, loaded.tokenizer)
    generation_cost = generation_meter.forward.get("generation", {"passes": 0, "tokens": 0})
    durations["generate"] = time.monotonic() - stage

    stage = time.monotonic()
    attribution = attribute(loaded, rendered, generated, options.method_name, options.ig_steps, quiet=options.quiet)
    durations["attribute"] = time.monotonic() - stage

    answer, spans = answer_spans(loaded.tokenizer, generated)
    durations["total"] = time.monotonic() - started
    record = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "tool": {"name": TOOL_NAME, "version": TOOL_VERSION},
        "run": _run_record(options, started_at, durations),
        "model": loaded.fingerprint,
        "prompt": {"text": text, "system": options.system, "rendered": rendered.text,
                   "chat_template": rendered.chat_template, "n_tokens": len(rendered.ids),
                   "attributed_tokens": list(rendered.region)},
        "generation": {
            "strategy": "greedy: the most probable token at every step (no sampling, no repetition penalty)",
            "max_new_tokens": options.max_new_tokens, "eos_token_ids": sorted(eos),
            "stop_reason": "eos" if generated[-1] in eos else "max_new_tokens",
            "text": answer, "n_tokens": len(generated),
            # counted as they ran (explainers.generation.Meter): the prompt, then one new position per pass
            "forward_passes": generation_cost["passes"], "forward_tokens": generation_cost["tokens"],
        },
        "tokens": {
            "prompt": _token_rows(loaded.tokenizer, rendered.ids[slice(*rendered.region)], rendered.chars, text),
            "generated": _token_rows(loaded.tokenizer, generated, spans, answer),
        },
        "attribution": _attribution_record(attribution, rendered, len(generated)),
    }
    note("rendering the report", quiet=options.quiet)
    files = {EXPLANATION_FILE: json_bytes(record), **render_explanation(record)}
    return ExplainResult(record=record, paths=write_outputs(options.out, files))


def _load_causal_lm(spec, options: ExplainOptions):
    note(f"loading model {spec.text} ({spec.kind})", quiet=options.quiet)
    loaded = load_model(spec, device=options.device, dtype=options.dtype, allow_pickle=options.allow_pickle,
                        trust_remote_code=options.trust_remote_code,
                        log=lambda message: note(message, quiet=options.quiet))
    if loaded.family != "causal-lm":
        raise ModelSpecError(f"--model: {spec.text} is a sequence classifier; audit explain needs a causal LM")
    return loaded


def _run_record(options: ExplainOptions, started_at: str, durations: dict[str, float]) -> dict[str, Any]:
    return {
        "started_at": started_at,
        "finished_at": utc_now(),
        "durations_s": {k: round(v, 3) for k, v in durations.items()},
        "loading": {"allow_pickle": options.allow_pickle, "trust_remote_code": options.trust_remote_code,
                    "hub_offline": os.environ.get("HF_HUB_OFFLINE") == "1"},
        "environment": environment(seed=options.seed, device=options.device, dtype=options.dtype,
                                   command_line=options.command_line),
    }


def _prompt_text(prompt: str | None, prompt_file: str | Path | None) -> str:
    """The user's text from --prompt or --prompt-file (UTF-8), without surrounding whitespace."""
    if prompt is not None and prompt_file is not None:
        raise AuditError("--prompt-file: give either --prompt or --prompt-file, not both")
    if prompt_file is not None:
        path = Path(prompt_file)
        try:
            prompt = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AuditError(f"--prompt-file: {path} does not exist") from None
        except UnicodeDecodeError:
            raise AuditError(f"--prompt-file: {path} is not UTF-8 text") from None
        except OSError as exc:
            raise AuditError(f"--prompt-file: {path} cannot be read ({exc.strerror or exc})") from None
        flag = "--prompt-file"
    else:
        flag = "--prompt"
    if prompt is None:
        raise AuditError("--prompt: missing; give the question to answer with --prompt TEXT or --prompt-file PATH")
    if not prompt.strip():
        raise AuditError(f"{flag}: is empty")
    return check_text(prompt.strip(), flag, AuditError)


def render_prompt(tokenizer, text: str, system: str | None) -> RenderedPrompt:
    """The chat template's prompt for ``text`` (after ``system``), ready for the answer.

    The user's text is located as the occurrence whose removal leaves the template rendered with an empty user
    message, so a prompt that also appears in the system prompt or the markup is found where the user wrote it.
    Without a chat template the prompt is the system prompt, a blank line and the text, with the tokenizer's
    special tokens.
    """
    if getattr(tokenizer, "chat_template", None):
        def chat(content: str) -> str:
            messages = [{"role": "user", "content": content}]
            if system is not None:
                messages.insert(0, {"role": "system", "content": system})
            try:
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except TemplateError as exc:
                flag = "--system" if system is not None else "--model"
                raise AuditError(f"{flag}: the model's chat template refuses these messages ({exc})") from None

        prompt, empty, add_special = chat(text), chat(""), False
        start = prompt.rfind(text)
        while start >= 0 and prompt[:start] + prompt[start + len(text):] != empty:
            start = prompt.rfind(text, 0, start + len(text) - 1)
        if start < 0:
            raise ModelSpecError("--model: the chat template alters the prompt text; cannot locate it in the prompt")
    else:
        prompt = f"{system}\n\n{text}\n" if system else f"{text}\n"
        start, add_special = len(prompt) - len(text) - 1, True
    encoding = tokenizer(prompt, add_special_tokens=add_special, return_offsets_mapping=True)
    end = start + len(text)
    inside = [i for i, (s, e) in enumerate(encoding["offset_mapping"]) if e > s and s < end and e > start]
    chars = [(max(s, start) - start, min(e, end) - start) for s, e in encoding["offset_mapping"][inside[0]:inside[-1] + 1]]
    return RenderedPrompt(text=prompt, ids=list(encoding["input_ids"]), region=(inside[0], inside[-1] + 1),
                          chars=chars, chat_template=not add_special)


def _check_context(model, prompt_tokens: int, max_new_tokens: int) -> None:
    """The prompt and the answer must fit the positions the model learned."""
    context = getattr(model.config, "max_position_embeddings", None)
    if context is None:
        return
    if prompt_tokens >= context:
        raise AuditError(f"--prompt: the chat prompt has {prompt_tokens} tokens, but the model's context is {context} "
                         "tokens; shorten the prompt")
    if prompt_tokens + max_new_tokens > context:
        raise AuditError(f"--max-new-tokens: {max_new_tokens} new tokens after the {prompt_tokens}-token prompt exceed "
                         f"the model's context of {context} tokens; use at most {context - prompt_tokens}")


def eos_token_ids(tokenizer, model) -> set[int]:
    """Tokens that end an answer: the tokenizer's end-of-sequence token and the model's generation config's."""
    configured = model.generation_config.eos_token_id
    found = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def generate_greedy(model, prompt_ids: list[int], max_new_tokens: int, eos: set[int], tokenizer) -> list[int]:
    """Greedy decoding through ``model.generate`` with a generation config of our own, so a sampling or
    repetition-penalty default shipped with the model cannot change the answer; stops after an end token."""
    from transformers import GenerationConfig

    device = model.get_input_embeddings().weight.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=sorted(eos) or None, pad_token_id=pad)
    ids = torch.tensor([prompt_ids], device=device)
    with torch.no_grad():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return output[0, len(prompt_ids):].tolist()


def attribute(loaded, rendered: RenderedPrompt, generated: list[int], method_name: str, ig_steps: int,
              quiet: bool = False) -> method.GenerationAttribution:
    """Attribute every generated token's log-probability to the user's text and the tokens generated before it.

    The model reads the prompt and every generated token but the last (the last is never an input).
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    embedding = model.get_input_embeddings()
    sequence = torch.tensor(rendered.ids + generated[:-1], device=embedding.weight.device)
    sources = torch.tensor([*range(*rendered.region), *range(len(rendered.ids), len(sequence))],
                           device=sequence.device)
    targets = torch.tensor(generated, device=sequence.device)
    with torch.no_grad():
        embeddings = embedding(sequence).float()
    total = len(generated) * (ig_steps if method_name == "ig" else 1)
    note(f"attributing {len(generated)} tokens with {method.TITLES[method_name]}", quiet=quiet)
    with Progress("attribution", total, unit="token-steps", quiet=quiet) as progress:  # stopped on an error too
        if method_name == "input-x-gradient":
            return method.input_x_gradient(model, embeddings, targets, sources, on_backward=progress.advance)
        filler_id, _ = filler_token(tokenizer)
        reference = None if filler_id is None else embedding(torch.tensor(filler_id, device=sequence.device)).detach()
        reference_text = ("the zero embedding" if filler_id is None else
                          f"token {filler_id} ({tokenizer.decode([filler_id])!r})")
        rows = loaded.budget.rows(len(sequence) - rendered.region[0], context=len(sequence), gradients=True)
        return method.integrated_gradients(
            model, embeddings, targets, sources, reference, n_steps=ig_steps, rows_per_pass=rows,
            reference_text=f"the user's text and the generated tokens replaced by {reference_text}",
            on_backward=progress.advance,
        )


def answer_spans(tokenizer, generated: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The answer text (special tokens left out) and each generated token's character span in it.

    A token ends where the decoded answer up to it stops agreeing with the whole answer, so a token holding half
    of a multi-byte character gets an empty span and the token completing it gets the character.
    """
    answer = tokenizer.decode(generated, skip_special_tokens=True)
    spans, start = [], 0
    for k in range(1, len(generated) + 1):
        end = len(os.path.commonprefix([tokenizer.decode(generated[:k], skip_special_tokens=True), answer]))
        end = max(end, start)
        spans.append((start, end))
        start = end
    return answer, spans


def _token_rows(tokenizer, ids: list[int], spans: list[tuple[int, int]], text: str) -> list[dict[str, Any]]:
    strings = tokenizer.convert_ids_to_tokens(ids)
    return [{"id": i, "token": s, "text": text[a:b], "chars": [a, b]} for i, s, (a, b) in zip(ids, strings, spans)]


def _attribution_record(found: method.GenerationAttribution, rendered: RenderedPrompt, generated: int
                        ) -> dict[str, Any]:
    n_prompt = rendered.region[1] - rendered.region[0]
    return {
        "method": found.method,
        "title": method.TITLES[found.method],
        "params": found.params,
        "held_fixed": HELD_FIXED,
        "target": "log p(t_k | everything before it): the log-probability of each generated token, float32",
        "sources": [{"kind": "prompt", "index": i, "position": rendered.region[0] + i} for i in range(n_prompt)]
        + [{"kind": "generated", "index": k, "position": len(rendered.ids) + k} for k in range(generated - 1)],
        "matrix": found.matrix,
        "log_probs": found.log_probs,
        "reference_log_probs": found.reference_log_probs,
        "completeness": found.completeness(),
        "forward_rows": found.forward_rows,
        "backward_passes": found.backward_passes,
        "rows_per_pass": found.chunks,
        "cost": found.cost,
        "seconds": round(found.seconds, 3),
    }

