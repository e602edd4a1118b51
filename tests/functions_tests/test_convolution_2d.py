"""``convolution_2d`` (NCHW GEMM) equals chainer's convolution forward and
backward, on NumPy and (marked gpu) CuPy, for the kernels Mask R-CNN uses."""
import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import gradient_check

from functions.convolution_2d import (Convolution2DGEMM,
                                      Convolution2DGEMMGrad, convolution_2d)
from models.conv import Convolution2D
from tests.helpers.gemm_counter import CountsMatmul

# (N, C, H, W), (O, kh, kw), stride, pad, bias
CASES = [
    ((1, 3, 9, 11), (4, 7, 7), 2, 3, False),   # ResNet stem
    ((2, 4, 7, 9), (5, 3, 3), 1, 1, True),     # 3x3, FPN output, RPN
    ((1, 4, 8, 8), (3, 3, 3), 2, 1, False),    # strided 3x3
    ((2, 6, 7, 9), (4, 1, 1), 1, 0, True),     # 1x1: no im2col
    ((1, 6, 7, 9), (4, 1, 1), 2, 0, False),    # strided 1x1 (branch1)
    ((1, 3, 5, 5), (2, 1, 1), 1, 1, True),     # 1x1 with padding
    ((3, 2, 6, 4), (2, 2, 3), (2, 1), (0, 1), True),
    ((1, 2, 6, 5), (3, 2, 3), 1, (0, 2), True),  # stride 1: padded width
    ((2, 3, 4, 3), (2, 3, 3), 1, 0, False),      # no padding at all
]


def _check_equals_chainer(xp, x_shape, w_shape, stride, pad, bias):
    rng = numpy.random.RandomState(0)
    o, kh, kw = w_shape
    x = xp.asarray(rng.randn(*x_shape))
    W = xp.asarray(rng.randn(o, x_shape[1], kh, kw))
    b = xp.asarray(rng.randn(o)) if bias else None
    ref = F.convolution_2d(x, W, b, stride, pad)
    gy = xp.asarray(rng.randn(*ref.shape))
    outs = []
    for f in (convolution_2d, F.convolution_2d):
        xv, Wv = chainer.Variable(x), chainer.Variable(W)
        bv = chainer.Variable(b) if bias else None
        y = f(xv, Wv, bv, stride, pad)
        y.grad = gy
        y.backward()
        outs.append([y.array, xv.grad, Wv.grad] + ([bv.grad] if bias else []))
    assert outs[0][0].flags.c_contiguous and outs[0][2].flags.c_contiguous
    for a, e in zip(*outs):
        assert a.shape == e.shape
        xp.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize('x_shape,w_shape,stride,pad,bias', CASES)
def test_equals_chainer_convolution(xp, x_shape, w_shape, stride, pad,
                                    bias):
    _check_equals_chainer(xp, x_shape, w_shape, stride, pad, bias)


@pytest.mark.parametrize('fold_below', [1, 1 << 30])
@pytest.mark.parametrize('x_shape,w_shape,stride,pad,bias', CASES)
def test_both_column_layouts(xp, monkeypatch, fold_below, x_shape, w_shape,
                             stride, pad, bias):
    # The heads (many images, few pixels) fold the images into one GEMM,
    # the backbone (few images, many pixels) runs one GEMM per image; each
    # kernel, stride and padding gives chainer's numbers both ways.
    import functions.conv_columns as cc
    monkeypatch.setattr(cc, 'FOLD_BELOW', fold_below)
    x_shape = (max(3, x_shape[0]),) + x_shape[1:]
    _check_equals_chainer(xp, x_shape, w_shape, stride, pad, bias)


@pytest.mark.parametrize('fold_below', [1, 1 << 30])
@pytest.mark.parametrize('ksize,stride,pad', [(3, 1, 1), (1, 1, 0),
                                              (3, 2, 1)])
