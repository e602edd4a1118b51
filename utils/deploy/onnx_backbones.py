"""ONNX nodes of the backbones: ResNet and MobileNetV1 bodies, their norms,
and the FPN on top (``onnx_graph.py`` holds the graph and the heads).

A norm after a bias-free convolution becomes, at test time:

* frozen ``AffineChannel2D``: folded into the convolution, ``W * scale``
  and bias ``bias``, as ``models/resnet.py`` ``ConvNorm`` does;
* ``L.BatchNormalization`` ('bn', also what a 'syncbn' model is saved as):
  its test-time form ``gamma * (x - avg_mean) / sqrt(avg_var + eps) +
  beta`` is per-channel affine too, so it is folded the same way, with
  ``s = gamma / sqrt(avg_var + eps)``: ``W * s`` and bias ``beta -
  avg_mean * s`` (computed in float64, stored float32). One Conv instead
  of Conv + BatchNormalization: fewer nodes, and the same numbers up to
  float32 rounding;
* ``L.GroupNormalization``: an ``InstanceNormalization`` over (N, G,
  C/G*H*W) followed by the per-channel affine.

Any other norm or body raises ``onnx_graph.UnsupportedModel``.
"""
import chainer.links as L
import numpy

from models.mobilenet import BLOCKS, OUTPUTS, MobileNetV1Body
from models.norm import AffineChannel2D
from models.resnet import ResNetBody
from utils.deploy.onnx_graph import UnsupportedModel, conv

NORMS = 'AffineChannel2D, BatchNormalization or GroupNormalization'
BODIES = 'ResNetBody or MobileNetV1Body'


def norm_affine(norm):
    """(scale, bias), each (C,), of a norm that is a per-channel affine at
    test time; None for any other norm. The frozen affine's are its float32
    arrays, so that ``W * scale`` is the very product the Chainer model's
    fold computes (``AffineChannel2D.fold``); a batch norm's are computed
    in float64."""
    if isinstance(norm, AffineChannel2D):
        return norm.scale, norm.bias
    if isinstance(norm, L.BatchNormalization):
        c = norm.avg_mean.shape[0]
        gamma = numpy.ones(c) if norm.gamma is None else norm.gamma.array
        beta = numpy.zeros(c) if norm.beta is None else norm.beta.array
        s = numpy.asarray(gamma, numpy.float64) / numpy.sqrt(
            numpy.asarray(norm.avg_var, numpy.float64) + norm.eps)
        return s, numpy.asarray(beta, numpy.float64) - s * numpy.asarray(
            norm.avg_mean, numpy.float64)
    return None


def conv_norm(g, link, x, relu=False):
    """``models.resnet.ConvNorm``: conv without bias (grouped for a
    depthwise one), then its norm."""
    norm = link.norm
    affine = norm_affine(norm)
    if affine is not None:
        # (O,) -> (O, 1, 1, 1) to scale each output filter.
        return conv(g, link.conv, x, relu,
                    lambda: link.conv.W.array * affine[0][:, None, None,
                                                          None],
                    lambda: affine[1])
    if isinstance(norm, L.GroupNormalization):
        h = group_norm(g, norm, conv(g, link.conv, x))
        return g.op('Relu', [h]) if relu else h
    raise UnsupportedModel('norm layer {} has no ONNX export; expected '
                           '{}'.format(type(norm).__name__, NORMS))


def group_norm(g, link, x):
    """``L.GroupNormalization``: normalise each of G channel groups over
    its channels and pixels (biased variance, ``eps``), then ``gamma * h +
    beta`` per channel."""
    groups = link.groups
    # (N, C, H, W) -> (N, G, C/G*H*W): InstanceNormalization normalises
    # each (n, g) row.
    h = g.op('Reshape', [x, g.const([0, groups, -1], 'gn_shape',
                                    numpy.int64)])
    h = g.op('InstanceNormalization',
             [h, g.const(numpy.ones(groups), 'gn_one'),
              g.const(numpy.zeros(groups), 'gn_zero')], epsilon=link.eps)
    h = g.op('Reshape', [h, g.op('Shape', [x])])
    # (C,) -> (C, 1, 1) to broadcast over N, H, W.
    h = g.op('Mul', [h, g.param(link, 'gamma',
                                lambda: link.gamma.array[:, None, None])])
    return g.op('Add', [h, g.param(link, 'beta',
                                   lambda: link.beta.array[:, None, None])])


def bottleneck(g, block, x):
    h = conv_norm(g, block.branch2a, x, relu=True)
    h = conv_norm(g, block.branch2b, h, relu=True)
    h = conv_norm(g, block.branch2c, h)
    shortcut = (conv_norm(g, block.branch1, x) if hasattr(block, 'branch1')
                else x)
    return g.op('Relu', [g.op('Add', [h, shortcut])])


def res_stage(g, stage, x):
    for block in stage:
        x = bottleneck(g, block, x)
    return x


def resnet_body(g, body, x):
    """``models.resnet.ResNetBody``: the output of every stage."""
    h = conv_norm(g, body.conv1, x, relu=True)
    # Caffe2's floor-mode 3x3/2 max pool, padding never selected.
    h = g.op('MaxPool', [h], kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1])
    outs = []
    for name in body.stages:
        h = res_stage(g, getattr(body, name), h)
        outs.append(h)
    return outs


def mobilenet_body(g, body, x):
    """``models.mobilenet.MobileNetV1Body``: C2..C5. Each block is a 3x3
    depthwise ConvNorm (ONNX Conv with group = C) and a 1x1 one, each
    with its ReLU."""
    h = conv_norm(g, body.conv1, x, relu=True)
    outs = []
    for name, _, _ in BLOCKS:
        block = getattr(body, name)
        h = conv_norm(g, block.sep, conv_norm(g, block.dw, h, relu=True),
                      relu=True)
        if name in OUTPUTS:
            outs.append(h)
    return outs


def body_outputs(g, body, x):
    """C2..C5 (or res2..res4 for C4) of a ResNet or MobileNetV1 body."""
    if isinstance(body, ResNetBody):
        return resnet_body(g, body, x)
    if isinstance(body, MobileNetV1Body):
        return mobilenet_body(g, body, x)
    raise UnsupportedModel('backbone body {} has no ONNX export; expected '
                           '{}'.format(type(body).__name__, BODIES))


def fpn(g, link, x):
    """``models.fpn.FPN``: [P2, ..., P6]."""
    cs = body_outputs(g, link.body, x)
    inner = conv(g, link.inner[-1], cs[-1])
    ps = [conv(g, link.outer[-1], inner)]
    # Nearest x2 upsampling: output pixel i reads input pixel floor(i / 2).
    scales = g.const([1, 1, 2, 2], 'up_scales')
    for k in range(len(cs) - 2, -1, -1):
        up = g.op('Resize', [inner, '', scales], mode='nearest',
                  coordinate_transformation_mode='asymmetric',
                  nearest_mode='floor')
        inner = g.op('Add', [conv(g, link.inner[k], cs[k]), up])
        ps.insert(0, conv(g, link.outer[k], inner))
    # P6 = P5[:, :, ::2, ::2]
    big = numpy.iinfo(numpy.int64).max
    ps.append(g.op('Slice', [ps[-1], g.const([0, 0], 'p6_starts', numpy.int64),
                             g.const([big, big], 'p6_ends', numpy.int64),
                             g.const([2, 3], 'p6_axes', numpy.int64),
                             g.const([2, 2], 'p6_steps', numpy.int64)]))
    return ps
