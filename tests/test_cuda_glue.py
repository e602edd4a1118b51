"""The CuPy glue of the GPU paths, checked without a GPU: every kernel
launch passes exactly the C types of the kernel's signature (parsed from
its source) with a grid and block inside CUDA's limits, also for the
largest inputs the presets allow; every ``cupy.X`` / ``xp.X`` the code
reaches exists in the installed CuPy and takes the keywords used."""
import ast
import inspect
import os

import numpy
import pytest

from functions import roi_align_2d_cuda
from tests.helpers import cuda_shim, cuda_sources
from tests.helpers.project_files import python_files
from utils.ops import nms_cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Recorder:
    """Stands for a ``cupy.RawKernel``: checks and records each launch."""

    def __init__(self, label, name):
        _, (source, _), _ = cuda_sources.SOURCES[label]
        self.name, self.signature = name, cuda_sources.signatures(source)[name]
        self.launches = []

    def __call__(self, grid, block, args):
        cuda_shim.check_launch(tuple(grid) + (1,) * (3 - len(grid)),
                               tuple(block) + (1,) * (3 - len(block)))
        cuda_shim.check_args(self.name, self.signature, args)
        self.launches.append((grid, block))


def recorders(label):
    return tuple(Recorder(label, name)
                 for name in cuda_sources.SOURCES[label][2])


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_roi_align_launches_match_signatures(monkeypatch, dtype):
    kernels = recorders('roi_align_2d ' + dtype)
    monkeypatch.setattr(roi_align_2d_cuda, '_kernels', lambda d: kernels)
    x = numpy.zeros((2, 3, 5, 6), dtype)
    # float32 ROIs on float64 maps and a non-contiguous gy, as callers pass.
    rois = numpy.array([[0, 0, 3, 3], [1, 1, 4, 2]], numpy.float32)
    idx = numpy.array([0, 1], numpy.int32)
    params = (2, 3, 0.5, 0, True)
    roi_align_2d_cuda.forward_gpu(x, rois, idx, params)
    gy = numpy.zeros((2, 3, 3, 2), dtype).transpose(0, 1, 3, 2)
    roi_align_2d_cuda.backward_gpu(x.shape, rois, idx, gy, params)
    assert [k.launches for k in kernels] == [[((1,), (256,))]] * 2


@pytest.mark.parametrize('label', [None, numpy.array([3, 1, 1])])
def test_nms_launches_match_signatures(label):
    kernels = recorders('nms')
    bbox = numpy.array([[0, 0, 5, 5], [1, 1, 5, 5], [9, 9, 12, 12]],
                       numpy.float32)
    nms_cuda.greedy_launch(numpy, kernels, bbox, label, 0.5, 2, 1)
    assert [k.launches for k in kernels] == [[((1, 1), (64,))],
                                             [((1,), (256,))]]


def test_a_python_int_argument_is_refused():
    # What the check guards against: CuPy would pass 3 as 64 bits.
    sig = cuda_sources.signatures(nms_cuda.cuda_module()[0])['nms_reduce']
    with pytest.raises(TypeError, match='argument n_max is'):
        cuda_shim.check_args('nms_reduce', sig, (
            numpy.int32(3), 3, *[numpy.zeros(1, numpy.uint64)] * 2,
            numpy.zeros(1, bool)))


# n: one box; RPN_PRE_NMS_TOP_N of the C4 preset (12000); 80 classes x
# 1000 ROIs at --score-thresh 0 in one walk (batched_nms now groups at
# most BATCH_BOXES, or one class); the mask grid's own limit, 65535 blocks.
@pytest.mark.parametrize('n', [1, 12000, 80000, 65535 * 64])
def test_nms_grid_in_cuda_limits(n):
    for grid, block in nms_cuda.launch_config(n):
        cuda_shim.check_launch(tuple(grid) + (1,) * (3 - len(grid)),
                               tuple(block) + (1,) * (3 - len(block)))
    with pytest.raises(ValueError, match='invalid launch'):
        grid, block = nms_cuda.launch_config(65535 * 64 + 1)[0]
        cuda_shim.check_launch(grid + (1,), block + (1, 1))


# bins: one; 1000 ROIs x 256 channels x 14 x 14 (mask pooler, test);
# past 2^31 and 2^40 (the count is 64-bit, the grid capped).
@pytest.mark.parametrize('size', [1, 1000 * 256 * 14 * 14, 2 ** 31 + 1,
                                  2 ** 40])
def test_roi_align_grid_in_cuda_limits(size):
    grid, block = roi_align_2d_cuda.launch_config(size)
    cuda_shim.check_launch(grid + (1, 1), block + (1, 1))
    assert grid[0] * block[0] >= min(size, 2 ** 16 * 256)


def _module_uses():
    """``(path, line, chain, keywords)`` of each ``xp.A.B`` / ``cupy.A.B``
    (and ``get_array_module(a).A``) in the project's code; ``keywords`` of
    the call when the chain is called."""
    for path in python_files():
        yield from _uses_in(path)


def _chain(node):
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in ('xp', 'cupy'):
        return list(reversed(names))
    if (isinstance(node, ast.Call) and getattr(node.func, 'attr', getattr(
            node.func, 'id', None)) == 'get_array_module'):
        return list(reversed(names))
    return None


def _uses_in(path):
    tree = ast.parse(open(path).read(), path)
    called = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _chain(node)
        if chain is None:
            continue
        call = called.get(id(node))
        keywords = [k.arg for k in call.keywords if k.arg] if call else []
        yield os.path.relpath(path, ROOT), node.lineno, chain, keywords


def test_cupy_calls_exist_in_cupy():
    cupy = pytest.importorskip('cupy', reason='needs cupy (requirements/'
                               'gpu-check.txt)')
    missing, checked = [], 0
    for path, line, chain, keywords in _module_uses():
        obj = cupy
        for attr in chain:
            if not hasattr(obj, attr):
                missing.append('{}:{} cupy.{}'.format(path, line,
                                                      '.'.join(chain)))
                break
            obj = getattr(obj, attr)
        else:
            checked += 1
            try:
                params = inspect.signature(obj).parameters
            except (TypeError, ValueError):  # Cython: no signature
                continue
            if any(p.kind == p.VAR_KEYWORD for p in params.values()):
                continue
            for k in keywords:
                if k not in params:
                    missing.append('{}:{} cupy.{}({}=)'.format(
                        path, line, '.'.join(chain), k))
    assert not missing
    assert checked > 50
