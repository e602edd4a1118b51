"""The ONNX nodes of one ``ConvNorm`` (``utils/deploy/onnx_backbones.py``)
give the Chainer link's test-time output: each norm ('affine', 'bn',
'gn') after a plain and a depthwise (groups = C) convolution, with
non-trivial norm values; and links without ONNX nodes are refused."""
import chainer
import chainer.links as L
import numpy
import pytest

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

from models.resnet import ConvNorm  # noqa: E402
from utils.deploy import onnx_backbones as ob  # noqa: E402
from utils.deploy.onnx_graph import OPSET, Graph, UnsupportedModel  # noqa

C = 24  # GroupNorm: gcd(32, 24) = 8 groups of 3 channels


def _run_onnx(link, x, relu):
    """``conv_norm`` of ``link`` as a one-input ONNX model on ``x``."""
    g = Graph()
    g.add_output(ob.conv_norm(g, link, g.add_input('x', list(x.shape)),
                              relu), 'y', ['n', 'c', 'h', 'w'])
    proto = onnx.helper.make_model(
        g.make(), opset_imports=[onnx.helper.make_opsetid('', OPSET)])
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    return session.run(['y'], {'x': x})[0]


def _randomise(norm, rng):
    """Values a wrong fold would show: BN variances down to 1e-7, where
    ``eps`` = 1e-5 dominates, means away from 0, gamma and beta random."""
    c = C if not hasattr(norm, 'gamma') else norm.gamma.shape[0]
    if isinstance(norm, L.BatchNormalization):
        norm.avg_mean[...] = rng.uniform(-1, 1, c)
        norm.avg_var[...] = numpy.r_[rng.uniform(1e-7, 2e-5, c // 2),
                                     rng.uniform(0.5, 4, c - c // 2)]
    if hasattr(norm, 'gamma'):
        norm.gamma.array[...] = rng.uniform(0.5, 1.5, c)
        norm.beta.array[...] = rng.uniform(-1, 1, c)
    else:  # AffineChannel2D
        norm.scale[...] = rng.uniform(-2, 2, C)
        norm.bias[...] = rng.uniform(-1, 1, C)


@pytest.mark.parametrize('norm', ['affine', 'bn', 'gn'])
@pytest.mark.parametrize('groups', [1, C])
@pytest.mark.parametrize('relu', [False, True])
def test_conv_norm_equals_the_link(norm, groups, relu):
    rng = numpy.random.RandomState(0)
    numpy.random.seed(0)
    link = ConvNorm(C, C, 3, 2, 1, norm, groups=groups)
    _randomise(link.norm, rng)
    x = rng.uniform(-1, 1, (1, C, 9, 11)).astype(numpy.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        expected = link(x, relu).array
    if norm == 'bn':  # the test-time formula, written out
        h = chainer.functions.convolution_2d(
            x, link.conv.W, None, 2, 1, groups=groups).array
        n = link.norm
        ref = (n.gamma.array[:, None, None] * (h[0] - n.avg_mean[:, None,
                                                                 None]) /
               numpy.sqrt(n.avg_var[:, None, None] + 1e-5) +
               n.beta.array[:, None, None])
        numpy.testing.assert_allclose(
            expected[0], numpy.maximum(ref, 0) if relu else ref, rtol=1e-4,
            atol=1e-4 * abs(ref).max())
    actual = _run_onnx(link, x, relu)
    assert actual.shape == expected.shape == (1, C, 5, 6)
    numpy.testing.assert_allclose(actual, expected, rtol=1e-4,
                                  atol=1e-5 * abs(expected).max())


def test_unsupported_norm_and_body_are_refused():
    link = ConvNorm(4, 8, 1, norm=lambda c: L.LayerNormalization(c))
    with pytest.raises(UnsupportedModel, match=r'^norm layer '
                       r'LayerNormalization has no ONNX export; expected '
                       r'AffineChannel2D, BatchNormalization or '
                       r'GroupNormalization$'):
        ob.conv_norm(Graph(), link, 'x')
    with pytest.raises(UnsupportedModel, match=r'^backbone body Link has no '
                       r'ONNX export; expected ResNetBody or '
                       r'MobileNetV1Body$'):
        ob.body_outputs(Graph(), chainer.Link(), 'x')
