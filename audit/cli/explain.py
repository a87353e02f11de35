"""``audit explain``: answer a prompt and attribute every answer token (``audit.explain.run.explain_answer``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from audit.options import (
    DEFAULT_MODEL, DEVICES, DTYPES, EXPLAIN_IG_STEPS, EXPLAIN_MAX_NEW_TOKENS, EXPLAIN_OUT, ExplainOptions,
)


class GenerationMethodChoice(click.Choice):
    """The methods ``explainers.generation`` offers, read when the flag is parsed or its help shown.

    ``explainers.generation`` imports torch, so the list is not read when ``audit --help`` builds the commands.
    """

    def __init__(self) -> None:
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        from explainers.generation import METHODS

        return tuple(METHODS)


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="A causal LM: bundled alias, local Hugging Face folder, .gguf file, or hub id already in the "
              "local cache.")
@click.option("--base-model", default=None, help="With an adapter folder as --model: its base model.")
@click.option("--prompt", default=None, help="The user's question to answer and explain.")
@click.option("--prompt-file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Read the prompt from this UTF-8 text file instead.")
@click.option("--system", default=None, help="System prompt (default: the chat template's own, if any).")
@click.option("--max-new-tokens", type=int, default=EXPLAIN_MAX_NEW_TOKENS, show_default=True,
              help="Longest answer, in tokens; the answer ends earlier at the model's end-of-sequence token.")
@click.option("--method", "method_name", type=GenerationMethodChoice(), default="ig", show_default=True,
              help="Integrated Gradients (with its completeness gap) or the cheaper Input x Gradient.")
@click.option("--ig-steps", type=int, default=EXPLAIN_IG_STEPS, show_default=True,
              help="Gauss-Legendre steps of Integrated Gradients (cost grows in proportion).")
@click.option("--out", default=EXPLAIN_OUT, show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder for explanation.json, explanation.html, explanation.pdf and manifest.sha256.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Weights' dtype; log-probabilities are always computed in float32 from the logits.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle weight files (.bin/.pt); they can run code on load.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code shipped with the weights to run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Recorded; decoding and attribution are "
              "deterministic.")
def explain(model, base_model, prompt, prompt_file, system, max_new_tokens, method_name, ig_steps, out, device, dtype, allow_pickle,
            trust_remote_code, seed):
    """Answer a prompt with a causal LM and attribute every answer token to the prompt and the answer before it."""
    from audit.explain.run import explain_answer

    result = explain_answer(options=ExplainOptions(
        model=model, base_model=base_model, prompt=prompt, prompt_file=prompt_file, system=system, max_new_tokens=max_new_tokens,
        method_name=method_name, ig_steps=ig_steps, out=out, device=device, dtype=dtype, allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code, seed=seed, command_line=["audit", *sys.argv[1:]],
    ))
    click.echo(f"answer: {result.record['generation']['text']}\nreport: {result.paths['explanation.pdf']}")
