"""``audit report`` (re-render from a bundle or an explanation, without the model) and ``audit schema``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the re-rendered report (default: the bundle's folder).")
def report(bundle, out):
    """Re-render the report (HTML, PDF) and junit.xml from an evidence bundle, or an explanation's report from
    its explanation.json, without the model."""
    from audit.report.artifacts import rerender_bundle
    from audit.explain.report import PDF_FILE, holds_explanation, rerender

    if holds_explanation(bundle):
        click.echo(f"report: {rerender(bundle, out)[PDF_FILE]}")
        return
    click.echo(f"report: {rerender_bundle(bundle, out)['report.pdf']}")


@click.command()
@click.argument("kind", type=click.Choice(["bundle", "explanation"]), default="bundle")
def schema(kind):
    """Print the JSON Schema (draft 2020-12) of bundle.json, or of explanation.json, for other tools to validate
    against."""
    from importlib import resources

    click.echo((resources.files("audit.schemas") / f"{kind}.schema.json").read_text(encoding="utf-8"), nl=False)
