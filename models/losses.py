"""Loss pieces shared by the heads' loss functions.

Every loss is a mean over images of a per-image term, so a batch split
into sub-batches whose losses are weighted by their share of the images
gives exactly the full batch's loss and gradient.
"""
import chainer.functions as F
from chainer.backend import get_array_module


def smooth_l1(x, t, beta):
    """Elementwise smooth L1 (Detectron ``SmoothL1Loss``):
    ``0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 beta``."""
    return F.huber_loss(x, t, beta, reduce='no') / beta


def per_image_mean(values, image_index, counts, n_images):
    """``(1/N) sum_i (sum of values of image i) / counts[i]``.

    Args:
        values (Variable): (E,) elementwise losses.
        image_index (array): (E,) int image of each element.
        counts (array): (N,) normaliser of each image (>= 1).
    """
    xp = get_array_module(image_index)
    weight = 1. / (counts[image_index] * n_images)
    return F.sum(values * xp.asarray(weight, values.dtype))
