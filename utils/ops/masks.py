"""Pasting M x M mask probabilities into the image.

``paste_masks`` is Detectron's rule (``core/test.py`` ``segm_results``).
For each detection: pad the M x M map by one zero pixel on every side,
expand the box about its centre by (M + 2) / M, truncate it to int32
(towards zero, as numpy's ``astype``), resize the padded map bilinearly to
the whole expanded box (width ``x2 - x1 + 1``, at least 1), threshold
``> thresh``, and copy the part that lies inside the image.

``paste_masks_d2`` is detectron2's (``layers/mask_ops.py``
``paste_masks_in_image``): image pixel ``x`` (centre ``x + 0.5``) reads
the mask at ``u = (x + 0.5 - x1) / (x2 - x1) * M - 0.5`` (``grid_sample``
with ``align_corners=False``), bilinearly with zeros outside the mask, and
is set where the value is ``>= thresh``.
"""
import cv2
import numpy

from utils.ops.boxes import expand_bbox


def paste_masks(masks, bbox, size, thresh=0.5):
    """Full-image binary masks.

    Args:
        masks (numpy.ndarray): (R, M, M) float probabilities.
        bbox (numpy.ndarray): (R, 4) (x1, y1, x2, y2) in original pixels.
        size ((int, int)): (H, W) of the original image.

    Returns:
        numpy.ndarray: (R, H, W) bool.
    """
    H, W = size
    R, M = masks.shape[0], masks.shape[1]
    out = numpy.zeros((R, H, W), dtype=bool)
    if R == 0:
        return out
    # float32 arithmetic, as Detectron (its detections are float32).
    ref = expand_bbox(numpy.asarray(bbox, numpy.float32),
                      (M + 2.) / M).astype(numpy.int32)
    padded = numpy.zeros((M + 2, M + 2), numpy.float32)
    for i in range(R):
        padded[1:-1, 1:-1] = masks[i]
        x1, y1, x2, y2 = (int(v) for v in ref[i])
        w = max(x2 - x1 + 1, 1)
        h = max(y2 - y1 + 1, 1)
        mask = cv2.resize(padded, (w, h)) > thresh
        x0, x1c = max(x1, 0), min(x2 + 1, W)
        y0, y1c = max(y1, 0), min(y2 + 1, H)
        if x0 < x1c and y0 < y1c:
            out[i, y0:y1c, x0:x1c] = mask[y0 - y1:y1c - y1, x0 - x1:x1c - x1]
    return out


def paste_by_rule(rule, masks, bbox, size, thresh=0.5):
    """``paste_masks`` for ``rule`` 'detectron', ``paste_masks_d2`` for
    'detectron2' (``Conventions.paste``)."""
    paste = paste_masks_d2 if rule == 'detectron2' else paste_masks
    return paste(masks, bbox, size, thresh)


def paste_masks_d2(masks, bbox, size, thresh=0.5):
    """Full-image binary masks by detectron2's rule (module docstring).

    Args and returns as ``paste_masks``; boxes have no "+1" widths.
    """
    H, W = size
    R, M = masks.shape[0], masks.shape[1]
    out = numpy.zeros((R, H, W), dtype=bool)
    for i in range(R):
        x1, y1, x2, y2 = (float(v) for v in bbox[i])
        # Bilinear sampling is separable: value = Wy @ mask @ Wx.T, over
        # the rows and columns that read the mask at all.
        wy, ys = _interpolation_matrix(H, y1, y2, M)
        wx, xs = _interpolation_matrix(W, x1, x2, M)
        if len(ys) and len(xs):
            value = wy @ masks[i].astype(numpy.float32) @ wx.T
            out[i, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1] = value >= thresh
    return out


def _interpolation_matrix(n, lo, hi, M):
    """Weights of the mask cells read by pixels 0..n-1: linear
    interpolation, zero outside [0, M - 1].

    Returns:
        (numpy.ndarray, numpy.ndarray): (n', M) float32 weights of the
        consecutive pixels (n',) that read any cell.
    """
    u = (numpy.arange(n, dtype=numpy.float32) + 0.5 - lo) / max(
        hi - lo, 1e-6) * M - 0.5
    u0 = numpy.floor(u)
    frac = u - u0
    weights = numpy.zeros((n, M), numpy.float32)
    rows = numpy.arange(n)
    for tap, w in ((u0, 1 - frac), (u0 + 1, frac)):
        inside = (tap >= 0) & (tap <= M - 1)
        weights[rows[inside], tap[inside].astype(numpy.intp)] = w[inside]
    used = numpy.where(weights.any(axis=1))[0]
    if len(used) == 0:
        return weights[:0], used
    return weights[used[0]:used[-1] + 1], used
