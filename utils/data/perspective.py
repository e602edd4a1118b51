"""Geometric augmentation: a small random perspective, a homography that
moves each corner of the image by up to ``D`` times the image's sides.

**Frame.** A homography ``M`` (3, 3) float64 maps the input's COCO polygon
coordinates (pixel corners: pixel ``(r, c)`` is the square ``[c, c + 1] x
[r, r + 1]``) to the output's: ``(x', y') = (u / t, v / t)`` with ``(u,
v, t) = M (x, y, 1)``. The output keeps the input's size ``(H, W)``. The
image and bitmaps, whose pixel ``(r, c)`` has its centre at ``(c + 1/2,
r + 1/2)``, are resampled with ``T(-1/2) M T(1/2)``, ``M`` in OpenCV's
pixel-centre frame: the image bilinearly (``cv2.warpPerspective``), with
``fill`` where the source point leaves the image (as the zoom-out crop
pads), bitmaps (RLE annotations) by nearest neighbour.

``Perspective(D)`` draws the moves ``(dx, dy)`` of the corners ``(0, 0),
(W, 0), (W, H), (0, H)``, in that order, uniformly in ``[-D W, D W] x
[-D H, D H]`` (one call of 8 uniforms), and ``M`` maps the corners to the
moved ones. With ``D < 1/4`` the moved corners stay a convex quadrilateral,
so ``t > 0`` over the whole image: straight edges stay straight and a
polygon's image is exactly the polygon of its mapped vertices.

Instances:

* polygons: each vertex mapped by ``M``, then clipped to the image
  ``[0, W] x [0, H]`` (``random_crop.clip_polygon``, Sutherland-Hodgman);
  a polygon left with under 3 points goes;
* bitmaps: warped by nearest neighbour;
* **boxes are recomputed from the warped masks, never mapped**: the tight
  extent ``[x_lo, x_hi] x [y_lo, y_hi]`` of the clipped polygons' vertices
  (of a bitmap: of its pixels' squares, ``x_hi = c_max + 1``) read as the
  loader reads a COCO box ``(x_lo, y_lo, x_hi - x_lo, y_hi - y_lo)``
  (``xywh_to_xyxy``): ``x2 = x_lo + max(0, x_hi - x_lo - box_offset)``,
  likewise ``y2``. The mapped corners of the input box would bound the
  warped box, a quadrilateral larger than the object.
* an instance is kept by the crop's rule (``random_crop.keeps_instance``):
  ``A`` is the mask area of the whole warped instance (on a canvas that
  holds the whole warped image), ``a`` that of its part inside the image.

Crowd regions never get here (``COCODataset`` drops them when it reads the
file). Labels follow the kept instances.
"""
import math

import cv2
import numpy

from utils.data.random_crop import crop_segm, is_bitmap, keeps_instance
from utils.ops.boxes import xywh_to_xyxy

MAX_SHIFT = 0.25   # from here on the moved corners can stop being convex


def corner_homography(size, moves):
    """``M`` (3, 3) float64, ``M[2, 2] = 1``, mapping the corners of an
    image of ``size`` (H, W) to themselves plus ``moves`` (4, 2) ``(dx,
    dy)`` in pixels, for the corners ``(0, 0), (W, 0), (W, H), (0, H)`` in
    that order: the 8 x 8 linear system of the four correspondences, in
    float64 (OpenCV's ``getPerspectiveTransform`` solves it in float32,
    off by a few hundredths of a pixel on a 500-pixel side)."""
    H, W = size
    src = numpy.array([[0, 0], [W, 0], [W, H], [0, H]], numpy.float64)
    dst = src + numpy.asarray(moves, numpy.float64).reshape(4, 2)
    a = numpy.zeros((8, 8))
    for k, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        # u (m20 x + m21 y + 1) = m00 x + m01 y + m02, likewise v.
        a[2 * k] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * k + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
    m = numpy.linalg.solve(a, dst.reshape(-1))
    return numpy.append(m, 1.).reshape(3, 3)


def map_points(matrix, points):
    """(N, 2) float64 points ``(x, y)`` mapped by ``matrix`` (3, 3)."""
    p = numpy.asarray(points, numpy.float64).reshape(-1, 2)
    q = p @ matrix[:, :2].T + matrix[:, 2]
    return q[:, :2] / q[:, 2:]


def centre_frame(matrix):
    """``matrix`` between pixel centres: ``T(-1/2) M T(1/2)``, what
    ``cv2.warpPerspective`` takes."""
    to_corner = numpy.array([[1, 0, .5], [0, 1, .5], [0, 0, 1]])
    to_centre = numpy.array([[1, 0, -.5], [0, 1, -.5], [0, 0, 1]])
    return to_centre @ numpy.asarray(matrix, numpy.float64) @ to_corner


def warp_image(img, matrix, size, fill=0.):
    """(3, H, W) float32 ``img`` warped bilinearly onto (3, h, w) = ``size``,
    ``fill`` (a float or 3, per channel) where the source leaves ``img``."""
    hwc = numpy.ascontiguousarray(img.transpose(1, 2, 0), numpy.float32)
    border = tuple(float(v) for v in numpy.broadcast_to(fill, (3,)))
    out = cv2.warpPerspective(hwc, centre_frame(matrix), (size[1], size[0]),
                              flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT,
                              borderValue=border)
    return numpy.ascontiguousarray(out.transpose(2, 0, 1))


