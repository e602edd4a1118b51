"""Box heads: ROI features -> class scores and class-specific box deltas.

Outputs follow Detectron: ``cls_score`` (R, K+1) logits with background at
0 (a detectron2 ``cls_score`` keeps it last; ``BoxPredictor`` moves it
first, see ``models/conventions.py``), ``bbox_pred`` (R, 4(K+1))
(dx, dy, dw, dh) per class for weights (10, 10, 5, 5).
"""
import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers
from chainer.backend import get_array_module

from models.box_losses import box_iou_loss, decode_deltas
from models.frozen import forward_stage
from models.losses import per_image_mean, smooth_l1


class BoxPredictor(chainer.Chain):
    """The two output layers shared by both heads.

    Detectron initialises ``cls_score`` with std 0.01 and ``bbox_pred`` with
    std 0.001, biases 0.

    Args:
        background_index (int): row of ``cls_score`` holding background:
            0 (Detectron) or -1 (detectron2). The output always has it at 0.
    """

    def __init__(self, in_channels, n_class, background_index=0):
        super().__init__()
        self.background_index = background_index
        with self.init_scope():
            self.cls_score = L.Linear(in_channels, n_class,
                                      initialW=initializers.Normal(0.01))
            self.bbox_pred = L.Linear(in_channels, 4 * n_class,
                                      initialW=initializers.Normal(0.001))

    def forward(self, h):
        cls_score = self.cls_score(h)
        if self.background_index == -1:
            # (R, [1..K, bg]) -> (R, [bg, 1..K])
            cls_score = F.concat((cls_score[:, -1:], cls_score[:, :-1]))
        return cls_score, self.bbox_pred(h)


class ResNetC5Head(chainer.Chain):
    """C4 box head: res5 on 14x14 ROI features (stride 2), 7x7 average pool.

    Args:
        res5 (chainer.Link): the res5 stage; the C4 mask head reuses it.
        n_class (int): K + 1 including background.

    ``frozen_res5`` (set by ``utils/training/pretrained.py`` ``freeze`` at
    5) runs res5 without a graph (``models/frozen.py``).
    """

    def __init__(self, res5, n_class, pooler, background_index=0):
        super().__init__()
        self.pooler = pooler
        with self.init_scope():
            self.res5 = res5
            self.predictor = BoxPredictor(2048, n_class, background_index)
        self.frozen_res5 = False

    def forward(self, features, rois, roi_indices):
        """(R, 4) rois -> ((R, K+1) logits, (R, 4(K+1)) deltas)."""
        h = self.run_res5(self.pooler(features, rois, roi_indices))
        h = F.average_pooling_2d(h, h.shape[2:])
        return self.predictor(h)

    def run_res5(self, h):
        """res5 of pooled ROI features (R, 1024, S, S), as the box and
        mask heads share it."""
        return forward_stage(self.res5, self.frozen_res5, h)


class TwoFCHead(chainer.Chain):
    """FPN box head: 7x7x256 ROI features flattened (C, H, W) ->
    2 x FC 1024."""

    def __init__(self, in_size, n_class, pooler, fc_channels=1024,
                 background_index=0):
        super().__init__()
        self.pooler = pooler
        init = initializers.GlorotUniform()  # Detectron: XavierFill
        with self.init_scope():
            self.fc6 = L.Linear(in_size, fc_channels, initialW=init)
            self.fc7 = L.Linear(fc_channels, fc_channels, initialW=init)
            self.predictor = BoxPredictor(fc_channels, n_class,
                                          background_index)

    def forward(self, features, rois, roi_indices):
        h = self.pooler(features, rois, roi_indices)
        h = F.relu(self.fc6(h))
        h = F.relu(self.fc7(h))
        return self.predictor(h)


def box_head_loss(cls_score, bbox_pred, label, loc, roi_indices, n_images,
                  beta=1., box_loss='smooth_l1', rois=None, gt_bbox=None,
                  weights=(10., 10., 5., 5.), box_offset=1):
    """Detectron's Fast R-CNN losses, or an IoU-type box loss.

    Args:
        cls_score (Variable): (R, K+1) logits; bbox_pred (R, 4(K+1)).
        label (array): (R,) int32, 0 for background.
        loc (array): (R, 4) targets of the labelled class (weights
            ``weights``); used by 'smooth_l1'.
        roi_indices (array): (R,) int32 image of each ROI.
        box_loss (str): 'smooth_l1' (Detectron's, ``beta`` 1), or 'giou',
            'diou', 'ciou' (``models/box_losses.py``).
        rois (array): (R, 4) float ``(x1, y1, x2, y2)`` the deltas apply
            to, and gt_bbox (R, 4) the matched ground truth (any value on
            background rows), both in the resized image's pixels; used by
            the IoU-type losses.
        weights, box_offset: the box coder's, as at inference.

    Returns:
        (Variable, Variable): box loss and class loss (softmax cross
        entropy), each summed over the image's ROIs, divided by the image's
        ROI count (foreground and background, as Detectron divides by the
        sampled ROIs) and averaged over images, with weight 1. The box loss
        is on the ground-truth class's prediction of foreground ROIs:
        smooth L1 summed over the 4 deltas, or ``1 - (G/D/C)IoU`` of the
        decoded box (weight 1, as detectron2's ``box_reg_loss_weight``).
    """
    xp = get_array_module(label)
    counts = xp.maximum(xp.bincount(roi_indices, minlength=n_images), 1)
    cls = F.softmax_cross_entropy(cls_score, label, reduce='no')
    cls_loss = per_image_mean(cls, roi_indices, counts, n_images)
    R = len(label)
    # (R, 4(K+1)) -> (R, K+1, 4) -> (R, 4): deltas of each ROI's label.
    pred = F.reshape(bbox_pred, (R, bbox_pred.shape[1] // 4, 4))[
        xp.arange(R), label]
    if box_loss == 'smooth_l1':
        fg = (label > 0).astype(pred.dtype)[:, None]
        per_roi = F.sum(smooth_l1(pred, loc.astype(pred.dtype), beta) * fg,
                        axis=1)
        loc_loss = per_image_mean(per_roi, roi_indices, counts, n_images)
        return loc_loss, cls_loss
    # Background rows are left out, not zeroed: their ground truth is
    # arbitrary and could make a NaN that a zero weight keeps.
    fg = xp.flatnonzero(label > 0)
    box = decode_deltas(rois[fg], pred[fg], weights, box_offset)
    per_fg = box_iou_loss(box_loss, box, gt_bbox[fg], box_offset)
    loc_loss = per_image_mean(per_fg, roi_indices[fg], counts, n_images)
    return loc_loss, cls_loss
