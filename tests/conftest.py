"""Shared test set-up: compat shims first, each pytest-xdist worker on
its own cores, then the ``gpu`` marker, the ``xp`` fixture that runs one
check on NumPy and, marked ``gpu``, on CuPy, the ``mpiexec`` fixture of
the multi-process tests, ``cuda_shim_libs``, the project's CUDA kernels
built for the CPU once per run, and ``tiny_coco_run``, one trained model
per test run for the tests that only need *a* trained model."""
import os

import pytest


def _pin_xdist_worker():
    """Under ``pytest -n N``, give worker i its own share of the cores
    (its CPU affinity, which its subprocesses inherit), before anything
    sizes a thread pool: BLAS, OpenCV and Winograd size theirs from it
    (utils/threads.py), so N workers run N x (cores / N) threads, not
    N x cores that spin against each other (issue #15)."""
    worker = os.environ.get('PYTEST_XDIST_WORKER')
    if worker is None or not hasattr(os, 'sched_setaffinity'):
        return
    n = int(os.environ['PYTEST_XDIST_WORKER_COUNT'])
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= n:
        os.sched_setaffinity(0, cores[int(worker.lstrip('gw')) % n::n])


_pin_xdist_worker()

from utils import compat  # noqa: E402,F401  (before chainer)
from utils.backend import gpu_available  # noqa: E402

BACKENDS = ['numpy', pytest.param('cupy', marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason='needs CuPy and a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test: numpy, or cupy for ``gpu`` runs."""
    if request.param == 'numpy':
        import numpy
        return numpy
    import cupy
    return cupy


@pytest.fixture
def mpiexec():
    """The ``mpiexec`` next to this Python (``pip install mpich``) or on
    PATH; skips the test when it or mpi4py is missing."""
    import importlib.util
    import os
    import shutil
    import sys
    path = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    path = path if os.access(path, os.X_OK) else shutil.which('mpiexec')
    if path is None:
        pytest.skip('needs mpiexec (bash setup.sh --mpi)')
    if importlib.util.find_spec('mpi4py') is None:
        pytest.skip('needs mpi4py (bash setup.sh --mpi)')
    return path


@pytest.fixture(scope='session')
def cuda_shim_libs(tmp_path_factory):
    """Every CUDA source built on the CPU shim (tests/helpers/cuda_shim),
    ``{label: ctypes.CDLL}``; skips without a C++20 compiler."""
    from tests.helpers import cuda_shim
    cxx = cuda_shim.compiler()
    if cxx is None:
        pytest.skip('needs a C++20 compiler (g++ >= 11) for the CUDA shim')
    return cuda_shim.build(cxx, str(tmp_path_factory.mktemp('cuda_shim')))


@pytest.fixture(scope='session')
def tiny_coco_run(tmp_path_factory):
    """Tiny COCO-format train (6 images) and val (3) sets, categories 1, 3
    and 7, and a 2-iteration fpn-tiny run on them: ``run/`` holds
    ``snapshot_iter_2`` and ``model_final.npz``. Read it, never change it
    (copy what a test must alter)."""
    import train
    from tests.helpers.tiny_coco import write_tiny_coco
    root = tmp_path_factory.mktemp('tiny_coco')
    train.main(write_tiny_coco(root, 6, 3) + [
        '--arch', 'fpn-tiny', '--loaders', '0', '--iteration', '2',
        '--snapshot', '2', '--validation', '100', '--out', str(root / 'run')])
    return root
