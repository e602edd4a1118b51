"""Shared test set-up: compat shims first, then the ``gpu`` marker and the
``xp`` fixture that runs one check on NumPy and, marked ``gpu``, on CuPy."""
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
