"""Turn RPN outputs into proposals, as Detectron's ``GenerateProposals`` and
``CollectAndDistributeFpnRpnProposals`` ops do at test time.

Per image and per level: take the ``pre_nms_top_n`` best-scoring anchors,
decode their deltas with weights (1, 1, 1, 1) and the ``log(1000/16)``
clip, clip to the (resized) image, drop boxes narrower than ``min_size``
pixels *of the original image* (at least 1) or whose centre lies outside the
image, NMS at ``nms_thresh``, keep ``post_nms_top_n``. With
``box_offset=0`` (detectron2's ``find_top_rpn_proposals``) widths have no
"+1" and the filter keeps boxes wider and taller than ``min_size`` resized
pixels (``Boxes.nonempty``) without the centre test. With several levels
(FPN) the survivors of all levels are merged and the best
``collect_top_n`` kept (per image; Detectron's training collects per batch,
its issue #459, which we do not reproduce).
"""
import numpy
from utils.ops.array_module import get_array_module

from utils.ops.boxes import clip_bbox, decode_bbox
from utils.ops.nms import argsort_desc, non_maximum_suppression


class ProposalGenerator:
    """Proposals from RPN scores and deltas. Train and test numbers differ, so
    each is a ``(train, test)`` pair picked by ``train``.

    Args:
        pre_nms_top_n ((int, int)): per level, before NMS.
        post_nms_top_n ((int, int)): per level, after NMS.
        collect_top_n ((int, int) or None): over all levels (FPN).
        nms_thresh (float): IoU threshold.
        min_size (float): minimum side in original-image pixels (at least 1).
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.
    """

    def __init__(self, pre_nms_top_n, post_nms_top_n, collect_top_n=None,
                 nms_thresh=0.7, min_size=0., box_offset=1):
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.collect_top_n = collect_top_n
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.box_offset = box_offset

    def __call__(self, scores, deltas, anchors, size, scale, train=False):
        """Proposals of one image.

        Args:
            scores (list of array): per level (H_l*W_l*A,) objectness
                probabilities (or logits: only the order matters).
            deltas (list of array): per level (H_l*W_l*A, 4) (dx, dy, dw, dh).
            anchors (list of array): per level (H_l*W_l*A, 4) (x1, y1, x2, y2).
            size ((int, int)): (H, W) of the resized, unpadded image.
            scale (float): resized / original image size.

        Returns:
            (array, array): rois (R, 4) float32 (x1, y1, x2, y2) in resized
            image pixels and their scores (R,), best first.
        """
        i = 0 if train else 1
        rois, roi_scores = [], []
        for s, d, a in zip(scores, deltas, anchors):
            r, sc = self._one_level(s, d, a, size, scale,
                                    self.pre_nms_top_n[i],
                                    self.post_nms_top_n[i])
            rois.append(r)
            roi_scores.append(sc)
        xp = get_array_module(rois[0])
        rois = xp.concatenate(rois)
        roi_scores = xp.concatenate(roi_scores)
        if self.collect_top_n is not None:
            order = argsort_desc(roi_scores)[:self.collect_top_n[i]]
            rois, roi_scores = rois[order], roi_scores[order]
        return rois, roi_scores

    def _one_level(self, score, delta, anchor, size, scale, pre_n, post_n):
        order = argsort_desc(score)
        if pre_n > 0:
            order = order[:pre_n]
        score, delta, anchor = score[order], delta[order], anchor[order]
        roi = decode_bbox(anchor, delta, box_offset=self.box_offset)
        roi = clip_bbox(roi, size, box_offset=self.box_offset)
        if self.box_offset:
            keep = _valid(roi, self.min_size, size, scale)
        else:
            keep = _nonempty(roi, self.min_size)
        roi, score = roi[keep], score[keep]
        if self.nms_thresh > 0:
            keep = non_maximum_suppression(roi, self.nms_thresh, score,
                                           box_offset=self.box_offset)
            if post_n > 0:
                keep = keep[:post_n]
            roi, score = roi[keep], score[keep]
        return roi.astype(numpy.float32), score


def _valid(roi, min_size, size, scale):
    """Detectron's ``_filter_boxes``: both sides >= max(min_size, 1) pixels
    of the original image and centre inside the resized image."""
    xp = get_array_module(roi)
    min_size = max(min_size, 1.)
    ws = roi[:, 2] - roi[:, 0] + 1
    hs = roi[:, 3] - roi[:, 1] + 1
    # One scale, or detectron2's per coordinate (sx, sy, sx, sy).
    sx, sy = (scale[0], scale[1]) if numpy.ndim(scale) else (scale, scale)
    ws_orig = (roi[:, 2] - roi[:, 0]) / sx + 1
    hs_orig = (roi[:, 3] - roi[:, 1]) / sy + 1
    x_ctr = roi[:, 0] + ws / 2.
    y_ctr = roi[:, 1] + hs / 2.
    return xp.where((ws_orig >= min_size) & (hs_orig >= min_size) &
                    (x_ctr < size[1]) & (y_ctr < size[0]))[0]


def _nonempty(roi, min_size):
    """detectron2's ``Boxes.nonempty``: both sides > ``min_size``."""
    xp = get_array_module(roi)
    return xp.where((roi[:, 2] - roi[:, 0] > min_size) &
                    (roi[:, 3] - roi[:, 1] > min_size))[0]
