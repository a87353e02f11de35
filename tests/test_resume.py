"""Resume and determinism with real processes: `audit run` killed with SIGKILL part-way and run again finishes
with the bundle an uninterrupted run writes; two runs with the same seed write the same bundle.

"The same" is: equal apart from timestamps, durations (every key that holds seconds), the process's peak
memory, the results cache's hit counts, the model work each stage did (none for what the cache already held) and
the command line, which names the cache folder.
"""

from __future__ import annotations

import json
import re
from collections import Counter
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMED = re.compile(r"seconds|^durations_s$|_at$|^peak_memory_bytes$")
RUN_SPECIFIC = {"result_cache", "command_line", "work"}  # work: what the cache did not already hold
KILL_TIMEOUT_S = 300


def comparable(value):
    """The bundle without what legitimately differs between two runs of the same audit."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not TIMED.search(k) and k not in RUN_SPECIFIC}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def command(model: Path, out: Path, cache: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("audit")), "run", "--model", str(model), "--out", str(out),
            "--cache-dir", str(cache), "--limit", "2", "--ig-steps", "4", "--patching-pairs", "2",
            "--methods", "ig,saliency", "--format-sensitivity", "off"]


def cache_entries(cache: Path) -> int:
    return sum(1 for _ in cache.rglob("*.json"))


def bundle_of(out: Path) -> dict:
    return json.loads((out / "bundle.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_llama_dir) -> dict:
    folder = tmp_path_factory.mktemp("uninterrupted")
    finished = subprocess.run(command(tiny_llama_dir, folder / "out", folder / "cache"), capture_output=True, text=True)
    assert finished.returncode in (0, 1, 4), finished.stderr
    return {"bundle": bundle_of(folder / "out"), "entries": cache_entries(folder / "cache")}


def test_two_runs_with_the_same_seed_write_the_same_bundle(uninterrupted, tiny_llama_dir, tmp_path):
    again = subprocess.run(command(tiny_llama_dir, tmp_path / "out", tmp_path / "cache"), capture_output=True,
                           text=True)
    assert again.returncode in (0, 1, 4), again.stderr
    assert comparable(bundle_of(tmp_path / "out")) == comparable(uninterrupted["bundle"])


@pytest.mark.parametrize("kill_after_entries", [1, 60])
def test_a_run_killed_part_way_resumes_to_the_same_bundle(uninterrupted, tiny_llama_dir, tmp_path,
                                                           kill_after_entries):
    """Kill while the first scenario's scores are being stored, and in the second scenario.

    The unit in flight is a case, except in scoring, where it is a scenario: its cases run as one batch that
    shares the prompt prefix and the padding, so a scenario's scores are reused only when all of them were
    stored (scoring a remainder in another batch would change the last digits and the bundle).
    """
    assert uninterrupted["entries"] > kill_after_entries, "the audit must be longer than the kill point"
    out, cache = tmp_path / "out", tmp_path / "cache"
    process = subprocess.Popen(command(tiny_llama_dir, out, cache), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while cache_entries(cache) < kill_after_entries and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    kept = cache_entries(cache)
    assert not out.exists(), "a killed run left a half-written audit folder"

    resumed = subprocess.run(command(tiny_llama_dir, out, cache), capture_output=True, text=True)
    assert resumed.returncode in (0, 1, 4), resumed.stderr
    bundle = bundle_of(out)
    hits = sum(stage["hits"] for stage in bundle["run"]["result_cache"]["stages"].values())
    scenario_sizes = Counter(case["scenario_id"] for case in bundle["cases"])
    assert hits >= kept - max(scenario_sizes.values()), "results stored before the kill are reused"
    assert comparable(bundle) == comparable(uninterrupted["bundle"])
    check = subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
