"""ROI feature extraction from one or several feature levels.

FPN assigns each ROI to one level by its size; the rule and the grouping
are ``utils/ops/fpn_levels.py``, which the onnxruntime predictor shares.
The box head and the mask head both pool through ``ROIPooler`` so the rule
is applied in one place.
"""
import numpy
import chainer.functions as F

from functions.roi_align_2d import roi_align_2d
from utils.ops.fpn_levels import group_by_level


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
        idx, restore = group_by_level(rois, self.k_min, len(self.scales),
                                      self.box_offset)
        pooled = [self._pool(x, rois[i], roi_indices[i], scale)
                  for x, scale, i in zip(features, self.scales, idx)
                  if len(i)]
        if not pooled:
            return self._pool(features[0], rois, roi_indices, self.scales[0])
        # `restore` undoes the grouping by level: pooled[restore] follows rois.
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
