"""A frozen affine folded into the convolution before it (and the ReLU
applied in place) gives the unfolded ``relu(affine(conv(x)))``, with the
same gradients."""
import chainer
import chainer.functions as F
import numpy
import pytest

from models.resnet import ConvNorm


@pytest.mark.parametrize('ksize,stride,pad,relu', [
    (1, 1, 0, False), (3, 1, 1, True), (7, 2, 3, True), (1, 2, 0, False)])
def test_folded_affine_equals_conv_then_affine(xp, ksize, stride, pad,
                                               relu):
    rng = numpy.random.RandomState(0)
    link = ConvNorm(3, 4, ksize, stride, pad, norm='affine')
    link.conv.W.array[...] = rng.randn(*link.conv.W.shape)
    link.norm.scale[...] = rng.uniform(0.5, 2, 4)
    link.norm.bias[...] = rng.randn(4)
    link = link.copy('copy')
    if xp is not numpy:
        link.to_gpu()
    x = xp.asarray(rng.randn(2, 3, 9, 8).astype(numpy.float32))
    # Reference, written out: conv, then scale * y + bias per channel.
    ref_W = chainer.Variable(link.conv.W.array.copy())
    x_ref, x_var = chainer.Variable(x), chainer.Variable(x.copy())
    ref = F.convolution_2d(x_ref, ref_W, None, stride, pad)
    ref = ref * link.norm.scale[:, None, None] + link.norm.bias[:, None, None]
    if relu:
        ref = F.relu(ref)
        assert (ref.array == 0).any() and (ref.array > 0).any()
    y = link(x_var, relu=relu)
    xp.testing.assert_allclose(y.array, ref.array, rtol=1e-5, atol=1e-5)
    gy = xp.asarray(rng.randn(*y.shape).astype(numpy.float32))
    y.grad, ref.grad = gy, gy
    link.cleargrads()
    y.backward()
    ref.backward()
    xp.testing.assert_allclose(link.conv.W.grad, ref_W.grad, rtol=1e-4,
                               atol=1e-4)
    xp.testing.assert_allclose(x_var.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    assert 'scale' not in dict(link.namedparams())  # frozen: no gradient


@pytest.mark.parametrize('shape', [(1, 2, 7, 9), (2, 3, 8, 8), (1, 1, 1, 2)])
def test_stem_max_pool_equals_chainer(xp, shape):
    # Without backprop the 9-tap maximum; with it chainer's own pooling.
    from models.resnet import stem_max_pool
    x = xp.asarray(numpy.random.RandomState(1).randn(*shape).astype('f'))
    ref = F.max_pooling_2d(x, 3, 2, pad=1, cover_all=False).array
    with chainer.no_backprop_mode():
        y = stem_max_pool(x)
    assert y.shape == ref.shape
    xp.testing.assert_array_equal(y.array, ref)
    xp.testing.assert_array_equal(stem_max_pool(x).array, ref)
