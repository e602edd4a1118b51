"""ROI feature extraction from one or several feature levels.

FPN assigns each ROI to one level by its size (FPN paper, equation 1, in
Detectron's form ``map_rois_to_fpn_levels``)::

    level = floor(canonical_level + log2(sqrt(area) / canonical_scale + 1e-6))

clipped to ``[k_min, k_max]``, with the "+1" area ``(x2-x1+1)*(y2-y1+1)``.
The box head and the mask head both pool through ``ROIPooler`` so the rule
is written once.
"""
import numpy
import chainer.functions as F
from chainer.backend import get_array_module

from functions.roi_align_2d import roi_align_2d


def assign_levels(rois, k_min, k_max, canonical_scale=224,
                  canonical_level=4, box_offset=1):
    """FPN level of each ROI.

    Args:
        rois (array): (R, 4) (x1, y1, x2, y2) in input-image pixels.
        k_min, k_max (int): the finest and coarsest level.
        box_offset (int): 1 for "+1" widths in the area (Detectron), 0 for
            detectron2.

    Returns:
        array: (R,) int32 levels in ``[k_min, k_max]``.
    """
    xp = get_array_module(rois)
    w = rois[:, 2] - rois[:, 0] + box_offset
    h = rois[:, 3] - rois[:, 1] + box_offset
    # Detectron asserts positive areas; clamping at 0 sends degenerate
    # boxes to k_min instead of producing NaN.
    s = xp.sqrt(xp.maximum(w * h, 0))
    lvl = xp.floor(canonical_level + xp.log2(s / canonical_scale + 1e-6))
    return xp.clip(lvl, k_min, k_max).astype(numpy.int32)


class ROIPooler:
    """ROIAlign over one level (C4) or levels assigned by size (FPN).

    Args:
        outsize (int): pooled size (7 box head FPN, 14 otherwise).
        scales (tuple of float): spatial scale of each feature level,
            finest first (C4: (1/16,); FPN: (1/4, 1/8, 1/16, 1/32)).
        sampling_ratio (int): 0 = adaptive (C4), 2 (FPN).
        k_min (int): level of ``scales[0]`` (2 for FPN).
        aligned (bool): half-pixel ROIAlign (detectron2) instead of Caffe2's.
        box_offset (int): 1 for "+1" widths in the FPN level areas
            (Detectron), 0 for detectron2.
    """

    def __init__(self, outsize, scales, sampling_ratio, k_min=2,
                 aligned=False, box_offset=1):
        self.outsize = outsize
        self.scales = tuple(scales)
        self.sampling_ratio = sampling_ratio
        self.k_min = k_min
        self.aligned = aligned
        self.box_offset = box_offset

    def __call__(self, features, rois, roi_indices):
        """Pool features of each ROI.

        Args:
            features (list of Variable): (N, C, H_l, W_l) per level, finest
                first, as many as ``scales``.
            rois (array): (R, 4) float32 (x1, y1, x2, y2), input pixels.
            roi_indices (array): (R,) int32 image of each ROI.

        Returns:
            Variable: (R, C, outsize, outsize), rows in the order of ``rois``.
        """
        if len(self.scales) == 1:
            return self._pool(features[0], rois, roi_indices, self.scales[0])
        xp = get_array_module(rois)
        levels = assign_levels(rois, self.k_min,
                               self.k_min + len(self.scales) - 1,
                               box_offset=self.box_offset)
        pooled, order = [], []
        for l, (x, scale) in enumerate(zip(features, self.scales)):
            idx = xp.where(levels == self.k_min + l)[0]
            if len(idx) == 0:
                continue
            pooled.append(self._pool(x, rois[idx], roi_indices[idx], scale))
            order.append(idx)
        if not pooled:
            return self._pool(features[0], rois, roi_indices, self.scales[0])
        order = xp.concatenate(order)
        # `restore` undoes the grouping by level: pooled[restore] follows rois.
        restore = xp.empty_like(order)
        restore[order] = xp.arange(len(order), dtype=order.dtype)
        return F.concat(pooled, axis=0)[restore]

    def _pool(self, x, rois, roi_indices, scale):
        if x.dtype == numpy.float16:
            # Mixed precision: ROIAlign sums up to hundreds of bilinear
            # samples per bin, so it runs in float32 (its kernels need it).
            pooled = roi_align_2d(F.cast(x, numpy.float32), rois,
                                  roi_indices, self.outsize, scale,
                                  self.sampling_ratio, self.aligned)
            return F.cast(pooled, numpy.float16)
        return roi_align_2d(x, rois, roi_indices, self.outsize, scale,
                            self.sampling_ratio, self.aligned)
