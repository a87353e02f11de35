"""explanation.json -> explanation.html (jinja2, autoescaped) -> explanation.pdf, from the record alone.

Rendered like the audit report (``audit.report``): the same stylesheet, the same URL fetcher limited to
``report_templates/``, jinja2's autoescape for every string of the prompt, the answer and the model, and PDF
dates fixed from the record, so the same record always renders the same bytes. Nothing here touches the
model: ``audit report explain-out`` re-renders an explanation without weights.

What the view computes from the record: the heatmap's columns (one per attributed token; a prompt too long
for ``MAX_COLUMNS`` is summed to words, and where those are still too many only the words with the largest
total |attribution| are drawn), the shaded prompt and answer-so-far of the first ``CARDS`` tokens, and per
token the completeness gap and the share of |attribution| on the prompt and on earlier answer tokens.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from markupsafe import Markup

from audit import charts
from audit.errors import BundleError
from audit.evidence import BUNDLE_FILE, json_bytes, read_json, schema_problem, write_outputs
from audit.report_view import ATTRIBUTION_PARAM_LABELS, NA, shade
from explainers.spans import align_words

SCHEMA_VERSION = "1.0"
SUPPORTED_SCHEMAS = ("1.0",)
KIND = "generation-explanation"
EXPLANATION_FILE = "explanation.json"
TEMPLATE = "explain.html.j2"
HTML_FILE = "explanation.html"
PDF_FILE = "explanation.pdf"
MAX_COLUMNS = 72  # heatmap columns: beyond them the prompt's tokens are summed to words, then the weakest left out
MAX_ROWS = 48  # heatmap rows (generated tokens) drawn; every token stays in the tables
CARDS = 12  # tokens shown with their shaded prompt and answer so far
TOP_SOURCES = 5
LARGE_GAP = 0.10  # relative completeness gap above which a token's IG is flagged
SATURATION_PERCENTILE = 99


def read_explanation(path: str | Path) -> dict[str, Any]:
    """The record of ``path`` (explanation.json, or the folder holding it), its schema checked."""
    path = Path(path)
    if path.is_dir():
        path = path / EXPLANATION_FILE
    if not path.is_file():
        raise BundleError(f"{path}: no explanation there")
    record = read_json(path)
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise BundleError(f"{path}: is not an explanation of a generated answer (kind {KIND!r})")
    if record.get("schema_version") not in SUPPORTED_SCHEMAS:
        raise BundleError(f"{path}: schema_version {record.get('schema_version')!r} is not supported "
                          f"(supported: {', '.join(SUPPORTED_SCHEMAS)})")
    problem = schema_problem(record, "explanation") or _inconsistency(record)
    if problem is not None:
        raise BundleError(f"{path}: {problem}")
    return record


def _inconsistency(record: dict[str, Any]) -> str | None:
    """What the JSON Schema cannot say: the lengths and indices that must agree across fields."""
    tokens, attribution = record["tokens"], record["attribution"]
    rows, sources = len(tokens["generated"]), attribution["sources"]
    texts = {"prompt": record["prompt"]["text"], "answer": record["generation"]["text"]}
    for name, kind in (("prompt", "prompt"), ("generated", "answer")):
        for index, token in enumerate(tokens[name]):
            start, end = token["chars"]
            if not start <= end <= len(texts[kind]):
                return f"tokens.{name}[{index}].chars: {token['chars']} is outside the {kind}'s text"
    for index, source in enumerate(sources):
        pool = tokens["prompt"] if source["kind"] == "prompt" else tokens["generated"]
        if not 0 <= source["index"] < len(pool):
            return f"attribution.sources[{index}].index: {source['index']} names no {source['kind']} token"
    if len(attribution["matrix"]) != rows or any(len(row) != len(sources) for row in attribution["matrix"]):
        return f"attribution.matrix: must have one row per generated token ({rows}) of one cell per source " \
               f"({len(sources)})"
    for name in ("log_probs", "reference_log_probs", "completeness"):
        if attribution[name] is not None and len(attribution[name]) != rows:
            return f"attribution.{name}: has {len(attribution[name])} entries for {rows} generated tokens"
    return None


def holds_explanation(path: Path) -> bool:
    """Whether ``audit report PATH`` means an explanation: explanation.json, or a folder with it and no bundle."""
    if path.is_dir():
        return (path / EXPLANATION_FILE).is_file() and not (path / BUNDLE_FILE).is_file()
    return path.name == EXPLANATION_FILE


def rerender(path: Path, out: Path | None = None) -> dict[str, Path]:
    """Render the explanation at ``path`` again into ``out`` (default: its folder), without the model."""
    record = read_explanation(path)
    folder = out or (path if path.is_dir() else path.parent)
    return write_outputs(folder, {EXPLANATION_FILE: json_bytes(record), **render_explanation(record)})


def render_explanation(record: dict[str, Any]) -> dict[str, bytes]:
    """explanation.html and explanation.pdf of ``record``."""
    from audit.report import environment, render_pdf

    html = environment().get_template(TEMPLATE).render(**explanation_context(record))
    return {HTML_FILE: html.encode("utf-8"), PDF_FILE: render_pdf(html, record["run"]["finished_at"])}


# ---------------------------------------------------------------- the view


def label(token: dict[str, Any], width: int = 14) -> str:
    """A token as a short visible label: its text without surrounding spaces, ↵ for a line break, ␣ for a space;
    a token without text of its own (a special token, half a character) shows the tokenizer's string."""
    text = token["text"] or token["token"]
    shown = text.strip().replace("\n", "↵") or ("↵" if "\n" in text else "␣")
    return shown if len(shown) <= width else shown[: width - 1] + "…"


