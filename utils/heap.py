"""Keep freed memory in the process's heap instead of handing it back.

glibc serves every allocation above 32 MB with a fresh ``mmap`` and
unmaps it on ``free``. A training step, or the inference of one image,
allocates and frees the same hundreds of large arrays (activations,
gradients, columns) every time, so each pays the kernel to zero and map
all of them again: at R-50-FPN, 800 x 1216, batch 2 on 2 cores, 8 of the
14 s of a training step were system time (issue #28). With ``mmap`` off
and the heap never trimmed, the second step onwards reuses the first
one's pages (AMD EPYC, AVX-512, one run each of ``bench/train.py`` and
``bench/inference.py --heap default`` against ``keep``, two of each):
training 0.225 to 0.273 images/s, peak RSS 3.03 to 3.09 GB; inference
2.14-2.28 to 1.63-1.70 s per image, peak RSS 1149 to 1160 MB. PyTorch's
CPU tuning guides get the same from jemalloc or tcmalloc.

The cost is that memory freed after the peak stays with the process until
it exits, which suits ``train.py`` and ``demo.py``; a library user calls
``keep_freed_memory`` only if that suits them too.
"""
import ctypes

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory():
    """Turn off glibc's ``mmap`` allocations and heap trimming for this
    process (and the processes it forks). Returns whether it applied:
    False where the C library has no glibc ``mallopt`` (macOS, musl)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # -1: never trim (mallopt(3)); 0: no allocation through mmap.
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(
        mallopt(M_TRIM_THRESHOLD, -1))
