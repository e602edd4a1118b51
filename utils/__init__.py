"""Utilities without parameters: boxes, data, evaluation, conversion.

Two things happen on the first import, before numpy loads:

* OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` once, when it loads. Its
  default lets idle BLAS threads spin for 2^28 cycles (about 0.1 s) before
  sleeping; beside a second job on the same cores those spinning threads
  take the cores from the threads with work (``bench/shared_cores.py``:
  each of two trainings 6.0x slower than alone, against 1.5x with 2^4
  cycles, and no change alone). A value the user sets is kept.
* ``utils.compat`` is applied so that any module here may import chainer.
"""
import os

os.environ.setdefault('OPENBLAS_THREAD_TIMEOUT', '4')

from utils import compat  # noqa: F401,E402  (must precede any chainer import)
