"""explanation.json -> explanation.html (jinja2, autoescaped) -> explanation.pdf, from the record alone.

Rendered like the audit report (``audit.report.render``): the same stylesheet, the same URL fetcher limited to
``report_templates/``, jinja2's autoescape for every string of the prompt, the answer and the model, and PDF
dates fixed from the record, so the same record always renders the same bytes. Nothing here touches the
model: ``audit report explain-out`` re-renders an explanation without weights.

What the view computes from the record: the attribution map (``_View.heatmap``: one column per attributed
token where they fit at a legible size, else the prompt's and then the answer's tokens summed to words, and
where those do not fit either the map split over several figures, each with its rows and columns stated), the
shaded prompt and answer-so-far of the first ``CARDS`` tokens, per token the completeness gap and the share of
|attribution| on the prompt and on earlier answer tokens, and the cost line (``cost_facts``), whose every
number is a count recorded while the explanation ran.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from markupsafe import Markup

from audit.report import charts
from audit.errors import BundleError
from audit.evidence.bundle import BUNDLE_FILE, json_bytes, read_json, schema_problem
from audit.evidence.files import write_outputs
from audit.report.numbers import NA, fmt_int, fmt_seconds
from audit.report.view import ATTRIBUTION_PARAM_LABELS, shade
from explainers.spans import align_words, token_word_index

SCHEMA_VERSION = "1.0"
SUPPORTED_SCHEMAS = ("1.0",)
KIND = "generation-explanation"
EXPLANATION_FILE = "explanation.json"
TEMPLATE = "explain.html.j2"
HTML_FILE = "explanation.html"
PDF_FILE = "explanation.pdf"
MAX_COLUMNS = 32  # columns of one map figure: rotated 7 pt labels side by side in the A4 text block
MAX_ROWS = 48  # rows (generated tokens) of one map figure: 48 rows at 7 pt fill most of an A4 page
PROMPT_WORDS_DRAWN = 6 * MAX_COLUMNS  # a longer prompt keeps its strongest words in the map (the tables keep all)
LABEL_CHARS = 20  # a longer column label (token or word) ends in "…"; columns are rotated, so length costs height
ROW_LABEL_CHARS = 16  # a longer row label ends in "…": 16 wide glyphs leave the columns their least pitch
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
    expected = [("prompt", i) for i in range(len(tokens["prompt"]))] + [("generated", k) for k in range(rows - 1)]
    for index, (source, (kind, at)) in enumerate(zip(sources, expected)):
        if (source["kind"], source["index"]) != (kind, at):
            return f"attribution.sources[{index}]: must be {kind} token {at} (the prompt's tokens, then every " \
                   "generated token but the last, in order)"
    if len(sources) != len(expected):
        return f"attribution.sources: has {len(sources)} entries for the {len(tokens['prompt'])} prompt tokens and " \
               f"{rows - 1} generated tokens before the last"
    if len(attribution["matrix"]) != rows or any(len(row) != len(sources) for row in attribution["matrix"]):
        return f"attribution.matrix: must have one row per generated token ({rows}) of one cell per source " \
               f"({len(sources)})"
    for name in ("log_probs", "reference_log_probs", "completeness"):
        if attribution[name] is not None and len(attribution[name]) != rows:
            return f"attribution.{name}: has {len(attribution[name])} entries for {rows} generated tokens"
    cost = attribution.get("cost")
    if cost is not None:
        counted = sum(entry["rows"] for entry in cost["forward"])
        if counted != attribution["forward_rows"]:
            return f"attribution.forward_rows: is {attribution['forward_rows']}, but cost.forward counts {counted} rows"
        if cost["backward"]["passes"] != attribution["backward_passes"]:
            return f"attribution.backward_passes: is {attribution['backward_passes']}, but cost.backward counts " \
                   f"{cost['backward']['passes']} passes"
    passes = record["generation"].get("forward_passes")
    if passes is not None and passes < rows:
        return f"generation.forward_passes: {passes} forward passes cannot generate {rows} tokens"
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
    from audit.report.render import environment, render_pdf

    html = environment().get_template(TEMPLATE).render(**explanation_context(record))
    return {HTML_FILE: html.encode("utf-8"), PDF_FILE: render_pdf(html, record["run"]["finished_at"])}


# ---------------------------------------------------------------- the view


BYTE_MARKERS = {"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "▁": " "}  # byte-level BPE and SentencePiece spellings


def visible(token: dict[str, Any]) -> str:
    """A token as the text it stands for: without its leading (or trailing) spaces, ↵ for a line break, ␣ for a
    token of spaces only. A token without text of its own (a special token, half a character) shows the
    tokenizer's string, its space and line-break markers (Ġ, ▁, Ċ) read as what they mean."""
    text = token["text"]
    if not text:
        text = token["token"]
        for marker, char in BYTE_MARKERS.items():
            text = text.replace(marker, char)
    shown = text.replace("\r\n", "\n").strip(" \t").replace("\n", "↵")
    return shown or "␣"


