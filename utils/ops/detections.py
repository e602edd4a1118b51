"""Test-time box post-processing (Detectron ``box_results_with_nms_and_limit``).

For each foreground class j: keep boxes with score > ``score_thresh``, NMS
at ``nms_thresh`` within the class; then, over the whole image, keep the
detections scoring at least the ``limit``-th best score (``>=``, so ties at
the boundary are all kept, as Detectron does).
"""
import numpy
from chainer.backend import get_array_module

from utils.ops.nms import non_maximum_suppression


def suppress(bbox, prob, score_thresh, nms_thresh, limit, offset=1):
    """Per-class NMS and the per-image cap.

    Args:
        bbox (array): (R, 4(K+1)) class-specific boxes (x1, y1, x2, y2).
        prob (array): (R, K+1) softmax probabilities, background at 0.
        limit (int): detections per image (0 = no cap).
        offset (int): 1 for "+1" widths in the NMS IoU (Detectron), 0 for
            detectron2.

    Returns:
        (array, array, array): bbox (D, 4) float32, label (D,) int32 in
        1..K, score (D,) float32; ordered by class, then by score.
    """
    xp = get_array_module(bbox)
    out_bbox, out_label, out_score = [], [], []
    for j in range(1, prob.shape[1]):
        idx = xp.where(prob[:, j] > score_thresh)[0]
        if len(idx) == 0:
            continue
        bbox_j = bbox[idx, 4 * j:4 * (j + 1)]
        score_j = prob[idx, j]
        keep = non_maximum_suppression(bbox_j, nms_thresh, score_j,
                                       offset=offset)
        out_bbox.append(bbox_j[keep])
        out_score.append(score_j[keep])
        out_label.append(xp.full(len(keep), j, numpy.int32))
    if not out_bbox:
        return (xp.zeros((0, 4), numpy.float32), xp.zeros(0, numpy.int32),
                xp.zeros(0, numpy.float32))
    bbox = xp.concatenate(out_bbox).astype(numpy.float32)
    label = xp.concatenate(out_label)
    score = xp.concatenate(out_score).astype(numpy.float32)
    if limit > 0 and len(score) > limit:
        thresh = xp.sort(score)[-limit]
        keep = xp.where(score >= thresh)[0]
        bbox, label, score = bbox[keep], label[keep], score[keep]
    return bbox, label, score
