"""Feature pyramid on a ResNet body (Detectron ``FPN.py``, no GroupNorm).

P5 = out5(inner5), inner5 = lateral5(C5); for k = 4, 3, 2:
inner_k = lateral_k(C_k) + nearest_upsample_x2(inner_{k+1}),
P_k = out_k(inner_k). P6 = P5 subsampled by 2 (max pool k=1, s=2), used by
the RPN only. The input must be padded to a multiple of 32 so each upsampled
map matches the next lateral exactly.
"""
import chainer
import chainer.functions as F
from chainer import initializers

from models.conv import Convolution2D


class FPN(chainer.Chain):
    """Pyramid P2-P6 from a body that returns C2-C5.

    Args:
        body (chainer.Link): returns [C2, C3, C4, C5].
        in_channels (tuple of int): channels of C2..C5.
        out_channels (int): 256 (``FPN.DIM``).

    Output: [P2, P3, P4, P5, P6], each (N, out_channels, H/2^k, W/2^k).
    """

    scales = (1. / 4, 1. / 8, 1. / 16, 1. / 32, 1. / 64)

    def __init__(self, body, in_channels=(256, 512, 1024, 2048),
                 out_channels=256):
        super().__init__()
        # Detectron: XavierFill for FPN convs, zero bias.
        init = initializers.GlorotUniform()
        with self.init_scope():
            self.body = body
            self.inner = chainer.ChainList(*[
                Convolution2D(c, out_channels, 1, initialW=init)
                for c in in_channels])
            self.outer = chainer.ChainList(*[
                Convolution2D(out_channels, out_channels, 3, 1, 1,
                              initialW=init)
                for _ in in_channels])

    def forward(self, x):
        cs = self.body(x)
        inner = self.inner[-1](cs[-1])
        ps = [self.outer[-1](inner)]
        for k in range(len(cs) - 2, -1, -1):
            inner = self.inner[k](cs[k]) + F.unpooling_2d(
                inner, 2, 2, cover_all=False)
            ps.insert(0, self.outer[k](inner))
        ps.append(ps[-1][:, :, ::2, ::2])
        return ps
