"""Box arithmetic, as Detectron's ``detectron/utils/ops/boxes.py`` does it.

Every function takes NumPy or CuPy arrays and returns arrays of the same
module (``utils.ops.array_module``); nothing moves between host and
device. Boxes are ``(x1, y1, x2, y2)`` in pixels (docs/conventions.md).

``box_offset`` is how a width is measured: ``1`` (default) is Detectron's
legacy inclusive box, ``w = x2 - x1 + 1``, so a one-pixel box has
``x1 == x2``; ``0`` is detectron2's ``w = x2 - x1``.

The box coder (``encode_bbox`` / ``decode_bbox``, Detectron's
``bbox_transform_inv`` / ``bbox_transform``) with weights
``(wx, wy, ww, wh)``::

    w  = x2 - x1 + box_offset       cx = x1 + 0.5 * w     (same for h, cy)
    dx = wx * (gt_cx - cx) / w      dw = ww * log(gt_w / w)
    pred_cx = dx / wx * w + cx      pred_w = exp(min(dw / ww, clip)) * w
    x1' = pred_cx - 0.5 * pred_w    x2' = pred_cx + 0.5 * pred_w
                                          - box_offset

(the ``- box_offset`` on ``x2'`` is correct, as Detectron's comment says.)
"""
import math

from utils.ops.array_module import get_array_module

#: Detectron's ``BBOX_XFORM_CLIP``: ``dw, dh`` are clipped here before exp.
BBOX_XFORM_CLIP = math.log(1000. / 16.)


def decode_bbox(bbox, deltas, weights=(1., 1., 1., 1.),
                clip=BBOX_XFORM_CLIP, box_offset=1):
    """Apply regression deltas to boxes (Detectron ``bbox_transform``).

    Args:
        bbox (array): (R, 4) float ``(x1, y1, x2, y2)``, the anchors or
            ROIs; cast to ``deltas.dtype`` first, as Detectron does.
        deltas (array): (R, 4K) float, per class ``(dx, dy, dw, dh)``,
            class k in columns ``4k:4k+4`` (K = 1 for class-agnostic).
        weights ((float, float, float, float)): ``(wx, wy, ww, wh)``;
            ``(10, 10, 5, 5)`` for box heads, ``(1, 1, 1, 1)`` for the RPN.
        clip (float or None): upper bound of ``dw / ww`` and ``dh / wh``
            before ``exp`` (default ``log(1000 / 16)``); None for none.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (R, 4K) of ``deltas.dtype``, ``(x1, y1, x2, y2)`` per class,
        not clipped to the image. The formula is in the module docstring.
    """
    xp = get_array_module(deltas)
    if bbox.shape[0] == 0:
        return xp.zeros((0, deltas.shape[1]), dtype=deltas.dtype)
    bbox = bbox.astype(deltas.dtype, copy=False)
    wx, wy, ww, wh = (float(v) for v in weights)

    # (R,) -> (R, 1): broadcast one box over its K class columns.
    w = (bbox[:, 2] - bbox[:, 0] + box_offset)[:, None]
    h = (bbox[:, 3] - bbox[:, 1] + box_offset)[:, None]
    cx = bbox[:, 0:1] + 0.5 * w
    cy = bbox[:, 1:2] + 0.5 * h

    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = deltas[:, 2::4] / ww
    dh = deltas[:, 3::4] / wh
    if clip is not None:
        dw = xp.minimum(dw, float(clip))
        dh = xp.minimum(dh, float(clip))

    pred_cx = dx * w + cx
    pred_cy = dy * h + cy
    pred_w = xp.exp(dw) * w
    pred_h = xp.exp(dh) * h

    pred = xp.empty_like(deltas)
    pred[:, 0::4] = pred_cx - 0.5 * pred_w
    pred[:, 1::4] = pred_cy - 0.5 * pred_h
    pred[:, 2::4] = pred_cx + 0.5 * pred_w - box_offset
    pred[:, 3::4] = pred_cy + 0.5 * pred_h - box_offset
    return pred


def encode_bbox(bbox, gt_bbox, weights=(1., 1., 1., 1.), box_offset=1):
    """Regression targets from boxes to ground truth (Detectron
    ``bbox_transform_inv``); the inverse of :func:`decode_bbox`.

    Args:
        bbox (array): (R, 4) float ``(x1, y1, x2, y2)``, anchors or ROIs.
        gt_bbox (array): (R, 4) float ``(x1, y1, x2, y2)``, matched targets.
        weights ((float, float, float, float)): ``(wx, wy, ww, wh)``.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (R, 4) ``(dx, dy, dw, dh)`` with ``dx = wx * (gt_cx - cx) / w``
        and ``dw = ww * log(gt_w / w)`` (likewise dy, dh); dtype is the
        common float type of the inputs.
    """
    xp = get_array_module(bbox)
    wx, wy, ww, wh = (float(v) for v in weights)
    w = bbox[:, 2] - bbox[:, 0] + box_offset
    h = bbox[:, 3] - bbox[:, 1] + box_offset
    cx = bbox[:, 0] + 0.5 * w
    cy = bbox[:, 1] + 0.5 * h
    gt_w = gt_bbox[:, 2] - gt_bbox[:, 0] + box_offset
    gt_h = gt_bbox[:, 3] - gt_bbox[:, 1] + box_offset
    gt_cx = gt_bbox[:, 0] + 0.5 * gt_w
    gt_cy = gt_bbox[:, 1] + 0.5 * gt_h
    return xp.stack((wx * (gt_cx - cx) / w,
                     wy * (gt_cy - cy) / h,
                     ww * xp.log(gt_w / w),
                     wh * xp.log(gt_h / h)), axis=1)


