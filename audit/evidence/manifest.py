"""The manifest of an audit folder: ``manifest.sha256`` lists the sha256 of every file in the format of
``sha256sum``, so ``sha256sum -c manifest.sha256`` checks a folder without this tool."""

from __future__ import annotations

import re
from pathlib import Path

from audit.errors import BundleError
from audit.evidence.hashing import sha256_file

MANIFEST_FILE = "manifest.sha256"


MANIFEST_LINE = re.compile(r"([0-9a-f]{64})  ([^/\\]+)")


def manifest_text(folder: Path, names: list[str]) -> str:
    return "".join(f"{sha256_file(folder / name)}  {name}\n" for name in sorted(names))


def read_manifest(folder: Path) -> dict[str, str]:
    """File name -> sha256 from ``folder/manifest.sha256``; ``BundleError`` when there is none to read."""
    if not folder.is_dir():
        raise BundleError(f"{folder}: no audit folder there")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{path}: missing; not an audit folder written by `audit run`")
    entries: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BundleError(f"{path}: is not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        match = MANIFEST_LINE.fullmatch(line)
        if not match or match.group(2) in (".", ".."):
            raise BundleError(f"{path}: line {number}: expected '<sha256>  <file name>', got {line[:80]!r}")
        if match.group(2) in entries:
            raise BundleError(f"{path}: line {number}: lists {match.group(2)} a second time")
        entries[match.group(2)] = match.group(1)
    return entries