def test_no_images(xp, monkeypatch, fold_below, ksize, stride, pad):
    # The mask head of an image without detections sees zero ROIs.
    import functions.conv_columns as cc
    monkeypatch.setattr(cc, 'FOLD_BELOW', fold_below)
    x = chainer.Variable(xp.zeros((0, 3, 6, 5)))
    W = chainer.Variable(xp.ones((4, 3, ksize, ksize)))
    b = chainer.Variable(xp.ones(4))
    y = convolution_2d(x, W, b, stride, pad, relu=True)
    assert y.shape == F.convolution_2d(x, W, b, stride, pad).shape
    y.grad = xp.zeros(y.shape)
    y.backward()
    assert x.grad.shape == x.shape
    assert (W.grad == 0).all() and (b.grad == 0).all()


def test_hand_case():
    # 3x3 ones kernel on a 3x3 arange with pad 1: the centre output is the
    # sum 0 + ... + 8 = 36, the corner 0 + 1 + 3 + 4 = 8.
    x = numpy.arange(9, dtype=numpy.float32).reshape(1, 1, 3, 3)
    y = convolution_2d(x, numpy.ones((1, 1, 3, 3), numpy.float32), pad=1)
    assert y.array[0, 0, 1, 1] == 36 and y.array[0, 0, 0, 0] == 8


@pytest.mark.parametrize('stride,pad,ksize', [(1, 1, 3), (2, 0, 1)])
def test_gradient_check(stride, pad, ksize):
    rng = numpy.random.RandomState(1)
    x = rng.randn(2, 3, 5, 6)
    W = rng.randn(2, 3, ksize, ksize)
    b = rng.randn(2)
    gy = rng.randn(*F.convolution_2d(x, W, b, stride, pad).shape)
    gradient_check.check_backward(
        lambda x, W, b: convolution_2d(x, W, b, stride, pad), (x, W, b), gy,
        dtype=numpy.float64, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize('fold_below', [1, 1 << 30])
def test_relu_in_place_equals_relu_after(xp, monkeypatch, fold_below):
    import functions.conv_columns as cc
    monkeypatch.setattr(cc, 'FOLD_BELOW', fold_below)
    rng = numpy.random.RandomState(6)
    x = xp.asarray(rng.randn(2, 3, 5, 6))
    W = xp.asarray(rng.randn(4, 3, 3, 3))
    b = xp.asarray(rng.randn(4))
    gy = xp.asarray(rng.randn(2, 4, 5, 6))
    outs = []
    for f in (lambda x, W, b: convolution_2d(x, W, b, 1, 1, relu=True),
              lambda x, W, b: F.relu(F.convolution_2d(x, W, b, 1, 1))):
        xv, Wv, bv = (chainer.Variable(a) for a in (x, W, b))
        y = f(xv, Wv, bv)
        y.grad = gy
        y.backward()
        outs.append([y.array, xv.grad, Wv.grad, bv.grad])
    assert (outs[1][0] == 0).mean() > 0.2   # the ReLU cuts a good part
    for a, e in zip(*outs):
        xp.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-11)


def test_relu_gradient_check():
    rng = numpy.random.RandomState(7)
    x, W, b = rng.randn(2, 3, 5, 6), rng.randn(2, 3, 3, 3), rng.randn(2)
    gy = rng.randn(2, 2, 5, 6)
    gradient_check.check_backward(
        lambda x, W, b: convolution_2d(x, W, b, 1, 1, relu=True), (x, W, b),
        gy, dtype=numpy.float64, atol=1e-6, rtol=1e-6)


