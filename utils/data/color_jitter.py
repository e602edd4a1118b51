"""Photometric augmentation: random brightness, contrast, saturation and
hue, as torchvision's ``ColorJitter`` on the 0-255 scale.

The image is a dataset example's: (3, H, W) float32, **RGB**, 0-255
(``COCODataset``); the jitter runs before ``utils.ops.image.prepare``
turns it into the network's BGR input, so the grey weights below are the
R, G, B ones. Every step clips to [0, 255], as torchvision clips to [0, 1].

================ ========================================================
step             formula, factor drawn uniformly
================ ========================================================
brightness ``b`` ``x' = b x``, ``b`` in ``[max(0, 1 - B), 1 + B]``
contrast ``c``   ``x' = c x + (1 - c) mean(grey(x))`` (one scalar per
                 image), ``c`` in ``[max(0, 1 - C), 1 + C]``
saturation ``s`` ``x' = s x + (1 - s) grey(x)`` per pixel, ``s`` in
                 ``[max(0, 1 - S), 1 + S]``; ``s = 0`` gives grey
hue ``h``        the HSV hue turns by ``h`` of a full turn (saturation
                 and value kept), ``h`` in ``[-H, H]``, ``H <= 0.5``
================ ========================================================

``grey(x) = 0.299 R + 0.587 G + 0.114 B`` (ITU-R 601, PIL's "L"). The four
steps run in a random order, as torchvision's. Geometry is unchanged, so
boxes and masks need nothing.
"""
import cv2
import numpy

GREY_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B


def grey(img):
    """(H, W) float32 luma of a (3, H, W) RGB image."""
    w = numpy.asarray(GREY_WEIGHTS, numpy.float32)
    return numpy.tensordot(w, img.astype(numpy.float32), axes=1)


def adjust_brightness(img, factor):
    """``factor * img`` clipped to [0, 255]; (3, H, W) float32 RGB."""
    return _clip(img * numpy.float32(factor))


def adjust_contrast(img, factor):
    """Blend with the image's mean grey level (a scalar)."""
    return _blend(img, grey(img).mean(), factor)


def adjust_saturation(img, factor):
    """Blend with the per-pixel grey image; 0 gives grey."""
    return _blend(img, grey(img)[None], factor)


def adjust_hue(img, shift):
    """Turn the HSV hue of every pixel by ``shift`` of a full turn.

    Args:
        img (numpy.ndarray): (3, H, W) float32 RGB, 0-255.
        shift (float): in [-0.5, 0.5]; 1/3 turns red into green.
    """
    # OpenCV's float HSV: H in degrees [0, 360), S and V in [0, 1].
    hwc = numpy.ascontiguousarray(img.transpose(1, 2, 0), numpy.float32)
    hsv = cv2.cvtColor(hwc / 255, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = numpy.mod(hsv[..., 0] + 360 * shift, 360)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
    return _clip(rgb.transpose(2, 0, 1))


def _blend(img, other, factor):
    f = numpy.float32(factor)
    return _clip(f * img + (1 - f) * numpy.float32(other))


def _clip(img):
    return numpy.clip(img, 0, 255).astype(numpy.float32, copy=False)


class ColorJitter:
    """Random brightness, contrast, saturation and hue (module docstring).

    Args:
        brightness, contrast, saturation (float): ``B, C, S >= 0``, the
            half-widths of the factor ranges around 1; 0 leaves it as is.
        hue (float): ``0 <= H <= 0.5``, the largest turn of the hue.

    ``jitter(img, rng)`` draws four factors and an order from ``rng`` (a
    ``numpy.random.RandomState``, the batcher's seeded one; the same number
    of draws whatever the ranges) and returns the new (3, H, W) float32
    RGB image.
    """

    def __init__(self, brightness=0., contrast=0., saturation=0., hue=0.):
        for name, value in (('brightness', brightness),
                            ('contrast', contrast),
                            ('saturation', saturation)):
            if not value >= 0:
                raise ValueError('color jitter {}: expected a value >= 0, '
                                 'got {}'.format(name, value))
        if not 0 <= hue <= 0.5:
            raise ValueError('color jitter hue: expected a value in '
                             '[0, 0.5], got {}'.format(hue))
        self.ranges = tuple((max(0., 1 - v), 1 + v) for v in
                            (brightness, contrast, saturation)) + (
                                (-hue, hue),)

    def draw(self, rng):
        """(factors, order): brightness, contrast, saturation and hue
        factors, and the permutation (4,) of step indices to apply."""
        factors = [rng.uniform(lo, hi) for lo, hi in self.ranges]
        return factors, rng.permutation(4)

    def __call__(self, img, rng):
        factors, order = self.draw(rng)
        return apply_jitter(img, factors, order)


STEPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def apply_jitter(img, factors, order=(0, 1, 2, 3)):
    """``STEPS[i](img, factors[i])`` for ``i`` in ``order``; a step whose
    factor changes nothing (1, or hue 0) is skipped."""
    img = _clip(numpy.asarray(img, numpy.float32))
    for i in order:
        identity = 0. if i == 3 else 1.
        if factors[i] != identity:
            img = STEPS[i](img, factors[i])
    return img
