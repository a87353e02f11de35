"""`audit explain`'s report: the attribution map legible at print size (whole token or word labels at 7 pt, a
map too wide for one figure summed to words and split over figures with their ranges stated) and the cost line,
whose every number is a count recorded while the run ran and equals what ran (counted here independently, with a
forward hook on the tiny Llama and a wrap of torch.autograd.grad)."""

from __future__ import annotations

import json
import shutil
from io import BytesIO

import numpy as np
import pytest
import torch

import audit.explain.run as generation_module
from audit.report import charts
from audit.explain import report as report_generation
from audit.errors import BundleError
from audit.explain.run import explain
from audit.explain.report import (LABEL_CHARS, MAX_COLUMNS, MAX_ROWS, ROW_LABEL_CHARS, cost_facts,
                                     explanation_context, read_explanation, render_explanation, visible)
from explainers import generation

SHORT = "Should the bank approve a loan to a nurse? Answer Yes or No."
LONG = " ".join(f"{w}{i}" for i, w in enumerate(["income", "credit", "score", "rent", "debt"] * 16))


def pdf_pages(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(BytesIO(data)).pages]


def heatmap_lines(pdf: bytes) -> list[str]:
    """The text lines of the pages of the attribution map (from its heading to the next section's)."""
    pages = pdf_pages(pdf)
    first = next(i for i, text in enumerate(pages) if "Attribution map" in text)
    last = next(i for i, text in enumerate(pages) if "Token by token" in text)
    return [line.strip() for text in pages[first:last + 1] for line in text.splitlines()]


@pytest.fixture(scope="module")
def short(tiny_llama_dir, tmp_path_factory):
    return explain(model=str(tiny_llama_dir), prompt=SHORT, max_new_tokens=5, ig_steps=3,
                   out=tmp_path_factory.mktemp("short") / "out", quiet=True)


@pytest.fixture(scope="module")
def long(tiny_llama_dir, tmp_path_factory):
    return explain(model=str(tiny_llama_dir), prompt=LONG, max_new_tokens=6, ig_steps=1,
                   out=tmp_path_factory.mktemp("long") / "out", quiet=True)


def test_visible_label_is_the_tokens_text_without_its_space_marker():
    assert visible({"text": " approve", "token": "Ġapprove"}) == "approve"
    assert visible({"text": "\n", "token": "Ċ"}) == "↵"
    assert visible({"text": "  ", "token": "ĠĠ"}) == "␣"
    assert visible({"text": "", "token": "<|im_end|>"}) == "<|im_end|>"  # a special token has no text
    assert visible({"text": "", "token": "▁Yes"}) == "Yes"
    assert visible({"text": "", "token": "ĠNo"}) == "No"


def test_a_prompt_that_fits_is_drawn_token_by_token_with_every_label_whole(short):
    record = short.record
    heatmap = explanation_context(record)["heatmap"]
    assert len(heatmap["figures"]) == 1 and not heatmap["by_word"]
    lines = heatmap_lines(short.paths["explanation.pdf"].read_bytes())
    for token in record["tokens"]["prompt"] + record["tokens"]["generated"][:-1]:
        assert visible(token)[:LABEL_CHARS] in lines, visible(token)  # one whole line each, never cut into letters
    for k, token in enumerate(record["tokens"]["generated"]):
        assert f"{k + 1} {visible(token)[:ROW_LABEL_CHARS]}" in lines
    caption = "".join(" ".join(lines).split())
    n_prompt, n_generated = len(record["tokens"]["prompt"]), len(record["tokens"]["generated"])
    for said in (f"Rows: all {n_generated} generated tokens", f"the user's text, tokens 1–{n_prompt} of {n_prompt}",
                 f"the answer so far, tokens 1–{n_generated - 1} of {n_generated - 1}", "in nats, not normalised",
                 "symmetric about 0", f"saturates at ±{heatmap['limit']:.3f}", "99th percentile"):
        assert "".join(said.split()) in caption, said