def test_float32_and_the_link():
    rng = numpy.random.RandomState(2)
    x = rng.randn(1, 3, 6, 6).astype(numpy.float32)
    for args in ((3, 4, 3, 1, 1), (3, 4, 1, 2, 0), (None, 4, 1)):
        link = Convolution2D(*args)
        y = link(x)   # initialises a lazy W first
        assert y.dtype == numpy.float32 and link._uses_gemm()
        numpy.testing.assert_allclose(
            y.array, F.convolution_2d(x, link.W, link.b, link.stride,
                                      link.pad).array, rtol=1e-5, atol=1e-5)
    dilated = Convolution2D(3, 4, 3, 1, 2, dilate=2)
    assert not dilated._uses_gemm() and dilated(x).shape == (1, 4, 6, 6)


def test_deconvolution_link_paths():
    from models.conv import Deconvolution2D
    x = numpy.random.RandomState(4).randn(1, 3, 4, 4).astype(numpy.float32)
    fast = Deconvolution2D(3, 2, 2, 2)
    assert fast._non_overlapping()
    numpy.testing.assert_allclose(
        fast(x).array, F.deconvolution_2d(x, fast.W, fast.b, 2).array,
        rtol=1e-5, atol=1e-6)
    overlapping = Deconvolution2D(3, 2, 3, 2, 1)
    assert not overlapping._non_overlapping()
    assert overlapping(x).shape == (1, 2, 7, 7)


@pytest.mark.parametrize('size,ksize,pad', [(7, 1, 0), (7, 3, 1),
                                            (14, 3, 1)])
def test_weight_gradient_gemms_do_not_grow_with_rois(size, ksize, pad):
    # The heads' convolutions see N = the ROIs: the backward pass must be
    # a fixed number of GEMMs, not one per ROI (issue #15).
    def gemms(n):
        rng = numpy.random.RandomState(0)
        x, gy = rng.randn(n, 4, size, size), rng.randn(n, 3, size, size)
        W = rng.randn(3, 4, ksize, ksize)
        node = Convolution2DGEMM(1, pad)
        node.apply((x, W))
        CountsMatmul.calls = 0
        gx, gW = Convolution2DGEMMGrad(node, (0, 1)).forward(
            (x.view(CountsMatmul), W.view(CountsMatmul),
             gy.view(CountsMatmul)))
        # gW against chainer's, so that the counted path is the right one.
        xv, Wv = chainer.Variable(x), chainer.Variable(W)
        y = F.convolution_2d(xv, Wv, pad=pad)
        y.grad = gy
        y.backward()
        numpy.testing.assert_allclose(numpy.asarray(gW), Wv.grad,
                                      rtol=1e-10)
        return CountsMatmul.calls

    assert gemms(8) == gemms(200) <= 2


def _counting(monkeypatch, names):
    """Count the calls of ``functions.conv_columns`` functions ``names``."""
    import functions.conv_columns as cc
    calls = dict.fromkeys(names, 0)
    for name in names:
        def counted(*args, _name=name, _f=getattr(cc, name)):
            calls[_name] += 1
            return _f(*args)
        monkeypatch.setattr(cc, name, counted)
    return calls


@pytest.mark.parametrize('fold_below', [1, 1 << 30])
@pytest.mark.parametrize('ksize,stride,pad', [(3, 1, 1), (7, 2, 3),
                                              (1, 2, 0)])
