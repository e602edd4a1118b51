"""ResNet body in Detectron's form (``detectron/modeling/ResNet.py``).

* Stem: conv1 7x7/2 without bias, norm, ReLU, 3x3/2 max pool with pad 1 and
  Caffe2's floor-mode output size (chainer ``cover_all=False``).
* Bottleneck blocks with the stride on the first 1x1 conv
  (``RESNETS.STRIDE_1X1 = True``, as MSRA's original ResNet).
* A stage's first block projects the shortcut (``branch1``) when the channel
  count changes; only that block carries the stage stride.

Link names mirror Detectron's blob names so that conversion is a plain
rename: ``res3_0_branch2a_w`` is ``res3/0/branch2a/conv/W`` and
``res3_0_branch2a_bn_s`` is ``res3/0/branch2a/norm/scale``.
"""
import chainer
import chainer.functions as F

from functions.convolution_2d import convolution_2d
from models.conv import Convolution2D
from models.frozen import forward_stage
from models.norm import AffineChannel2D, make_norm

# blocks per stage res2..res5
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def stem_max_pool(h):
    """3x3 max pooling, stride 2, pad 1, floor-mode size, of (N, C, H, W).

    Without backpropagation it is the maximum of the 9 strided taps of the
    input padded with -inf, the same numbers as ``F.max_pooling_2d``
    without its im2col buffer and the argmax it keeps for the backward
    pass (7 % of the R-50-FPN backbone on the CPU).
    """
    if chainer.config.enable_backprop:
        return F.max_pooling_2d(h, 3, 2, pad=1, cover_all=False)
    x = h.array if isinstance(h, chainer.Variable) else h
    xp = chainer.backend.get_array_module(x)
    n, c, height, width = x.shape
    p, q = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    padded = xp.full((n, c, height + 2, width + 2), -xp.inf, x.dtype)
    padded[:, :, 1:-1, 1:-1] = x
    y = padded[:, :, 0:2 * p - 1:2, 0:2 * q - 1:2].copy()
    for ky in range(3):
        for kx in range(3):
            if ky or kx:
                xp.maximum(y, padded[:, :, ky:ky + 2 * p - 1:2,
                                     kx:kx + 2 * q - 1:2], out=y)
    return chainer.Variable(y, requires_grad=False)


class ConvNorm(chainer.Chain):
    """Convolution without bias followed by a normalisation layer;
    ``groups`` > 1 (a depthwise convolution: groups = channels, W (C, 1,
    kh, kw)) runs chainer's grouped ``F.convolution_2d``."""

    def __init__(self, in_channels, out_channels, ksize, stride=1, pad=0,
                 norm='affine', initialW=None, groups=1):
        super().__init__()
        with self.init_scope():
            self.conv = Convolution2D(in_channels, out_channels, ksize,
                                      stride, pad, nobias=True,
                                      initialW=initialW, groups=groups)
            self.norm = make_norm(norm, out_channels)

    def forward(self, x, relu=False):
        """norm(conv(x)), and its ReLU if ``relu``."""
        if isinstance(self.norm, AffineChannel2D):
            # A frozen affine after a bias-free convolution is that
            # convolution with scaled weights and a bias, which the GEMM adds
            # in place, as it applies the ReLU: one pass over the output
            # instead of four.
            W, b = self.norm.fold(self.conv.W)
            if self.conv.groups == 1:
                return convolution_2d(x, W, b, self.conv.stride,
                                      self.conv.pad, relu)
            h = F.convolution_2d(x, W, b, self.conv.stride, self.conv.pad,
                                 groups=self.conv.groups)
            return F.relu(h) if relu else h
        h = self.norm(self.conv(x))
        return F.relu(h) if relu else h


