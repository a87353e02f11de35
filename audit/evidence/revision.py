"""The exact source of the tool that wrote a bundle, beyond its version number.

"0.1.0" names many builds. A bundle records ``tool.revision``:

- ``{"kind": "git", "id": <commit>, "dirty": bool}`` when the running package sits in a git checkout (an
  editable install, CI's clean clone); ``dirty`` is true when files of the tool's packages differ from the
  commit or are not in it (ignored files, such as caches, aside), so the commit alone does not reproduce the run;
- ``{"kind": "files", "id": <sha256>, "dirty": null}`` otherwise (a wheel install, or no ``git`` on the PATH):
  the sha256 over the sorted ``path sha256`` lines of every file of the tool's packages (``audit``,
  ``explainers``, ``report_templates``; caches left out), the same digest for the same installed code.

Computed once per process. ``git`` is run read-only with a short timeout and no network.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

TOOL_NAME = "oss-model-audit"
TOOL_VERSION = "0.1.0"  # pyproject.toml's version; ``audit.__version__``
from audit.evidence.hashing import sha256_file

PACKAGES = ("audit", "explainers", "report_templates")
GIT_TIMEOUT_S = 5


@functools.lru_cache(maxsize=1)
def tool_revision() -> dict[str, Any]:
    """The running tool's source revision (module docstring)."""
    root = Path(__file__).resolve().parents[2]  # audit/evidence/revision.py -> the folder holding audit/
    return _git_revision(root) or {"kind": "files", "id": files_digest(root), "dirty": None}


def files_digest(root: Path) -> str:
    """sha256 over ``relative-path sha256`` lines of the tool's package files under ``root``, sorted by path."""
    lines = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                lines.append(f"{path.relative_to(root).as_posix()} {sha256_file(path)}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def _git_revision(root: Path) -> dict[str, Any] | None:
    """The checkout's HEAD commit and whether tracked files differ from it; None outside a git checkout."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return None
    try:
        commit = _git(git, root, "rev-parse", "HEAD")
        changes = _git(git, root, "status", "--porcelain", "--untracked-files=normal", "--", *PACKAGES)
    except (OSError, subprocess.SubprocessError):
        return None
    if len(commit) != 40:
        return None
    return {"kind": "git", "id": commit, "dirty": bool(changes)}


def _git(git: str, root: Path, *args: str) -> str:
    done = subprocess.run([git, "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                          check=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    return done.stdout.strip()
