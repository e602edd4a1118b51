"""Drawing the images of the synthetic dataset (``synthetic_coco.py``):
coloured shapes on a grey background, each with the COCO annotation of
exactly what was drawn.

* **Background**: a smooth random grey field with luminance noise and a
  faint tint, saturation below about 0.2 everywhere.
* **Shapes**: rectangles (axis-aligned with integer corners, or rotated),
  triangles, regular polygons and circles (24-gons). Class ``k`` (1..K)
  is a colour family: hue ``360 (k - 1) / K`` degrees, jittered by a sixth
  of the spacing, saturation 0.65-0.9, value 0.65-0.95, plus luminance noise
  (equal on the three channels, so it leaves the hue alone). Colour alone
  identifies the class; a small network learns it quickly.
* **Exact polygons**: each shape's pixels are exactly pycocotools'
  rasterisation of the polygon stored in the annotation (``frPyObjects`` +
  ``decode``), so annotation and image agree to the pixel.
* **Occlusion**: shapes are painted in annotation order and later ones
  hide earlier ones. Annotations keep the *full* polygon of what was drawn
  (amodal, not subtracted), so an occluded instance's polygon covers some
  pixels of the shape in front; a new shape is rejected if it would hide
  more than ``MAX_HIDDEN`` of an earlier one.
* **Crowds**: an image may start with a cluster of small shapes of one
  class annotated as a single ``iscrowd=1`` region, an uncompressed RLE of
  their union (``counts`` a list, as in COCO's own files).

COCO fields: ``bbox`` is the polygon's vertex extent ``[x, y, w, h]`` (as
COCO computes it; the RLE's extent for crowds), ``area`` the pixel count of
the rasterised region. Everything is drawn from the ``RandomState`` passed
in.
"""
import colorsys

import cv2
import numpy
import pycocotools.mask as mask_util

#: An earlier instance may lose at most this fraction of its pixels.
MAX_HIDDEN = 0.3
SHAPE_KINDS = ('rectangle', 'triangle', 'polygon', 'circle')
HUE_NAMES = ('red', 'orange', 'yellow', 'chartreuse', 'green', 'spring',
             'cyan', 'azure', 'blue', 'violet', 'magenta', 'rose')


def class_hues(n_classes):
    """Centre hue in degrees [0, 360) of each class family, label order."""
    return [360. * k / n_classes for k in range(n_classes)]


def default_class_names(n_classes):
    names = [HUE_NAMES[int(round(h / 30.)) % 12]
             for h in class_hues(n_classes)]
    if len(set(names)) < n_classes:
        names = ['class{}'.format(k) for k in range(1, n_classes + 1)]
    return names


def shape_polygon(rng, kind, cx, cy, r):
    """Vertices (P, 2) float64 ``(x, y)`` of a shape inside the circle of
    radius ``r`` about ``(cx, cy)``."""
    if kind == 'rectangle':
        phi = rng.uniform(0.35, 1.22)
        a, b = r * numpy.cos(phi), r * numpy.sin(phi)
        if rng.rand() < 0.5:  # axis-aligned, integer corners
            x1, y1 = numpy.ceil(cx - a), numpy.ceil(cy - b)
            x2, y2 = numpy.floor(cx + a), numpy.floor(cy + b)
            return numpy.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        corners = numpy.array([[-a, -b], [a, -b], [a, b], [-a, b]])
        t = rng.uniform(0, numpy.pi)
        rot = numpy.array([[numpy.cos(t), -numpy.sin(t)],
                           [numpy.sin(t), numpy.cos(t)]])
        return corners.dot(rot.T) + (cx, cy)
    if kind == 'triangle':
        angles = (rng.uniform(0, 2 * numpy.pi) + numpy.arange(3) * 2 *
                  numpy.pi / 3 + rng.uniform(-0.4, 0.4, 3))
    else:
        n = rng.choice([5, 6, 8]) if kind == 'polygon' else 24
        angles = rng.uniform(0, 2 * numpy.pi) + numpy.arange(n) * 2 * \
            numpy.pi / n
    return numpy.stack([cx + r * numpy.cos(angles),
                        cy + r * numpy.sin(angles)], axis=1)


def polygon_mask(poly, height, width):
    """pycocotools' rasterisation of one flat polygon: (H, W) bool."""
    rle = mask_util.frPyObjects([list(poly)], height, width)
    return mask_util.decode(rle)[:, :, 0].astype(bool)


def uncompressed_rle(mask):
    """COCO's uncompressed RLE of an (H, W) bool mask: column-major run
    lengths starting with a run of zeros."""
    flat = numpy.asarray(mask, numpy.uint8).ravel(order='F')
    change = numpy.flatnonzero(numpy.diff(flat)) + 1
    bounds = numpy.concatenate(([0], change, [flat.size]))
    counts = numpy.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {'counts': counts, 'size': [int(mask.shape[0]),
                                       int(mask.shape[1])]}


