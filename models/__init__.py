"""Links with parameters: backbone, RPN, heads and the Mask R-CNN model."""
from utils import compat  # noqa: F401  (must precede any chainer import)
