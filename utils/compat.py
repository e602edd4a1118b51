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
* ``CHAINER_CUDNN=0`` unless the user set it: CuPy 14 has no cuDNN, so
  chainer falls back to im2col + cuBLAS for convolutions anyway; saying so up
  front silences the per-import "cuDNN is not enabled" warning.
"""
import importlib
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
    return list(SHIMS)


install()