def shorten(text: str, width: int = LABEL_CHARS) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def label(token: dict[str, Any], width: int = 14) -> str:
    """``visible(token)``, ending in "…" beyond ``width`` characters."""
    return shorten(visible(token), width)


def _span_text(text: str, tokens: list[dict[str, Any]]) -> str:
    """The visible text the tokens cover together (a word or part of one)."""
    starts, ends = [t["chars"][0] for t in tokens], [t["chars"][1] for t in tokens]
    covered = text[min(starts):max(ends)] if max(ends) > min(starts) else ""
    return visible({"text": covered, "token": "".join(t["token"] for t in tokens)})


def _units(text: str, tokens: list[dict[str, Any]], columns: list[int], by_word: bool) -> list[dict[str, Any]]:
    """Map columns over ``tokens`` (``columns[i]`` is token i's column in the matrix): one per token, or with
    ``by_word`` one per word of ``text`` (its tokens' columns summed; a token of no word keeps its own)."""
    if not by_word:
        return [{"text": visible(t), "columns": [c], "tokens": (i, i), "word": None}
                for i, (t, c) in enumerate(zip(tokens, columns))]
    owners = token_word_index(text, [tuple(t["chars"]) for t in tokens])
    groups: list[tuple[int | None, list[int]]] = []
    for i, owner in enumerate(owners):
        if owner is not None and groups and groups[-1][0] == owner:
            groups[-1][1].append(i)
        else:
            groups.append((owner, [i]))
    return [{"text": _span_text(text, [tokens[i] for i in members]), "columns": [columns[i] for i in members],
             "tokens": (members[0], members[-1]), "word": owner} for owner, members in groups]


