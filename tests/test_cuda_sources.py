"""Every CUDA kernel of the project compiles, without a GPU, exactly as the
GPU path sends it: the source and options of its ``cupy.RawKernel``, with
the options CuPy 14.2 adds (read from CuPy's own compile path, see
tests/helpers/cuda_sources.py), by NVRTC for compute capabilities 7.5, 8.0
and 9.0, as PTX and as the cubin CuPy builds on such a GPU. No kernel may
escape the list: the tree is searched for kernel strings and launches."""
import os
import re

import pytest

from functions import roi_align_2d_cuda
from tests.helpers import cuda_sources
from tests.helpers.project_files import python_files
from utils.ops import nms_cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What starts a CUDA kernel in Python: CuPy's and Chainer's kernel classes
# and helpers, CUDA source text, cupy.fuse and cupyx.jit.
_LAUNCH = re.compile(r'RawKernel|RawModule|ElementwiseKernel|ReductionKernel'
                     r'|\bcuda\.(elementwise|reduce|raw)\(|__global__'
                     r'|cupy\.fuse|cupyx\.jit|create_ufunc')


def _arch_options(source_options, kind, arch):
    return cuda_sources.cupy_options(source_options,
                                     '-arch={}_{}'.format(kind, arch))


@pytest.fixture(scope='module')
def nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception:  # ImportError, or NVRTC's library missing
        pytest.skip('needs cupy and NVRTC (requirements/gpu-check.txt)')
    from cupy._core import core
    try:
        core.assemble_cupy_compiler_options(())
    except RuntimeError:  # CuPy would not compile on a GPU either
        pytest.skip('CuPy finds no CUDA headers (set CUDA_PATH)')
    return nvrtc


def test_every_kernel_is_in_the_list():
    listed = {path for path, _, _ in cuda_sources.SOURCES.values()}
    found = {}
    for path in python_files(('functions', 'models', 'utils', 'bench')):
        with open(path) as f:
            hits = [(i + 1, m.group(0)) for i, line in enumerate(f)
                    for m in [_LAUNCH.search(line)] if m]
        if hits:
            found[os.path.relpath(path, ROOT)] = hits
    unlisted = {p: h for p, h in found.items() if p not in listed}
    assert not unlisted, (
        'CUDA kernels not compiled in CI: {}; give them a cuda_module() '
        'and add them to tests/helpers/cuda_sources.py'.format(unlisted))
    # Only RawKernels there: generated sources (ElementwiseKernel, ...)
    # are not the text the tests compile.
    for path in listed:
        assert {hit for _, hit in found[path]} <= {'RawKernel', '__global__'}
    assert sorted(listed) == sorted(found)


@pytest.mark.parametrize('label', list(cuda_sources.SOURCES))
def test_list_has_every_kernel_of_a_source(label):
    _, (source, _), names = cuda_sources.SOURCES[label]
    assert sorted(cuda_sources.signatures(source)) == sorted(names)
    assert source.count('__global__') == len(names)


def test_runtime_kernels_are_the_listed_sources(nvrtc):
    # cupy.RawKernel objects can be built without a GPU; their source,
    # name and options are what CuPy will compile.
    roi_align_2d_cuda._kernels.cache_clear()
    nms_cuda._kernels.cache_clear()
    built = {'roi_align_2d float32': roi_align_2d_cuda._kernels('float32'),
             'roi_align_2d float64': roi_align_2d_cuda._kernels('float64'),
             'nms': nms_cuda._kernels()}
    assert sorted(built) == sorted(cuda_sources.SOURCES)
    for label, kernels in built.items():
        _, (source, options), names = cuda_sources.SOURCES[label]
        assert [(k.code, k.name, k.options) for k in kernels] == \
            [(source, name, options) for name in names]


@pytest.mark.parametrize('label', list(cuda_sources.SOURCES))
def test_cupy_sends_what_the_tests_compile(nvrtc, label):
    _, (source, options), _ = cuda_sources.SOURCES[label]
    sent, sent_options, ptx = cuda_sources.cupy_compile(source, options,
                                                        '90')
    assert sent == source
    assert sent_options == _arch_options(options, 'compute', '90')
    assert ptx == cuda_sources.nvrtc_compile(source, sent_options)


@pytest.mark.parametrize('kind', ['compute', 'sm'])
@pytest.mark.parametrize('arch', cuda_sources.ARCHS)
@pytest.mark.parametrize('label', list(cuda_sources.SOURCES))
def test_compiles(nvrtc, label, arch, kind):
    _, (source, options), names = cuda_sources.SOURCES[label]
    out = cuda_sources.nvrtc_compile(source,
                                     _arch_options(options, kind, arch))
    for name in names:  # extern "C": the entry keeps its name
        if kind == 'compute':
            assert re.search(r'\.entry {}\('.format(name), out.decode())
        else:
            assert name.encode() in out


def test_a_compile_error_names_its_line(nvrtc):
    source, options = nms_cuda.cuda_module()
    broken = source.replace('cur |= row[b];', 'cur |= rows[b];')
    line = broken[:broken.index('cur |= rows[b]')].count('\n') + 1
    with pytest.raises(RuntimeError, match=r'\({}\): error: identifier '
                       r'"rows" is undefined'.format(line)):
        cuda_sources.nvrtc_compile(broken, _arch_options(options, 'sm',
                                                         '90'))


def test_nvrtc_13_has_no_volta(nvrtc):
    # Why ARCHS starts at 7.5: CUDA 13 (cupy-cuda13x) dropped compute 7.0.
    source, options = nms_cuda.cuda_module()
    with pytest.raises(RuntimeError, match='gpu-architecture'):
        cuda_sources.nvrtc_compile(source, _arch_options(options, 'compute',
                                                         '70'))
