"""User-facing errors.

Every message names the file, field or flag at fault, fits on one line, and
maps to exit code 2 in the CLI. Code that detects bad input raises one of
these; nothing else in the package prints errors.
"""


class AuditError(Exception):
    """Bad input from the user: the CLI prints the message and exits with code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class ModelSpecError(AuditError):
    """The --model value cannot be resolved or loaded safely."""


class SuiteError(AuditError):
    """A suite YAML file is missing, malformed or inconsistent."""


class PolicyError(AuditError):
    """A policy YAML file is missing, malformed or inconsistent."""


class BundleError(AuditError):
    """An evidence bundle cannot be read or has an unsupported schema."""


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (difflib ratio >= 0.6), else an empty string."""
    from difflib import get_close_matches

    close = get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
