"""``audit compare``: candidate models' audits side by side, with paired statistics (``audit.integrity.compare``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", default="audit-compare", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for compare.json, compare.html, compare.pdf and junit.xml.")
@click.option("--reference", default=None,
              help="The incumbent: one of FOLDERS (its path or folder name); default: the first.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paired bootstraps.")
def compare(folders, out, reference, seed):
    """Compare two or more audit FOLDERS of one suite version and policy; exit 1 when a candidate fails a
    blocking control that the reference does not fail (passes, or could not decide)."""
    from audit.integrity.compare import write_compare

    found, paths = write_compare(list(folders), out, reference=reference, seed=seed)
    click.echo(comparison_lines(found))
    click.echo(f"compare: {found['verdict']['status']}; {paths['compare.pdf']}")
    return found["verdict"]["exit_code"]


def comparison_lines(found: dict) -> str:
    """Per candidate: its relation, the controls it regressed, the groups whose shift moved, changed decisions."""
    lines = []
    for model in found["models"]:
        lines.append(f"{model['label']:<28} {model['verdict'].upper():<13} {model['relation']}")
    for candidate in found["candidates"]:
        decisions = candidate["decisions"]
        p = decisions["p_value"]
        lines.append(f"{candidate['label']} against {found['reference']}: "
                     f"regressed {', '.join(candidate['regressed_controls']) or 'nothing'}; "
                     f"moved {'; '.join(candidate['moved_groups']) or 'no group'}; "
                     f"{decisions['changed']} of {decisions['n_cases']} decisions differ"
                     + ("" if p is None else f" (McNemar p = {p:.3g})"))
    return "\n".join(lines)