class Bottleneck(chainer.Chain):
    """1x1 (stride) -> 3x3 -> 1x1 residual block; shortcut projected if
    needed."""

    def __init__(self, in_channels, mid_channels, out_channels, stride,
                 norm='affine', initialW=None):
        super().__init__()
        with self.init_scope():
            self.branch2a = ConvNorm(in_channels, mid_channels, 1, stride, 0,
                                     norm, initialW)
            self.branch2b = ConvNorm(mid_channels, mid_channels, 3, 1, 1,
                                     norm, initialW)
            self.branch2c = ConvNorm(mid_channels, out_channels, 1, 1, 0,
                                     norm, initialW)
            if in_channels != out_channels:
                self.branch1 = ConvNorm(in_channels, out_channels, 1, stride,
                                        0, norm, initialW)

    def forward(self, x):
        h = self.branch2a(x, relu=True)
        h = self.branch2b(h, relu=True)
        h = self.branch2c(h)
        shortcut = self.branch1(x) if hasattr(self, 'branch1') else x
        return F.relu(h + shortcut)


class ResStage(chainer.ChainList):
    """``n_blocks`` bottlenecks; Detectron's ``add_stage``.

    The first block has stride ``stride`` when it changes the channel count
    (Detectron: ``stride_init if dim_in != dim_out else 1``).
    """

    def __init__(self, n_blocks, in_channels, mid_channels, out_channels,
                 stride, norm='affine', initialW=None):
        super().__init__()
        for i in range(n_blocks):
            s = stride if i == 0 and in_channels != out_channels else 1
            self.append(Bottleneck(in_channels, mid_channels, out_channels,
                                   s, norm, initialW))
            in_channels = out_channels

    def forward(self, x):
        for block in self:
            x = block(x)
        return x


def res_stage(depth, stage, stride=2, norm='affine', initialW=None,
              width=64, blocks=None):
    """Stage ``stage`` (2..5) of ResNet-``depth``: res2 has 4 * width
    output channels (256 for the standard width 64), doubling per stage.
    ``blocks`` overrides the blocks per stage (res2..res5)."""
    n_blocks = (blocks or DEPTHS[depth])[stage - 2]
    out_channels = 4 * width * 2 ** (stage - 2)
    in_channels = width if stage == 2 else out_channels // 2
    return ResStage(n_blocks, in_channels, out_channels // 4, out_channels,
                    1 if stage == 2 else stride, norm, initialW)


class ResNetBody(chainer.Chain):
    """Stem and res2 .. res``last_stage``; returns every stage's output.

    Input: (N, 3, H, W) float32 BGR minus pixel means (docs/conventions.md).
    Output: list of (N, C_k, H_k, W_k) for res2 .. res_last, strides
    4, 8, 16, 32.

    Args:
        depth (int): 50 or 101.
        last_stage (int): 4 for C4 (res5 lives in the box head), 5 for FPN.
        norm (str): 'affine' (frozen, Detectron weights) or 'gn'.
        width (int): stem channels (64); a smaller value gives a light
            network for quick experiments.
        blocks (tuple of int): blocks of res2..res5 (default: ``depth``'s).

    ``frozen_stages`` (0: none; 1: the stem; k: also res2..res_k; set by
    ``utils/training/pretrained.py`` ``freeze``) run without a graph and
    give outputs that ask for no gradient (``models/frozen.py``).
    """

    def __init__(self, depth=50, last_stage=4, norm='affine', initialW=None,
                 width=64, blocks=None):
        super().__init__()
        if blocks is None and depth not in DEPTHS:
            raise ValueError('ResNet depth must be one of {}, got {}'.format(
                sorted(DEPTHS), depth))
        self.stages = ['res{}'.format(k) for k in range(2, last_stage + 1)]
        self.out_channels = [4 * width * 2 ** (k - 2)
                             for k in range(2, last_stage + 1)]
        self.frozen_stages = 0
        with self.init_scope():
            self.conv1 = ConvNorm(3, width, 7, 2, 3, norm, initialW)
            for k in range(2, last_stage + 1):
                setattr(self, 'res{}'.format(k),
                        res_stage(depth, k, 2, norm, initialW, width, blocks))

    def forward(self, x):
        h = forward_stage(self.stem, self.frozen_stages >= 1, x)
        outs = []
        for k, name in enumerate(self.stages, 2):
            h = forward_stage(getattr(self, name), self.frozen_stages >= k,
                              h)
            outs.append(h)
        return outs

    def stem(self, x):
        """conv1, its norm and ReLU, and the max pool: (N, 3, H, W) ->
        (N, width, H / 4, W / 4)."""
        return stem_max_pool(self.conv1(x, relu=True))
