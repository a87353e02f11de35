"""`audit explain`: a greedy answer, every answer token attributed to the prompt and the answer before it, the
record and the report rendered from it (tiny Llama), and one run of the real SmolLM2 through the console script."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from audit.cli import main
from audit.explain.run import explain, render_prompt
from audit.models import load_model, parse_model_spec
from audit.explain.report import read_explanation, render_explanation
from explainers import generation

PROMPT = "Should the bank approve a mortgage for <script>alert(1)</script> Greg Baker? Income: $92,000."


@pytest.fixture(scope="module")
def explained(tmp_path_factory, tiny_llama_dir):
    out = tmp_path_factory.mktemp("explain") / "out"
    return explain(model=str(tiny_llama_dir), prompt=PROMPT, max_new_tokens=6, ig_steps=8, out=out, quiet=True)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(parse_model_spec(str(tiny_llama_dir)))


@pytest.fixture(scope="module")
def sequence(tiny):
    """Embeddings of a chat prompt and five answer tokens, the tokens, and the attributed positions."""
    rendered = render_prompt(tiny.tokenizer, "Greg Baker applies for a mortgage.", None)
    answer = [5, 77, 301, 12, 9]
    ids = torch.tensor(rendered.ids + answer[:-1])
    with torch.no_grad():
        embeddings = tiny.model.get_input_embeddings()(ids).float()
    sources = torch.tensor([*range(*rendered.region), *range(len(rendered.ids), len(ids))])
    return embeddings, torch.tensor(answer), sources, ids


def test_matrix_is_tokens_by_sources_and_causal(explained):
    record = explained.record
    attribution, tokens = record["attribution"], record["tokens"]
    generated, prompt = len(tokens["generated"]), len(tokens["prompt"])
    assert generated == record["generation"]["n_tokens"] == 6
    assert len(attribution["sources"]) == prompt + generated - 1
    assert [len(row) for row in attribution["matrix"]] == [prompt + generated - 1] * generated
    for k, row in enumerate(attribution["matrix"]):
        assert all(value == 0.0 for value in row[prompt + k:]), f"token {k} attributed to itself or a later token"
        assert any(value != 0.0 for value in row[:prompt + k])


def test_integrated_gradients_completeness_gap_shrinks_to_small(tiny, sequence):
    embeddings, targets, sources, _ = sequence
    reference = tiny.model.get_input_embeddings().weight[0].detach()
    coarse, fine = (generation.integrated_gradients(tiny.model, embeddings, targets, sources, reference, n_steps=n,
                                                    rows_per_pass=3) for n in (1, 24))
    assert fine.chunks == [3] * 8 and fine.backward_passes == 8 * len(targets)
    assert max(c["relative_gap"] for c in fine.completeness()) < 0.01
    assert sum(c["gap"] for c in fine.completeness()) < sum(c["gap"] for c in coarse.completeness())
    for row, completeness in zip(fine.matrix, fine.completeness()):
        assert completeness["sum"] == pytest.approx(sum(row))


def test_input_x_gradient_equals_a_hand_computation(tiny, sequence):
    embeddings, targets, sources, _ = sequence
    found = generation.input_x_gradient(tiny.model, embeddings, targets, sources)
    k = 3
    x = embeddings.clone().requires_grad_()
    logits = tiny.model(inputs_embeds=x[None]).logits[0].float()
    log_p = logits[len(x) - len(targets) + k].log_softmax(-1)[targets[k]]
    (gradient,) = torch.autograd.grad(log_p, x)
    expected = (x * gradient).sum(-1)[sources]
    assert found.log_probs[k] == pytest.approx(float(log_p.detach()), abs=1e-5)
    assert torch.allclose(torch.tensor(found.matrix[k]), expected.detach(), atol=1e-5)


def test_answer_is_the_greedy_argmax_of_the_model(explained, tiny):
    record = explained.record
    ids = render_prompt(tiny.tokenizer, record["prompt"]["text"], None).ids
    expected = []
    with torch.no_grad():
        for _ in range(record["generation"]["max_new_tokens"]):
            expected.append(int(tiny.model(torch.tensor([ids + expected])).logits[0, -1].argmax()))
            if expected[-1] in record["generation"]["eos_token_ids"]:
                break
    assert [t["id"] for t in record["tokens"]["generated"]] == expected
    assert record["generation"]["stop_reason"] == "max_new_tokens"
    assert record["prompt"]["rendered"].count(PROMPT) == 1


def test_two_runs_give_the_same_answer_and_attributions(explained, tiny_llama_dir, tmp_path):
    again = explain(model=str(tiny_llama_dir), prompt=PROMPT, max_new_tokens=6, ig_steps=8, out=tmp_path / "out",
                    quiet=True).record
    first = explained.record
    assert again["generation"] == first["generation"] and again["tokens"] == first["tokens"]
    for key in ("matrix", "log_probs", "reference_log_probs", "completeness"):
        assert again["attribution"][key] == first["attribution"][key], key


def test_report_is_rendered_from_the_record_alone(explained, tmp_path):
    paths = explained.paths
    rendered = render_explanation(read_explanation(paths["explanation.json"].parent))
    assert rendered["explanation.html"] == paths["explanation.html"].read_bytes()
    assert rendered["explanation.pdf"] == paths["explanation.pdf"].read_bytes()
    result = CliRunner().invoke(main, ["report", str(paths["explanation.json"]), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    for name in ("explanation.json", "explanation.html", "explanation.pdf"):
        assert (tmp_path / "again" / name).read_bytes() == paths[name].read_bytes(), name


def test_pdf_holds_the_prompt_and_the_answer(explained):
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(explained.paths["explanation.pdf"]).pages)
    flat = "".join(text.split())
    assert "".join(PROMPT.split()) in flat
    assert "".join(explained.record["generation"]["text"].split()) in flat
    for title in ("Question and answer", "Method", "Attribution map", "Token by token", "Every generated token",
                  "Limitations", "Reproducibility", "Completeness gap"):
        assert "".join(title.split()) in flat, title
    assert explained.record["model"]["id"] in flat


def test_manifest_lists_every_file_with_its_sha256(explained):
    folder = explained.paths["explanation.json"].parent
    lines = (folder / "manifest.sha256").read_text().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    assert sorted(listed) == ["explanation.html", "explanation.json", "explanation.pdf"]
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_prompt_markup_is_escaped(explained):
    html = explained.paths["explanation.html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_prompt_is_located_where_the_user_wrote_it(tiny):
    """A prompt that also appears in the system prompt and in the chat markup is attributed in the user turn."""
    rendered = render_prompt(tiny.tokenizer, "assistant", "You are an assistant")
    user_turn = rendered.text.index("<|im_start|>user\n") + len("<|im_start|>user\n")
    encoding = tiny.tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    start, end = offsets[rendered.region[0]][0], offsets[rendered.region[1] - 1][1]
    assert rendered.text[start:end].strip() == "assistant" and start >= user_turn - 1


@pytest.mark.e2e
def test_smollm2_answer_is_explained_through_the_console_script(tmp_path):
    from pypdf import PdfReader

    out = tmp_path / "explain-out"
    exe = Path(sys.executable).with_name("audit")
    result = subprocess.run(
        [str(exe), "explain", "--prompt", "What is a credit score?", "--max-new-tokens", "8", "--ig-steps", "4",
         "--out", str(out)], capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = read_explanation(out)
    assert record["generation"]["n_tokens"] == 8 and record["generation"]["text"].strip()
    assert record["model"]["source_gguf"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    flat = "".join("".join(page.extract_text() for page in PdfReader(BytesIO((out / "explanation.pdf").read_bytes()))
                           .pages).split())
    assert "".join(record["generation"]["text"].split()) in flat


def test_a_long_prompt_is_drawn_by_words_over_several_figures(tiny_llama_dir, tmp_path):
    from audit.explain.report import MAX_COLUMNS, explanation_context

    words = [f"{w}{i}" for i, w in enumerate(["income", "credit", "score", "rent", "debt"] * 16)]
    record = explain(model=str(tiny_llama_dir), prompt=" ".join(words), max_new_tokens=3, ig_steps=2,
                     out=tmp_path / "out", quiet=True).record
    heatmap = explanation_context(record)["heatmap"]
    assert f"summed to its {len(words)} words" in heatmap["note"] and "Only the" not in heatmap["note"]
    drawn = [label for figure in heatmap["figures"] for label in figure["labels"]]
    assert drawn[:len(words)] == words and all(len(f["labels"]) <= MAX_COLUMNS for f in heatmap["figures"])


def test_input_x_gradient_report_has_no_completeness_columns(tiny_llama_dir, tmp_path):
    result = explain(model=str(tiny_llama_dir), prompt="Can I borrow $5,000?", max_new_tokens=3,
                     method_name="input-x-gradient", out=tmp_path / "out", quiet=True)
    attribution = result.record["attribution"]
    assert attribution["completeness"] is None and attribution["reference_log_probs"] is None
    assert attribution["backward_passes"] == 3 and attribution["forward_rows"] == 2  # the prefix, then the rest
    html = result.paths["explanation.html"].read_text()
    assert "Input x Gradient" in html and "Gap</th>" not in html
