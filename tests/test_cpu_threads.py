"""torch's thread pool is sized from the CPUs the process may use (affinity mask, cgroup CPU quota), not from the
machine's cores: a container limited to two CPUs on a large host must not start a thread per host core."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.cpu_threads import cgroup_cpu_limit, size_torch_threads, usable_cpus


def cgroup_tree(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "cgroup"
    proc.write_text(membership)
    root = tmp_path / "sys"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return proc, root


@pytest.mark.parametrize("membership, files, limit", [
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),  # cgroup v2, no quota
    ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),  # a container's own cgroup seen as the root
    ("0::/ci/job\n", {"ci/cpu.max": "150000 100000\n", "ci/job/cpu.max": "max 100000\n"}, 1.5),  # a parent's quota
    ("0::/ci/job\n", {"ci/cpu.max": "400000 100000\n", "ci/job/cpu.max": "100000 100000\n"}, 1.0),  # the smallest
    ("2:cpuacct:/\n1:cpu:/\n0::/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ("4:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/cpu.cfs_quota_us": "300000\n",  # v1, the container's mount
                                     "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 3.0),
    ("0::/\n", {"cpu.max": "garbled\n"}, None),  # an unreadable file is no limit, not a crash
    ("0::/\n", {}, None),
])
def test_the_cgroup_quota_is_the_smallest_along_the_hierarchy(tmp_path, membership, files, limit):
    proc, root = cgroup_tree(tmp_path, membership, files)
    assert cgroup_cpu_limit(proc, root) == limit


def test_usable_cpus_are_the_affinity_mask_capped_by_the_quota_rounded_down(tmp_path):
    mask = len(os.sched_getaffinity(0))
    assert usable_cpus(*cgroup_tree(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000\n"})) == mask
    assert usable_cpus(*cgroup_tree(tmp_path / "half", "0::/\n", {"cpu.max": "50000 100000\n"})) == 1  # at least 1
    assert usable_cpus(*cgroup_tree(tmp_path / "many", "0::/\n", {"cpu.max": "6400000 100000\n"})) == mask


def test_a_quota_sizes_the_pool_unless_the_user_set_it_or_torch_is_already_loaded(tmp_path):
    tree = dict(zip(("proc_cgroup", "root"), cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "100000 100000\n"})))
    environ = {}
    size_torch_threads(environ, {}, **tree)
    assert environ == {"OMP_NUM_THREADS": "1"}  # one CPU's quota on a machine of any size
    environ = {"OMP_NUM_THREADS": "4"}
    size_torch_threads(environ, {}, **tree)
    assert environ == {"OMP_NUM_THREADS": "4"}
    environ = {}
    size_torch_threads(environ, {"torch": object()}, **tree)
    assert environ == {}  # its pool already exists: the variable would only mislead what it starts


def torch_threads(omp_num_threads: str | None) -> tuple[int, str]:
    """torch's intra-op threads, and OMP_NUM_THREADS, in a fresh interpreter that imports audit first."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"OMP_WAIT_POLICY": "PASSIVE"}
    if omp_num_threads is not None:
        env["OMP_NUM_THREADS"] = omp_num_threads
    code = "import os, audit, torch; print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    threads, variable = done.stdout.split()
    return int(threads), variable


def test_importing_audit_sizes_torch_from_the_usable_cpus_and_the_user_setting_wins():
    assert torch_threads(None) == (usable_cpus(), str(usable_cpus()))
    assert torch_threads("1") == (1, "1")