def bbox_iou(bbox_a, bbox_b, box_offset=1):
    """Intersection over union of every pair (Detectron ``bbox_overlaps``).

    ``inter = max(0, min(x2) - max(x1) + box_offset) * (same for y)`` and
    ``iou = inter / (area_a + area_b - inter)`` with
    ``area = (x2 - x1 + box_offset) * (y2 - y1 + box_offset)``; pairs that
    do not intersect (``inter == 0``) give exactly 0, as in Detectron.

    Args:
        bbox_a (array): (N, 4) float ``(x1, y1, x2, y2)``.
        bbox_b (array): (K, 4) float ``(x1, y1, x2, y2)``.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (N, K) IoU in [0, 1], the inputs' common float dtype.
    """
    xp = get_array_module(bbox_a)
    # (N, 1, 2) against (1, K, 2) -> (N, K, 2): top-left and bottom-right.
    tl = xp.maximum(bbox_a[:, None, :2], bbox_b[None, :, :2])
    br = xp.minimum(bbox_a[:, None, 2:], bbox_b[None, :, 2:])
    wh = xp.maximum(br - tl + box_offset, 0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = _area(bbox_a, box_offset)
    area_b = _area(bbox_b, box_offset)
    union = area_a[:, None] + area_b[None, :] - inter
    # inter > 0 implies both boxes have positive sides, so union > 0; where
    # inter == 0 the IoU is 0 whatever the (possibly zero) union.
    union[inter <= 0] = 1
    return inter / union


def clip_bbox(bbox, size, box_offset=1):
    """Clip boxes to the image (Detectron ``clip_tiled_boxes``).

    ``x = max(min(x, W - box_offset), 0)`` and
    ``y = max(min(y, H - box_offset), 0)`` for every coordinate, so with
    ``box_offset=1`` the last pixel is ``W - 1``.

    Args:
        bbox (array): (R, 4K) float, K boxes ``(x1, y1, x2, y2)`` per row.
        size ((int, int)): ``(H, W)`` of the image the boxes are in.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (R, 4K) clipped copy, same dtype as ``bbox``.
    """
    xp = get_array_module(bbox)
    H, W = float(size[0]), float(size[1])
    out = xp.empty_like(bbox)
    out[:, 0::2] = xp.maximum(xp.minimum(bbox[:, 0::2], W - box_offset), 0)
    out[:, 1::2] = xp.maximum(xp.minimum(bbox[:, 1::2], H - box_offset), 0)
    return out


def xywh_to_xyxy(bbox, box_offset=1):
    """``(x1, y1, w, h)`` -> ``(x1, y1, x2, y2)`` (Detectron
    ``xywh_to_xyxy``): ``x2 = x1 + max(0, w - box_offset)``, likewise ``y2``.

    Args:
        bbox (array): (R, 4) float ``(x1, y1, w, h)`` (COCO's format).
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (R, 4) ``(x1, y1, x2, y2)``, same dtype.
    """
    xp = get_array_module(bbox)
    return xp.concatenate(
        (bbox[:, :2],
         bbox[:, :2] + xp.maximum(bbox[:, 2:4] - box_offset, 0)), axis=1)


def xyxy_to_xywh(bbox, box_offset=1):
    """``(x1, y1, x2, y2)`` -> ``(x1, y1, w, h)`` (Detectron
    ``xyxy_to_xywh``): ``w = x2 - x1 + box_offset``, likewise ``h``.

    Args:
        bbox (array): (R, 4) float ``(x1, y1, x2, y2)``.
        box_offset (int): 1 for "+1" widths (Detectron), 0 for detectron2.

    Returns:
        array: (R, 4) ``(x1, y1, w, h)``, same dtype.
    """
    xp = get_array_module(bbox)
    return xp.concatenate(
        (bbox[:, :2], bbox[:, 2:4] - bbox[:, :2] + box_offset), axis=1)


def expand_bbox(bbox, scale):
    """Scale boxes about their centres (Detectron ``expand_boxes``).

    ``half_w = (x2 - x1) * 0.5 * scale``, centre ``cx = (x1 + x2) * 0.5``,
    ``x1' = cx - half_w``, ``x2' = cx + half_w`` (likewise y). No "+1":
    Detectron expands the coordinate span, not the pixel count.

    Args:
        bbox (array): (R, 4) float ``(x1, y1, x2, y2)``.
        scale (float): factor, e.g. ``(M + 2) / M`` when pasting masks.

    Returns:
        array: (R, 4) expanded boxes, same dtype as ``bbox`` (Detectron
        computes in the input dtype and stores into float64).
    """
    xp = get_array_module(bbox)
    scale = float(scale)  # a Python float keeps float32 boxes float32
    half_w = (bbox[:, 2] - bbox[:, 0]) * 0.5 * scale
    half_h = (bbox[:, 3] - bbox[:, 1]) * 0.5 * scale
    cx = (bbox[:, 2] + bbox[:, 0]) * 0.5
    cy = (bbox[:, 3] + bbox[:, 1]) * 0.5
    return xp.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h),
                    axis=1)


def _area(bbox, box_offset):
    """(R,) ``(x2 - x1 + box_offset) * (y2 - y1 + box_offset)``, negative
    for boxes with ``x2 < x1 - box_offset`` (Detectron does not clamp
    areas)."""
    return ((bbox[:, 2] - bbox[:, 0] + box_offset) *
            (bbox[:, 3] - bbox[:, 1] + box_offset))
