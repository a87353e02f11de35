"""Where a suite comes from: a bundled suite by name, a suite YAML file, or an Anthropic discrim-eval JSONL
(``discrim-eval:PATH.jsonl``), each read as bytes once so its sha256 is the sha256 of what was parsed."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from audit import strict_yaml
from audit.errors import SuiteError
from audit.suites.discrim_eval import is_discrim_eval, load_discrim_eval
from audit.suites.schema import Suite, parse_suite

BUNDLED_PACKAGE = "audit.suites"


def bundled_suite_names() -> list[str]:
    folder = resources.files(BUNDLED_PACKAGE) / "data"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_suite_path(name_or_path: str) -> Path:
    """A bundled suite name (``fair-lending``) or a path to a YAML file."""
    if name_or_path in bundled_suite_names():
        return Path(str(resources.files(BUNDLED_PACKAGE) / "data" / f"{name_or_path}.yaml"))
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise SuiteError(
        f"--suite: {name_or_path!r} is neither a bundled suite ({', '.join(bundled_suite_names())}) nor a file"
    )


def load_suite(name_or_path: str) -> Suite:
    """A bundled suite, a suite YAML file, or ``discrim-eval:PATH.jsonl`` (``audit.suites.discrim_eval``)."""
    if is_discrim_eval(name_or_path):
        return load_discrim_eval(name_or_path)
    path = resolve_suite_path(name_or_path)
    label = path.name
    data = strict_yaml.read_bytes(path, label, SuiteError)
    bundled = name_or_path in bundled_suite_names()
    raw = strict_yaml.load(strict_yaml.decode(data, label, SuiteError), label, SuiteError)
    if raw is None:
        raise SuiteError(f"{label}: is empty; a suite needs id, question, answers, attributes and scenarios")
    source = f"bundled:{name_or_path}" if bundled else str(path)
    return parse_suite(raw, label=label, source=source, sha256=hashlib.sha256(data).hexdigest())
