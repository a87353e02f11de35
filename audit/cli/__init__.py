"""The ``audit`` command line: parse flags, call one library function, map outcomes to exit codes.

One module per command group: ``run``, ``explain``, ``report`` (and ``schema``), ``integrity`` (``verify``,
``sign``, ``keygen``), ``diff``, ``compare`` and ``catalog`` (``suites``, ``policy``). Each imports the library only inside
its command, so ``audit --help`` and ``audit suites list`` start without torch, transformers, captum or shap.

Exit codes: 0 every blocking control passed; 1 a blocking control failed; 4 inconclusive: no blocking control
failed but at least one could not be decided (``audit.controls.policy``); 2 bad input (a one-line message naming
the file, field or flag); 3 the audit itself broke (a bug: the traceback follows the message), so a CI job never
mistakes a crash for a failed control.
"""

from __future__ import annotations

import sys
import traceback

import click

from audit.cli import catalog, compare, diff, explain, integrity, report, run
from audit.errors import AuditError

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


@click.group(cls=AuditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oss-model-audit")
def main():
    """Explainability and compliance audits of open-source transformer models."""


for command in (run.run, explain.explain, report.report, integrity.verify, report.schema, diff.diff, compare.compare,
                integrity.keygen, integrity.sign, catalog.suites, catalog.policy):
    main.add_command(command)
