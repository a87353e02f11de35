"""Atomic writes: an audit folder, a key, an attestation or a cache entry is never seen half-written.

Every file goes through a temporary sibling and ``os.replace`` (atomic on POSIX and Windows); a folder of
outputs is staged in a sibling temporary folder and its files renamed into place one by one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from audit.errors import AuditError
from audit.evidence.manifest import MANIFEST_FILE, manifest_text


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


def replace_atomically(path: Path, data: bytes, mode: int | None = None, durable: bool = True) -> None:
    """Write ``path`` through a uniquely named temporary sibling, flushed to disk, then ``os.replace`` it over
    ``path``: readers see the old file or the new one, never part of it, and concurrent writers of one path
    never share a temporary file. ``mode``: the permission bits of a new file (0600 for a private key; default
    0666 less the umask). ``durable=False`` skips the flush to disk (a cache entry, recomputed if lost).
    Raises ``OSError``; ``write_atomically`` turns it into a message for the user."""
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:16]}-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(partial, 0o666 & ~UMASK if mode is None else mode)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _umask() -> int:
    """The process's umask (read by setting it, and set back at once): the bits a new file does not get."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once, at import, before any other thread can be creating files


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """``replace_atomically``, with an unwritable path reported as ``AuditError`` naming the file."""
    try:
        replace_atomically(path, data, mode)
    except OSError as exc:
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
