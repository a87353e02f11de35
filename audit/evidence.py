"""The evidence bundle: the contract between computing and presenting.

``bundle.json`` holds everything the report shows (model fingerprint, suite,
per-case scores, statistics, attributions, adverse-action reasons, controls,
verdict, environment); ``manifest.sha256`` lists the sha256 of every artifact
in the format of ``sha256sum``, so ``sha256sum -c manifest.sha256`` checks a
folder without this tool. Outputs are staged in a temporary folder and renamed
into place, so a failed run never leaves a half-written audit.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from audit.errors import AuditError, BundleError
from audit.hashing import sha256_file

# 1.1 added adverse_action and internals, 1.2 robustness, 1.3 signoff; older bundles read them as None.
# 1.4 adverse_action.protected_floor (older bundles: no floor).
# 1.5 run.artifacts: the files the audit folder holds beside bundle.json (older bundles: junit.xml and the report).
# 1.6 the inconclusive verdict (verdict.undecided_controls, exit code 4) and tool.revision.
SCHEMA_VERSION = "1.6"
SUPPORTED_SCHEMAS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")
BUNDLE_FILE = "bundle.json"
MANIFEST_FILE = "manifest.sha256"
RECORDED_PACKAGES = (
    "oss-model-audit", "torch", "transformers", "accelerate", "gguf", "safetensors", "tokenizers", "captum",
    "shap", "numpy", "scipy", "statsmodels", "matplotlib", "jinja2", "weasyprint", "click", "PyYAML",
)


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
    adverse_action: dict[str, Any] | None = None  # principal reasons of unfavourable decisions (audit.reasons)
    internals: dict[str, Any] | None = None  # logit lens and probes (audit.internals)
    robustness: dict[str, Any] | None = None  # prompt-format sensitivity (audit.formats)
    signoff: dict[str, Any] | None = None  # who signed the audit, when, with which key (audit.signing)

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


def environment(*, seed: int, device: str, dtype: str, command_line: list[str] | None) -> dict[str, Any]:
    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": packages,
        "seed": seed,
        "device": device,
        "dtype": dtype,
        "command_line": command_line if command_line is not None else [os.path.basename(sys.argv[0]), *sys.argv[1:]],
    }


def check_output_dir(out_dir: Path) -> None:
    """Refuse an --out that cannot hold an audit, before any work is done.

    Writability is probed by creating a file, not read from permission bits: root ignores them, and a
    read-only file system sets none.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise AuditError(f"--out: {out_dir} exists and is not a folder")
    parent = out_dir.resolve().parent
    if not parent.is_dir():
        raise AuditError(f"--out: parent folder {parent} does not exist")
    _probe_writable(out_dir if out_dir.is_dir() else parent, "--out")


def check_output_file(path: Path, flag: str) -> None:
    """Refuse an output file path that cannot be written, before any work is done."""
    if path.is_dir():
        raise AuditError(f"{flag}: {path} is a folder, not a file")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise AuditError(f"{flag}: folder {parent} does not exist")
    _probe_writable(parent, flag)


def _probe_writable(folder: Path, flag: str) -> None:
    probe = folder / f".oss-model-audit-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise AuditError(f"{flag}: folder {folder} is not writable ({exc.strerror or exc})") from None


def manifest_text(folder: Path, names: list[str]) -> str:
    return "".join(f"{sha256_file(folder / name)}  {name}\n" for name in sorted(names))


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write one file through a temporary sibling and ``os.replace``: readers see the old file or the new one."""
    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise AuditError(f"{path}: cannot be written ({exc.strerror or exc})") from None


def write_outputs(out_dir: Path, files: dict[str, bytes], stale: tuple[str, ...] = ()) -> dict[str, Path]:
    """Write ``files`` plus a fresh manifest into ``out_dir`` atomically, then delete the ``stale`` files.

    Everything is staged in a sibling temporary folder first; each file then
    replaces its old version with one ``os.replace``. ``stale``: files an earlier
    audit in the folder wrote that this one does not (a report, a signature), which
    would otherwise sit beside the new evidence without being part of it.
    """
    check_output_dir(out_dir)
    staging = out_dir.resolve().parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / MANIFEST_FILE).write_text(manifest_text(staging, list(files)), encoding="utf-8")
        if not out_dir.exists():
            os.replace(staging, out_dir)
        else:
            for name in [*files, MANIFEST_FILE]:
                os.replace(staging / name, out_dir / name)
            for name in stale:
                if name not in files:
                    (out_dir / name).unlink(missing_ok=True)
    except OSError as exc:
        raise AuditError(f"--out: {out_dir} could not be written ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: out_dir / name for name in [*files, MANIFEST_FILE]}