def background(rng, height, width):
    """(H, W, 3) float64 RGB: smooth grey field, luminance noise, tint."""
    coarse = rng.uniform(70, 200, (4, 5)).astype(numpy.float32)
    grey = cv2.resize(coarse, (width, height),
                      interpolation=cv2.INTER_LINEAR).astype(numpy.float64)
    grey += rng.normal(0, 4, (height, width))
    img = grey[:, :, None] + rng.uniform(-5, 5, 3)
    return numpy.clip(img, 0, 255)


def class_colour(rng, label, n_classes):
    """RGB 0-255 float of one instance of ``label`` (1..K)."""
    spacing = 360. / n_classes
    hue = class_hues(n_classes)[label - 1] + rng.uniform(-1, 1) * \
        spacing / 6
    rgb = colorsys.hsv_to_rgb((hue % 360.) / 360., rng.uniform(0.65, 0.9),
                              rng.uniform(0.65, 0.95))
    return numpy.array(rgb) * 255.


def paint(rng, img, mask, colour):
    noise = rng.uniform(-6, 6, int(mask.sum()))
    img[mask] = colour + noise[:, None]


def place_shape(rng, size, visible, scale=(0.1, 0.3)):
    """A shape that hides at most ``MAX_HIDDEN`` of each visible instance.

    Returns ``(flat polygon list, (H, W) bool mask)`` or None after 30
    rejected tries. ``visible`` lists the earlier instances' visible masks
    and full areas.
    """
    height, width = size
    for _ in range(30):
        r = rng.uniform(*scale) * min(height, width)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        kind = SHAPE_KINDS[rng.randint(len(SHAPE_KINDS))]
        xy = shape_polygon(rng, kind, cx, cy, r)
        xy = numpy.round(numpy.clip(xy, 0, (width, height)), 2)
        poly = xy.ravel().tolist()
        mask = polygon_mask(poly, height, width)
        if mask.sum() < 12:
            continue
        if all((vis & ~mask).sum() >= (1 - MAX_HIDDEN) * area
               for vis, area in visible):
            return poly, mask
    return None


def polygon_bbox(poly):
    xs, ys = poly[0::2], poly[1::2]
    return [min(xs), min(ys), round(max(xs) - min(xs), 2),
            round(max(ys) - min(ys), 2)]


def draw_crowd(rng, img, n_classes):
    """A cluster of small shapes of one class: (label, (H, W) bool)."""
    height, width = img.shape[:2]
    label = rng.randint(1, n_classes + 1)
    colour = class_colour(rng, label, n_classes)
    side = min(height, width)
    cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
    union = numpy.zeros((height, width), bool)
    for _ in range(rng.randint(4, 8)):
        r = rng.uniform(0.03, 0.06) * side
        x = numpy.clip(cx + rng.uniform(-0.15, 0.15) * side, r, width - r)
        y = numpy.clip(cy + rng.uniform(-0.15, 0.15) * side, r, height - r)
        xy = shape_polygon(rng, 'circle', x, y, r)
        union |= polygon_mask(numpy.round(xy, 2).ravel().tolist(), height,
                              width)
    paint(rng, img, union, colour)
    return label, union


def draw_image(rng, size, n_classes, n_instances, crowd):
    """One image and its annotations (without ids).

    Returns:
        (numpy.ndarray, list of dict): (H, W, 3) uint8 RGB; annotations with
        ``category`` (label 1..K), ``segmentation``, ``bbox``, ``area``,
        ``iscrowd``, in painting order.
    """
    img = background(rng, *size)
    anns, visible = [], []
    if crowd:
        label, union = draw_crowd(rng, img, n_classes)
        rle = uncompressed_rle(union)
        compressed = mask_util.frPyObjects(rle, *size)
        anns.append({'category': label, 'segmentation': rle, 'iscrowd': 1,
                     'bbox': mask_util.toBbox(compressed).tolist(),
                     'area': float(mask_util.area(compressed))})
        visible.append((union.copy(), float(union.sum())))
    for _ in range(n_instances):
        placed = place_shape(rng, size, visible)
        if placed is None:
            continue
        poly, mask = placed
        label = rng.randint(1, n_classes + 1)
        paint(rng, img, mask, class_colour(rng, label, n_classes))
        for vis, _ in visible:
            vis &= ~mask
        visible.append((mask.copy(), float(mask.sum())))
        anns.append({'category': label, 'segmentation': [poly],
                     'iscrowd': 0, 'bbox': polygon_bbox(poly),
                     'area': float(mask.sum())})
    return numpy.round(img).astype(numpy.uint8), anns