def warp_segm(segm, matrix, size):
    """An instance's segmentation mapped by ``matrix`` onto an image of
    ``size`` (h, w), nothing clipped: polygons vertex by vertex, a bitmap
    by nearest neighbour (pixels beyond ``size`` are lost)."""
    if is_bitmap(segm):
        out = cv2.warpPerspective(segm.astype(numpy.uint8),
                                  centre_frame(matrix), (size[1], size[0]),
                                  flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
        return out.astype(bool)
    return [map_points(matrix, p).reshape(-1) for p in segm]


def segm_box(segm, box_offset=1):
    """(4,) float32 ``(x1, y1, x2, y2)`` of a segmentation's tight extent,
    read as the loader reads a COCO box (module docstring); all zeros for
    an empty one (a degenerate box)."""
    if is_bitmap(segm):
        rows = numpy.flatnonzero(segm.any(axis=1))
        cols = numpy.flatnonzero(segm.any(axis=0))
        if len(rows) == 0:
            return numpy.zeros(4, numpy.float32)
        lo, hi = (cols[0], rows[0]), (cols[-1] + 1, rows[-1] + 1)
    else:
        if not segm:
            return numpy.zeros(4, numpy.float32)
        pts = numpy.concatenate([p.reshape(-1, 2) for p in segm])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    xywh = numpy.array([[lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]],
                       numpy.float64)
    return xywh_to_xyxy(xywh, box_offset)[0].astype(numpy.float32)


def whole_canvas(matrix, size):
    """``(y0, x0, h, w)``: integer top-left corner (<= 0) and size of a
    canvas, in output coordinates, holding both the output image of
    ``size`` (H, W) and the whole warped input (the moved corners)."""
    H, W = size
    corners = map_points(matrix, [[0, 0], [W, 0], [W, H], [0, H]])
    x0 = min(math.floor(corners[:, 0].min()), 0)
    y0 = min(math.floor(corners[:, 1].min()), 0)
    x1 = max(math.ceil(corners[:, 0].max()), W)
    y1 = max(math.ceil(corners[:, 1].max()), H)
    return y0, x0, y1 - y0, x1 - x0


def warp_example(img, label, segms, matrix, fill=0., min_visible=0.,
                 box_offset=1):
    """Warp one example by ``matrix`` (module docstring).

    Args:
        img (numpy.ndarray): (3, H, W) float32 image.
        label (numpy.ndarray): (R,) int32.
        segms (list): R lists of (2P,) polygons, or (H, W) bool bitmaps.
        matrix (numpy.ndarray): (3, 3) float64 ``M``, pixel-corner frame.
        fill (float or sequence of 3 float): image value where the source
            point leaves the image.
        min_visible (float): in [0, 1], the fraction of an instance's
            warped mask area that must stay inside the image.
        box_offset (int): the model's ``conventions.box_offset``.

    Returns:
        ``(img, bbox, label, segms)``: (3, H, W) float32, (R', 4) float32
        boxes of the warped masks, (R',) int32 and R' segmentations,
        R' <= R kept in their order; new arrays.
    """
    size = img.shape[1:]
    y0, x0, h, w = whole_canvas(matrix, size)
    shift = numpy.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], numpy.float64)
    on_canvas = shift @ matrix
    window = (-y0, -x0) + tuple(size)   # the output image in the canvas
    keep, boxes, out_segms = [], [], []
    for i, segm in enumerate(segms):
        whole = warp_segm(segm, on_canvas, (h, w))
        part = crop_segm(whole, window, (h, w))
        box = segm_box(part, box_offset)
        if keeps_instance(part, size, whole, (h, w), box, min_visible):
            keep.append(i)
            boxes.append(box)
            out_segms.append(part)
    keep = numpy.array(keep, numpy.intp)
    bbox = numpy.array(boxes, numpy.float32).reshape(-1, 4)
    return (warp_image(img, matrix, size, fill), bbox,
            numpy.asarray(label, numpy.int32)[keep], out_segms)


class Perspective:
    """A random corner homography per example (module docstring).

    Args:
        max_shift (float): ``D`` in ``[0, 1/4)``, the largest corner move
            over the image's sides; 0: the identity, nothing drawn.
        min_visible (float): in [0, 1], see ``warp_example``.
        fill (sequence of 3 float): RGB value outside the image, 0-255
            (the model's pixel mean in RGB order).
        box_offset (int): the model's ``conventions.box_offset``.

    ``perspective(img, bbox, label, segms, rng)`` draws ``M`` from ``rng``
    (the batcher's seeded ``RandomState``) and returns ``warp_example``'s
    result; the input boxes are replaced by those of the warped masks.
    """

    def __init__(self, max_shift, min_visible=0.25, fill=(0., 0., 0.),
                 box_offset=1):
        if not 0 <= max_shift < MAX_SHIFT:
            raise ValueError('perspective: expected a corner move in [0, '
                             '{}) of the image sides, got {}'.format(
                                 MAX_SHIFT, max_shift))
        if not 0 <= min_visible <= 1:
            raise ValueError('perspective: expected a visible fraction in '
                             '[0, 1], got {}'.format(min_visible))
        self.max_shift = float(max_shift)
        self.min_visible = float(min_visible)
        self.fill = tuple(float(v) for v in fill)
        self.box_offset = box_offset

    def draw(self, size, rng):
        """``M`` for an image of ``size`` (H, W): 8 uniforms from ``rng``."""
        d = self.max_shift
        moves = rng.uniform(-d, d, (4, 2)) * numpy.array(size[::-1], float)
        return corner_homography(size, moves)

    def __call__(self, img, bbox, label, segms, rng):
        if self.max_shift == 0:
            return img, bbox, label, segms
        return warp_example(img, label, segms, self.draw(img.shape[1:], rng),
                            self.fill, self.min_visible, self.box_offset)
