"""Geometric augmentation: a random window of the image, smaller (zoom
in, a crop) or larger (zoom out, padding) than the image itself.

``RandomCrop((lo, hi))`` draws ``f`` uniformly in ``[lo, hi]`` and a
window of ``h' = max(1, round(f H))`` by ``w' = max(1, round(f W))``
pixels at a random integer offset ``(y0, x0)``: inside the image when
``f <= 1``, holding the whole image when ``f > 1``. The window becomes the
new image; the training resize (``prepare``) then brings its shorter side
to the drawn ``--scales`` size, so objects appear ``1 / f`` times larger.
Pixels of the window outside the image take ``fill`` (the model's pixel
mean, which is 0 once the mean is subtracted, like ``prepare``'s padding).

Everything moves together by the integer shift ``(-x0, -y0)``:

* boxes ``(x1, y1, x2, y2)`` are shifted, then clipped to the window as the
  loader clips them (``[0, w' - box_offset]``, ``utils.ops.boxes.clip_bbox``);
* polygons (pixel-corner coordinates, COCO's) are shifted, then cut to
  the part of the window the image covers (Sutherland-Hodgman against
  that rectangle, ``clip_polygon``), so no part lands on padding or, in a
  mosaic, on a neighbouring quadrant; a polygon left with under 3 points
  goes;
* bitmaps (RLE annotations, (H, W) bool) are cut and padded like the image.

**Rule for instances cut by the window.** Let ``A`` be an instance's mask
area in pixels in the image and ``a`` its area inside the window. It is
kept when ``a > 0``, ``a >= min_visible * A`` and its clipped box is not
degenerate (``x2 > x1`` and ``y2 > y1``, the loader's rule); otherwise
it is dropped with its label and mask. A zoom-out window (``f >= 1``)
holds the whole image and drops only instances without a mask pixel.
An image may end with no instance: it then trains as background only, as
images without annotations do.

**Crowd regions** never reach this module: ``COCODataset`` drops them (and
``ignore`` regions) when it reads the file (docs/conventions.md), as it
does without augmentation, so the rule above concerns instances only.
"""
import numpy
import pycocotools.mask as mask_util

from utils.ops.boxes import clip_bbox


def is_bitmap(segm):
    """An instance's segmentation is an (H, W) bool bitmap (RLE), not a
    list of polygons."""
    return isinstance(segm, numpy.ndarray) and segm.ndim == 2


def mask_area(segm, size):
    """Pixels of ``segm`` inside an image of ``size`` (H, W): the union of
    its polygons rasterised by pycocotools, or the bitmap's sum."""
    if is_bitmap(segm):
        return int(segm.sum())
    polys = [numpy.asarray(p, numpy.float64).tolist() for p in segm]
    if not polys:
        return 0
    rles = mask_util.frPyObjects(polys, int(size[0]), int(size[1]))
    return int(mask_util.area(mask_util.merge(rles)))


def _spans(offset, length, size):
    """Source and destination slices of the overlap between a window
    ``[offset, offset + length)`` and ``[0, size)``."""
    lo, hi = max(offset, 0), min(offset + length, size)
    hi = max(hi, lo)
    return slice(lo, hi), slice(lo - offset, hi - offset)


def crop_array(arr, window, fill=0):
    """The ``window`` ``(y0, x0, h, w)`` of ``arr`` (..., H, W): a new
    (..., h, w) array, ``fill`` where the window leaves ``arr`` (``fill``
    broadcasts against (..., 1, 1))."""
    y0, x0, h, w = window
    out = numpy.empty(arr.shape[:-2] + (h, w), arr.dtype)
    out[...] = numpy.reshape(fill, numpy.shape(fill) + (1, 1))
    sy, dy = _spans(y0, h, arr.shape[-2])
    sx, dx = _spans(x0, w, arr.shape[-1])
    out[..., dy, dx] = arr[..., sy, sx]
    return out


def crop_example(img, bbox, label, segms, window, fill=0., min_visible=0.,
                 box_offset=1):
    """Cut one example to ``window`` (module docstring).

    Args:
        img (numpy.ndarray): (3, H, W) float32 image.
        bbox (numpy.ndarray): (R, 4) float32 ``(x1, y1, x2, y2)`` in the
            image's pixels (inclusive for ``box_offset`` 1).
        label (numpy.ndarray): (R,) int32.
        segms (list): R lists of (2P,) polygons, or (H, W) bool bitmaps.
        window ((int, int, int, int)): ``(y0, x0, h', w')``, the window's
            top-left pixel in the image (may be negative) and its size.
        fill (float or sequence of 3 float): image value outside the image.
        min_visible (float): in [0, 1], the fraction of an instance's mask
            area that must stay inside the window.
        box_offset (int): the model's ``conventions.box_offset``.

    Returns:
        ``(img, bbox, label, segms)`` of the window: (3, h', w') float32,
        (R', 4) float32, (R',) int32 and R' segmentations, R' <= R kept
        in their order; new arrays.
    """
    y0, x0, h, w = window
    size = img.shape[1:]
    out_img = crop_array(img, window, fill)
    shifted = numpy.asarray(bbox, numpy.float32).reshape(-1, 4) - \
        numpy.array([x0, y0, x0, y0], numpy.float32)
    out_bbox = clip_bbox(shifted, (h, w), box_offset)
    keep, out_segms = [], []
    for i, segm in enumerate(segms):
        moved = crop_segm(segm, window, size)
        if keeps_instance(moved, (h, w), segm, size, out_bbox[i],
                          min_visible):
            keep.append(i)
            out_segms.append(moved)
    keep = numpy.array(keep, numpy.intp)
    return (out_img, out_bbox[keep], numpy.asarray(label, numpy.int32)[keep],
            out_segms)


