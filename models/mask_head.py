"""Mask heads: ROI features -> (R, K+1, M, M) class-specific mask logits.

C4 (``mask_rcnn_fcn_head_v0upshare``): res5 shared with the box head on
14x14 features -> 7x7x2048, 2x2/2 deconv to 256 + ReLU, 1x1 conv -> M = 14.
FPN (``mask_rcnn_fcn_head_v1up4convs``): four 3x3 convs 256 + ReLU on
14x14x256, 2x2/2 deconv + ReLU, 1x1 conv -> M = 28.
"""
import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers


class MaskPredictor(chainer.Chain):
    """Upsampling deconv + ReLU and the class-specific 1x1 logits."""

    def __init__(self, in_channels, n_class, mid_channels=256):
        super().__init__()
        init = initializers.HeNormal(fan_option='fan_out')  # MSRAFill
        with self.init_scope():
            self.deconv = L.Deconvolution2D(in_channels, mid_channels, 2, 2,
                                            initialW=init)
            self.logits = L.Convolution2D(mid_channels, n_class, 1,
                                          initialW=initializers.Normal(0.001))

    def forward(self, h):
        return self.logits(F.relu(self.deconv(h)))


class ResNetC5MaskHead(chainer.Chain):
    """C4 mask head; ``res5`` is the box head's stage (shared, not owned)."""

    def __init__(self, res5_owner, n_class, pooler):
        super().__init__()
        self.pooler = pooler
        # A plain attribute, not a child: the weights belong to the box head.
        self._res5_owner = res5_owner
        with self.init_scope():
            self.predictor = MaskPredictor(2048, n_class)

    def forward(self, features, rois, roi_indices):
        h = self._res5_owner.res5(self.pooler(features, rois, roi_indices))
        return self.predictor(h)


class FourConvMaskHead(chainer.Chain):
    """FPN mask head."""

    def __init__(self, n_class, pooler, channels=256, n_convs=4):
        super().__init__()
        self.pooler = pooler
        init = initializers.HeNormal(fan_option='fan_out')
        with self.init_scope():
            self.convs = chainer.ChainList(*[
                L.Convolution2D(channels, channels, 3, 1, 1, initialW=init)
                for _ in range(n_convs)])
            self.predictor = MaskPredictor(channels, n_class, channels)

    def forward(self, features, rois, roi_indices):
        h = self.pooler(features, rois, roi_indices)
        for conv in self.convs:
            h = F.relu(conv(h))
        return self.predictor(h)
