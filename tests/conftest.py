"""Shared test set-up: compat shims first, then the ``gpu`` marker, the
``xp`` fixture that runs one check on NumPy and, marked ``gpu``, on CuPy,
the ``mpiexec`` fixture of the multi-process tests and ``cuda_shim_libs``,
the project's CUDA kernels built for the CPU once per run."""
import pytest

from utils import compat  # noqa: F401  (before chainer)
from utils.backend import gpu_available

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
