"""``audit run``: audit a model on a suite (``audit.pipeline.run``) and print the controls."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from audit.options import (
    DEFAULT_IG_MAX_STEPS, DEFAULT_IG_STEPS, DEFAULT_METHODS, DEFAULT_MODEL, DEFAULT_OUT, DEFAULT_SUITE, DEVICE_MAPS,
    DEVICES, DTYPES, FORMAT_MODES, JURISDICTIONS, PATCHED_PAIRS, RunOptions,
)


def _pair_count(ctx, param, value: str) -> int | None:
    """``--patching-pairs``: a positive count, or ``all`` (None)."""
    if value.strip().lower() == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"must be a whole number or 'all', got {value!r}") from None


@click.command()
@click.option("--model", "models", multiple=True, default=(DEFAULT_MODEL,), show_default=True,
              help="Bundled alias, local Hugging Face folder, .gguf file, adapter folder, or hub id already in the "
              "local cache. Repeat it to audit several models one after another, each into its own folder of "
              "--out (N-NAME), and compare them against the first (--out/compare, as `audit compare`).")
@click.option("--base-model", default=None,
              help="With an adapter folder as --model: its base model (any --model form); default: the adapter "
              "config's base_model_name_or_path, as a local folder or a hub id in the local cache.")
@click.option("--suite", default=DEFAULT_SUITE, show_default=True, help="Bundled suite name or path to a suite YAML.")
@click.option("--rows", default=None,
              help="A .csv or .jsonl file of your own applications: each row fills the one scenario template of "
              "--suite and becomes a scenario.")
@click.option("--policy", default=None, help="Policy YAML with control thresholds (default: the bundled policy).")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder for bundle.json, report.html, report.pdf and manifest.sha256.")
@click.option("--limit", type=int, default=None, help="Audit only the first N scenarios (all variants of each).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random step (bootstrap).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Weights' dtype; decision scores are always computed in float32 from the logits.")
@click.option("--device-map", type=click.Choice(DEVICE_MAPS), default=None,
              help="'auto': spread a model larger than one GPU over the visible GPUs (and CPU) with accelerate.")
@click.option("--ig-tolerance", type=float, default=None,
              help="Adaptive IG: double the Gauss-Legendre steps until the completeness gap is at most this fraction "
              "of F(x) - F(x') (e.g. 0.05), or --ig-max-steps is reached. Default: fixed --ig-steps.")
@click.option("--ig-max-steps", type=int, default=DEFAULT_IG_MAX_STEPS, show_default=True,
              help="Step budget of adaptive IG.")
@click.option("--ig-steps", type=int, default=DEFAULT_IG_STEPS, show_default=True,
              help="Integration steps of Integrated Gradients.")
@click.option("--methods", default=None,
              help="Comma-separated attribution methods (default: " + ",".join(DEFAULT_METHODS) + ").")
@click.option("--patching-pairs", default=str(PATCHED_PAIRS), show_default=True, callback=_pair_count,
              help="Counterfactual pairs to run activation patching on, or 'all' (about 7.5 s a pair for "
              "SmolLM2-135M on two CPU cores).")
@click.option("--jurisdiction", type=click.Choice(JURISDICTIONS), default=None,
              help="Where the audited use is deployed: the report's crosswalk shows that jurisdiction's clauses "
              "(default: the policy's jurisdiction, else every clause).")
@click.option("--format-sensitivity", type=click.Choice(FORMAT_MODES), default="baselines", show_default=True,
              help="Re-ask the cases in other prompt formats (prefill, system prompt, order of facts): the "
              "baseline cases only, every case with every fairness statistic per format, or off.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle weight files (.bin/.pt); they can run code on load.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code shipped with the weights to run.")
@click.option("--no-cache", is_flag=True,
              help="Neither reuse nor store per-case results (scores, attributions, trust checks, patching).")
@click.option("--cache-dir", default=None, type=click.Path(path_type=Path),
              help="Folder of the per-case results cache (default: $OSS_MODEL_AUDIT_RESULTS_CACHE, else "
              "~/.cache/oss-model-audit/results).")
@click.option("--junit", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the controls as JUnit XML here (junit.xml is always written into --out).")
def run(models, base_model, suite, rows, policy, out, limit, seed, device, dtype, device_map, ig_tolerance, ig_max_steps, ig_steps,
        methods, patching_pairs, jurisdiction, format_sensitivity, allow_pickle, trust_remote_code, no_cache, cache_dir,
        junit):
    """Audit a model on a suite and write the evidence bundle and PDF report.

    Exit 0 when every blocking control passed, 1 when one failed, 4 when none failed but one could not be
    decided (inconclusive or not evaluated); the report is written in all three cases.
    """
    from audit.pipeline import run as run_audit

    def audit_one(model: str, into: Path, junit_path: Path | None):
        return run_audit(options=RunOptions(
            model=model, base_model=base_model, suite=suite, rows=rows, policy=policy, out=into, limit=limit,
            seed=seed, device=device, dtype=dtype, device_map=device_map, ig_steps=ig_steps,
            ig_tolerance=ig_tolerance, ig_max_steps=ig_max_steps, methods=methods, patching_pairs=patching_pairs,
            jurisdiction=jurisdiction, format_sensitivity=format_sensitivity, allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code, cache=not no_cache, cache_dir=cache_dir, junit=junit_path,
            command_line=["audit", *sys.argv[1:]],
        ))

    if len(models) == 1:
        result = audit_one(models[0], out, junit)
        click.echo(summary_table(result.bundle.controls, result.bundle.verdict, result.paths.get("report.pdf")))
        return result.exit_code
    return run_several(models, out, junit, audit_one)


def model_folders(models: tuple[str, ...], out: Path) -> list[Path]:
    """``out/1-NAME``, ``out/2-NAME``, ...: NAME from the model's alias or its path's last part."""
    from audit.suites.expand import slugify

    return [out / f"{i}-{slugify(Path(model.rstrip('/')).name or model)}" for i, model in enumerate(models, 1)]


def run_several(models: tuple[str, ...], out: Path, junit: Path | None, audit_one) -> int:
    """Audit each model into its own folder, then compare them against the first; the exit code is the
    comparison's (1 when a candidate fails a blocking control the first model passes), each folder a complete,
    verifiable audit."""
    import shutil

    from audit.cli.compare import comparison_lines
    from audit.integrity.compare import write_compare

    from audit.models.spec import parse_model_spec

    if len(set(models)) != len(models):
        raise click.BadParameter("the same model is given twice", param_hint="'--model'")
    for model in models:  # every spec resolves before the first audit starts
        parse_model_spec(model)
    if out.parent.is_dir():
        out.mkdir(exist_ok=True)
    folders = model_folders(models, out)
    for model, folder in zip(models, folders):
        click.echo(f"== {model} -> {folder}")
        result = audit_one(model, folder, None)
        click.echo(summary_table(result.bundle.controls, result.bundle.verdict, result.paths.get("report.pdf")))
    found, paths = write_compare(folders, out / "compare")
    click.echo(comparison_lines(found))
    click.echo(f"compare: {found['verdict']['status']}; {paths['compare.pdf']}")
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths["junit.xml"], junit)
    return found["verdict"]["exit_code"]


def summary_table(controls: list[dict], verdict: dict, pdf: Path | None) -> str:
    """The controls as a plain-text table (value, 95 % CI, threshold), the verdict sentence and the report's path."""
    from audit.controls.policy import verdict_sentence

    rows = [("control", "status", "value", "95% CI", "threshold")]
    for control in controls:
        ci = control["ci"]
        rows.append((
            control["id"] + ("" if control["blocking"] else " (advisory)"),
            control["status"].upper(),
            "-" if control["value"] is None else f"{control['value']:.3f}",
            "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
            ("<= " if control["direction"] == "max" else ">= ") + f"{control['threshold']:g}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"verdict: {verdict_sentence(verdict, controls)}")
    if pdf is not None:
        lines.append(f"report: {pdf}")
    return "\n".join(lines)
