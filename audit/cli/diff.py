"""``audit diff``: compare a candidate audit with the last validated base audit (``audit.integrity.diff``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--out", default="audit-diff", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for diff.json, diff.html and diff.pdf.")
def diff(base, candidate, out):
    """Compare a CANDIDATE audit with the last validated BASE audit; exit 1 when a blocking control regressed."""
    from audit.integrity.diff import write_diff

    found, paths = write_diff(base, candidate, out)
    for control in found["controls"]:
        if control["regressed"] or control["significant"]:
            click.echo(f"{control['id']:<32} {control['base']['status'] if control['base'] else '-':>14} -> "
                       f"{control['candidate']['status']:<14}" + (" REGRESSED" if control["regressed"] else
                                                                  " significant change"))
    click.echo(f"diff: {found['verdict']['status']} (candidate verdict {found['candidate']['verdict'].upper()}); "
               f"{paths['diff.pdf']}")
    return found["verdict"]["exit_code"]
