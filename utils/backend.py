"""Where arrays live: a single place that decides whether a GPU is usable.

CuPy is optional. Nothing here imports it unless asked, so CPU users never
need it installed.
"""
import functools

from utils import compat  # noqa: F401  (before chainer)


@functools.lru_cache(maxsize=None)
def gpu_available():
    """True when CuPy imports, sees a CUDA device and chainer can use it."""
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
        from chainer.backends import cuda
        return bool(cuda.available)
    except Exception:  # ImportError, CUDARuntimeError, missing libraries
        return False


class DeviceError(ValueError):
    """A GPU was asked for that this machine cannot give."""


def require_gpus(ids, flag):
    """Raise ``DeviceError`` naming ``flag`` (e.g. ``'--gpu 1'``) unless
    CuPy is installed and every CUDA device id in ``ids`` exists."""
    try:
        import cupy
    except ImportError:
        raise DeviceError('{} needs CuPy, which is not installed (bash '
                          'setup.sh --gpu 13 installs cupy-cuda13x); use '
                          '--gpu -1 for the CPU'.format(flag)) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError: no driver, no device
        raise DeviceError('{}: CuPy sees no CUDA device ({})'.format(
            flag, str(e).splitlines()[0] if str(e) else type(e).__name__)
        ) from None
    bad = [i for i in ids if not 0 <= i < count]
    if bad:
        raise DeviceError('{}: no CUDA device {} (this machine has {})'
                          .format(flag, bad[0], count))