def test_a_long_prompt_is_summed_to_words_and_split_over_figures_that_state_their_ranges(long):
    record = long.record
    words = LONG.split()
    heatmap = explanation_context(record)["heatmap"]
    assert heatmap["by_word"] and f"summed to its {len(words)} words" in heatmap["note"]
    figures = heatmap["figures"]
    assert len(figures) == -(-len(words) // MAX_COLUMNS)  # the fewest figures; no word is left out
    assert all(len(f["labels"]) <= MAX_COLUMNS and len(f["row_labels"]) <= MAX_ROWS for f in figures)
    drawn = [label for f in figures for label in f["labels"]]
    assert drawn[:len(words)] == words and len(drawn) > len(words)  # then the answer so far
    # a word's cell is the sum of its tokens' attributions: every row adds up to the record's row
    matrix = np.array(record["attribution"]["matrix"])
    for k, row in enumerate(matrix):
        cells = [v for f in figures for v in f["cells"][k] if v is not None]
        assert sum(cells) == pytest.approx(row.sum(), abs=1e-6)
    lines = heatmap_lines(long.paths["explanation.pdf"].read_bytes())
    for word in words:
        assert word in lines, word
    flat = "".join(" ".join(lines).split())
    for index, figure in enumerate(figures):
        assert f"Figure{index + 1}of{len(figures)}." in flat
        for columns in figure["columns"]:
            assert "".join(columns.split()) in flat
    n_prompt = len(record["tokens"]["prompt"])
    assert figures[0]["columns"][0].startswith("the user's text, words 1–")
    assert figures[-1]["columns"][0].endswith(f"of {n_prompt})")


def test_a_very_long_prompt_keeps_its_strongest_words_and_says_so(long, monkeypatch):
    monkeypatch.setattr(report_generation, "PROMPT_WORDS_DRAWN", 40)
    heatmap = explanation_context(long.record)["heatmap"]
    assert "Only the 40 of its 80 words" in heatmap["note"] and not heatmap["complete"]
    prompt_columns = [label for f in heatmap["figures"] for label in f["labels"] if label in LONG.split()]
    assert len(prompt_columns) == 40
    assert "weaker words between them left out" in " ".join(c for f in heatmap["figures"] for c in f["columns"])


def test_many_rows_are_split_into_figures_of_at_most_max_rows(long, monkeypatch):
    monkeypatch.setattr(report_generation, "MAX_ROWS", 4)
    figures = explanation_context(long.record)["heatmap"]["figures"]
    rows = len(long.record["tokens"]["generated"])
    assert {f["rows"] for f in figures} == {f"generated tokens 1–3 of {rows}", f"generated tokens 4–6 of {rows}"}
    assert all(len(f["row_labels"]) == 3 for f in figures)


def test_the_map_keeps_its_labels_at_7_pt_without_overlap_at_the_widest():
    """The widest figure the report draws: MAX_COLUMNS columns and MAX_ROWS rows, labels as long as they get, of
    the widest and tallest glyphs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    columns = [("Wgjpqy|ÅÉ" * 3)[:LABEL_CHARS - 1] + str(i % 10) for i in range(MAX_COLUMNS)]
    rows = [f"{k + 1} " + "W" * ROW_LABEL_CHARS for k in range(MAX_ROWS)]
    cells = [[float(np.sin(k + c)) if c < 20 or c - 20 < k else None for c in range(MAX_COLUMNS)]
             for k in range(MAX_ROWS)]
    fig = charts.explain_heatmap_figure(cells, rows, columns, [("user's text, words 1–20", 20),
                                                               ("answer so far, words 1–12", 12)], 1.0)
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    width, height = fig.get_size_inches()
    assert width <= charts.WIDTH_IN + 1e-6 and height < 9.0  # the A4 text block, with room for the caption
    box = ax.get_position()
    assert box.height * height / MAX_ROWS == pytest.approx(charts.EXPLAIN_ROW_IN, abs=0.005)
    for axis in (ax.xaxis, ax.yaxis):
        labels = axis.get_ticklabels()
        assert [t.get_text() for t in labels] and all(t.get_fontsize() == charts.EXPLAIN_FONT_PT for t in labels)
        boxes = [t.get_window_extent(renderer) for t in labels]
        for a, b in zip(boxes, boxes[1:]):
            assert not a.overlaps(b), (a, b)
        figure_box = fig.bbox
        assert all(figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1 and figure_box.y0 - 1 <= box.y0
                   for box in boxes)


@pytest.fixture
def counted(tiny_llama_dir, tmp_path, monkeypatch):
    """An explanation run whose forward passes (a hook on the model) and backward passes (torch.autograd.grad)
    are counted independently of the code under test; IG steps forced into passes of 2 rows."""
    seen = {"phase": "load", "forward": [], "backward": 0}
    real_load, real_generate, real_grad = generation_module.load_model, generation_module.generate_greedy, \
        torch.autograd.grad

    def load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loaded.budget.rows = lambda *a, **k: 2

        def hook(module, args, kwargs, output):
            inputs = kwargs.get("inputs_embeds")
            inputs = kwargs["input_ids"] if inputs is None else inputs
            seen["forward"].append((seen["phase"], inputs.shape[0], inputs.shape[1], torch.is_grad_enabled()))

        loaded.model.register_forward_hook(hook, with_kwargs=True)
        return loaded

    def generate(*args, **kwargs):
        seen["phase"] = "generate"
        found = real_generate(*args, **kwargs)
        seen["phase"] = "attribute"
        return found

    def grad(*args, **kwargs):
        seen["backward"] += 1
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(generation_module, "load_model", load)
    monkeypatch.setattr(generation_module, "generate_greedy", generate)
    monkeypatch.setattr(torch.autograd, "grad", grad)
    result = explain(model=str(tiny_llama_dir), prompt=SHORT, max_new_tokens=4, ig_steps=5, out=tmp_path / "out",
                     quiet=True)
    monkeypatch.undo()
    return result, seen


def test_the_recorded_counts_equal_the_passes_that_ran(counted):
    result, seen = counted
    record = result.record
    attribution, cost = record["attribution"], record["attribution"]["cost"]
    generate = [f for f in seen["forward"] if f[0] == "generate"]
    attribute = [f for f in seen["forward"] if f[0] == "attribute"]
    n_generated = len(record["tokens"]["generated"])
    assert record["generation"]["forward_passes"] == len(generate) >= n_generated
    assert record["generation"]["forward_tokens"] == sum(rows * length for _, rows, length, _ in generate)
    assert sum(e["passes"] for e in cost["forward"]) == len(attribute)
    assert sum(e["rows"] for e in cost["forward"]) == attribution["forward_rows"] == sum(f[1] for f in attribute)
    assert sum(e["tokens"] for e in cost["forward"]) == sum(rows * length for _, rows, length, _ in attribute)
    with_gradients = [f[1] for f in attribute if f[3]]
    assert attribution["rows_per_pass"] == with_gradients == [2, 2, 1]  # 5 steps, 2 rows a pass
    assert cost["backward"]["passes"] == attribution["backward_passes"] == seen["backward"] == n_generated * 3
    assert cost["backward"]["rows"] == n_generated * 5
    assert read_explanation(result.paths["explanation.json"].parent) == json.loads(
        result.paths["explanation.json"].read_text())


def test_the_cost_line_states_the_recorded_counts(counted):
    result, seen = counted
    record = result.record
    attribution, cost = record["attribution"], record["attribution"]["cost"]
    attribute = [f for f in seen["forward"] if f[0] == "attribute"]
    n_generated = len(record["tokens"]["generated"])
    expected = [
        f"{record['generation']['forward_passes']} forward passes, {record['generation']['forward_tokens']} token "
        f"positions computed",
        f"{len(attribute)} forward passes, {attribution['forward_rows']} rows (sequences), "
        f"{sum(e['tokens'] for e in cost['forward'])} token positions computed",
        "3 with gradients, which the backward passes run through: 5 rows (2 + 2 + 1), the 5 integration steps, "
        f"{next(e['tokens'] for e in cost['forward'] if e['purpose'] == 'gradients')} positions",
        f"{attribution['backward_passes']} backward passes: one per generated token ({n_generated}) and pass with "
        f"gradients (3), {n_generated * 5} rows in all",
    ]
    facts = " ".join(line for _, lines in cost_facts(record) for line in lines)
    flat = "".join("".join(pdf_pages(result.paths["explanation.pdf"].read_bytes())).split())
    for line in expected:
        assert line in facts, line
        assert "".join(line.split()) in flat, line


def test_an_out_of_memory_pass_is_counted_as_run_and_retried(tiny_llama_dir, monkeypatch):
    """The counts are what ran, not n_steps + 2: a pass of 4 rows that runs out of memory is retried as 2 + 2."""
    from audit.models import load_model, parse_model_spec
    from audit.explain.run import render_prompt

    tiny = load_model(parse_model_spec(str(tiny_llama_dir)))
    rendered = render_prompt(tiny.tokenizer, SHORT, None)
    answer = [5, 77, 301]
    ids = torch.tensor(rendered.ids + answer[:-1])
    with torch.no_grad():
        embeddings = tiny.model.get_input_embeddings()(ids).float()
    sources = torch.tensor([*range(*rendered.region), *range(len(rendered.ids), len(ids))])

    def refuse_wide(module, args, kwargs):
        inputs = kwargs.get("inputs_embeds")
        if inputs is not None and inputs.shape[0] > 2 and torch.is_grad_enabled():
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")

    handle = tiny.model.register_forward_pre_hook(refuse_wide, with_kwargs=True)
    try:
        found = generation.integrated_gradients(tiny.model, embeddings, torch.tensor(answer), sources, None,
                                                n_steps=4, rows_per_pass=4)
    finally:
        handle.remove()
    assert found.cost["out_of_memory_retries"] == 1
    assert found.chunks == [2, 2] and found.backward_passes == 2 * len(answer)
    assert found.forward_rows == 1 + 4 + 2  # the prefix, the steps as run, the input and the reference


def test_a_record_whose_counts_disagree_is_refused(short, tmp_path):
    folder = shutil.copytree(short.paths["explanation.json"].parent, tmp_path / "edited")
    record = json.loads((folder / "explanation.json").read_text())
    record["attribution"]["forward_rows"] += 1
    (folder / "explanation.json").write_text(json.dumps(record))
    with pytest.raises(BundleError, match="attribution.forward_rows: is .* but cost.forward counts"):
        read_explanation(folder)


def test_a_record_without_the_counts_still_renders_its_recorded_totals(short):
    """Records written before the counts were kept (schema 1.0 without cost) render their own two numbers."""
    record = json.loads(short.paths["explanation.json"].read_text())
    del record["attribution"]["cost"], record["generation"]["forward_passes"], record["generation"]["forward_tokens"]
    from audit.evidence.bundle import schema_problem

    assert schema_problem(record, "explanation") is None
    facts = dict(cost_facts(record))
    assert list(facts) == ["Cost of the attribution"]
    assert facts["Cost of the attribution"][0] == (f"{record['attribution']['forward_rows']} sequences run forward, "
                                                   f"{record['attribution']['backward_passes']} backward passes")
    assert b"sequences run forward" in render_explanation(record)["explanation.html"]
