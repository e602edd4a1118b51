"""The per-image column path runs in chunks of images below chainer's
32-bit index limit (``INDEX_LIMIT``, made small here) with the numbers of
one piece; the workspaces can be released."""
import chainer
import chainer.functions as F
import numpy
import pytest

import functions.conv_columns as cc
from functions.convolution_2d import convolution_2d


def _run(x, W, b, gy, stride, pad):
    xv, Wv, bv = (chainer.Variable(a) for a in (x, W, b))
    y = convolution_2d(xv, Wv, bv, stride, pad)
    y.grad = gy
    y.backward()
    return [y.array, xv.grad, Wv.grad, bv.grad]


@pytest.mark.parametrize('ksize,stride,pad', [(3, 2, 1), (7, 2, 3),
                                              (1, 2, 0), (3, 1, 1)])
def test_chunks_stay_below_the_limit_with_the_same_numbers(
        xp, monkeypatch, ksize, stride, pad):
    # On CuPy: chainer's im2col_gpu / col2im_gpu on each chunk.
    rng = numpy.random.RandomState(0)
    n, c, h, w = 5, 3, 8, 9
    p, q = cc.output_size(h, w, ksize, ksize, stride, stride, pad, pad)
    x, W, b, gy = (xp.asarray(rng.randn(*s)) for s in (
        (n, c, h, w), (4, c, ksize, ksize), (4,), (n, 4, p, q)))
    monkeypatch.setattr(cc, 'FOLD_BELOW', 1)     # the per-image path
    whole = _run(x, W, b, gy, stride, pad)
    # Room for two images' columns (or inputs), not three: 3 chunks.
    per_image = c * max(ksize * ksize * p * q, h * w)
    monkeypatch.setattr(cc, 'INDEX_LIMIT', 3 * per_image)
    sizes = []
    for name in ('im2col', 'col2im'):
        def recorded(a, *args, _f=getattr(cc, name)):
            sizes.append((len(a), a.size))
            return _f(a, *args)
        monkeypatch.setattr(cc, name, recorded)
    chunked = _run(x, W, b, gy, stride, pad)
    for a, e in zip(chunked, whole):
        xp.testing.assert_array_equal(a, e)
    # Independent reference: chainer's convolution.
    xp.testing.assert_allclose(
        chunked[0], F.convolution_2d(x, W, b, stride, pad).array,
        rtol=1e-12, atol=1e-12)
    # Stride 1: the forward's im2col_wide and weight_gradient_wide do not
    # call im2col.
    calls = 1 if stride == 1 and ksize > 1 else 3
    assert [m for m, _ in sizes] == [2, 2, 1] * calls
    assert all(size < cc.INDEX_LIMIT for _, size in sizes)


def test_image_chunks():
    limit = cc.INDEX_LIMIT
    # 256 channels, 3x3, 16 images at P2 of 800 x 1216: 2.2e9 elements.
    chunks = cc.image_chunks((16, 256, 200, 304), 3, 3, (200, 304), True)
    assert [(s.start, s.stop) for s in chunks] == [(0, 15), (15, 16)]
    assert 15 * 256 * 9 * 200 * 304 < limit <= 16 * 256 * 9 * 200 * 304
    assert cc.image_chunks((0, 4, 5, 5), 3, 3, (5, 5), True) == [
        slice(0, 0)]
    # One image above the limit: alone on NumPy, refused for the GPU.
    big = (2, 256, 1000, 1000)
    assert cc.image_chunks(big, 3, 3, (1000, 1000), False) == [
        slice(0, 1), slice(1, 2)]
    with pytest.raises(ValueError, match=r'im2col .*2\^31'):
        cc.image_chunks(big, 3, 3, (1000, 1000), True)


def test_release_workspaces():
    cc.release_workspaces()
    a = cc.workspace(numpy, (10, 100), numpy.float32)
    a[...] = 1
    b = cc.workspace(numpy, (4, 4), numpy.float64, 'other')
    assert cc.workspace_bytes() == a.nbytes + b.nbytes
    assert cc.release_workspaces() == 4000 + 128
    assert cc.workspace_bytes() == 0
    assert cc.workspace(numpy, (2, 3), numpy.float32).shape == (2, 3)
    cc.release_workspaces()


def test_kept_workspaces_scope():
    # Inside the scope a one-off call's release keeps the buffers; the
    # outermost scope releases them, also when it ends by an exception.
    cc.release_workspaces()
    with cc.kept_workspaces():
        cc.workspace(numpy, (250,), numpy.float32)
        with cc.kept_workspaces():
            cc.release_unless_kept()
        cc.release_unless_kept()
        assert cc.workspace_bytes() == 1000
    assert cc.workspace_bytes() == 0
    with pytest.raises(KeyError):
        with cc.kept_workspaces():
            cc.workspace(numpy, (8,), numpy.float64)
            raise KeyError
    assert cc.workspace_bytes() == 0
    cc.workspace(numpy, (4,), numpy.float32)
    cc.release_unless_kept()
    assert cc.workspace_bytes() == 0


@pytest.mark.parametrize('ksize,pad', [((3, 3), (1, 1)), ((3, 3), (0, 2)),
                                       ((2, 3), (1, 0))])
@pytest.mark.parametrize('strip_rows', [1, 2, 100])
def test_weight_gradient_wide_in_strips_equals_chainer(xp, monkeypatch,
                                                       ksize, pad,
                                                       strip_rows):
    # gW of a stride-1 convolution from strips of wide columns (one output
    # row, two, the whole image) equals chainer's convolution gradient.
    rng = numpy.random.RandomState(1)
    n, c, h, w = 2, 3, 7, 6
    kh, kw = ksize
    x, W = xp.asarray(rng.randn(n, c, h, w)), xp.asarray(
        rng.randn(4, c, kh, kw))
    Wv = chainer.Variable(W)
    ref = F.convolution_2d(chainer.Variable(x), Wv, None, 1, pad)
    gy = xp.asarray(rng.randn(*ref.shape))
    ref.grad = gy
    ref.backward()
    wp = w + 2 * pad[1]
    monkeypatch.setattr(cc, 'STRIP_BYTES', strip_rows * c * kh * kw * wp * 8)
    gW = cc.weight_gradient_wide(gy, x, kh, kw, *pad)
    xp.testing.assert_allclose(gW.reshape(W.shape), Wv.grad, rtol=1e-12,
                               atol=1e-12)
