"""How many threads torch's CPU kernels use: the CPUs this process may actually run on.

torch sizes its intra-op (OpenMP) thread pool from the machine's cores, not from what the process is allowed to
use: in a container started with ``--cpus=2`` on a 64-core host, or a CI job pinned to two cores, it starts 64
threads that spin-wait at every barrier for cores they never get, and each operation waits for the slowest
thread. The usable count is the smaller of

- the CPU affinity mask (``os.sched_getaffinity``: ``taskset``, ``docker --cpuset-cpus``, a CI runner's pinning),
- the CPU bandwidth quota of the process's cgroup and of every cgroup above it, rounded down and at least 1
  (cgroup v2 ``cpu.max`` = "QUOTA PERIOD" or "max PERIOD"; cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
  -1 for none; Linux's Documentation/admin-guide/cgroup-v2.rst and scheduler/sched-bwc.rst). A fractional quota
  rounds down, as Go's automaxprocs does: a thread more than the quota is throttled in every period.

The OpenMP runtime torch ships (libgomp) already honours the affinity mask; nothing in torch or the standard
library reads the quota (``os.process_cpu_count``, Python 3.13, reads only the mask), hence this module.
``OMP_NUM_THREADS`` set by the user always wins, and so does a torch imported before ``audit``: the pool is then
already sized.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def _folders_up(base: Path, path: str) -> list[Path]:
    """``base/path`` and each of its parents up to ``base`` (a container sees its own cgroup as ``base``)."""
    parts = [p for p in path.strip("/").split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpu_limit(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> float | None:
    """The smallest CPU quota (in CPUs) of this process's cgroups and their ancestors; None without one."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            limits += [_v2_limit(folder) for folder in _folders_up(root, path)]
        elif "cpu" in controllers.split(","):
            for mount in V1_CPU_MOUNTS:
                limits += [_v1_limit(folder) for folder in _folders_up(root / mount, path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def usable_cpus(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int:
    """min(affinity mask, the cgroup quota rounded down), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no affinity call; the machine's count
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(proc_cgroup, root)
    if limit is not None:
        count = min(count, max(1, math.floor(limit)))
    return max(1, count)


def size_torch_threads(environ=os.environ, modules=sys.modules, *, proc_cgroup: Path = PROC_CGROUP,
                       root: Path = CGROUP_ROOT) -> None:
    """Set ``OMP_NUM_THREADS`` to the usable CPUs before torch is imported, unless the user set it or torch is
    already imported: the OpenMP runtime reads it once, when torch loads it."""
    if "OMP_NUM_THREADS" in environ or "torch" in modules:
        return
    environ["OMP_NUM_THREADS"] = str(usable_cpus(proc_cgroup, root))
