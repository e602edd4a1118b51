"""Utilities without parameters: boxes, data, evaluation, conversion.

``utils.compat`` is applied first so that any module here may import chainer.
"""
from utils import compat  # noqa: F401  (must precede any chainer import)