class _View:
    """The record's attribution as arrays: rows are generated tokens, columns sources."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
        attribution = record["attribution"]
        self.prompt_tokens = record["tokens"]["prompt"]
        self.generated = record["tokens"]["generated"]
        self.sources = attribution["sources"]
        self.n_prompt = sum(s["kind"] == "prompt" for s in self.sources)
        self.matrix = np.array(attribution["matrix"], dtype=float).reshape(len(self.generated), len(self.sources))
        # an answer token reaches token k only when it came before it; the prompt (-1 here) reaches every token
        answer_index = np.array([-1 if s["kind"] == "prompt" else s["index"] for s in self.sources])
        self.reachable = answer_index[None, :] < np.arange(len(self.generated))[:, None]

    def token(self, source: int) -> dict[str, Any]:
        found = self.sources[source]
        return (self.prompt_tokens if found["kind"] == "prompt" else self.generated)[found["index"]]

    def columns(self, rows: int) -> tuple[list[str], list[list[int]], int, str | None]:
        """(labels, the sources summed in each column, columns of the prompt, a note on aggregation) of a map of
        the first ``rows`` tokens. The answer keeps one column per token (the tokens before the last row); the
        prompt too where it fits, else its tokens are summed to words, and only the strongest words are kept
        where those do not fit either."""
        answer = list(range(self.n_prompt, self.n_prompt + min(len(self.sources) - self.n_prompt, rows - 1)))
        budget = MAX_COLUMNS - len(answer)
        note = None
        if self.n_prompt <= budget:
            prompt = [(label(self.token(j)), [j]) for j in range(self.n_prompt)]
        else:
            prompt = self._words(self.record["prompt"]["text"], self.prompt_tokens)
            note = (f"The user's text has {self.n_prompt} tokens: they are summed to its {len(prompt)} words "
                    "(attributions add up, so a word's cell is the sum of its tokens').")
            if len(prompt) > budget:
                strength = [np.abs(self.matrix[:rows, group]).sum() for _, group in prompt]
                kept = sorted(sorted(range(len(prompt)), key=lambda w: -strength[w])[:budget])
                note += (f" Only the {budget} words with the largest total |attribution| are drawn; the other "
                         f"{len(prompt) - budget} are left out of the figure (not of the tables).")
                prompt = [prompt[w] for w in kept]
        columns = prompt + [(label(self.token(j)), [j]) for j in answer]
        return [c for c, _ in columns], [g for _, g in columns], len(prompt), note

    @staticmethod
    def _words(text: str, tokens: list[dict[str, Any]]) -> list[tuple[str, list[int]]]:
        words = align_words(text, [tuple(t["chars"]) for t in tokens], {})
        return [(w.text if len(w.text) <= 14 else w.text[:13] + "…", list(w.tokens)) for w in words if w.tokens]

    def heatmap(self) -> dict[str, Any]:
        rows = min(len(self.generated), MAX_ROWS)
        labels, groups, prompt_columns, note = self.columns(rows)
        cells = [[float(self.matrix[k, group].sum()) if self.reachable[k, group].any() else None for group in groups]
                 for k in range(rows)]
        visible = [abs(v) for row in cells for v in row if v is not None]
        limit = float(np.percentile(visible, SATURATION_PERCENTILE)) if visible else 0.0
        limit = limit if limit > 0 else 1.0
        if rows < len(self.generated):
            note = (note + " " if note else "") + (f"The first {rows} of the {len(self.generated)} generated tokens "
                                                   "are drawn; the table lists every one.")
        figure = charts.generation_heatmap(cells, [f"{k + 1} {label(self.generated[k])}" for k in range(rows)],
                                           labels, prompt_columns, limit, salt="generation-heatmap")
        return {"svg": figure, "limit": limit, "note": note, "percentile": SATURATION_PERCENTILE}

    def shares(self, k: int) -> tuple[float | None, float | None]:
        """Shares of token k's |attribution| on the prompt and on earlier answer tokens."""
        magnitude = np.abs(self.matrix[k])
        total = magnitude.sum()
        if total == 0:
            return None, None
        return float(magnitude[: self.n_prompt].sum() / total), float(magnitude[self.n_prompt:].sum() / total)

    def top(self, k: int, count: int) -> list[dict[str, Any]]:
        order = [j for j in np.argsort(-np.abs(self.matrix[k]), kind="stable") if self.reachable[k, j]][:count]
        return [{"label": label(self.token(j), 24), "where": "prompt" if j < self.n_prompt else "answer",
                 "score": float(self.matrix[k, j])} for j in order]

    def shaded(self, k: int) -> tuple[Markup, Markup]:
        """The user's text and the answer before token k, each word shaded by its attribution to token k."""
        scores = self.matrix[k]
        prompt = align_words(self.record["prompt"]["text"], [tuple(t["chars"]) for t in self.prompt_tokens], {})
        before = self.generated[:k]
        answer_text = self.record["generation"]["text"][: self.generated[k]["chars"][0]]
        answer = align_words(answer_text, [tuple(t["chars"]) for t in before], {})
        prompt_scores = [sum(scores[t] for t in w.tokens) for w in prompt]
        answer_scores = [sum(scores[self.n_prompt + t] for t in w.tokens) for w in answer]
        scale = max(map(abs, prompt_scores + answer_scores), default=0.0)

        def spans(words, word_scores) -> Markup:
            parts = []
            for word, score in zip(words, word_scores):
                background, colour = shade(score, scale)
                parts.append(Markup('<span class="w" style="background-color:{};color:{}">{}</span>').format(
                    background, colour, word.text))
            return Markup(" ").join(parts)

        target = Markup('<span class="target">{}</span>').format(label(self.generated[k], 24))
        answer_markup = spans(answer, answer_scores)
        return spans(prompt, prompt_scores), (answer_markup + Markup(" ") + target if answer else target)


