"""Training targets, Detectron's ``roi_data/rpn.py``, ``fast_rcnn.py`` and
``mask_rcnn.py``, on the host (NumPy): sampling needs a random generator
and the arrays are small.

All boxes are (x1, y1, x2, y2) with "+1" widths, in the pixels of the
resized image unless said otherwise. ``rng`` is a ``numpy.random.RandomState``
so a seeded run samples the same anchors and ROIs.
"""
from typing import NamedTuple

import numpy
import pycocotools.mask as mask_util

from utils.ops.boxes import bbox_iou, encode_bbox


def anchor_targets(anchors, gt_bbox, size, rng, *, n_sample, fg_fraction,
                   pos_iou, neg_iou, straddle, box_offset):
    """Label and regression target of every anchor (RPN training).

    Anchors crossing the image border by more than ``straddle`` pixels are
    ignored. An anchor is positive when its best IoU is >= ``pos_iou`` or it
    is (one of the ties for) the best anchor of some ground truth; negative
    when its best IoU is < ``neg_iou`` and it is not positive. At most
    ``n_sample * fg_fraction`` positives and ``n_sample`` in all are kept
    (uniformly, without replacement); the rest are ignored.

    Args:
        anchors (ndarray): (A, 4) anchors of all levels.
        gt_bbox (ndarray): (G, 4) ground truth, G may be 0.
        size ((int, int)): (H, W) of the resized image.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        (ndarray, ndarray): label (A,) int32 (1 fg, 0 bg, -1 ignore) and
        loc (A, 4) float32 deltas for weights (1, 1, 1, 1) (zero unless fg).
    """
    H, W = size
    label = numpy.full(len(anchors), -1, numpy.int32)
    loc = numpy.zeros((len(anchors), 4), numpy.float32)
    inside = numpy.where((anchors[:, 0] >= -straddle) &
                         (anchors[:, 1] >= -straddle) &
                         (anchors[:, 2] < W + straddle) &
                         (anchors[:, 3] < H + straddle))[0]
    if len(inside) == 0:
        return label, loc
    a = anchors[inside]
    if len(gt_bbox):
        iou = bbox_iou(a, gt_bbox, box_offset)
        argmax = iou.argmax(axis=1)
        max_iou = iou[numpy.arange(len(a)), argmax]
        gt_max = iou.max(axis=0)
        # Background first, so that positives (best anchors of a ground
        # truth even below neg_iou) override it.
        sub = numpy.full(len(a), -1, numpy.int32)
        sub[max_iou < neg_iou] = 0
        sub[numpy.where((iou == gt_max) & (gt_max > 0))[0]] = 1
        sub[max_iou >= pos_iou] = 1
    else:
        argmax = numpy.zeros(len(a), numpy.intp)
        sub = numpy.zeros(len(a), numpy.int32)
    _subsample(sub, 1, int(n_sample * fg_fraction), rng)
    _subsample(sub, 0, n_sample - int((sub == 1).sum()), rng)
    label[inside] = sub
    fg = numpy.where(sub == 1)[0]
    if len(fg):
        loc[inside[fg]] = encode_bbox(a[fg], gt_bbox[argmax[fg]],
                                      box_offset=box_offset)
    return label, loc


def _subsample(label, value, n_max, rng):
    idx = numpy.where(label == value)[0]
    if len(idx) > n_max:
        label[rng.choice(idx, len(idx) - max(n_max, 0), replace=False)] = -1


class SampledROIs(NamedTuple):
    """ROIs sampled from one image's proposals and their targets
    (``sample_rois``); foreground rows come first.

    Attributes:
        rois (ndarray): (S, 4) float32 (x1, y1, x2, y2), the image's
            resized pixels.
        label (ndarray): (S,) int32 class in 1..K, 0 for background.
        loc (ndarray): (S, 4) float32 deltas ``(dx, dy, dw, dh)`` to the
            matched ground truth for the sampling ``weights`` (zero for
            background).
        gt_index (ndarray): (S,) int32 index of the matched ground truth,
            -1 for background.
    """
    rois: numpy.ndarray
    label: numpy.ndarray
    loc: numpy.ndarray
    gt_index: numpy.ndarray


