"""Test-time box post-processing, Detectron's
``box_results_with_nms_and_limit``.

For each foreground class j: keep boxes with score > ``score_thresh``, NMS
at ``nms_thresh`` within the class; then, over the whole image, keep the
detections scoring at least the ``limit``-th best score (``>=``, so ties at
the boundary are all kept, as Detectron does).

Shape letters: R boxes, K foreground classes, C candidates (box, class)
scoring above ``score_thresh``, D detections.
"""
import numpy
from chainer.backend import get_array_module

from utils.ops.nms import argsort_stable, batched_nms


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
        return (xp.zeros((0, 4), numpy.float32), xp.zeros(0, numpy.int32),
                xp.zeros(0, numpy.float32))
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
