"""FPN level of each ROI and the grouping of ROIs by level.

FPN assigns each ROI to one level by its size (FPN paper, equation 1, in
Detectron's form ``map_rois_to_fpn_levels``)::

    level = floor(canonical_level + log2(sqrt(area) / canonical_scale + 1e-6))

clipped to ``[k_min, k_max]``, with the "+1" area ``(x2-x1+1)*(y2-y1+1)``.
The Chainer poolers (``models/poolers.py``) and the onnxruntime predictor
(``utils/deploy/onnx_predict.py``) both group ROIs here, so the rule and
the order of the pooled rows are written once.
"""
import numpy

from utils.ops.array_module import get_array_module


def assign_levels(rois, k_min, k_max, canonical_scale=224,
                  canonical_level=4, box_offset=1):
    """FPN level of each ROI.

    Args:
        rois (array): (R, 4) (x1, y1, x2, y2) in input-image pixels.
        k_min, k_max (int): the finest and coarsest level.
        box_offset (int): 1 for "+1" widths in the area (Detectron), 0 for
            detectron2.

    Returns:
        array: (R,) int32 levels in ``[k_min, k_max]``; ``k_min`` for a
        box with a NaN coordinate.
    """
    xp = get_array_module(rois)
    w = rois[:, 2] - rois[:, 0] + box_offset
    h = rois[:, 3] - rois[:, 1] + box_offset
    # Detectron asserts positive areas; clamping at 0 sends degenerate
    # boxes to k_min instead of producing NaN.
    s = xp.sqrt(xp.maximum(w * h, 0))
    lvl = xp.floor(canonical_level + xp.log2(s / canonical_scale + 1e-6))
    # A NaN box would get no level at all: it would be pooled nowhere and
    # `restore` would be a row short (an IndexError on NumPy, rows silently
    # out of line on CuPy, which wraps out-of-range indices). k_min, like a
    # degenerate box; ROIAlign then pools its NaN samples as zeros.
    lvl = xp.where(xp.isnan(lvl), k_min, lvl)
    return xp.clip(lvl, k_min, k_max).astype(numpy.int32)


def group_by_level(rois, k_min, n_levels, box_offset=1):
    """The ROIs of each level and the permutation that restores their order.

    Args:
        rois (array): (R, 4) (x1, y1, x2, y2) in input-image pixels.
        k_min (int): level of the finest map (2 for FPN).
        n_levels (int): maps pooled from, levels ``k_min .. k_min +
            n_levels - 1``.

    Returns:
        (list of array, array): per level, the (R_l,) indices into
        ``rois`` of its ROIs, ascending (possibly empty); and ``restore``
        (R,) such that ``concat(pooled per level)[restore]`` follows the
        order of ``rois``.
    """
    xp = get_array_module(rois)
    levels = assign_levels(rois, k_min, k_min + n_levels - 1,
                           box_offset=box_offset)
    idx = [xp.where(levels == k)[0] for k in range(k_min, k_min + n_levels)]
    order = xp.concatenate(idx) if idx else xp.zeros(0, numpy.int64)
    restore = xp.empty_like(order)
    restore[order] = xp.arange(len(order), dtype=order.dtype)
    return idx, restore
