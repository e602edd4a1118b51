"""Every CUDA source of the project, built by the same functions the GPU
path builds its ``cupy.RawKernel``s with, and the ways the tests read and
compile them without a GPU.

What CuPy 14.2 sends to NVRTC for ``RawKernel(source, name, options)``
(``cupy/_core/raw.pyx`` ``_get_raw_module`` -> ``core.compile_with_cache(
..., prepend_cupy_headers=False)`` -> ``cupy/cuda/compiler.py``): the
source unchanged, and the options
``-I<cupy>/_cccl/{cub,thrust,libcudacxx}``, the kernel's own options,
``--std=c++17`` (none given), ``-I<cupy/_core/include>``,
``-I<CUDA_PATH>/include``, ``-ftz=true``, ``-arch=sm_XX`` (a cubin; PTX,
``-arch=compute_XX``, with ``CUPY_COMPILE_WITH_PTX=1`` or an arch newer than
NVRTC knows) and ``--device-as-default-execution-space``.
``cupy_compile`` gets that list from CuPy itself (its compile path runs up
to the module load, which needs a GPU); ``nvrtc_compile`` compiles with it.
"""
import os
import re

import numpy

from functions import roi_align_2d_cuda
from utils.ops import nms_cuda

# label -> (file, (source, options), kernel names). Each source as the
# GPU path builds it; float16 never reaches ROIAlign (check_type_forward
# refuses it, the poolers cast float16 maps to float32) nor NMS (float32).
SOURCES = {
    'roi_align_2d float32': ('functions/roi_align_2d_cuda.py',
                             roi_align_2d_cuda.cuda_module(numpy.float32),
                             roi_align_2d_cuda.KERNEL_NAMES),
    'roi_align_2d float64': ('functions/roi_align_2d_cuda.py',
                             roi_align_2d_cuda.cuda_module(numpy.float64),
                             roi_align_2d_cuda.KERNEL_NAMES),
    'nms': ('utils/ops/nms_cuda.py', nms_cuda.cuda_module(),
            nms_cuda.KERNEL_NAMES),
}
# Volta (7.0) is gone from CUDA 13: NVRTC 13 refuses compute_70.
ARCHS = ('75', '80', '90')

C_TYPES = {'int': numpy.int32, 'long long': numpy.int64,
           'float': numpy.float32, 'double': numpy.float64,
           'unsigned long long': numpy.uint64, 'bool': numpy.bool_}
KERNEL_RE = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


def signatures(source):
    """``{kernel: [(numpy type, is_pointer, name), ...]}`` of the
    ``extern "C" __global__`` kernels of ``source`` (``T`` resolved by its
    ``typedef``)."""
    typedefs = dict((alias, c) for c, alias in
                    re.findall(r'typedef\s+([\w ]+?)\s+(\w+)\s*;', source))
    result = {}
    for name, params in KERNEL_RE.findall(source):
        args = []
        for param in params.split(','):
            pointer = '*' in param
            words = param.replace('*', ' ').split()
            words = [w for w in words if w != 'const']
            c_type = ' '.join(words[:-1])
            args.append((C_TYPES[typedefs.get(c_type, c_type)], pointer,
                         words[-1]))
        result[name] = args
    return result


def cupy_compile(source, options, arch):
    """``(source, options, ptx)`` that CuPy's own ``RawKernel`` compile path
    sends to NVRTC for ``arch`` (a GPU of that compute capability, PTX
    forced: without a device, the cubin could not be loaded anyway)."""
    from unittest import mock
    from cupy._core import core
    from cupy.cuda import compiler
    seen = []

    class Program(compiler._NVRTCProgram):
        def compile(self, options=(), log_stream=None):
            result = super().compile(options, log_stream)
            if self.src:  # not the empty file CuPy compiles as a probe
                seen.append((self.src, tuple(options), result[0]))
                raise _Done
            return result

    with mock.patch.object(compiler, '_NVRTCProgram', Program), \
            mock.patch.object(compiler, '_get_arch_for_options_for_nvrtc',
                              lambda arch: ('-arch=compute_' + arch, 'ptx')), \
            mock.patch.dict(os.environ, {'CUPY_CACHE_IN_MEMORY': '1'}):
        try:
            core.compile_with_cache(source, options, arch=arch,
                                    prepend_cupy_headers=False)
        except _Done:
            pass
    return seen[0]


class _Done(Exception):
    pass


def cupy_options(options, arch_option):
    """The option list of the module docstring, from CuPy's own helper."""
    from cupy._core import core
    return (core.assemble_cupy_compiler_options(tuple(options))
            + ('-ftz=true', arch_option,
               '--device-as-default-execution-space'))


def nvrtc_compile(source, options):
    """PTX (``-arch=compute_XX``) or cubin (``-arch=sm_XX``) of ``source``;
    ``RuntimeError`` with NVRTC's log on a compile error."""
    from cupy_backends.cuda.libs import nvrtc
    prog = nvrtc.createProgram(source, 'kern.cu', [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(options))
        except nvrtc.NVRTCError as e:
            raise RuntimeError('{}\n{}'.format(e, nvrtc.getProgramLog(prog)))
        if any(o.startswith('-arch=sm_') for o in options):
            return nvrtc.getCUBIN(prog)
        return nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
