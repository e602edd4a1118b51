"""Mask heads: ROI features -> (R, K+1, M, M) class-specific mask logits.

C4 (``mask_rcnn_fcn_head_v0upshare``): res5 shared with the box head on
14x14 features -> 7x7x2048, 2x2/2 deconv to 256 + ReLU, 1x1 conv -> M = 14.
FPN (``mask_rcnn_fcn_head_v1up4convs``): four 3x3 convs 256 + ReLU on
14x14x256, 2x2/2 deconv + ReLU, 1x1 conv -> M = 28.
"""
import chainer
import chainer.functions as F
from chainer import initializers
from chainer.backend import get_array_module

from models.conv import Convolution2D, Deconvolution2D
from models.losses import per_image_mean


class MaskPredictor(chainer.Chain):
    """Upsampling deconv + ReLU and the class-specific 1x1 logits."""

    def __init__(self, in_channels, n_class, mid_channels=256):
        super().__init__()
        init = initializers.HeNormal(fan_option='fan_out')  # MSRAFill
        with self.init_scope():
            self.deconv = Deconvolution2D(in_channels, mid_channels, 2, 2,
                                          initialW=init)
            self.logits = Convolution2D(mid_channels, n_class, 1,
                                        initialW=initializers.Normal(0.001))

    def forward(self, h, label=None):
        """(R, C, S, S) -> (R, K+1, M, M) logits, or with ``label`` ((R,)
        int32) only each ROI's own class, (R, M, M)."""
        h = self.deconv(h, relu=True)
        if label is None:
            return self.logits(h)
        return self._class_logits(h, label)

    def _class_logits(self, h, label):
        # At test time each detection needs one class's mask: one filter
        # per ROI instead of all K+1 (3.3 of R-50-FPN's 103 mask-head GFLOP
        # at 100 detections). Same products and sum as the 1x1 conv.
        r, c, m = h.shape[0], h.shape[1], h.shape[2]
        W = F.reshape(self.logits.W[label], (r, 1, c))     # (R, 1, C)
        b = self.logits.b[label]                            # (R,)
        if W.dtype != h.dtype:  # float32 weights on float16 features
            W, b = F.cast(W, h.dtype), F.cast(b, h.dtype)
        # (R, 1, C) @ (R, C, M*M) -> (R, 1, M*M) -> (R, M, M)
        y = F.reshape(F.matmul(W, F.reshape(h, (r, c, m * m))), (r, m, m))
        return y + F.broadcast_to(b[:, None, None], y.shape)


class ResNetC5MaskHead(chainer.Chain):
    """C4 mask head; ``res5`` is the box head's stage (shared, not owned)."""

    def __init__(self, res5_owner, n_class, pooler):
        super().__init__()
        self.pooler = pooler
        # A plain attribute, not a child: the weights belong to the box head.
        self._res5_owner = res5_owner
        with self.init_scope():
            self.predictor = MaskPredictor(2048, n_class)

    def forward(self, features, rois, roi_indices, label=None):
        h = self._res5_owner.run_res5(self.pooler(features, rois,
                                                  roi_indices))
        return self.predictor(h, label)


class FourConvMaskHead(chainer.Chain):
    """FPN mask head; ``in_channels`` defaults to ``channels``."""

    def __init__(self, n_class, pooler, channels=256, n_convs=4,
                 in_channels=None):
        super().__init__()
        self.pooler = pooler
        init = initializers.HeNormal(fan_option='fan_out')
        with self.init_scope():
            self.convs = chainer.ChainList(*[
                Convolution2D((in_channels or channels) if i == 0
                              else channels, channels, 3, 1, 1,
                              initialW=init)
                for i in range(n_convs)])
            self.predictor = MaskPredictor(channels, n_class, channels)

    def forward(self, features, rois, roi_indices, label=None):
        """Logits (R, K+1, M, M), or (R, M, M) of ``label`` (R,) if given
        (``MaskPredictor``)."""
        h = self.pooler(features, rois, roi_indices)
        for conv in self.convs:
            h = conv(h, relu=True)
        return self.predictor(h, label)


def mask_head_loss(mask_logits, label, target, roi_indices, n_images):
    """Per-pixel sigmoid cross entropy on each foreground ROI's class.

    Args:
        mask_logits (Variable): (F, K+1, M, M).
        label (array): (F,) int32 in 1..K.
        target (array): (F, M, M) int32 in {0, 1}.
        roi_indices (array): (F,) image of each ROI.

    Returns:
        Variable: mean over the image's F_i x M x M pixels, averaged over
        images (an image without foreground ROIs adds 0).
    """
    xp = get_array_module(label)
    F_ = len(label)
    if F_ == 0:
        return F.sum(mask_logits) * 0
    # (F, K+1, M, M) -> (F, M, M): the labelled class's channel.
    logits = mask_logits[xp.arange(F_), label]
    M2 = logits.shape[1] * logits.shape[2]
    per_roi = F.sum(F.reshape(F.sigmoid_cross_entropy(
        logits, target, normalize=False, reduce='no'), (F_, M2)), axis=1)
    counts = xp.maximum(xp.bincount(roi_indices, minlength=n_images), 1) * M2
    return per_image_mean(per_roi, roi_indices, counts, n_images)
