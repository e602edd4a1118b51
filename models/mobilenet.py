"""MobileNetV1 body (Howard et al. 2017, width 1.0) for an FPN.

* ``conv1``: 3x3/2 conv, 32 channels, norm, ReLU.
* 13 depthwise-separable blocks, each a 3x3 depthwise conv (groups =
  channels; the stride sits here) with norm and ReLU, then a 1x1 pointwise
  conv with norm and ReLU:

  =========  ======  ======  ==========================
  block      out C   stride  output stride (FPN input)
  =========  ======  ======  ==========================
  conv2_1    64      1       2
  conv2_2    128     2       4
  conv3_1    128     1       4   (C2)
  conv3_2    256     2       8
  conv4_1    256     1       8   (C3)
  conv4_2    512     2       16
  conv5_1-5  512     1       16  (C4 after conv5_5)
  conv5_6    1024    2       32
  conv6      1024    1       32  (C5)
  =========  ======  ======  ==========================

Link names mirror the layer names of the Caffe MobileNet most often
converted (shicai/MobileNet-Caffe): Caffe's ``conv5_3/dw`` is the link
``conv5_3/dw``, so ``conv5_3/dw/conv/W`` (512, 1, 3, 3) and
``conv5_3/sep/norm/scale`` (512,) are that layer's weights and folded
BatchNorm (``utils/weights/mobilenet.py``).

The depthwise convolutions run chainer's grouped ``F.convolution_2d``: on
a (1, 32, 400, 600) float32 input, one thread, it measured 0.10-0.12 s
(stride 1) against 0.09-0.10 s for ``F.depthwise_convolution_2d`` and for
a 9-tap multiply-add in NumPy, within the noise of a shared machine, and
forward + backward were equal too; the grouped link keeps Caffe's (C, 1,
3, 3) weight layout, so no kernel of our own was added for it.
"""
import functools

import chainer

from models.frozen import forward_stage
from models.resnet import ConvNorm

# (block name, output channels, stride of its depthwise conv)
BLOCKS = (('conv2_1', 64, 1), ('conv2_2', 128, 2), ('conv3_1', 128, 1),
          ('conv3_2', 256, 2), ('conv4_1', 256, 1), ('conv4_2', 512, 2),
          ('conv5_1', 512, 1), ('conv5_2', 512, 1), ('conv5_3', 512, 1),
          ('conv5_4', 512, 1), ('conv5_5', 512, 1), ('conv5_6', 1024, 2),
          ('conv6', 1024, 1))
STEM_CHANNELS = 32
# Blocks whose outputs are C2..C5 (strides 4, 8, 16, 32).
OUTPUTS = ('conv3_1', 'conv4_1', 'conv5_5', 'conv6')
# Blocks of each stage, as Detectron's TRAIN.FREEZE_AT counts them: the
# stem, then the blocks up to and including C2, C3, C4 and C5.
STAGES = (('conv1',), ('conv2_1', 'conv2_2', 'conv3_1'),
          ('conv3_2', 'conv4_1'),
          ('conv4_2', 'conv5_1', 'conv5_2', 'conv5_3', 'conv5_4',
           'conv5_5'),
          ('conv5_6', 'conv6'))


class DepthwiseSeparable(chainer.Chain):
    """``dw``: 3x3 depthwise conv (stride), norm, ReLU; ``sep``: 1x1 conv,
    norm, ReLU."""

    def __init__(self, in_channels, out_channels, stride, norm='gn',
                 initialW=None):
        super().__init__()
        with self.init_scope():
            self.dw = ConvNorm(in_channels, in_channels, 3, stride, 1, norm,
                               initialW, groups=in_channels)
            self.sep = ConvNorm(in_channels, out_channels, 1, 1, 0, norm,
                                initialW)

    def forward(self, x):
        return self.sep(self.dw(x, relu=True), relu=True)


class MobileNetV1Body(chainer.Chain):
    """Stem and the 13 blocks; returns C2..C5.

    Input: (N, 3, H, W) float32 BGR minus pixel means (docs/conventions.md).
    Output: list of 4 arrays (N, C_k, ceil(H / s), ceil(W / s)) for strides
    s = 4, 8, 16, 32 with C_k = 128, 256, 512, 1024 (each 3x3 conv pads by
    1, so a side of H gives (H - 1) // 2 + 1 after a stride 2).

    Args:
        norm (str): 'gn' (GroupNorm, trains from scratch) or 'affine'
            (frozen BatchNorm of converted ImageNet weights).

    The blocks of the first ``frozen_stages`` entries of ``STAGES`` (set
    by ``utils/training/pretrained.py`` ``freeze``) run without a graph
    (``models/frozen.py``).
    """

    out_channels = (128, 256, 512, 1024)
    freeze_stages = STAGES

    def __init__(self, norm='gn', initialW=None):
        super().__init__()
        with self.init_scope():
            self.conv1 = ConvNorm(3, STEM_CHANNELS, 3, 2, 1, norm, initialW)
            channels = STEM_CHANNELS
            for name, out_channels, stride in BLOCKS:
                setattr(self, name, DepthwiseSeparable(
                    channels, out_channels, stride, norm, initialW))
                channels = out_channels
        self.frozen_stages = 0

    def forward(self, x):
        frozen = {name for stage in STAGES[:self.frozen_stages]
                  for name in stage}
        h = forward_stage(functools.partial(self.conv1, relu=True),
                          'conv1' in frozen, x)
        outs = []
        for name, _, _ in BLOCKS:
            h = forward_stage(getattr(self, name), name in frozen, h)
            if name in OUTPUTS:
                outs.append(h)
        return outs