def test_gradient_node_computes_only_what_is_asked(monkeypatch, fold_below,
                                                   ksize, stride, pad):
    # gx is GEMMs and a col2im, gW an im2col (wide strips at stride 1 per
    # image) and GEMMs, gb a sum: with N images, N GEMMs each per image or
    # 1 each folded (by hand).
    import functions.conv_columns as cc
    monkeypatch.setattr(cc, 'FOLD_BELOW', fold_below)
    rng = numpy.random.RandomState(3)
    n = 3
    x, W = rng.randn(n, 4, 9, 8), rng.randn(5, 4, ksize, ksize)
    node = Convolution2DGEMM(stride, pad)
    y, = node.apply((x, W, rng.randn(5)))
    gy = rng.randn(*y.shape)
    gemms_each = 1 if cc.folds(n, *y.shape[2:]) else n
    wide = gemms_each == n and stride == 1 and ksize > 1
    full = Convolution2DGEMMGrad(node, (0, 1, 2)).forward((x, W, gy))
    calls = _counting(monkeypatch, ['im2col', 'im2col_folded', 'col2im',
                                    'col2im_folded', 'weight_gradient_wide'])
    for indexes in [(0,), (1,), (2,), (1, 2), (2, 0), (0, 1, 2)]:
        for key in calls:
            calls[key] = 0
        CountsMatmul.calls = 0
        out = Convolution2DGEMMGrad(node, indexes).forward(
            (x.view(CountsMatmul), W.view(CountsMatmul),
             gy.view(CountsMatmul)))
        assert len(out) == len(indexes)
        for i, g in zip(indexes, out):
            numpy.testing.assert_array_equal(numpy.asarray(g), full[i])
        assert calls['col2im'] + calls['col2im_folded'] == (0 in indexes)
        assert calls['im2col'] + calls['im2col_folded'] + calls[
            'weight_gradient_wide'] == (1 in indexes)
        # (weight_gradient_wide's GEMMs take fresh arrays, not counted.)
        assert CountsMatmul.calls == gemms_each * (
            (0 in indexes) + (1 in indexes and not wide))


def test_backward_asks_only_for_inputs_that_need_a_gradient(monkeypatch):
    # An input that requires no gradient (the image, a frozen stage's
    # output) costs no col2im; W's gradient is still chainer's.
    rng = numpy.random.RandomState(5)
    x, W, b = rng.randn(2, 3, 8, 7), rng.randn(4, 3, 3, 3), rng.randn(4)
    Wv, bv = chainer.Variable(W), chainer.Variable(b)
    Wr, br = chainer.Variable(W), chainer.Variable(b)
    calls = _counting(monkeypatch, ['col2im', 'col2im_folded'])
    y = convolution_2d(chainer.Variable(x, requires_grad=False), Wv, bv, 2, 1)
    ref = F.convolution_2d(x, Wr, br, 2, 1)
    y.grad = ref.grad = rng.randn(*y.shape)
    y.backward()
    ref.backward()
    assert calls == {'col2im': 0, 'col2im_folded': 0}
    numpy.testing.assert_allclose(Wv.grad, Wr.grad, rtol=1e-12)
    numpy.testing.assert_allclose(bv.grad, br.grad, rtol=1e-12)


@pytest.mark.parametrize('x_shape, ksize, pad', [
    ((1, 2, 3, 8), (5, 3), 0),        # kernel taller than the input
    ((1, 2, 8, 3), (3, 5), 0),        # wider
    ((1, 2, 3, 3), (6, 6), (1, 1)),   # still larger once padded
])
def test_kernel_larger_than_the_padded_input_is_a_type_error(x_shape, ksize,
                                                             pad):
    # Chainer refuses it too ("Height in the output should be positive");
    # without the check ours gave a ValueError (negative dimensions, a
    # broadcast) or an empty (1, 4, 0, 0) output, one per case.
    x = numpy.ones(x_shape, numpy.float32)
    W = numpy.ones((4, x_shape[1]) + ksize, numpy.float32)
    with pytest.raises(chainer.utils.type_check.InvalidType):
        convolution_2d(x, W, pad=pad)


def test_kernel_as_large_as_the_padded_input_gives_one_pixel():
    # The edge of the check: H + 2 ph = kh gives a 1 x 1 output.
    rng = numpy.random.RandomState(0)
    x = rng.randn(2, 3, 4, 3).astype(numpy.float32)
    W = rng.randn(5, 3, 6, 5).astype(numpy.float32)
    y = convolution_2d(x, W, pad=1)
    assert y.shape == (2, 5, 1, 1)
    numpy.testing.assert_allclose(
        y.array, F.convolution_2d(x, W, pad=1).array, rtol=1e-5, atol=1e-5)
