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


NORMS = ('affine', 'gn', 'bn')
BN_EPS = 1e-5  # Caffe2's SpatialBN epsilon


def make_norm(kind, channels):
    """Build the normalisation ``kind`` for C channels.

    Args:
        kind (str or callable): 'affine' (frozen, for converted weights),
            'gn' (GroupNorm, trains from scratch), 'bn' (batch norm that
            trains: batch statistics in training, the running averages at
            test time), or a callable ``channels -> link`` such as a batch
            norm synchronised over ChainerMN processes
            (``utils/training/distributed.sync_batch_norm``), which saves
            the same arrays as 'bn'.
        channels (int): C.
    """
    if callable(kind):
        return kind(channels)
    if kind == 'affine':
        return AffineChannel2D(channels)
    if kind == 'gn':
        # 32 groups (Wu and He), fewer for the narrow quickstart layers.
        return L.GroupNormalization(math.gcd(32, channels), channels,
                                    eps=1e-5)
    if kind == 'bn':
        # Running averages with momentum 0.9, as Caffe2's SpatialBN.
        return L.BatchNormalization(channels, decay=0.9, eps=BN_EPS)
    raise ValueError('norm must be one of {}, got {!r}'.format(NORMS, kind))
