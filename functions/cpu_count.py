"""Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU
quota (a container's ``--cpus``). The affinity alone counts the machine's
cores: 64 in a 2-CPU container. Here, in the bottom layer, so that the
Winograd transforms (``functions/winograd.py``) start from it;
``utils/threads.py`` sizes BLAS and OpenCV by the same count.
"""
import math
import os

CGROUP_CPU_MAX = '/sys/fs/cgroup/cpu.max'


def usable_cpus(cgroup_cpu_max=None):
    """Affinity cores, capped by the quota in ``cgroup_cpu_max`` (default
    ``CGROUP_CPU_MAX``) when one is set; at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = cgroup_quota(cgroup_cpu_max or CGROUP_CPU_MAX)
    return max(1, min(n, math.ceil(quota))) if quota else n


def cgroup_quota(path):
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max
    PERIOD"), or None."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        return int(quota) / int(period) if quota != 'max' else None
    except (OSError, ValueError):
        return None
