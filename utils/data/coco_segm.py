"""COCO segmentations: the checks of a polygon list or an RLE against its
image (``coco_json.load_coco`` applies them to every annotation), and the
area pycocotools gives them.

The polygon bounds keep pycocotools' ``frPyObjects`` (which rasterises
every edge point at 5x, and segfaults on a vertex near 2e7, 788 MB at
1e7) and the training's mask targets in proportion to the image.
"""
import math

import numpy
import pycocotools.mask as mask_util

#: Polygon vertices lie within this many image sides of the image.
POLYGON_MARGIN = 4
#: The edges of an annotation's polygons add up to at most this many
#: times ``W + H``, and never more than ``MAX_PERIMETER`` pixels.
PERIMETER_FACTOR = 64
MAX_PERIMETER = 2 ** 20


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def are_numbers(values):
    """All finite numbers: one sum at C speed (a string, None or list in
    it raises TypeError) as COCO train2017 holds tens of millions of
    polygon coordinates; bools pass, as 0 and 1, as numpy reads them."""
    try:
        return math.isfinite(sum(values))
    except (TypeError, OverflowError):  # OverflowError: int beyond float
        return False


def segmentation_problem(segm, size=None):
    """What is wrong with a COCO segmentation, or None.

    Args:
        segm: a list of polygons, or an RLE dict.
        size ((int, int) or None): the image's (height, width), if known.
    """
    if isinstance(segm, list):
        for poly in segm:
            if not (isinstance(poly, list) and are_numbers(poly)):
                return 'a polygon is not a list of numbers'
            if len(poly) % 2:
                return 'a polygon has an odd number of coordinates'
        return None if size is None else polygon_extent_problem(segm, size)
    if not (isinstance(segm, dict) and 'counts' in segm):
        return 'segmentation is neither polygons nor an RLE'
    rle_size = segm.get('size')
    if not (isinstance(rle_size, list) and len(rle_size) == 2 and
            all(is_int(v) and v >= 0 for v in rle_size)):
        return 'RLE size {!r} is not [height, width]'.format(rle_size)
    if size is not None and tuple(rle_size) != tuple(size):
        return 'RLE size {} is not the image size {}'.format(
            rle_size, list(size))
    counts = segm['counts']
    if isinstance(counts, str):
        try:
            counts = rle_string_counts(counts)
        except ValueError as e:
            return 'RLE counts: {}'.format(e)
    elif not (isinstance(counts, list) and set(map(type, counts)) <= {int}):
        return 'RLE counts are neither a string nor a list of integers'
    if any(c < 0 for c in counts) or sum(counts) != rle_size[0] * \
            rle_size[1]:
        # pycocotools decodes short runs from uninitialised memory.
        return 'RLE run lengths do not add up to {} x {}'.format(*rle_size)
    return None


def polygon_extent_problem(polygons, size):
    """What makes checked polygons too far or too long for an image of
    ``size`` (height, width) (module docstring), or None."""
    height, width = size
    limit = min(PERIMETER_FACTOR * (height + width), MAX_PERIMETER)
    bound = 0       # every edge as long as its polygon's extent
    for poly in polygons:
        if not poly:
            continue
        xs, ys = poly[0::2], poly[1::2]
        for lo, hi, side, axis in ((min(xs), max(xs), width, 'x'),
                                   (min(ys), max(ys), height, 'y')):
            if lo < -POLYGON_MARGIN * side or \
                    hi > (POLYGON_MARGIN + 1) * side:
                return ('polygon {} {} is more than {} image sides outside '
                        'the {} x {} image'.format(
                            axis, lo if lo < -POLYGON_MARGIN * side else hi,
                            POLYGON_MARGIN, width, height))
        bound += len(xs) * max(max(xs) - min(xs), max(ys) - min(ys))
    if bound <= limit:  # the common case: no array needed
        return None
    length = 0.
    for poly in polygons:
        p = numpy.array(poly, numpy.float64).reshape(-1, 2)
        length += float(abs(p - numpy.roll(p, 1, axis=0)).max(1).sum()) \
            if len(p) else 0.
    if length > limit:
        return ('its polygons are {:.0f} pixels long, more than {} ({} x '
                '(W + H), at most {})'.format(length, limit,
                                              PERIMETER_FACTOR,
                                              MAX_PERIMETER))
    return None


def rle_string_counts(s):
    """Run lengths of a pycocotools compressed RLE string (``rleFrString``
    in ``maskApi.c``): each count is a signed number in 5-bit groups, one
    character ``chr(48 + group)`` each, least significant first; bit 0x20
    says another group follows and bit 0x10 of the last one is the sign.
    From the fourth count on, a value is the difference to the count two
    before.

    Raises:
        ValueError: a character outside ``'0'..'o'``, or the string ends
        inside a count.
    """
    counts, x, k = [], 0, 0
    for ch in s:
        c = ord(ch) - 48
        if not 0 <= c < 64:
            raise ValueError('character {!r} is not RLE'.format(ch))
        x |= (c & 0x1f) << (5 * k)
        k += 1
        if c & 0x20:
            continue
        if c & 0x10:
            x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
        x, k = 0, 0
    if k:
        raise ValueError('the string ends inside a count')
    return counts


def segmentation_area(segm, height, width):
    """Pixel count of a checked segmentation as pycocotools rasterises it:
    the union of the polygons with at least 3 points (0. if none), or the
    RLE."""
    if isinstance(segm, list):
        polys = [p for p in segm if len(p) >= 6]
        if not polys:
            return 0.
        rle = mask_util.merge(mask_util.frPyObjects(polys, height, width))
    elif isinstance(segm['counts'], list):
        rle = mask_util.frPyObjects(segm, height, width)
    else:
        rle = segm
    return float(mask_util.area(rle))
