"""Greedy non-maximum suppression with Detectron's arithmetic.

The rule, from Detectron's ``detectron/utils/cython_nms.pyx`` ``nms``:
walk the boxes from the best score down; a box is kept unless an
already-kept box overlaps it with ``iou >= thresh``. In float32::

    area  = (x2 - x1 + box_offset) * (y2 - y1 + box_offset)  # not clamped
    w     = max(0, min(x2_i, x2_j) - max(x1_i, x1_j) + box_offset)
    h     = max(0, min(y2_i, y2_j) - max(y1_i, y1_j) + box_offset)
    inter = w * h
    iou   = inter / (area_i + area_j - inter)                # i kept, j later

so a pair exactly at the threshold is suppressed, degenerate boxes
(``x2 < x1``) keep their zero or negative areas, and a NaN IoU (two boxes
of zero area) suppresses nothing. Differences from Detectron, all about
order only: boxes are ordered by a *stable* sort of ``-score`` (ties keep
index order; Detectron's ``scores.argsort()[::-1]`` reverses them), and the
kept indices come back best first (Detectron returns them in index order,
which is the same thing when the input is already sorted, as in its RPN).

The NumPy path is Detectron's greedy loop vectorised over the remaining
boxes. The CuPy path (``nms_cuda.py``) is the bitmask algorithm:
``nms_mask`` gives each (row block, column block) of 64 sorted boxes one
CUDA block whose thread r writes a 64-bit word with bit c set when row box
r suppresses column box c (c after r); ``nms_reduce`` then walks the boxes
in order in one CUDA block, OR-ing the rows of kept boxes, and writes keep
flags. Only the flags stay on the device; the mask never goes to the host.
"""
import numpy
from utils.ops import nms_cuda
from utils.ops.array_module import get_array_module

#: Most boxes one greedy walk of ``batched_nms`` sees. The CUDA mask of n
#: boxes takes n * ceil(n / 64) * 8 bytes, about n^2 / 8: 8 MiB at 8192,
#: where 80 classes of 1000 ROIs in one walk (``--score-thresh 0``) took
#: 800 MB. Grouping whole labels keeps the common case (a few thousand
#: candidates) to one walk. A single label can exceed it; its count is
#: bounded by the ROIs per image in ``suppress``. (The mask grid's y side,
#: ceil(n / 64) <= 65535, caps a walk at 4,194,240 boxes: a 2.2 TB mask,
#: so CuPy's out-of-memory error comes first.)
BATCH_BOXES = 8192


def non_maximum_suppression(bbox, thresh, score=None, limit=None,
                            box_offset=1):
    """Greedy NMS (Detectron ``box_utils.nms``; rule in the module docstring).

    Args:
        bbox (array): (R, 4) float ``(x1, y1, x2, y2)``; computed in float32.
        thresh (float): IoU at or above which a lower-scored box is dropped.
        score (array or None): (R,) float; None keeps the input order.
        limit (int or None): keep at most this many (the best ones).
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (R',) int32 indices into ``bbox`` of the kept boxes, best
        score first, on the same device as ``bbox``.
    """
    return _nms(bbox, thresh, score, None, limit, box_offset)


def batched_nms(bbox, score, label, thresh, limit=None, box_offset=1):
    """NMS within each label: boxes of different labels never suppress
    each other. ``utils.ops.detections.suppress`` runs its per-class NMS
    through it.

    Equivalent, index for index, to this per-label loop::

        keep = concat([idx[non_maximum_suppression(bbox[idx], thresh,
                                                   score[idx], None,
                                                   box_offset)]
                       for l in unique(label) for idx in [where(label == l)]])
        keep = keep[argsort_desc(score[keep])][:limit]

    The boxes are sorted once, best first; whole labels are grouped into
    greedy walks of at most ``BATCH_BOXES`` boxes (a label with more gets a
    walk of its own), each walk zeroing the IoU of pairs of different
    labels (the CUDA mask kernel compares labels). Merging the walks' kept
    positions in sorted order gives what one walk over all boxes keeps, so
    ``limit`` still counts over all labels, best first. Unlike the
    coordinate-offset trick (shifting each label's boxes far apart), no
    coordinate changes, so the float32 IoUs, and hence the choices at the
    threshold, are exactly those of the per-label loop.

    Args:
        bbox (array): (R, 4) float ``(x1, y1, x2, y2)``.
        score (array): (R,) float.
        label (array): (R,) int, e.g. the class of each box.
        thresh (float): IoU at or above which a box is dropped.
        limit (int or None): keep at most this many over all labels.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (R',) int32 indices into ``bbox``, best score first.
    """
    xp = get_array_module(bbox)
    n_max = _n_max(len(bbox), limit)
    if n_max <= 0:
        return xp.zeros((0,), dtype=numpy.int32)
    order = argsort_desc(score)
    bbox = bbox[order].astype(numpy.float32)
    label = label[order]
    # Positions in the sorted order, increasing within each walk.
    kept = [pos[_greedy(bbox[pos], label[pos], thresh, n_max, box_offset)]
            for pos in _label_groups(label, BATCH_BOXES)]
    kept = xp.sort(xp.concatenate(kept))[:n_max]
    return order[kept].astype(numpy.int32)