def crop_segm(segm, window, size):
    """One instance's segmentation cut to ``window`` ``(y0, x0, h', w')``
    of an image of ``size`` (H, W): a bitmap cut and padded like the
    image; polygons shifted and clipped to the part of the window the
    image covers, those left with under 3 points dropped."""
    y0, x0, h, w = window
    if is_bitmap(segm):
        return crop_array(segm, window, False)
    rect = (max(-x0, 0), max(-y0, 0), min(size[1] - x0, w),
            min(size[0] - y0, h))
    return [q for q in (clip_polygon(_shift_polygon(p, x0, y0), rect)
                        for p in segm) if len(q) >= 6]


def keeps_instance(moved, moved_size, segm, size, box, min_visible):
    """The rule for an instance cut by a window (module docstring):
    ``moved``, its segmentation in the new image of ``moved_size``, has a
    mask area ``a > 0`` with ``a >= min_visible * A``, ``A`` the area of
    ``segm`` in the image of ``size``, and its box ``(x1, y1, x2, y2)`` in
    the new image has ``x2 > x1`` and ``y2 > y1``."""
    visible = mask_area(moved, moved_size)
    x1, y1, x2, y2 = box
    return bool(visible > 0 and visible >= min_visible *
                mask_area(segm, size) and x2 > x1 and y2 > y1)


def _shift_polygon(poly, x0, y0):
    p = numpy.array(poly, numpy.float64)
    p[0::2] -= x0
    p[1::2] -= y0
    return p


def clip_polygon(poly, rect):
    """The part of a polygon inside a rectangle (Sutherland-Hodgman: exact
    for any polygon against a convex region; where the polygon leaves and
    re-enters, the result runs along the border with zero area there).

    Args:
        poly (numpy.ndarray): (2P,) float64 ``x, y, ...``.
        rect ((float, float, float, float)): ``(x1, y1, x2, y2)``.

    Returns:
        numpy.ndarray: (2P',) float64, possibly empty.
    """
    pts = numpy.asarray(poly, numpy.float64).reshape(-1, 2)
    # (axis, bound, keep side): x >= x1, y >= y1, x <= x2, y <= y2.
    for axis, bound, sign in ((0, rect[0], 1), (1, rect[1], 1),
                              (0, rect[2], -1), (1, rect[3], -1)):
        if len(pts) == 0:
            break
        inside = sign * (pts[:, axis] - bound) >= 0
        out = []
        for i in range(len(pts)):
            p, q = pts[i - 1], pts[i]     # edge p -> q
            if inside[i] != inside[i - 1]:
                t = (bound - p[axis]) / (q[axis] - p[axis])
                r = p + t * (q - p)
                r[axis] = bound   # exactly on the border
                out.append(r)
            if inside[i]:
                out.append(q)
        pts = numpy.array(out, numpy.float64).reshape(-1, 2)
    return pts.reshape(-1)


class RandomCrop:
    """A random window per example (module docstring).

    Args:
        scale_range ((float, float)): ``(lo, hi)``, ``0 < lo <= hi``, the
            range of the window's side over the image's.
        min_visible (float): in [0, 1], see ``crop_example``.
        fill (sequence of 3 float): RGB value outside the image, 0-255
            (the model's pixel mean in RGB order).
        box_offset (int): the model's ``conventions.box_offset``.

    ``crop(img, bbox, label, segms, rng)`` draws ``f``, then ``y0`` and
    ``x0`` from ``rng`` (the batcher's seeded ``RandomState``) and returns
    ``crop_example``'s result.
    """

    def __init__(self, scale_range, min_visible=0.25, fill=(0., 0., 0.),
                 box_offset=1):
        lo, hi = (float(v) for v in scale_range)
        if not 0 < lo <= hi:
            raise ValueError('random crop: expected 0 < LO <= HI, got {}, '
                             '{}'.format(lo, hi))
        if not 0 <= min_visible <= 1:
            raise ValueError('random crop: expected a visible fraction in '
                             '[0, 1], got {}'.format(min_visible))
        self.scale_range = (lo, hi)
        self.min_visible = float(min_visible)
        self.fill = tuple(float(v) for v in fill)
        self.box_offset = box_offset

    def draw(self, size, rng):
        """The window ``(y0, x0, h', w')`` for an image of ``size`` (H, W)."""
        f = rng.uniform(*self.scale_range)
        H, W = size
        h, w = max(1, int(round(f * H))), max(1, int(round(f * W)))
        y0 = rng.randint(min(0, H - h), max(0, H - h) + 1)
        x0 = rng.randint(min(0, W - w), max(0, W - w) + 1)
        return y0, x0, h, w

    def __call__(self, img, bbox, label, segms, rng):
        window = self.draw(img.shape[1:], rng)
        return crop_example(img, bbox, label, segms, window, self.fill,
                            self.min_visible, self.box_offset)
