"""Chainer FunctionNodes with NumPy and CuPy kernels."""
from utils import compat  # noqa: F401  (must precede any chainer import)