def sample_rois(rois, gt_bbox, gt_label, rng, *, n_sample, fg_fraction,
                fg_iou, bg_iou, weights, box_offset):
    """Sample ROIs for the box and mask heads and give their targets.

    The ground-truth boxes are added to the proposals. Foreground: IoU >=
    ``fg_iou`` with some ground truth, at most ``round(n_sample *
    fg_fraction)``; background: best IoU in ``[bg_iou[0], bg_iou[1])``,
    filling up to ``n_sample``. Both are drawn without replacement.

    Args:
        rois (ndarray): (R, 4) proposals.
        gt_bbox (ndarray): (G, 4); gt_label (G,) int32 in 1..K.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        SampledROIs: ``rois``, ``label``, ``loc`` and ``gt_index`` of the
        S sampled ROIs, foreground first.
    """
    rois = numpy.concatenate([rois, gt_bbox]).astype(numpy.float32)
    if len(gt_bbox):
        iou = bbox_iou(rois, gt_bbox, box_offset)
        argmax = iou.argmax(axis=1)
        max_iou = iou.max(axis=1)
    else:
        argmax = numpy.zeros(len(rois), numpy.intp)
        max_iou = numpy.zeros(len(rois), numpy.float32)
    n_fg = int(numpy.round(n_sample * fg_fraction))
    fg = numpy.where(max_iou >= fg_iou)[0]
    if len(fg) > n_fg:
        fg = rng.choice(fg, n_fg, replace=False)
    bg = numpy.where((max_iou < bg_iou[1]) & (max_iou >= bg_iou[0]))[0]
    n_bg = n_sample - len(fg)
    if len(bg) > n_bg:
        bg = rng.choice(bg, n_bg, replace=False)
    keep = numpy.concatenate([fg, bg]).astype(numpy.intp)
    label = numpy.zeros(len(keep), numpy.int32)
    gt_index = numpy.full(len(keep), -1, numpy.int32)
    loc = numpy.zeros((len(keep), 4), numpy.float32)
    if len(fg):
        label[:len(fg)] = gt_label[argmax[fg]]
        gt_index[:len(fg)] = argmax[fg]
        loc[:len(fg)] = encode_bbox(rois[fg], gt_bbox[argmax[fg]], weights,
                                    box_offset)
    return SampledROIs(rois[keep], label, loc, gt_index)


def polygons_to_mask(polygons, box, M):
    """Detectron's ``polys_to_mask_wrt_box``: rasterise the polygons inside
    ``box`` (width ``x2 - x1`` here, no "+1", at least 1) on an M x M grid.

    Args:
        polygons (list of ndarray): each (2P,) x, y, ... in the box's pixels.
        box (ndarray): (4,) (x1, y1, x2, y2).

    Returns:
        ndarray: (M, M) int32 in {0, 1}.
    """
    w = max(box[2] - box[0], 1)
    h = max(box[3] - box[1], 1)
    norm = []
    for poly in polygons:
        p = numpy.array(poly, numpy.float64)
        p[0::2] = (p[0::2] - box[0]) * M / w
        p[1::2] = (p[1::2] - box[1]) * M / h
        norm.append(p.tolist())
    rle = mask_util.frPyObjects(norm, M, M)
    mask = mask_util.decode(rle)
    return (mask.reshape(M, M, -1).sum(axis=2) > 0).astype(numpy.int32)


def bitmap_to_mask(bitmap, box, M):
    """An (H, W) bool mask (RLE annotations) sampled on the M x M grid of
    ``box`` at the cell centres, the same cells ``polygons_to_mask`` uses."""
    w = max(box[2] - box[0], 1)
    h = max(box[3] - box[1], 1)
    xs = box[0] + (numpy.arange(M) + 0.5) * w / M
    ys = box[1] + (numpy.arange(M) + 0.5) * h / M
    H, W = bitmap.shape
    xi = numpy.clip(numpy.floor(xs).astype(int), 0, W - 1)
    yi = numpy.clip(numpy.floor(ys).astype(int), 0, H - 1)
    inside = ((xs >= 0) & (xs < W))[None, :] & ((ys >= 0) & (ys < H))[:, None]
    return (bitmap[yi][:, xi] & inside).astype(numpy.int32)


def mask_targets(segms, rois, gt_index, M):
    """M x M targets of foreground ROIs.

    Args:
        segms (list): per ground truth, polygons (list of (2P,) arrays) or an
            (H, W) bool bitmap, in the same pixels as ``rois``.
        rois (ndarray): (F, 4) foreground ROIs; gt_index (F,) their match.

    Returns:
        ndarray: (F, M, M) int32 in {0, 1}.
    """
    out = numpy.zeros((len(rois), M, M), numpy.int32)
    for i, (roi, g) in enumerate(zip(rois, gt_index)):
        segm = segms[g]
        if isinstance(segm, numpy.ndarray) and segm.ndim == 2:
            out[i] = bitmap_to_mask(segm, roi, M)
        else:
            out[i] = polygons_to_mask(segm, roi, M)
    return out
