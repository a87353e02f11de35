"""The ``audit`` command line: parse flags, call one library function, map outcomes to exit codes.

Exit codes: 0 every blocking control passed; 1 a blocking control failed; 4 inconclusive: no blocking control
failed but at least one could not be decided (``audit.policy``); 2 bad input (a one-line message naming the file, field or flag); 3 the audit itself broke (a bug: the
traceback follows the message), so a CI job never mistakes a crash for a failed control.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from audit.errors import AuditError
from audit.explaining import DEFAULT_METHODS
from audit.formats import MODES as FORMAT_MODES
from audit.generation import DEFAULT_IG_STEPS as DEFAULT_EXPLAIN_IG_STEPS
from audit.generation import DEFAULT_MAX_NEW_TOKENS
from audit.generation import DEFAULT_OUT as DEFAULT_EXPLAIN_OUT
from audit.internals import PATCHED_PAIRS
from audit.models.loading import DEVICE_MAPS, DEVICES, DTYPES
from audit.models.spec import DEFAULT_MODEL
from explainers.generation import METHODS as GENERATION_METHODS
from audit.pipeline import DEFAULT_IG_MAX_STEPS, DEFAULT_IG_STEPS, DEFAULT_OUT, DEFAULT_SUITE
from audit.policy import JURISDICTIONS, verdict_sentence


INTERNAL_ERROR = 3


class AuditGroup(click.Group):
    """Prints bad input, ours or click's, as one line ``audit: error: <message>`` and exits with code 2."""

    def main(self, args=None, prog_name=None, **kwargs):
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **kwargs)
        except AuditError as exc:
            click.echo(f"audit: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            click.echo(f"audit: error: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("audit: aborted", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug, not a finding: exit 3, never 1 (a failed control)
            click.echo(f"audit: internal error: {type(exc).__name__}: {exc} (please report it)", err=True)
            traceback.print_exc()
            sys.exit(INTERNAL_ERROR)
        sys.exit(rv if isinstance(rv, int) else 0)


def _pair_count(ctx, param, value: str) -> int | None:
    """``--patching-pairs``: a positive count, or ``all`` (None)."""
    if value.strip().lower() == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"must be a whole number or 'all', got {value!r}") from None


@click.group(cls=AuditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oss-model-audit")
def main():
    """Explainability and compliance audits of open-source transformer models."""


@main.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Bundled alias, local Hugging Face folder, .gguf file, or hub id already in the local cache.")
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
def run(model, suite, rows, policy, out, limit, seed, device, dtype, device_map, ig_tolerance, ig_max_steps, ig_steps,
        methods, patching_pairs, jurisdiction, format_sensitivity, allow_pickle, trust_remote_code, no_cache, cache_dir,
        junit):
    """Audit a model on a suite and write the evidence bundle and PDF report.

    Exit 0 when every blocking control passed, 1 when one failed, 4 when none failed but one could not be
    decided (inconclusive or not evaluated); the report is written in all three cases.
    """
    from audit.pipeline import run as run_audit

    result = run_audit(
        model=model, suite=suite, rows=rows, policy=policy, out=out, limit=limit, seed=seed, device=device, dtype=dtype,
        device_map=device_map, ig_steps=ig_steps, ig_tolerance=ig_tolerance, ig_max_steps=ig_max_steps,
        methods=methods, patching_pairs=patching_pairs, jurisdiction=jurisdiction,
        format_sensitivity=format_sensitivity, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
        cache=not no_cache, cache_dir=cache_dir, junit=junit, command_line=["audit", *sys.argv[1:]],
    )
    click.echo(summary_table(result.bundle.controls, result.bundle.verdict, result.paths.get("report.pdf")))
    return result.exit_code


@main.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="A causal LM: bundled alias, local Hugging Face folder, .gguf file, or hub id already in the "
              "local cache.")
@click.option("--prompt", default=None, help="The user's question to answer and explain.")
@click.option("--prompt-file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Read the prompt from this UTF-8 text file instead.")
@click.option("--system", default=None, help="System prompt (default: the chat template's own, if any).")
@click.option("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, show_default=True,
              help="Longest answer, in tokens; the answer ends earlier at the model's end-of-sequence token.")
@click.option("--method", "method_name", type=click.Choice(GENERATION_METHODS), default="ig", show_default=True,
              help="Integrated Gradients (with its completeness gap) or the cheaper Input x Gradient.")
@click.option("--ig-steps", type=int, default=DEFAULT_EXPLAIN_IG_STEPS, show_default=True,
              help="Gauss-Legendre steps of Integrated Gradients (cost grows in proportion).")
@click.option("--out", default=DEFAULT_EXPLAIN_OUT, show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder for explanation.json, explanation.html, explanation.pdf and manifest.sha256.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Weights' dtype; log-probabilities are always computed in float32 from the logits.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle weight files (.bin/.pt); they can run code on load.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code shipped with the weights to run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Recorded; decoding and attribution are "
              "deterministic.")
def explain(model, prompt, prompt_file, system, max_new_tokens, method_name, ig_steps, out, device, dtype, allow_pickle,
            trust_remote_code, seed):
    """Answer a prompt with a causal LM and attribute every answer token to the prompt and the answer before it."""
    from audit.generation import explain as explain_answer

    result = explain_answer(
        model=model, prompt=prompt, prompt_file=prompt_file, system=system, max_new_tokens=max_new_tokens,
        method_name=method_name, ig_steps=ig_steps, out=out, device=device, dtype=dtype, allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code, seed=seed, command_line=["audit", *sys.argv[1:]],
    )
    click.echo(f"answer: {result.record['generation']['text']}\nreport: {result.paths['explanation.pdf']}")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the re-rendered report (default: the bundle's folder).")
def report(bundle, out):
    """Re-render the report (HTML, PDF) and junit.xml from an evidence bundle, or an explanation's report from
    its explanation.json, without the model."""
    from audit.artifacts import audit_files
    from audit.evidence import read_bundle, write_outputs
    from audit.report_generation import PDF_FILE, holds_explanation, rerender

    if holds_explanation(bundle):
        click.echo(f"report: {rerender(bundle, out)[PDF_FILE]}")
        return
    evidence = read_bundle(bundle)
    folder = out or (bundle if bundle.is_dir() else bundle.parent)
    paths = write_outputs(folder, audit_files(evidence, report=True))
    click.echo(f"report: {paths['report.pdf']}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Also check that this model (spec as for `audit run`) is the audited one.")
@click.option("--pubkey", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also check the signature (attestation.intoto.jsonl) with this Ed25519 public key (PEM).")
@click.option("--allow-pickle", is_flag=True, help="With --model: allow pickle weight files.")
@click.option("--trust-remote-code", is_flag=True, help="With --model: allow model code shipped with the weights.")
def verify(folder, model, pubkey, allow_pickle, trust_remote_code):
    """Check an audit folder: hashes, schema, controls re-derived, artifacts re-rendered, model, signature.

    Exit 0 intact, 1 tampered (every change is named), 2 unreadable.
    """
    from audit.verify import verify_folder

    result = verify_folder(folder, model=model, public_key=pubkey, allow_pickle=allow_pickle,
                           trust_remote_code=trust_remote_code)
    for line in result.passed:
        click.echo(f"ok       {line}")
    for line in result.problems:
        click.echo(f"CHANGED  {line}")
    click.echo(f"{folder}: " + ("intact" if result.intact else f"TAMPERED ({len(result.problems)} problems)"))
    return result.exit_code


@main.command()
@click.argument("kind", type=click.Choice(["bundle", "explanation"]), default="bundle")
def schema(kind):
    """Print the JSON Schema (draft 2020-12) of bundle.json, or of explanation.json, for other tools to validate
    against."""
    from importlib import resources

    click.echo((resources.files("audit.schemas") / f"{kind}.schema.json").read_text(encoding="utf-8"), nl=False)


@main.command()
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--out", default="audit-diff", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for diff.json, diff.html and diff.pdf.")
def diff(base, candidate, out):
    """Compare a CANDIDATE audit with the last validated BASE audit; exit 1 when a blocking control regressed."""
    from audit.diff import diff_bundles
    from audit.evidence import read_bundle, write_outputs
    from audit.report_diff import render_diff

    found = diff_bundles(read_bundle(base), read_bundle(candidate))
    paths = write_outputs(out, render_diff(found))
    for control in found["controls"]:
        if control["regressed"] or control["significant"]:
            click.echo(f"{control['id']:<32} {control['base']['status'] if control['base'] else '-':>14} -> "
                       f"{control['candidate']['status']:<14}" + (" REGRESSED" if control["regressed"] else
                                                                  " significant change"))
    click.echo(f"diff: {found['verdict']['status']} (candidate verdict {found['candidate']['verdict'].upper()}); "
               f"{paths['diff.pdf']}")
    return found["verdict"]["exit_code"]


@main.command()
@click.option("--out", "prefix", default="audit-signing", show_default=True, type=click.Path(path_type=Path),
              help="Writes PREFIX.key (private, mode 0600) and PREFIX.pub.")
def keygen(prefix):
    """Make an Ed25519 key pair (PEM) for `audit sign`."""
    from audit.signing import generate_key_pair

    pair = generate_key_pair(prefix)
    click.echo(f"private key: {pair.private} (keep it secret)\npublic key:  {pair.public}\nkey id:      {pair.key_id}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Ed25519 private key (PEM), e.g. from `audit keygen`.")
@click.option("--signer", required=True, help="Name and role of the person signing, shown on the sign-off page.")
def sign(folder, key, signer):
    """Sign an audit folder: an in-toto attestation of every artifact in a DSSE envelope."""
    from audit.signing import ATTESTATION_FILE, sign_folder

    signoff = sign_folder(folder, key, signer)
    click.echo(f"signed by {signoff['signer']} on {signoff['signed_at']} with key {signoff['key_id']}\n"
               f"attestation: {folder / ATTESTATION_FILE}")


@main.group()
def suites():
    """List, show and validate test suites."""


@suites.command("list")
def suites_list():
    """The bundled suites."""
    from audit.suites import bundled_suite_names, load_suite

    for name in bundled_suite_names():
        suite = load_suite(name)
        click.echo(f"{name:<24} {len(suite.scenarios):>3} scenarios  {suite.title}")


@suites.command("show")
@click.argument("name")
def suites_show(name):
    """Scenarios, attributes and case counts of a suite."""
    from audit.suites import expand, load_suite

    suite = load_suite(name)
    cases = expand(suite)
    click.echo(f"{suite.id} (v{suite.version}): {suite.title}")
    click.echo(f"sha256 {suite.sha256}")
    click.echo(f"question: {suite.question or '(none: for a sequence classifier, which reads the case text alone)'}")
    click.echo(f"answers: favourable {list(suite.answers.favourable)}, unfavourable {list(suite.answers.unfavourable)}")
    click.echo(f"{len(suite.scenarios)} scenarios, {len(cases)} cases")
    for attribute in suite.attributes:
        click.echo(
            f"  attribute {attribute.name!r} ({', '.join(attribute.protected)}): baseline {attribute.baseline.text!r}, "
            f"{len(attribute.values)} counterfactual values"
        )
    for scenario in suite.scenarios:
        click.echo(f"  scenario {scenario.id}: {scenario.title}")


@suites.command("validate")
@click.argument("path")
@click.option("--rows", default=None, help="Also validate a .csv or .jsonl file of applications rendered through the "
              "suite's one scenario template, as `audit run --rows` would.")
def suites_validate(path, rows):
    """Validate a suite YAML (and a rows file); exit 2 with the file, line and field at fault if it is malformed."""
    from audit.suites import expand, load_suite
    from audit.suites.rows import apply_rows

    suite = load_suite(path)
    if rows is not None:
        suite = apply_rows(suite, rows)
    click.echo(f"{path}{f' with {rows}' if rows else ''}: valid ({len(suite.scenarios)} scenarios, "
               f"{len(expand(suite))} cases)")


@main.group()
def policy():
    """List and validate audit policies."""


@policy.command("list")
def policy_list():
    """The bundled policies (a suite uses the policy of its own name when there is one, else default)."""
    from audit.policy import bundled_policy_names, load_policy

    for name in bundled_policy_names():
        found = load_policy(None, suite_id=name)
        click.echo(f"{name:<24} {len(found.controls):>3} controls  jurisdiction {found.jurisdiction or 'any':<4} "
                   f"{found.title}")


@policy.command("validate")
@click.argument("path")
def policy_validate(path):
    """Validate a policy YAML; exit 2 with the field at fault if it is malformed."""
    from audit.policy import load_policy

    found = load_policy(path)
    blocking = sum(settings.blocking for settings in found.controls.values())
    click.echo(f"{path}: valid ({len(found.controls)} controls, {blocking} blocking; "
               f"jurisdiction {found.jurisdiction or 'any'})")


def summary_table(controls: list[dict], verdict: dict, pdf: Path | None) -> str:
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


if __name__ == "__main__":
    main()
