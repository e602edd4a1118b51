"""MobileNetV1 body: its size against Keras's published MobileNet(1.0),
its output strides and channels, the depthwise conv with a folded affine
against a brute-force loop, and the mobilenetv1-fpn preset end to end."""
import chainer
import chainer.functions as F
import numpy
import pytest

from models.mobilenet import BLOCKS, MobileNetV1Body
from models.norm import AffineChannel2D
from models.presets import build_mask_rcnn, get_preset
from models.resnet import ConvNorm


def test_parameter_count_matches_keras_mobilenet():
    # keras.applications.MobileNet(alpha=1.0) summary: 4,253,864 params,
    # 21,888 non-trainable (BN moving mean and variance, 2 per channel);
    # its classifier is a 1x1 conv 1024 -> 1000 with bias.
    norm_channels = 21888 // 2
    conv_weights = 4253864 - (1024 * 1000 + 1000) - 4 * norm_channels
    body = MobileNetV1Body(norm='gn')
    convs = [p for name, p in body.namedparams() if name.endswith('/W')]
    gammas = [p for name, p in body.namedparams() if name.endswith('gamma')]
    assert sum(p.size for p in convs) == conv_weights
    assert sum(p.size for p in gammas) == norm_channels
    assert len(convs) == 1 + 2 * 13


@pytest.mark.parametrize('size', [(64, 96), (65, 97), (33, 40)])
def test_outputs_are_c2_to_c5(size):
    body = MobileNetV1Body(norm='gn')
    x = numpy.random.RandomState(0).randn(1, 3, *size).astype(numpy.float32)
    with chainer.using_config('train', False):
        outs = body(x)
    # Each stride-2 3x3 conv with pad 1 maps a side n to (n - 1) // 2 + 1.
    expected, h, w = [], size[0], size[1]
    for k in range(1, 6):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        if k >= 2:
            expected.append((h, w))
    assert [o.shape[2:] for o in outs] == expected
    assert [o.shape[1] for o in outs] == [128, 256, 512, 1024]
    assert all(numpy.isfinite(o.array).all() for o in outs)


def _depthwise_reference(x, W, scale, bias, stride):
    """float64 loop: relu(scale[c] * sum W[c, 0, ky, kx] * xpad + bias)."""
    n, c, h, w = x.shape
    xpad = numpy.pad(x.astype(numpy.float64), ((0, 0), (0, 0), (1, 1),
                                               (1, 1)))
    p, q = (h - 1) // stride + 1, (w - 1) // stride + 1
    y = numpy.zeros((n, c, p, q))
    for i in range(p):
        for j in range(q):
            patch = xpad[:, :, i * stride:i * stride + 3,
                         j * stride:j * stride + 3]
            y[:, :, i, j] = (patch * W[None, :, 0]).sum(axis=(2, 3))
    return numpy.maximum(y * scale[None, :, None, None] +
                         bias[None, :, None, None], 0)


@pytest.mark.parametrize('stride', [1, 2])
def test_depthwise_affine_fold_equals_loop(stride):
    rng = numpy.random.RandomState(stride)
    link = ConvNorm(4, 4, 3, stride, 1, 'affine', groups=4)
    link.norm.scale[...] = rng.uniform(0.5, 2., 4)
    link.norm.bias[...] = rng.randn(4)
    x = rng.randn(2, 4, 5, 7).astype(numpy.float32)
    y = link(x, relu=True).array
    ref = _depthwise_reference(x, link.conv.W.array, link.norm.scale,
                               link.norm.bias, stride)
    numpy.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_depthwise_fold_gradient_matches_unfolded():
    """Through the fold the weight gradient is that of conv, then affine."""
    rng = numpy.random.RandomState(0)
    link = ConvNorm(3, 3, 3, 1, 1, 'affine', groups=3)
    link.norm.scale[...] = rng.uniform(0.5, 2., 3)
    link.norm.bias[...] = rng.randn(3)
    x = rng.randn(1, 3, 4, 5).astype(numpy.float32)
    gy = rng.randn(1, 3, 4, 5).astype(numpy.float32)
    link.cleargrads()  # chainer fills fresh gradients with NaN
    y = link(x)
    y.grad = gy
    y.backward()
    folded = link.conv.W.grad.copy()
    link.cleargrads()
    affine = AffineChannel2D(3)
    affine.scale[...], affine.bias[...] = link.norm.scale, link.norm.bias
    y = affine(F.convolution_2d(x, link.conv.W, pad=1, groups=3))
    y.grad = gy
    y.backward()
    numpy.testing.assert_allclose(folded, link.conv.W.grad, rtol=1e-5,
                                  atol=1e-6)


def test_preset_builds_the_fpn_heads_on_mobilenet():
    p = get_preset('mobilenetv1-fpn', n_fg_class=2, min_size=64,
                   max_size=96)
    assert (p.norm, p.fpn_channels, p.fc_channels, p.mask_channels) == (
        'gn', 256, 1024, 256)
    assert p.rpn_strides == (4, 8, 16, 32, 64) and p.pad_stride == 32
    numpy.random.seed(0)
    model = build_mask_rcnn(p)
    assert isinstance(model.extractor.body, MobileNetV1Body)
    x = numpy.zeros((1, 3, 64, 96), numpy.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        ps = model.extractor(x)
    assert [f.shape for f in ps] == [(1, 256, 64 // s, 96 // s)
                                     for s in (4, 8, 16, 32)] + [
        (1, 256, 1, 2)]
    img = numpy.random.RandomState(1).uniform(0, 255, (3, 60, 90))
    bboxes, labels, scores, masks = model.predict([img.astype('f')])
    assert bboxes[0].shape[1:] == (4,) and masks[0].shape[1:] == (60, 90)


def test_blocks_are_the_papers():
    # Howard et al. 2017, Table 1: 64, 128/2, 128, 256/2, 256, 512/2,
    # 5 x 512, 1024/2, 1024.
    assert [(c, s) for _, c, s in BLOCKS] == [
        (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + \
        [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


@pytest.mark.parametrize('norm', ['gn', 'affine'])
def test_body_on_xp_equals_numpy(xp, norm):
    """CuPy's grouped convolution (no cuDNN) and the folded affine give
    NumPy's outputs (on NumPy, a second run equals the first)."""
    numpy.random.seed(0)
    body = MobileNetV1Body(norm=norm)
    rng = numpy.random.RandomState(1)
    if norm == 'affine':
        for link in body.links():
            if isinstance(link, AffineChannel2D):
                link.scale[...] = rng.uniform(0.5, 1.5, link.scale.shape)
                link.bias[...] = rng.randn(*link.bias.shape) * 0.1
    x = rng.randn(1, 3, 64, 64).astype(numpy.float32)
    with chainer.using_config('train', False):
        expected = [o.array for o in body(x)]
        if xp is not numpy:
            body.to_gpu()
        outs = body(xp.asarray(x))
    for out, ref in zip(outs, expected):
        numpy.testing.assert_allclose(chainer.backend.CpuDevice().send(
            out.array), ref, rtol=1e-3, atol=1e-3)