def explanation_context(record: dict[str, Any]) -> dict[str, Any]:
    """Everything ``explain.html.j2`` shows, from the record alone."""
    view = _View(record)
    attribution = record["attribution"]
    completeness = attribution["completeness"]
    tokens = []
    for k, token in enumerate(view.generated):
        prompt_share, answer_share = view.shares(k)
        log_p = attribution["log_probs"][k]
        row = {
            "index": k + 1, "label": label(token, 24), "log_p": log_p,
            "p": math.exp(log_p) if log_p is not None else None,
            "sum": float(view.matrix[k].sum()), "prompt_share": prompt_share, "answer_share": answer_share,
            "top": view.top(k, 3), "completeness": completeness[k] if completeness else None,
        }
        if k < CARDS:
            row["prompt_text"], row["answer_text"] = view.shaded(k)
            row["top_sources"] = view.top(k, TOP_SOURCES)
        tokens.append(row)
    relative = [c["relative_gap"] for c in completeness or [] if c["relative_gap"] is not None]
    model = record["model"]
    return {
        "r": record,
        "model_facts": [
            ("Model", model["spec"]), ("Architecture", model.get("architecture") or NA),
            ("Parameters", f"{model['parameters']:,}" if model.get("parameters") else NA),
            ("Weights' dtype", model.get("dtype") or NA), ("Licence", model.get("license") or NA),
        ],
        "heatmap": view.heatmap(),
        "tokens": tokens,
        "cards": tokens[:CARDS],
        "gaps": None if completeness is None else {
            "median": median(relative) if relative else None, "max": max(relative, default=None),
            "large": sum(r > LARGE_GAP for r in relative), "threshold": LARGE_GAP, "n": len(relative),
        },
        "mean_prompt_share": _mean([t["prompt_share"] for t in tokens]),
        "limitations": limitations(record),
        "params": [(ATTRIBUTION_PARAM_LABELS.get(k, k.replace("_", " ").capitalize()), v)
                   for k, v in attribution["params"].items()],
        "command_line": shlex.join(record["run"]["environment"]["command_line"]),
    }


