"""Thread sizing: cores from affinity and cgroup quota, shared among the
ranks of a node; ``set_threads`` reaches BLAS and OpenCV; loader processes
run one thread."""
import os

import chainer
import cv2
import pytest
from threadpoolctl import threadpool_info

from functions import winograd
from utils import threads


def _blas_threads():
    return sorted({lib['num_threads'] for lib in threadpool_info()
                   if lib['user_api'] == 'blas'})


@pytest.fixture
def restore_threads():
    before = (max(_blas_threads()), cv2.getNumThreads(),
              winograd._Workers.count)
    yield
    threads.set_threads(before[0])
    cv2.setNumThreads(before[1])
    winograd._Workers.count = before[2]


@pytest.mark.parametrize('text,expected', [
    ('max 100000\n', None), ('150000 100000\n', 1.5),
    ('200000 100000\n', 2.0), ('garbage\n', None)])
def test_cgroup_quota(tmp_path, text, expected):
    path = tmp_path / 'cpu.max'
    path.write_text(text)
    assert threads._cgroup_quota(str(path)) == expected
    assert threads._cgroup_quota(str(tmp_path / 'missing')) is None


@pytest.mark.parametrize('affinity,quota,expected', [
    (8, None, 8), (8, '250000 100000', 3), (2, '800000 100000', 2),
    (4, '10000 100000', 1)])
def test_usable_cpus(tmp_path, monkeypatch, affinity, quota, expected):
    monkeypatch.setattr(os, 'sched_getaffinity',
                        lambda pid: set(range(affinity)), raising=False)
    path = tmp_path / 'cpu.max'
    if quota:
        path.write_text(quota)
    monkeypatch.setattr(threads, 'CGROUP_CPU_MAX', str(path))
    assert threads.usable_cpus() == expected


def test_default_threads_shares_cores_among_ranks(monkeypatch):
    monkeypatch.setattr(threads, 'usable_cpus', lambda: 16)
    assert [threads.default_threads(r) for r in (1, 2, 3, 8, 32)] == \
        [16, 8, 5, 2, 1]


def test_set_threads_reaches_blas_opencv_and_winograd(restore_threads):
    libs = threads.set_threads(1)
    assert libs and all(lib['num_threads'] == 1 for lib in libs)
    assert _blas_threads() == [1] and cv2.getNumThreads() == 1
    assert winograd._Workers.count == 1
    threads.set_threads(2)
    assert _blas_threads() == [2] and cv2.getNumThreads() == 2
    assert winograd._Workers.count == 2


class _ThreadReport(chainer.dataset.DatasetMixin):
    def __len__(self):
        return 8

    def get_example(self, i):
        return os.getpid(), tuple(_blas_threads()), cv2.getNumThreads()


def test_loader_processes_run_one_thread(restore_threads):
    threads.set_threads(2)
    data = threads.OneThreadPerLoader(_ThreadReport())
    assert data[0] == (os.getpid(), (2,), 2)   # the main process: as set
    it = chainer.iterators.MultiprocessIterator(
        data, 4, repeat=False, shuffle=False, n_processes=2)
    try:
        next(it)   # read in the main process, to size the shared memory
        batch = next(it)
    finally:
        it.finalize()
    assert len(batch) == 4
    for pid, blas, opencv in batch:
        assert pid != os.getpid() and blas == (1,) and opencv == 1
    assert _blas_threads() == [2]   # the main process is untouched
