"""IoU-type box regression losses of the box head (``--box-loss``): GIoU
(Rezatofighi et al. 2019), DIoU and CIoU (Zheng et al. 2020).

The head predicts deltas; these losses first decode them into boxes with
the inference decode (``utils.ops.boxes.decode_bbox``, written again here
in Chainer functions so that gradients reach the deltas), then compare the
boxes with the ground truth.

Boxes are ``(x1, y1, x2, y2)`` in the resized image's pixels and every
side is measured with the model's ``box_offset`` (docs/conventions.md),
as ``bbox_iou`` measures it: with Detectron's ``box_offset=1`` a width is
``x2 - x1 + 1``, the intersection ``min(x2) - max(x1) + 1`` and the
enclosing box ``max(x2) - min(x1) + 1``; ``0`` drops the ``+ 1``. For a
predicted box p and its ground truth g (``o`` is ``box_offset``)::

    I   = max(0, min(x2) - max(x1) + o) * max(0, min(y2) - max(y1) + o)
    U   = w_p h_p + w_g h_g - I              IoU = I / (U + eps)
    cw  = max(x2) - min(x1) + o, ch likewise (the smallest enclosing box)
    GIoU = IoU - (cw ch - U) / (cw ch + eps)
    DIoU = IoU - rho^2 / (cw^2 + ch^2 + eps)
           rho: distance between the centres (x1 + w / 2, y1 + h / 2)
    CIoU = DIoU - alpha v,  v = 4 / pi^2 (atan(w_g / h_g) - atan(w_p / h_p))^2
           alpha = v / (1 - IoU + v + eps), a constant for the gradient
           (as in the paper's code and ``torchvision.ops.ciou_loss``)
    loss = 1 - GIoU, 1 - DIoU or 1 - CIoU: 0 for identical boxes, below 2
           for GIoU and DIoU, below 3 for CIoU

``eps = 1e-7`` as in ``torchvision.ops``; it only matters for boxes of
zero area (``box_offset=0``).
"""
import math

import chainer.functions as F
from chainer.backend import get_array_module

from utils.ops.boxes import BBOX_XFORM_CLIP

#: ``--box-loss`` values: Detectron's smooth L1 on the deltas, or an
#: IoU-type loss of this module on the decoded boxes.
IOU_LOSSES = ('giou', 'diou', 'ciou')
BOX_LOSSES = ('smooth_l1',) + IOU_LOSSES

EPS = 1e-7


def decode_deltas(rois, deltas, weights, box_offset=1,
                  clip=BBOX_XFORM_CLIP):
    """``decode_bbox`` of one delta per ROI, differentiable in ``deltas``.

    Args:
        rois (array): (R, 4) float ``(x1, y1, x2, y2)``, cast to
            ``deltas.dtype``.
        deltas (Variable): (R, 4) float ``(dx, dy, dw, dh)`` for
            ``weights`` ``(wx, wy, ww, wh)``.
        clip (float): upper bound of ``dw / ww`` and ``dh / wh`` before
            ``exp`` (Detectron's ``BBOX_XFORM_CLIP``); above it the
            gradient is 0.

    Returns:
        Variable: (R, 4) ``(x1, y1, x2, y2)`` of ``deltas.dtype``.
    """
    xp = get_array_module(rois)
    rois = xp.asarray(rois, deltas.dtype)
    wx, wy, ww, wh = (float(v) for v in weights)
    w = rois[:, 2] - rois[:, 0] + box_offset
    h = rois[:, 3] - rois[:, 1] + box_offset
    cx = rois[:, 0] + 0.5 * w
    cy = rois[:, 1] + 0.5 * h
    dx, dy, dw, dh = F.separate(deltas, axis=1)
    pred_cx = dx / wx * w + cx
    pred_cy = dy / wy * h + cy
    pred_w = F.exp(F.clip(dw / ww, None, float(clip))) * w
    pred_h = F.exp(F.clip(dh / wh, None, float(clip))) * h
    return F.stack((pred_cx - 0.5 * pred_w, pred_cy - 0.5 * pred_h,
                    pred_cx + 0.5 * pred_w - box_offset,
                    pred_cy + 0.5 * pred_h - box_offset), axis=1)


def box_iou_loss(kind, pred_bbox, gt_bbox, box_offset=1):
    """``1 - GIoU``, ``1 - DIoU`` or ``1 - CIoU`` of each pair (formulas in
    the module docstring).

    Args:
        kind (str): 'giou', 'diou' or 'ciou'.
        pred_bbox (Variable): (R, 4) float ``(x1, y1, x2, y2)``.
        gt_bbox (array): (R, 4) ``(x1, y1, x2, y2)``, cast to
            ``pred_bbox.dtype``; same pixels as ``pred_bbox``.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        Variable: (R,) losses of ``pred_bbox.dtype``.
    """
    if kind not in IOU_LOSSES:
        raise ValueError('box IoU loss must be one of {}, got {!r}'.format(
            IOU_LOSSES, kind))
    xp = get_array_module(gt_bbox)
    gt_bbox = xp.asarray(gt_bbox, pred_bbox.dtype)
    o = box_offset
    px1, py1, px2, py2 = F.separate(pred_bbox, axis=1)
    gx1, gy1, gx2, gy2 = (gt_bbox[:, k] for k in range(4))
    pw, ph = px2 - px1 + o, py2 - py1 + o
    gw, gh = gx2 - gx1 + o, gy2 - gy1 + o
    inter = (F.relu(F.minimum(px2, gx2) - F.maximum(px1, gx1) + o) *
             F.relu(F.minimum(py2, gy2) - F.maximum(py1, gy1) + o))
    union = pw * ph + gw * gh - inter
    iou = inter / (union + EPS)
    # The smallest box enclosing both.
    cw = F.maximum(px2, gx2) - F.minimum(px1, gx1) + o
    ch = F.maximum(py2, gy2) - F.minimum(py1, gy1) + o
    if kind == 'giou':
        return 1 - iou + (cw * ch - union) / (cw * ch + EPS)
    # Centres: x1 + w / 2 for both boxes, so the offset cancels.
    rho2 = ((px1 + 0.5 * pw) - (gx1 + 0.5 * gw)) ** 2 + \
        ((py1 + 0.5 * ph) - (gy1 + 0.5 * gh)) ** 2
    loss = 1 - iou + rho2 / (cw ** 2 + ch ** 2 + EPS)
    if kind == 'diou':
        return loss
    v = (4 / math.pi ** 2) * (F.arctan(pw / ph) - xp.arctan(gw / gh)) ** 2
    alpha = v.array / (1 - iou.array + v.array + EPS)  # no gradient
    return loss + v * alpha
