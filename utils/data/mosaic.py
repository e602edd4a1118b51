"""Mosaic: four examples in the four quadrants of one image (YOLOv4
style, without resizing the pieces).

The canvas has the first example's size ``(H, W)``; a centre ``(yc, xc)``
splits it into quadrants. Each example puts the corner facing the centre
there: the top-left example its bottom-right corner, the top-right one its
bottom-left corner, and so on, so quadrant ``k`` of ``(qh, qw)`` pixels
shows the ``(qh, qw)`` window of example ``k`` next to that corner (``fill``
where the example is smaller than the quadrant). Pieces are not resized:
objects keep their size, and ``prepare`` resizes the canvas as any image.

Each piece is ``utils.data.random_crop.crop_example``'s window of its
example, so boxes, polygons and bitmaps move together and an instance cut
by its quadrant follows the crop's rule: it is dropped when less than
``min_visible`` of its mask area stays in the quadrant, or when its
clipped box has no width or height. The pieces' instances are then moved
to the canvas by the quadrant's offset and listed in quadrant order.
Crowd regions never get here (``COCODataset`` drops them when it reads
the file).
"""
import numpy

from utils.data.random_crop import crop_example


def quadrants(size, centre):
    """(cy, cx, qh, qw) of the top-left, top-right, bottom-left and
    bottom-right quadrants of a canvas of ``size`` split at ``centre``."""
    (H, W), (yc, xc) = size, centre
    return [(0, 0, yc, xc), (0, xc, yc, W - xc), (yc, 0, H - yc, xc),
            (yc, xc, H - yc, W - xc)]


def mosaic_examples(examples, centre, fill=0., min_visible=0.,
                    box_offset=1):
    """Four examples in one (module docstring).

    Args:
        examples (sequence of 4 tuples): ``(img, bbox, label, segms)`` as
            ``crop_example`` takes them; the first sets the canvas size.
        centre ((int, int)): ``(yc, xc)``, ``0 < yc < H``, ``0 < xc < W``.
        fill (float or sequence of 3 float): image value where a piece is
            smaller than its quadrant.
        min_visible (float): in [0, 1], ``crop_example``'s rule.
        box_offset (int): the model's ``conventions.box_offset``.

    Returns:
        ``(img, bbox, label, segms)`` of the canvas: (3, H, W) float32,
        (R, 4) float32, (R,) int32 and R segmentations.
    """
    H, W = examples[0][0].shape[1:]
    canvas = numpy.empty((3, H, W), numpy.float32)
    bboxes, labels, segms = [], [], []
    for k, (example, (cy, cx, qh, qw)) in enumerate(
            zip(examples, quadrants((H, W), centre))):
        h, w = example[0].shape[1:]
        top, left = k < 2, k % 2 == 0
        window = (h - qh if top else 0, w - qw if left else 0, qh, qw)
        piece = crop_example(*example, window, fill, min_visible, box_offset)
        canvas[:, cy:cy + qh, cx:cx + qw] = piece[0]
        # Moving the piece onto the canvas is a window that holds it whole.
        _, bbox, label, segm = crop_example(
            *piece, (-cy, -cx, H, W), fill, 0., box_offset)
        bboxes.append(bbox)
        labels.append(label)
        segms.extend(segm)
    return (canvas, numpy.concatenate(bboxes), numpy.concatenate(labels),
            segms)


class Mosaic:
    """A mosaic with probability ``p`` (module docstring).

    Args:
        p (float): in [0, 1].
        min_visible (float): in [0, 1], the crop's rule for cut instances.
        fill (sequence of 3 float): RGB 0-255 where a piece is smaller than
            its quadrant (the model's pixel mean in RGB order).
        box_offset (int): the model's ``conventions.box_offset``.

    ``mosaic.draw(size, rng)`` returns the centre ``(yc, xc)`` for a canvas
    of ``size`` or None (no mosaic, or a canvas under 2 x 2 pixels): one
    uniform, then ``yc`` and ``xc`` uniform in the middle half of each
    side. ``mosaic(examples, centre)`` returns ``mosaic_examples``'s
    result.
    """

    def __init__(self, p, min_visible=0.25, fill=(0., 0., 0.),
                 box_offset=1):
        if not 0 <= p <= 1:
            raise ValueError('mosaic: expected a probability in [0, 1], got '
                             '{}'.format(p))
        self.p = float(p)
        self.min_visible = float(min_visible)
        self.fill = tuple(float(v) for v in fill)
        self.box_offset = box_offset

    def draw(self, size, rng):
        if rng.rand() >= self.p or min(size) < 2:
            return None
        return tuple(min(max(rng.randint(n // 4, 3 * n // 4 + 1), 1), n - 1)
                     for n in size)

    def __call__(self, examples, centre):
        return mosaic_examples(examples, centre, self.fill,
                               self.min_visible, self.box_offset)
