"""The project's CUDA kernels run on the CPU: ``build`` compiles each source
of ``tests/helpers/cuda_sources.py`` unchanged with g++ -std=c++20 after
``cuda_shim.h`` (the CUDA execution model), plus one launcher per kernel;
``kernels`` gives objects called like ``cupy.RawKernel`` (``kernel(grid,
block, args)``) on NumPy arrays, which the GPU code's launch functions
accept in place of CuPy's.
"""
import ctypes
import os
import shutil
import subprocess

import numpy

from tests.helpers import cuda_sources

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'cuda_shim.h')
# cuda_shim.h's Schedule: OS threads, then fibers in three orders.
SCHEDULES = {'threads': 0, 'forward': 1, 'reversed': 2, 'shuffled': 3}
GUARD = 64  # elements around each array argument
_CTYPES = {numpy.int32: ctypes.c_int, numpy.int64: ctypes.c_longlong,
           numpy.float32: ctypes.c_float, numpy.float64: ctypes.c_double,
           numpy.uint64: ctypes.c_ulonglong, numpy.bool_: ctypes.c_bool}


def compiler():
    """The C++ compiler (``$CXX`` or g++) if it takes -std=c++20, else None."""
    cxx = shutil.which(os.environ.get('CXX', 'g++'))
    if cxx is None:
        return None
    probe = subprocess.run([cxx, '-std=c++20', '-x', 'c++', '-E', '-'],
                           input='#include <barrier>\n', capture_output=True,
                           text=True)
    return cxx if probe.returncode == 0 else None


def _launcher(name, params):
    decl = ', '.join(p.strip() for p in params.split(','))
    names = ', '.join(p.replace('*', ' ').split()[-1]
                      for p in params.split(','))
    return ('extern "C" void launch_{0}(unsigned gx, unsigned gy, '
            'unsigned gz, unsigned bx, unsigned by, unsigned bz, '
            'int schedule, unsigned seed, {1}) {{\n'
            '  cuda_shim::launch({{gx, gy, gz}}, {{bx, by, bz}}, schedule, '
            'seed, [=] {{ {0}({2}); }});\n}}\n').format(name, decl, names)


def build(cxx, directory, sources=None):
    """Compile every source (concurrently), or ``sources`` ``{label:
    source}``, into ``directory``; ``{label: ctypes.CDLL}``."""
    if sources is None:
        sources = {label: source for label, (_, (source, _), _)
                   in cuda_sources.SOURCES.items()}
    jobs = {}
    for i, (label, source) in enumerate(sources.items()):
        unit = os.path.join(directory, 'unit{}.cc'.format(i))
        with open(unit, 'w') as f:
            f.write('#include "{}"\n'.format(HEADER) + source + '\n')
            for name, params in cuda_sources.KERNEL_RE.findall(source):
                f.write(_launcher(name, params))
        lib = unit[:-3] + '.so'
        jobs[label] = (lib, subprocess.Popen(
            [cxx, '-std=c++20', '-O1', '-shared', '-fPIC', '-pthread',
             '-o', lib, unit], stderr=subprocess.PIPE, text=True))
    libs = {}
    for label, (lib, job) in jobs.items():
        _, err = job.communicate()
        if job.returncode:
            raise RuntimeError('{}: g++ failed\n{}'.format(label, err))
        libs[label] = ctypes.CDLL(lib)
    return libs


class Kernel:
    """One kernel of ``lib``, called as ``cupy.RawKernel`` is, on NumPy
    arrays (written in place). Each argument must have exactly the NumPy
    type of its C parameter (``check_args``), as CuPy needs: it passes a
    Python int or float with its own default width, whatever the
    parameter."""

    def __init__(self, lib, name, signature, schedule, seed=0):
        self.name, self.signature = name, signature
        self.schedule, self.seed = SCHEDULES[schedule], seed
        self._fn = getattr(lib, 'launch_' + name)
        self._fn.restype = None
        self.launches = []

    def __call__(self, grid, block, args):
        grid, block = tuple(grid) + (1,) * 3, tuple(block) + (1,) * 3
        check_launch(grid[:3], block[:3])
        check_args(self.name, self.signature, args)
        self.launches.append((grid[:3], block[:3]))
        c_args, guarded = [], []
        for arg, (c_type, pointer, _) in zip(args, self.signature):
            if not pointer:
                c_args.append(_CTYPES[c_type](arg.item()))
                continue
            buf = _guarded(arg)
            if buf is not None:
                guarded.append((arg, buf))
                arg = buf[GUARD:-GUARD]
            c_args.append(ctypes.c_void_p(arg.ctypes.data))
        self._fn(*grid[:3], *block[:3], self.schedule, self.seed, *c_args)
        for arg, buf in guarded:
            for side in (buf[:GUARD], buf[-GUARD:]):
                if not numpy.array_equal(side, _fill(side), equal_nan=True):
                    raise IndexError('{} wrote outside an argument'.format(
                        self.name))
            arg.reshape(-1)[...] = buf[GUARD:-GUARD]


def check_args(name, signature, args):
    """``TypeError`` unless ``args`` match ``signature`` (from
    ``cuda_sources.signatures``) one to one: a C-contiguous array of the
    pointee's dtype for a pointer, a NumPy scalar of exactly the C type
    otherwise."""
    if len(args) != len(signature):
        raise TypeError('{}: {} arguments for {} parameters'.format(
            name, len(args), len(signature)))
    for arg, (c_type, pointer, pname) in zip(args, signature):
        if pointer:
            ok = (hasattr(arg, 'dtype') and hasattr(arg, 'flags')
                  and arg.dtype == c_type and arg.flags.c_contiguous)
        else:
            ok = type(arg) is c_type
        if not ok:
            raise TypeError('{}: argument {} is {!r}, not {}{}'.format(
                name, pname, getattr(arg, 'dtype', type(arg)),
                numpy.dtype(c_type), ' *' if pointer else ''))


def check_launch(grid, block):
    """CUDA's limits on a launch (compute capability >= 3.0)."""
    gx, gy, gz = grid
    bx, by, bz = block
    if not (0 < gx < 2 ** 31 and 0 < gy < 2 ** 16 and 0 < gz < 2 ** 16
            and 0 < bx <= 1024 and 0 < by <= 1024 and 0 < bz <= 64
            and bx * by * bz <= 1024):
        raise ValueError('invalid launch: grid {}, block {}'.format(
            grid, block))


def _fill(a):
    """Guard values: NaN for floats (a read past an array shows in the
    result), the largest integer, False for bools."""
    if a.dtype.kind == 'f':
        return numpy.full(a.shape, numpy.nan, a.dtype)
    if a.dtype.kind == 'b':
        return numpy.zeros(a.shape, a.dtype)
    return numpy.full(a.shape, numpy.iinfo(a.dtype).max, a.dtype)


def _guarded(arg):
    """A copy of ``arg`` (flat) between GUARD guard values on each side;
    None for arrays too large to copy (the 64-bit offset test's)."""
    if arg.size > 2 ** 24:
        return None
    buf = _fill(numpy.empty(arg.size + 2 * GUARD, arg.dtype))
    buf[GUARD:-GUARD] = arg.reshape(-1)
    return buf


def kernels(libs, label, schedule, seed=0):
    """The kernels of source ``label``, in the order of its
    ``KERNEL_NAMES``, run with ``schedule``."""
    _, (source, _), names = cuda_sources.SOURCES[label]
    sigs = cuda_sources.signatures(source)
    return tuple(Kernel(libs[label], name, sigs[name], schedule, seed)
                 for name in names)
