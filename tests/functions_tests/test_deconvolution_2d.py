"""The non-overlapping deconvolution equals chainer's deconvolution (and its
ReLU) forward and backward, on NumPy and (marked gpu) CuPy."""
import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import gradient_check

from functions.deconvolution_2d import non_overlapping_deconvolution_2d
from tests.helpers.gemm_counter import CountsMatmul


@pytest.mark.parametrize('n,bias,relu,k', [
    (1, True, False, 2), (3, False, False, 2), (3, True, True, 2),
    (2, True, True, 3), (0, True, True, 2)])
def test_equals_chainer(xp, n, bias, relu, k):
    rng = numpy.random.RandomState(3)
    x = xp.asarray(rng.randn(n, 4, 3, 5))
    W = xp.asarray(rng.randn(4, 6, k, k))
    b = xp.asarray(rng.randn(6)) if bias else None
    gy = xp.asarray(rng.randn(n, 6, 3 * k, 5 * k))

    def ref(x, W, b):
        y = F.deconvolution_2d(x, W, b, k)
        return F.relu(y) if relu else y

    outs = []
    for f in (lambda x, W, b: non_overlapping_deconvolution_2d(x, W, b, relu),
              ref):
        xv, Wv = chainer.Variable(x), chainer.Variable(W)
        bv = chainer.Variable(b) if bias else None
        y = f(xv, Wv, bv)
        y.grad = gy
        y.backward()
        outs.append([y.array, xv.grad, Wv.grad] + ([bv.grad] if bias else []))
    for a, e in zip(*outs):
        assert a.shape == e.shape
        xp.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-11)


def test_hand_case():
    # One 1-channel pixel of value 2 under a 2x2 kernel [[1, 2], [3, 4]]
    # and bias 1 writes the block [[3, 5], [7, 9]].
    x = numpy.full((1, 1, 1, 1), 2., numpy.float32)
    W = numpy.arange(1, 5, dtype=numpy.float32).reshape(1, 1, 2, 2)
    y = non_overlapping_deconvolution_2d(x, W, numpy.ones(1, numpy.float32))
    assert y.array[0, 0].tolist() == [[3, 5], [7, 9]]


@pytest.mark.parametrize('relu', [False, True])
def test_gradient_check(relu):
    rng = numpy.random.RandomState(4)
    x, W, b = rng.randn(2, 3, 2, 3), rng.randn(3, 2, 2, 2), rng.randn(2)
    gy = rng.randn(2, 2, 4, 6)
    gradient_check.check_backward(
        lambda x, W, b: non_overlapping_deconvolution_2d(x, W, b, relu),
        (x, W, b), gy, dtype=numpy.float64, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('relu', [False, True])
def test_gradient_node_computes_only_what_is_asked(relu):
    # One GEMM per tap for gx and one for gW (by hand: 2x2 kernel, 4 taps).
    from functions.deconvolution_2d import (
        NonOverlappingDeconvolution2D, NonOverlappingDeconvolution2DGrad)
    rng = numpy.random.RandomState(5)
    x, W, b = rng.randn(3, 4, 3, 5), rng.randn(4, 6, 2, 2), rng.randn(6)
    y, = NonOverlappingDeconvolution2D(relu).apply((x, W, b))
    inputs = (x, W, rng.randn(*y.shape)) + ((y.array,) if relu else ())
    full = NonOverlappingDeconvolution2DGrad((0, 1, 2)).forward(inputs)
    for indexes in [(0,), (1,), (2,), (2, 1), (0, 2), (0, 1, 2)]:
        CountsMatmul.calls = 0
        out = NonOverlappingDeconvolution2DGrad(indexes).forward(
            tuple(a.view(CountsMatmul) for a in inputs))
        assert len(out) == len(indexes)
        for i, g in zip(indexes, out):
            numpy.testing.assert_array_equal(numpy.asarray(g), full[i])
        assert CountsMatmul.calls == 4 * ((0 in indexes) + (1 in indexes))
