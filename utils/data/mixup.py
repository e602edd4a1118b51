"""MixUp for detection: two examples blended into one, with the instances
of both (YOLOX / YOLOv5 style, no loss weighting).

``mixup_examples(a, b, lam)`` places both images at the top-left corner
of a canvas of ``(max H, max W)`` pixels, ``fill`` where an image does not
reach, and blends them: ``x = lam x_a + (1 - lam) x_b``. Nothing moves, so
boxes and polygons stay as they are; bitmaps (RLE annotations) are padded
to the canvas. The instances are ``a``'s followed by ``b``'s; none is
dropped (each stays fully visible, only fainter). Crowd regions never get
here (``COCODataset`` drops them when it reads the file).

``MixUp(p)`` mixes an example with probability ``p`` with a partner the
batcher prepares (another example of the batch, augmented with its own
draws), and ``lam ~ Beta(32, 32)`` (YOLOv5's, about 0.5 +- 0.06).
"""
import numpy

from utils.data.random_crop import crop_array, is_bitmap

BETA = 32.


def mixup_examples(a, b, lam, fill=0.):
    """Blend examples ``a`` and ``b`` (module docstring).

    Args:
        a, b (tuple): ``(img, bbox, label, segms)``: (3, H, W) float32
            image, (R, 4) float32 boxes, (R,) int32 labels and R lists of
            (2P,) polygons or (H, W) bool bitmaps, each in its own pixels.
        lam (float): weight of ``a``'s image, in [0, 1].
        fill (float or sequence of 3 float): value where an image does not
            reach (the model's pixel mean, in the image's channel order).

    Returns:
        ``(img, bbox, label, segms)``: (3, H', W') float32 with
        ``H' = max(H_a, H_b)``, ``W' = max(W_a, W_b)``; (R_a + R_b, 4)
        float32, (R_a + R_b,) int32 and R_a + R_b segmentations.
    """
    h = max(a[0].shape[1], b[0].shape[1])
    w = max(a[0].shape[2], b[0].shape[2])
    window = (0, 0, h, w)
    img = (numpy.float32(lam) * crop_array(a[0], window, fill) +
           numpy.float32(1 - lam) * crop_array(b[0], window, fill))
    bbox = numpy.concatenate([numpy.asarray(a[1], numpy.float32).reshape(
        -1, 4), numpy.asarray(b[1], numpy.float32).reshape(-1, 4)])
    label = numpy.concatenate([numpy.asarray(a[2], numpy.int32),
                               numpy.asarray(b[2], numpy.int32)])
    segms = [crop_array(s, window, False) if is_bitmap(s) else s
             for s in list(a[3]) + list(b[3])]
    return img.astype(numpy.float32), bbox, label, segms


class MixUp:
    """Mix with probability ``p`` (module docstring).

    Args:
        p (float): in [0, 1].
        fill (sequence of 3 float): RGB 0-255 outside an image (the model's
            pixel mean in RGB order).

    ``mixup.draw(rng)`` returns ``lam`` or None (no mix), drawing one
    uniform and, when it mixes, one Beta from ``rng``; ``mixup(a, b, lam)``
    returns ``mixup_examples``'s result.
    """

    def __init__(self, p, fill=(0., 0., 0.)):
        if not 0 <= p <= 1:
            raise ValueError('mixup: expected a probability in [0, 1], got '
                             '{}'.format(p))
        self.p = float(p)
        self.fill = tuple(float(v) for v in fill)

    def draw(self, rng):
        if rng.rand() >= self.p:
            return None
        return rng.beta(BETA, BETA)

    def __call__(self, a, b, lam):
        return mixup_examples(a, b, lam, self.fill)
