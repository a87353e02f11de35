"""``audit suites`` and ``audit policy``: list, show and validate the bundled and the user's suites and policies."""

from __future__ import annotations

import click


@click.group()
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


@click.group()
def policy():
    """List and validate audit policies."""


@policy.command("list")
def policy_list():
    """The bundled policies (a suite uses the policy of its own name when there is one, else default)."""
    from audit.controls.policy import bundled_policy_names, load_policy

    for name in bundled_policy_names():
        found = load_policy(None, suite_id=name)
        click.echo(f"{name:<24} {len(found.controls):>3} controls  jurisdiction {found.jurisdiction or 'any':<4} "
                   f"{found.title}")


@policy.command("validate")
@click.argument("path")
def policy_validate(path):
    """Validate a policy YAML; exit 2 with the field at fault if it is malformed."""
    from audit.controls.policy import load_policy

    found = load_policy(path)
    blocking = sum(settings.blocking for settings in found.controls.values())
    click.echo(f"{path}: valid ({len(found.controls)} controls, {blocking} blocking; "
               f"jurisdiction {found.jurisdiction or 'any'})")


@policy.command("controls")
def policy_controls():
    """Every control a policy may name (built-in and installed), with its direction, threshold range and options."""
    from audit.controls.registry import controls_table

    click.echo(controls_table(), nl=False)