def _blocks(count: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of ``count`` items in the fewest blocks of at most ``size``, as even as they come."""
    pieces = max(1, math.ceil(count / size))
    bounds = [round(count * p / pieces) for p in range(pieces + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _range(first: int, last: int, unit: str | None = None) -> str:
    """"3", "3–7"; with ``unit``: "token 3", "tokens 3–7"."""
    numbers = f"{first}" if first == last else f"{first}–{last}"
    return numbers if unit is None else f"{unit if first == last else unit + 's'} {numbers}"


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

    def heatmap(self) -> dict[str, Any]:
        """The attribution map as figures that each fit the A4 text block at 7 pt: every figure its rows and columns
        stated in its caption, one colour scale for all."""
        n_rows, n_answer = len(self.generated), len(self.sources) - self.n_prompt
        answer_text = self.record["generation"]["text"]
        prompt_by_word = self.n_prompt + n_answer > MAX_COLUMNS
        prompt = _units(self.record["prompt"]["text"], self.prompt_tokens, list(range(self.n_prompt)), prompt_by_word)
        answer_by_word = len(prompt) + n_answer > MAX_COLUMNS
        answer = _units(answer_text, self.generated[:n_answer], list(range(self.n_prompt, len(self.sources))),
                        answer_by_word)
        notes = []
        if prompt_by_word:
            answer_words = f" and the answer so far to its {_count(len(answer), 'word')}" if answer_by_word else ""
            notes.append(f"The user's text has {self.n_prompt} tokens and the answer so far {n_answer}: too many "
                         f"columns for one figure at a legible size ({MAX_COLUMNS} at most), so the user's text is "
                         f"summed to its {_count(len(prompt), 'word')}{answer_words} (attributions add up, so a "
                         "word's cell is the sum of its tokens' cells).")
        left_out = max(0, len(prompt) - PROMPT_WORDS_DRAWN)
        if left_out:
            strength = [np.nansum(np.abs(self.matrix[:, u["columns"]])) for u in prompt]
            kept = sorted(sorted(range(len(prompt)), key=lambda w: -strength[w])[:PROMPT_WORDS_DRAWN])
            notes.append(f"Only the {PROMPT_WORDS_DRAWN} of its {len(prompt)} words with the largest total "
                         f"|attribution| are drawn; the other {left_out} are left out of the "
                         "map (not of the tables or explanation.json).")
            prompt = [{**prompt[w], "number": w + 1} for w in kept]
        else:
            prompt = [{**u, "number": w + 1} for w, u in enumerate(prompt)]
        answer = [{**u, "number": w + 1} for w, u in enumerate(answer)]

        plans = []
        for r0, r1 in _blocks(n_rows, MAX_ROWS):
            # an answer column reaches a row only when its token came before the row's token
            reached = [u for u in answer if u["columns"][0] - self.n_prompt < r1 - 1]
            blocks = [[("prompt", prompt[a:b])] for a, b in _blocks(len(prompt), MAX_COLUMNS)] if prompt else []
            tail = [[("answer", reached[a:b])] for a, b in _blocks(len(reached), MAX_COLUMNS)] if reached else []
            if blocks and tail and sum(len(u) for _, u in blocks[-1] + tail[0]) <= MAX_COLUMNS:
                blocks[-1] += tail.pop(0)
            for parts in blocks + tail:
                plans.append(((r0, r1), parts))
        cells = []
        for (r0, r1), parts in plans:
            units = [u for _, group in parts for u in group]
            cells.append([[float(self.matrix[k, u["columns"]].sum()) if self.reachable[k, u["columns"]].any() else None
                           for u in units] for k in range(r0, r1)])
        visible_cells = [abs(v) for grid in cells for row in grid for v in row if v is not None and math.isfinite(v)]
        limit = float(np.percentile(visible_cells, SATURATION_PERCENTILE)) if visible_cells else 0.0
        limit = limit if limit > 0 else 1.0
        figures, shortened = [], False
        for index, (((r0, r1), parts), grid) in enumerate(zip(plans, cells)):
            units = [u for _, group in parts for u in group]
            row_texts = [visible(self.generated[k]) for k in range(r0, r1)]
            shortened = shortened or any(len(t) > ROW_LABEL_CHARS for t in row_texts) \
                or any(len(u["text"]) > LABEL_CHARS for u in units)
            row_labels = [f"{k + 1} {shorten(t, ROW_LABEL_CHARS)}" for k, t in zip(range(r0, r1), row_texts)]
            labels = [shorten(u["text"]) for u in units]
            svg = charts.explain_heatmap(grid, row_labels, labels,
                                         [(self._part_title(kind, group), len(group)) for kind, group in parts],
                                         limit, salt=f"generation-heatmap-{index}")
            figures.append({"svg": svg, "rows": self._rows_text(r0, r1), "row_labels": row_labels, "labels": labels,
                            "cells": grid,
                            "columns": [self._columns_text(kind, group) for kind, group in parts],
                            "has_nan": any(v is not None and not math.isfinite(v) for row in grid for v in row)})
        if len(figures) > 1:
            notes.append(f"The map is drawn in {len(figures)} figures, each stating the generated tokens (rows) and "
                         "the attributed tokens (columns) it shows; the colour scale is the same in all.")
        return {"figures": figures, "limit": limit, "percentile": SATURATION_PERCENTILE,
                "complete": not left_out, "note": " ".join(notes) or None, "by_word": prompt_by_word,
                "shortened": shortened, "label_chars": LABEL_CHARS,
                "row_label_chars": ROW_LABEL_CHARS}

    def _rows_text(self, r0: int, r1: int) -> str:
        total = len(self.generated)
        if r0 == 0 and r1 == total:
            return f"all {total} generated token{'s' if total != 1 else ''}"
        return f"generated {_range(r0 + 1, r1, 'token')} of {total}"

    @staticmethod
    def _part_title(kind: str, units: list[dict[str, Any]]) -> str:
        """What a group of columns is, written above it: "user's text, tokens 1–31"."""
        what = "user's text" if kind == "prompt" else "answer so far"
        unit = "word" if any(u["word"] is not None for u in units) else "token"
        return f"{what}, {_range(units[0]['number'], units[-1]['number'], unit)}"

    def _columns_text(self, kind: str, units: list[dict[str, Any]]) -> str:
        """Which attributed tokens a figure's columns of ``kind`` hold, numbered from 1 as in the tables."""
        total = self.n_prompt if kind == "prompt" else len(self.sources) - self.n_prompt
        what = "the user's text" if kind == "prompt" else "the answer so far"
        tokens = f"{_range(units[0]['tokens'][0] + 1, units[-1]['tokens'][1] + 1, 'token')} of {total}"
        if not any(u["word"] is not None for u in units):
            return f"{what}, {tokens}"
        drawn = sum(u["tokens"][1] - u["tokens"][0] + 1 for u in units)
        left_out = units[-1]["tokens"][1] - units[0]["tokens"][0] + 1 - drawn
        return (f"{what}, {_range(units[0]['number'], units[-1]['number'], 'word')} ({tokens}"
                + (f"; {len(units)} words drawn, the {left_out} tokens of the weaker words between them left out"
                   if left_out else "") + ")")

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
        "cost": cost_facts(record),
        "params": [(ATTRIBUTION_PARAM_LABELS.get(k, k.replace("_", " ").capitalize()), v)
                   for k, v in attribution["params"].items()],
        "command_line": shlex.join(record["run"]["environment"]["command_line"]),
    }