def limitations(record: dict[str, Any]) -> list[str]:
    """What the explanation does not show: from this record's data first, then from the design."""
    attribution, generation = record["attribution"], record["generation"]
    items = []
    if generation["stop_reason"] == "max_new_tokens":
        items.append(f"The answer was cut off after {generation['max_new_tokens']} tokens; the tokens the model would "
                     "have written next are not explained.")
    if attribution["completeness"] is not None:
        items.append(
            f"Integrated Gradients approximates an integral with {attribution['params']['n_steps']} steps. A token's "
            "completeness gap (the difference between its attributions' sum and F(x) - F(x')) is the numerical error "
            "of its row: a relative gap of 10 % means its attributions are known only to about that fraction of the "
            "total. More --ig-steps shrink it at proportional cost.")
        items.append(
            "The attributions are measured against one reference input (the attributed tokens replaced by a filler "
            "token); another reference answers another question and gives other numbers.")
    else:
        items.append(
            "Input x Gradient is a first-order reading at the input itself: exact only for a model linear in its "
            "embeddings, with no reference and no completeness check. Integrated Gradients (--method ig) is the "
            "checked alternative.")
    items.extend([
        "The attributions explain this greedy answer only, token by token: another decoding (sampling, a temperature, "
        "a longer limit) gives another answer, and another answer would have other attributions.",
        "Each token's attribution explains the probability of that token given the text before it, not why the "
        "model did not write something else, and not the answer's meaning as a whole.",
        "Gradients are local: they describe how the answer responds to small changes of the embeddings along the "
        "path measured, not what the model would answer to a differently worded prompt. To test that, ask the "
        "reworded prompt.",
        "Attribution to earlier answer tokens is direct only: those tokens were themselves caused by the prompt, and "
        "the prompt's influence through them is not added to the prompt's share.",
        "The chat markup and the system prompt are held fixed and get no attribution, although they shape the "
        "answer.",
    ])
    return items


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
