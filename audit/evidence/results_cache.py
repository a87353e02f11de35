"""Per-case results on disk, so that a re-run costs nothing and an interrupted audit resumes.

What is keyed. An entry holds one result of one case: its decision score, answer mass and recorded hidden
states; one method's attribution; one trust measurement (erasure curves of one ordering, leave-one-out,
infidelity, max-sensitivity); or activation patching of one counterfactual pair. Its key is the sha256 of the
canonical JSON of
- the model: its fingerprint id (weights, tokenizer, chat template, config), dtype and device, and the decision
  read-out (``Adapter.describe``: the verbaliser or the labels);
- the case (``case_hash``): every token id of its prompt, the attributed region, its words and slot spans, its
  id and text;
- the kind of result and every parameter it depends on (the method's ``params``, such as the IG step count;
  seeds; the randomised layers of the sanity check; the word ordering erased; the cases scored together);
- ``CACHE_FORMAT``.
The tool's version is not in the key: a change that touches only the report reuses every entry.

Why a kill loses at most one entry. Each entry is one file, written to a temporary file in its own folder and
renamed over its final name (``os.replace``, atomic), so a file under its final name is always complete. A kill
leaves at most the entry in flight behind, as a stray ``*.tmp`` file that is never read.

What invalidates entries. A change of any key part misses: other weights, tokenizer, chat template, dtype or
device, other answer words, another prompt, method parameter, seed or trust plan. A code change that alters a
result must bump ``CACHE_FORMAT``. An entry that cannot be read or parsed (truncated, corrupt) is a miss:
recomputed and overwritten. A cache folder that cannot be written is reported once and the audit runs without
it.

Layout: ``<folder>/<model id[:16]>/<key[:2]>/<key>.json``; ``<folder>`` is ``--cache-dir``, else
``$OSS_MODEL_AUDIT_RESULTS_CACHE``, else ``results/`` in the tool's cache folder (``default_cache_dir``).
Hidden states are stored inside the entry as base64 of their bytes, so an entry stays one file.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from audit.errors import AuditError
from audit.evidence.files import replace_atomically
from audit.evidence.hashing import sha256_text
from audit.options import default_cache_dir
from audit.progress import note

CACHE_FORMAT = 2  # 2: forward passes counted by a hook; bump when a change of code alters a cached result
RESULTS_CACHE_ENV = "OSS_MODEL_AUDIT_RESULTS_CACHE"


@dataclass
class Entry:
    value: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def results_folder(cache_dir: str | Path | None) -> Path:
    """``--cache-dir``, else ``$OSS_MODEL_AUDIT_RESULTS_CACHE``, else ``results/`` in the tool's cache folder."""
    if cache_dir is not None:
        folder = Path(cache_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise AuditError(f"--cache-dir: {folder} is a file, not a folder")
        return folder
    configured = os.environ.get(RESULTS_CACHE_ENV)
    return Path(configured).expanduser() if configured else default_cache_dir() / "results"


def open_cache(enabled: bool, cache_dir: str | Path | None, *, quiet: bool = False) -> "ResultsCache":
    """The run's cache (``--no-cache``: one that stores nothing; ``--cache-dir`` is checked either way)."""
    folder = results_folder(cache_dir)
    return ResultsCache(folder, quiet=quiet) if enabled else ResultsCache(None)


def canonical_hash(value: Any) -> str:
    """sha256 of the canonical JSON form (sorted keys, no whitespace; numpy values as plain numbers)."""
    return sha256_text(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain))


def case_hash(encoded) -> str:
    """sha256 of everything of an encoded case that a result can depend on."""
    return canonical_hash({
        "case_id": encoded.case.case_id,
        "text": encoded.case.text,
        "input_ids": encoded.input_ids.tolist(),
        "region": list(encoded.region),
        "token_chars": encoded.token_chars,
        "words": [[w.text, list(w.chars), list(w.tokens), w.slot] for w in encoded.words],
        "slot_tokens": encoded.slot_tokens,
    })


def model_key(adapter) -> dict[str, Any]:
    """The parts of the model that change numbers: weights and tokenizer (fingerprint), dtype, device, read-out."""
    return {"id": adapter.fingerprint["id"], "dtype": adapter.fingerprint["dtype"], "device": adapter.device.type,
            "decision": adapter.describe()}