FORWARD_PURPOSES = {
    "prefix": "of the fixed prefix, the chat markup before the user's text (run once; every later pass reads its keys "
              "and values)",
    "gradients": "with gradients, which the backward passes run through",
    "endpoints": "without gradients, for F(x) and F(x′)",
}


def _count(count: int, word: str, plural: str | None = None) -> str:
    return f"{fmt_int(count)} {word if count == 1 else plural or word + 's'}"


def cost_facts(record: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The cost rows of the Method table, each a list of lines. Every number is a count explanation.json recorded
    while the answer was generated and explained (explainers.generation.Meter), nothing is derived from the
    parameters, and a reading such as "one per generated token and pass" is given only where the counts bear it
    out."""
    attribution, generation, durations = record["attribution"], record["generation"], record["run"]["durations_s"]
    facts = []
    passes = generation.get("forward_passes")
    if passes is not None:
        line = _count(passes, "forward pass", "forward passes")
        positions = generation.get("forward_tokens")
        if positions is not None:
            line += f", {_count(positions, 'token position')} computed"
            if positions == record["prompt"]["n_tokens"] + passes - 1:
                line += (f": the {fmt_int(record['prompt']['n_tokens'])}-token prompt, then one new position per pass "
                         "(the earlier ones read from the key-value cache)")
        lines = [line]
        if "generate" in durations:
            lines.append(fmt_seconds(durations["generate"]))
        facts.append(("Cost of the answer", lines))
    cost = attribution.get("cost")
    if cost is None:  # a record written before the counts were kept
        facts.append(("Cost of the attribution", [
            f"{_count(attribution['forward_rows'], 'sequence')} run forward, "
            f"{_count(attribution['backward_passes'], 'backward pass', 'backward passes')}",
            fmt_seconds(attribution["seconds"])]))
        return facts
    total = sum(entry["passes"] for entry in cost["forward"])
    positions = sum(entry["tokens"] for entry in cost["forward"])
    lines = [f"{_count(total, 'forward pass', 'forward passes')}, {_count(attribution['forward_rows'], 'row')} "
             f"(sequences), {_count(positions, 'token position')} computed:"]
    steps = attribution["params"].get("n_steps")
    for entry in cost["forward"]:
        rows = _count(entry["rows"], "row")
        chunks = attribution.get("rows_per_pass") or []
        if entry["purpose"] == "gradients" and len(chunks) == entry["passes"] > 1:
            rows += f" ({' + '.join(fmt_int(r) for r in chunks)})"
        if entry["purpose"] == "gradients" and attribution["method"] == "ig" and entry["rows"] == steps:
            rows += f", the {fmt_int(steps)} integration steps"
        lines.append(f"· {fmt_int(entry['passes'])} {FORWARD_PURPOSES.get(entry['purpose'], entry['purpose'])}: "
                     f"{rows}, {_count(entry['tokens'], 'position')}")
    backward = cost["backward"]
    with_gradients = next((e["passes"] for e in cost["forward"] if e["purpose"] == "gradients"), None)
    explained = len(record["tokens"]["generated"])
    line = _count(backward["passes"], "backward pass", "backward passes")
    if with_gradients and backward["passes"] == explained * with_gradients:
        line += (f": one per generated token ({fmt_int(explained)}) and pass with gradients ({fmt_int(with_gradients)})"
                 f", {_count(backward['rows'], 'row')} in all")
    else:
        line += f", {_count(backward['rows'], 'row')} in all"
    lines.append(line)
    retries = cost["out_of_memory_retries"]
    if retries:
        lines.append(f"{_count(retries, 'pass', 'passes')} ran out of memory and {'was' if retries == 1 else 'were'} "
                     "run again with half the rows (what completed before is counted above)")
    lines.append(fmt_seconds(attribution["seconds"]))
    facts.append(("Cost of the attribution", lines))
    return facts


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
