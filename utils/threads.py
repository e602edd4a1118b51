"""How many threads a process's BLAS and OpenCV run.

OpenBLAS and OpenCV each start one thread per core the machine has, in
every process. Beside a second job on the same cores, or under ChainerMN
with several ranks per node, that oversubscribes the cores: OpenBLAS's
idle threads spin waiting for work and take the cores from the threads
that have it. Our training fell from about 1.5 to 0.13-0.19 iterations/s
beside one other job (issue #15). So each process sizes its pools to the
cores it may use (its CPU affinity and any cgroup quota) divided by the
processes that share them, loader processes use one thread, and the user
can override the number (``--threads``).
"""
import os

import cv2
from threadpoolctl import threadpool_info, threadpool_limits

from functions import cpu_count, winograd

CGROUP_CPU_MAX = cpu_count.CGROUP_CPU_MAX
# The quota parser lives with the count (functions/cpu_count.py).
_cgroup_quota = cpu_count.cgroup_quota


def usable_cpus():
    """Cores this process may run on: its affinity, capped by the cgroup v2
    CPU quota in ``CGROUP_CPU_MAX`` (``functions/cpu_count.py``)."""
    return cpu_count.usable_cpus(CGROUP_CPU_MAX)


def default_threads(processes_per_node=1):
    """The usable cores shared among ``processes_per_node`` processes
    (ChainerMN ranks on one node), at least 1."""
    return max(1, usable_cpus() // max(1, processes_per_node))


def set_threads(n):
    """Run BLAS (through threadpoolctl, whatever library numpy loaded),
    OpenCV and our Winograd transforms with ``n`` threads in this process
    from now on.

    Returns:
        list of dict: threadpoolctl's description of each BLAS library
        (``internal_api``, ``version``, ``architecture``, ``num_threads``),
        for logs and benchmarks.
    """
    threadpool_limits(limits=n, user_api='blas')
    cv2.setNumThreads(n)
    winograd.set_workers(n)
    return [{k: lib.get(k) for k in ('internal_api', 'version',
                                     'architecture', 'num_threads')}
            for lib in threadpool_info() if lib.get('user_api') == 'blas']


class OneThreadPerLoader:
    """Dataset wrapper for ``MultiprocessIterator``: the first example a
    loader process reads sets its BLAS and OpenCV to one thread, so N
    loaders add N threads, not N times the cores. The main process, which
    reads examples too when ``--loaders 0``, is left as it is."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._main_pid = os.getpid()
        self._limited_pid = None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        pid = os.getpid()
        if pid != self._main_pid and pid != self._limited_pid:
            set_threads(1)
            self._limited_pid = pid
        return self.dataset[index]
