"""The evidence bundle: the contract between computing and presenting.

``bundle.json`` holds everything the report shows (model fingerprint, suite,
per-case scores, statistics, attributions, adverse-action reasons, controls,
verdict, environment). This module holds its dataclass, its schema version
and JSON Schema checks, and its reading; the manifest is ``audit.evidence.manifest``
and the atomic writes ``audit.evidence.files``.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from audit.errors import BundleError

# 1.1 added adverse_action and internals, 1.2 robustness, 1.3 signoff; older bundles read them as None.
# 1.4 adverse_action.protected_floor (older bundles: no floor).
# 1.5 run.artifacts: the files the audit folder holds beside bundle.json (older bundles: junit.xml and the report).
# 1.6 the inconclusive verdict (verdict.undecided_controls, exit code 4) and tool.revision.
SCHEMA_VERSION = "1.6"
SUPPORTED_SCHEMAS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")
BUNDLE_FILE = "bundle.json"


@dataclass
class EvidenceBundle:
    schema_version: str
    tool: dict[str, Any]
    run: dict[str, Any]
    model: dict[str, Any]
    suite: dict[str, Any]
    policy: dict[str, Any]
    decision: dict[str, Any]
    cases: list[dict[str, Any]]
    fairness: dict[str, Any]
    attributions: dict[str, Any]
    controls: list[dict[str, Any]]
    verdict: dict[str, Any]
    clauses: list[dict[str, Any]]
    adverse_action: dict[str, Any] | None = None  # principal reasons of unfavourable decisions (audit.stages.reasons)
    internals: dict[str, Any] | None = None  # logit lens and probes (audit.stages.internals)
    robustness: dict[str, Any] | None = None  # prompt-format sensitivity (audit.stages.prompt_formats)
    signoff: dict[str, Any] | None = None  # who signed the audit, when, with which key (audit.integrity.signing)

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    def to_json(self) -> bytes:
        return json_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], label: str = BUNDLE_FILE) -> "EvidenceBundle":
        if not isinstance(data, dict):
            raise BundleError(f"{label}: is not an evidence bundle (expected a JSON object)")
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMAS:
            raise BundleError(
                f"{label}: schema_version {_short(repr(version))} is not supported (supported: {', '.join(SUPPORTED_SCHEMAS)})"
            )
        problem = schema_problem(data, "bundle")
        if problem is not None:
            raise BundleError(f"{label}: {problem}")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@functools.cache
def json_schema(name: str = "bundle") -> dict[str, Any]:
    """A record's JSON Schema (draft 2020-12), shipped as ``audit/schemas/<name>.schema.json`` for other tools."""
    return json.loads((resources.files("audit.schemas") / f"{name}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def _validator(name: str):
    """Draft 2020-12, with "integer" meaning a JSON integer only: the standard also counts ``2.0``, which a
    reader that slices or indexes with it cannot use."""
    from jsonschema import Draft202012Validator, validators

    integers_only = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool))
    return validators.extend(Draft202012Validator, type_checker=integers_only)(json_schema(name))


def schema_problem(data: Any, name: str = "bundle") -> str | None:
    """The first place where ``data`` breaks the JSON Schema ``name``, as ``cases[3].score: must be number or
    null, got string``; None when it matches. Every reader of a bundle (report, verify, diff, sign) checks this
    before it reads a field, so a hostile bundle is refused with its field named instead of crashing a reader."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(name).iter_errors(data))
    if error is None:
        return None
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
    where = f"{path}: " if path else ""
    if error.validator == "required":
        missing = next(key for key in error.validator_value if key not in error.instance)
        return f"{path + '.' if path else ''}{missing}: missing from the {name}"
    if error.validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"{where}must be {' or '.join(expected)}, got {_json_type(error.instance)}"
    if error.validator == "enum":
        return f"{where}must be one of {', '.join(map(repr, error.validator_value))}, got {_short(error.instance)}"
    return f"{where}{_short(error.message, 160)}"


def _json_type(value: Any) -> str:
    kinds = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
             (dict, "object"))
    return "null" if value is None else next(name for kind, name in kinds if isinstance(value, kind))


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def json_bytes(value: Any) -> bytes:
    """A JSON file's bytes: indented, UTF-8, NaN and infinity written as null."""
    return (json.dumps(_finite(value), indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_json(path: Path) -> Any:
    """The JSON value in ``path``, read as strictly as it was written: UTF-8, no ``NaN`` or ``Infinity`` (the tool
    writes them as null), no number that overflows a float (``1e400``), and ``BundleError`` naming the file for
    anything unreadable (a number of more digits than Python converts, nesting past the recursion limit)."""
    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text[:20]} is not a finite number")
        return value

    def no_constant(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_float=finite, parse_constant=no_constant)
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise BundleError(f"{path}: is not a bundle (JSON nested too deeply)") from None
    except ValueError as exc:  # json.JSONDecodeError, a non-finite number, more digits than Python converts
        raise BundleError(f"{path}: is not valid JSON ({_short(str(exc).split(';')[0], 120)})") from None


def read_bundle(path: str | Path) -> EvidenceBundle:
    path = Path(path)
    if path.is_dir():
        path = path / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(f"{path}: no evidence bundle there")
    return EvidenceBundle.from_dict(read_json(path), label=str(path))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


