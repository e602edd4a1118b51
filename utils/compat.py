"""Shims that let Chainer 7.8.1 run on numpy 2 and CuPy 14.

Import this module before ``chainer`` anywhere (``models``, ``functions``
and ``utils`` do it in their ``__init__``). Every shim is idempotent and only
adds names that the installed libraries lack; nothing existing is replaced.

What each shim is for:

* ``numpy.sctypes`` (removed in numpy 2): ``chainer.functions.as_strided``
  builds its index-dtype table from it at import time.
* ``numpy.float`` (removed in numpy 1.24): ``F.resize_images`` uses it as a
  dtype on every call.
* ``numpy.distutils`` (gone with Python 3.12): chainer's import-time
  environment check calls ``numpy.distutils.system_info.get_info``. A
  stand-in returning ``{}`` skips its BLAS probe, which only feeds a warning.
* the ``pkg_resources`` deprecation warning is filtered (see install()).
* CuPy's "nccl library could not be loaded" warning is filtered: importing
  ``chainer.training`` imports ``cupy.cuda.nccl``, and where CuPy is
  installed without libnccl that prints ten lines to stderr on every run,
  GPU or not, ahead of the scripts' own one-line errors. The multi-GPU path
  checks ``nccl.available`` itself (``make_gradient_sum``).
* ``CHAINER_CUDNN=0`` unless the user set it: CuPy 14 has no cuDNN, so
  chainer falls back to im2col + cuBLAS for convolutions anyway; saying so up
  front silences the per-import "cuDNN is not enabled" warning.

ChainerMN needs one more, applied by ``patch_chainermn()`` after
``import chainermn`` (importing it starts MPI, so ``install()`` cannot):
its ``_memory_utility.unpack_params`` casts with ``xp.array(v, copy=False,
dtype=...)``, which numpy 2 refuses whenever a cast is needed
(gradients whose dtype differs from the transfer dtype, e.g. float16
gradients through the float32 buffers of the ``flat`` communicator). This
is the one shim that replaces a function; it does so only while the
installed function still contains that call.
"""
import importlib
import inspect
import os
import sys
import types
import warnings

import numpy

SHIMS = []


def _add(obj, name, value, label):
    if not hasattr(obj, name):
        setattr(obj, name, value)
        SHIMS.append(label)


def _sctypes():
    return {
        'int': [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        'uint': [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        'float': [numpy.float16, numpy.float32, numpy.float64,
                  numpy.longdouble],
        'complex': [numpy.complex64, numpy.complex128, numpy.clongdouble],
        'others': [bool, object, bytes, str, numpy.void],
    }


def _install_distutils_stand_in():
    """Register ``numpy.distutils.system_info`` if importing it fails."""
    try:
        # Importing it warns (deprecated since numpy 1.23); chainer imports
        # it anyway, so import it once here, quietly.
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            importlib.import_module('numpy.distutils.system_info')
        return
    except Exception:  # ModuleNotFoundError on 3.12, also DeprecationWarning-as-error
        pass
    distutils = types.ModuleType('numpy.distutils')
    system_info = types.ModuleType('numpy.distutils.system_info')
    system_info.get_info = lambda name, notfound_action=0: {}
    distutils.system_info = system_info
    sys.modules['numpy.distutils'] = distutils
    sys.modules['numpy.distutils.system_info'] = system_info
    numpy.distutils = distutils
    SHIMS.append('numpy.distutils.system_info')


def install():
    """Apply every shim. Returns the labels of those that were needed."""
    _add(numpy, 'sctypes', _sctypes(), 'numpy.sctypes')
    _add(numpy, 'float', float, 'numpy.float')
    if 'chainer' not in sys.modules:
        _install_distutils_stand_in()
    os.environ.setdefault('CHAINER_CUDNN', '0')
    # setuptools 81 warns on every `import pkg_resources`, which chainer does
    # at import; the pin below 82 keeps it working, so the warning is noise.
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                            category=UserWarning)
    # The message starts with a newline, hence the leading \s*.
    warnings.filterwarnings('ignore', message=r'\s*nccl library could not',
                            category=UserWarning)
    return list(SHIMS)


def _unpack_params(params, attr_name, buffer, transfer_dtype, zero_fill,
                   stream=None):
    """ChainerMN 7.8.1's ``unpack_params`` with a numpy-2 cast."""
    if len(params) == 0:
        return
    offset = 0
    for param in params:
        v = getattr(param, attr_name)
        if attr_name == 'grad' and v is None and zero_fill:
            v = param.xp.empty_like(param.data)
            setattr(param, attr_name, v)
        size = v.size * numpy.dtype(transfer_dtype).itemsize
        grad_dtype = v.dtype
        if grad_dtype != transfer_dtype:
            v = v.astype(transfer_dtype)  # was xp.array(v, copy=False, ...)
        buffer.to_device(v, size, offset, stream)
        offset += size
        if grad_dtype != transfer_dtype:
            getattr(param, attr_name)[...] = v.astype(grad_dtype)


def patch_chainermn():
    """Apply the ChainerMN shim (call after ``import chainermn``)."""
    from chainermn.communicators import _memory_utility
    if 'copy=False' in inspect.getsource(_memory_utility.unpack_params):
        _memory_utility.unpack_params = _unpack_params
        if 'chainermn unpack_params' not in SHIMS:
            SHIMS.append('chainermn unpack_params')
    return list(SHIMS)


install()
