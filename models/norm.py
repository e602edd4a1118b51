"""Normalisation layers selectable by name: frozen affine or GroupNorm.

Detectron's model-zoo weights carry batch norm already folded into a
per-channel affine transform, ``y = scale * x + bias`` (its
``AffineChannel`` op with ``_bn_s`` / ``_bn_b`` blobs). That transform is
never trained (Caffe2 gives it no gradient), so it is stored here as
persistent arrays, not parameters: it is saved and moved between devices
but the optimizer never sees it.
"""
import math

import chainer
import chainer.links as L
import numpy


class AffineChannel2D(chainer.Link):
    """Frozen per-channel affine transform of (N, C, H, W) features.

    Args:
        channels (int): C.
    """

    def __init__(self, channels):
        super().__init__()
        self.add_persistent('scale', numpy.ones(channels, numpy.float32))
        self.add_persistent('bias', numpy.zeros(channels, numpy.float32))

    def forward(self, x):
        # (C,) -> (1, C, 1, 1) to broadcast over N, H, W.
        shape = (1, -1) + (1,) * (x.ndim - 2)
        # Stored in float32; cast to the input's dtype (float16 when mixed).
        scale = self.scale.astype(x.dtype, copy=False).reshape(shape)
        bias = self.bias.astype(x.dtype, copy=False).reshape(shape)
        return x * scale + bias

    def fold(self, W):
        """The weights and bias of ``affine(conv(x, W))`` as one convolution:
        ``(W * scale[:, None, None, None], bias)``, for W (O, C, kh, kw) of a
        bias-free convolution. Differentiable in W (the affine itself is
        frozen)."""
        scale = self.scale.astype(W.dtype, copy=False).reshape(-1, 1, 1, 1)
        return W * scale, self.bias.astype(W.dtype, copy=False)


NORMS = ('affine', 'gn')


def make_norm(kind, channels):
    """Build the normalisation ``kind`` ('affine' or 'gn') for C
    channels."""
    if kind == 'affine':
        return AffineChannel2D(channels)
    if kind == 'gn':
        # 32 groups (Wu and He), fewer for the narrow quickstart layers.
        return L.GroupNormalization(math.gcd(32, channels), channels,
                                    eps=1e-5)
    raise ValueError('norm must be one of {}, got {!r}'.format(NORMS, kind))
