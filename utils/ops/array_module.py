"""``get_array_module`` without chainer.

``utils/ops`` is shared by the Chainer model and the onnxruntime predictor
(``utils/deploy/onnx_predict.py``), which must run where chainer is not
installed, so its array functions pick NumPy or CuPy from the array
itself. CuPy is never imported here: a CuPy array can only exist once
CuPy is loaded.
"""
import sys

import numpy


def get_array_module(*arrays):
    """``cupy`` if any of ``arrays`` is a CuPy array, else ``numpy`` (as
    ``chainer.backend.get_array_module`` for plain arrays)."""
    for a in arrays:
        if type(a).__module__.split('.')[0] == 'cupy':
            return sys.modules['cupy']
    return numpy