def argsort_desc(score):
    """Indices of ``score`` from highest to lowest; ties keep index order
    (the stable sort Detectron's NumPy code gets)."""
    return argsort_stable(-score)


def argsort_stable(a):
    """Indices of ``a`` (1-D) from lowest to highest; ties keep index
    order."""
    if get_array_module(a) is numpy:
        return numpy.argsort(a, kind='stable')
    return get_array_module(a).argsort(a)  # CuPy's is stable


def _nms(bbox, thresh, score, label, limit, box_offset):
    xp = get_array_module(bbox)
    n_max = _n_max(len(bbox), limit)
    if n_max <= 0:
        return xp.zeros((0,), dtype=numpy.int32)
    order = xp.arange(len(bbox)) if score is None else argsort_desc(score)
    bbox = bbox[order].astype(numpy.float32)
    if label is not None:
        label = label[order]
    kept = _greedy(bbox, label, thresh, n_max, box_offset)
    return order[kept].astype(numpy.int32)


def _n_max(n, limit):
    """How many boxes a walk over ``n`` may keep."""
    return n if limit is None else min(int(limit), n)


def _label_groups(label, max_boxes):
    """Positions of ``label`` (R,) grouped by whole labels (a contiguous
    range of label values per group), each group at most ``max_boxes``
    positions unless one label alone has more.

    Returns:
        list of array: increasing int positions into ``label``, one array
        per group; together they hold each position once.
    """
    xp = get_array_module(label)
    if len(label) <= max_boxes:
        return [xp.arange(len(label))]
    values, counts = xp.unique(label, return_counts=True)
    # Host copy of the K distinct labels and counts, to plan the walks.
    values, counts = values.tolist(), counts.tolist()
    bounds, first, size = [], 0, 0
    for k, count in enumerate(counts):
        if size and size + count > max_boxes:
            bounds.append((values[first], values[k - 1]))
            first, size = k, 0
        size += count
    bounds.append((values[first], values[-1]))
    return [xp.nonzero((label >= lo) & (label <= hi))[0]
            for lo, hi in bounds]


def _greedy(bbox, label, thresh, n_max, box_offset):
    """Positions kept by the greedy walk over sorted float32 ``bbox``, on
    the device of ``bbox``."""
    if get_array_module(bbox) is numpy:
        return _greedy_cpu(bbox, label, thresh, n_max, box_offset)
    return nms_cuda.greedy_gpu(bbox, label, thresh, n_max, box_offset)


def _greedy_cpu(bbox, label, thresh, n_max, box_offset):
    """Positions (in sorted order) kept by Detectron's greedy walk."""
    x1, y1, x2, y2 = bbox.T
    area = (x2 - x1 + box_offset) * (y2 - y1 + box_offset)
    thresh = numpy.float32(thresh)
    rest = numpy.arange(len(bbox))
    kept = []
    with numpy.errstate(divide='ignore', invalid='ignore'):
        while rest.size and len(kept) < n_max:
            i, rest = rest[0], rest[1:]
            kept.append(i)
            w = numpy.maximum(numpy.minimum(x2[i], x2[rest]) -
                              numpy.maximum(x1[i], x1[rest]) + box_offset, 0)
            h = numpy.maximum(numpy.minimum(y2[i], y2[rest]) -
                              numpy.maximum(y1[i], y1[rest]) + box_offset, 0)
            inter = w * h
            iou = inter / (area[i] + area[rest] - inter)
            drop = iou >= thresh  # NaN compares False: kept
            if label is not None:
                drop &= label[rest] == label[i]
            rest = rest[~drop]
    return numpy.asarray(kept, dtype=numpy.intp)
