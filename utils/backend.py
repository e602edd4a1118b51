"""Where arrays live: a single place that decides whether a GPU is usable.

CuPy is optional. Nothing here imports it unless asked, so CPU users never
need it installed.
"""
import functools


@functools.lru_cache(maxsize=None)
def gpu_available():
    """True when CuPy imports, sees a CUDA device and chainer can use it."""
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
        from utils import compat  # noqa: F401
        from chainer.backends import cuda
        return bool(cuda.available)
    except Exception:  # ImportError, CUDARuntimeError, missing libraries
        return False