class ResultsCache:
    """Fetch and store per-case results; counts hits and misses per audit stage. ``folder`` None: store nothing."""

    def __init__(self, folder: Path | None, *, quiet: bool = False):
        self.folder = folder
        self.quiet = quiet
        self.unavailable: str | None = None  # why a configured folder is not used
        self.stages: dict[str, dict[str, int]] = {}
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                if not os.access(folder, os.W_OK):
                    raise PermissionError("permission denied")
            except OSError as why:
                self._give_up(why)

    @property
    def enabled(self) -> bool:
        return self.folder is not None and self.unavailable is None

    def key(self, kind: str, adapter, encoded, params: dict[str, Any]) -> str:
        return canonical_hash({"format": CACHE_FORMAT, "model": model_key(adapter), "case": case_hash(encoded),
                            "kind": kind, "params": params})

    def fetch(self, kind: str, adapter, encoded, params: dict[str, Any]) -> Entry | None:
        """The stored result, or None when absent, unreadable or the cache is off."""
        if not self.enabled:
            return None
        key = self.key(kind, adapter, encoded, params)
        try:
            stored = json.loads(self._path(adapter, key).read_text(encoding="utf-8"))
            if stored["key"] != key:
                return None
            return Entry(stored["value"], _decode_arrays(stored["arrays"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, kind: str, adapter, encoded, params: dict[str, Any], value: dict[str, Any],
              arrays: dict[str, np.ndarray] | None = None) -> Entry:
        """Write one entry atomically; returns it as a later fetch will (JSON types)."""
        if not self.enabled:
            return Entry(value, arrays or {})
        key = self.key(kind, adapter, encoded, params)
        text = json.dumps({"key": key, "kind": kind, "value": value, "arrays": _encode_arrays(arrays or {})},
                          default=_plain)
        try:
            path = self._path(adapter, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, text.encode("utf-8"), mode=0o600, durable=False)  # case text: owner only
        except OSError as why:
            self._give_up(why)
        return Entry(json.loads(text)["value"], arrays or {})

    def remember(self, kind: str, adapter, encoded, params: dict[str, Any], compute: Callable[[], dict[str, Any]],
                 *, stage: str) -> dict[str, Any]:
        """The stored value, else ``compute()`` stored; counted under ``stage``."""
        found = self.fetch(kind, adapter, encoded, params)
        self.tally(stage, hits=found is not None, misses=found is None)
        if found is not None:
            return found.value
        return self.store(kind, adapter, encoded, params, compute()).value

    def explain(self, explainer, adapter, encoded, *, stage: str = "attribution", **context) -> dict[str, Any]:
        """``explainer.explain(adapter, encoded).to_dict()`` through the cache; ``context`` keys anything else the
        result depends on (the randomised layers of the sanity check)."""
        params = {"method": explainer.name, "params": explainer.params, **context}
        return self.remember("attribution", adapter, encoded, params,
                             lambda: explainer.explain(adapter, encoded).to_dict(), stage=stage)

    def tally(self, stage: str, *, hits: int = 0, misses: int = 0) -> None:
        if self.enabled:
            counts = self.stages.setdefault(stage, {"hits": 0, "misses": 0})
            counts["hits"] += int(hits)
            counts["misses"] += int(misses)

    def summary(self) -> dict[str, Any]:
        """What the bundle's ``run["result_cache"]`` records."""
        return {"enabled": self.enabled, "dir": str(self.folder) if self.folder is not None else None,
                "unavailable": self.unavailable, "stages": self.stages}

    def _path(self, adapter, key: str) -> Path:
        return self.folder / adapter.fingerprint["id"][:16] / key[:2] / f"{key}.json"

    def _give_up(self, why: OSError) -> None:
        self.unavailable = f"cannot write to {self.folder}: {why.strerror or why}"
        note(f"results cache: {self.unavailable}; running without the cache", quiet=self.quiet)


NO_CACHE = ResultsCache(None)  # for callers outside an audit run: stores nothing, counts nothing


def _encode_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {
        name: {"dtype": array.dtype.str, "shape": list(array.shape),
               "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")}
        for name, array in arrays.items()
    }


def _decode_arrays(stored: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    return {
        name: np.frombuffer(base64.b64decode(item["data"], validate=True), dtype=np.dtype(item["dtype"]))
        .reshape(item["shape"]).copy()
        for name, item in stored.items()
    }


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
