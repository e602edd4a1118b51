"""Pasting M x M mask probabilities into the image (Detectron
``core/test.py`` ``segm_results``).

For each detection: pad the M x M map by one zero pixel on every side,
expand the box about its centre by (M + 2) / M, truncate it to int32
(towards zero, as numpy's ``astype``), resize the padded map bilinearly to
the whole expanded box (width ``x2 - x1 + 1``, at least 1), threshold
``> thresh``, and copy the part that lies inside the image.
"""
import cv2
import numpy

from utils.boxes import expand_boxes


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
    ref = expand_boxes(numpy.asarray(bbox, numpy.float32),
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
