"""Test-time post-processing of the heads' outputs, shared by the Chainer
model (``models/mask_rcnn.py``) and the onnxruntime predictor
(``utils/deploy/onnx_predict.py``) so that both give the same detections.

``suppress`` is Detectron's ``box_results_with_nms_and_limit``.

For each foreground class j: keep boxes with score > ``score_thresh``, NMS
at ``nms_thresh`` within the class; then, over the whole image, keep the
detections scoring at least the ``limit``-th best score (``>=``, so ties at
the boundary are all kept, as Detectron does).

Shape letters: R boxes, K foreground classes, C candidates (box, class)
scoring above ``score_thresh``, D detections.
"""
import numpy

from utils.ops.array_module import get_array_module
from utils.ops.boxes import clip_bbox, decode_bbox
from utils.ops.nms import argsort_stable, batched_nms

#: Named test-time thresholds for ``thresholds_of``: Detectron's
#: TEST.SCORE_THRESH / TEST.NMS / TEST.DETECTIONS_PER_IM.
THRESHOLDS = {
    'evaluate': {'score_thresh': 0.05, 'nms_thresh': 0.5, 'limit': 100},
    'visualize': {'score_thresh': 0.7, 'nms_thresh': 0.3, 'limit': 100},
}


def thresholds_of(thresholds):
    """(score_thresh, nms_thresh, limit) from a key of ``THRESHOLDS`` or a
    dict with those three keys."""
    if isinstance(thresholds, str):
        if thresholds not in THRESHOLDS:
            raise ValueError(
                'thresholds must be one of {} or a dict, got {!r}'.format(
                    sorted(THRESHOLDS), thresholds))
        thresholds = THRESHOLDS[thresholds]
    return (float(thresholds['score_thresh']),
            float(thresholds['nms_thresh']), int(thresholds['limit']))


def sigmoid(x):
    """Logistic function of an array, in its dtype, by chainer's
    ``F.sigmoid`` formula ``tanh(x / 2) / 2 + 1 / 2`` (same numbers)."""
    xp = get_array_module(x)
    half = x.dtype.type(0.5)
    return xp.tanh(x * half) * half + half


def softmax(x):
    """Softmax over axis 1 of an (R, C) array, by chainer's ``F.softmax``
    formula (shift by the row maximum, exp, divide by the row sum)."""
    xp = get_array_module(x)
    y = x - x.max(axis=1, keepdims=True)
    xp.exp(y, out=y)
    y /= y.sum(axis=1, keepdims=True)
    return y


def box_detections(rois, cls_score, bbox_pred, scale, orig_size, weights,
                   score_thresh, nms_thresh, limit, box_offset=1):
    """Final detections of one image from its box head outputs.

    Args:
        rois (array): (R, 4) float32 proposals in resized-image pixels.
        cls_score (array): (R, K+1) float32 logits, background at 0.
        bbox_pred (array): (R, 4(K+1)) float32 deltas for ``weights``.
        scale (float or array): resized / original size; detectron2's
            resize gives a (4,) ``(sx, sy, sx, sy)``.
        orig_size ((int, int)): (H, W) of the original image.

    Returns:
        (array, array, array): bbox (D, 4) float32 in original pixels,
        label (D,) int32 in 1..K, score (D,) float32 (``suppress``).
    """
    xp = get_array_module(rois)
    prob = softmax(cls_score)
    if numpy.ndim(scale):
        scale = xp.asarray(scale, numpy.float32)
    # (R, 4(K+1)) class-specific boxes in original-image pixels.
    bbox = decode_bbox(rois / scale, bbox_pred, weights,
                       box_offset=box_offset)
    bbox = clip_bbox(bbox, orig_size, box_offset=box_offset)
    return suppress(bbox, prob, score_thresh, nms_thresh, limit, box_offset)


def mask_rois(bbox, scale):
    """(D, 4) float32 mask-head ROIs in resized pixels from final boxes in
    original pixels: Detectron scales the float64 boxes, then casts."""
    xp = get_array_module(bbox)
    if numpy.ndim(scale):
        scale = xp.asarray(scale, numpy.float64)
    return (bbox.astype(numpy.float64) * scale).astype(numpy.float32)


def class_mask_probs(mask_logits, label):
    """(D, K+1, M, M) mask logits -> (D, M, M) probabilities of each
    detection's class."""
    xp = get_array_module(mask_logits)
    return sigmoid(mask_logits[xp.arange(len(label)), label])


def no_detections(xp=numpy):
    """bbox (0, 4) float32, label (0,) int32, score (0,) float32."""
    return (xp.zeros((0, 4), numpy.float32), xp.zeros(0, numpy.int32),
            xp.zeros(0, numpy.float32))


def suppress(bbox, prob, score_thresh, nms_thresh, limit, box_offset=1):
    """Per-class NMS and the per-image cap.

    The per-class NMS is one ``batched_nms`` call over all candidates,
    labelled by class, which keeps exactly what a loop of NMS over each
    class would keep.

    Args:
        bbox (array): (R, 4(K+1)) class-specific boxes (x1, y1, x2, y2).
        prob (array): (R, K+1) softmax probabilities, background at 0.
        score_thresh (float): candidates score strictly above it.
        nms_thresh (float): IoU at or above which a lower-scored box of the
            same class is dropped.
        limit (int): detections per image (0 = no cap).
        box_offset (int): 1 for "+1" widths in the NMS IoU (Detectron), 0
            for detectron2.

    Returns:
        (array, array, array): bbox (D, 4) float32, label (D,) int32 in
        1..K, score (D,) float32; ordered by class, then by score (ties in
        row order).
    """
    xp = get_array_module(bbox)
    # (R, K) -> (K, R): nonzero walks class by class, rows in order.
    label, row = xp.nonzero(prob[:, 1:].T > score_thresh)
    if len(row) == 0:
        return no_detections(xp)
    label = (label + 1).astype(numpy.int32)
    # (R, 4(K+1)) -> (R, K+1, 4) -> (C, 4): each candidate's class box.
    bbox = bbox.reshape(len(bbox), -1, 4)[row, label]
    score = prob[row, label]
    keep = batched_nms(bbox, score, label, nms_thresh,
                       box_offset=box_offset)
    # Best first over all classes -> by class, best first within each.
    keep = keep[argsort_stable(label[keep])]
    bbox = bbox[keep].astype(numpy.float32)
    label = label[keep]
    score = score[keep].astype(numpy.float32)
    if limit > 0 and len(score) > limit:
        thresh = xp.sort(score)[-limit]
        keep = xp.where(score >= thresh)[0]
        bbox, label, score = bbox[keep], label[keep], score[keep]
    return bbox, label, score
