"""Winograd F(2x2, 3x3) (``functions/winograd.py``) equals a brute-force
float64 convolution, and ``convolution_2d`` takes it only where the rule
says, with unchanged gradients."""
import chainer
import chainer.functions as F
import numpy
import pytest
from chainer import gradient_check

from functions import winograd
from functions.convolution_2d import convolution_2d


def brute_force(x, W, ph, pw):
    """Direct sum over (c, ky, kx) per output pixel, float64."""
    n, c, h, w = x.shape
    o = W.shape[0]
    xp = numpy.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    p, q = h + 2 * ph - 2, w + 2 * pw - 2
    y = numpy.zeros((n, o, p, q))
    for i in range(p):
        for j in range(q):
            patch = xp[:, :, i:i + 3, j:j + 3]           # (N, C, 3, 3)
            y[:, :, i, j] = numpy.tensordot(patch, W, ([1, 2, 3], [1, 2, 3]))
    return y


# (N, C, H, W), O, (ph, pw): even and odd outputs (a last half tile),
# no padding, padding on one axis, one output pixel, blocks of channels.
SHAPES = [
    ((1, 3, 7, 9), 4, (1, 1)),
    ((2, 5, 6, 5), 3, (1, 1)),
    ((2, 5, 6, 5), 3, (0, 0)),
    ((1, 4, 5, 8), 2, (0, 1)),
    ((3, 2, 9, 4), 5, (1, 0)),
    ((2, 3, 3, 3), 2, (0, 0)),
    ((2, 37, 4, 6), 35, (1, 1)),
]


@pytest.mark.parametrize('x_shape,o,pad', SHAPES)
@pytest.mark.parametrize('workers', [1, 3])
@pytest.mark.parametrize('piece_tiles', [None, 1, 5, 20])
def test_equals_brute_force_float64(x_shape, o, pad, workers, piece_tiles,
                                    monkeypatch):
    # Blocks of 1-2 channels, so that several threads take several blocks.
    monkeypatch.setattr(winograd, 'BLOCK_BYTES', 64)
    if piece_tiles:
        # Pieces of one tile, of strips of tile rows, of several images.
        monkeypatch.setattr(winograd, 'PIECE_BYTES', piece_tiles * 16 *
                            max(x_shape[1], o) * 8)
    rng = numpy.random.RandomState(0)
    x = rng.randn(*x_shape)
    W = rng.randn(o, x_shape[1], 3, 3)
    y = winograd.conv3x3(x, W, *pad, workers=workers)
    assert y.flags.c_contiguous and y.dtype == numpy.float64
    numpy.testing.assert_allclose(y, brute_force(x, W, *pad), rtol=0,
                                  atol=1e-12)


@pytest.mark.parametrize('n,th,tw,limit,expected', [
    # Small images side by side, 3 per piece, the last piece short.
    (7, 2, 3, 18, [(0, 3, 0, 2), (3, 6, 0, 2), (6, 7, 0, 2)]),
    # A large image in strips of 2 tile rows (8 tiles of 4 per row).
    (2, 5, 4, 8, [(i, i + 1, r, min(r + 2, 5)) for i in range(2)
                  for r in (0, 2, 4)]),
    # A tile row wider than the limit still makes one piece.
    (1, 2, 9, 4, [(0, 1, 0, 1), (0, 1, 1, 2)]),
])
def test_pieces_cover_every_tile_once(n, th, tw, limit, expected,
                                      monkeypatch):
    monkeypatch.setattr(winograd, 'PIECE_BYTES', limit * 16 * 4)
    got = [(i.start, i.stop, r.start, r.stop)
           for i, r in winograd.pieces(n, th, tw, 4)]
    assert got == expected


def test_hand_case():
    # A 4x4 arange image and the kernel with a single 1 at (1, 2): each
    # output is the input one row down and two columns right of it, i.e.
    # with pad 1, y[i, j] = x[i, j + 1] (0 past the right edge).
    x = numpy.arange(16.).reshape(1, 1, 4, 4)
    W = numpy.zeros((1, 1, 3, 3))
    W[0, 0, 1, 2] = 1
    y = winograd.conv3x3(x, W, 1, 1, workers=1)[0, 0]
    expected = [[1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0], [13, 14, 15, 0]]
    numpy.testing.assert_array_equal(y, expected)


def test_kernel_transform_is_g_g_gt():
    g = numpy.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    W = numpy.random.RandomState(1).randn(3, 2, 3, 3)
    u = winograd.kernel_transform(W).reshape(4, 4, 3, 2)
    for o in range(3):
        for c in range(2):
            numpy.testing.assert_allclose(u[:, :, o, c], g @ W[o, c] @ g.T,
                                          rtol=0, atol=1e-15)


def test_float32_error_is_rounding():
    # Mask-head-like sizes: the float32 result is as close to float64 as a
    # direct float32 sum (within a few ulps of the output scale).
    rng = numpy.random.RandomState(2)
    x = rng.randn(3, 64, 14, 14)
    W = rng.randn(64, 64, 3, 3) * 0.05
    ref = brute_force(x, W, 1, 1)
    y32 = winograd.conv3x3(x.astype('f'), W.astype('f'), 1, 1, workers=2)
    assert y32.dtype == numpy.float32
    scale = numpy.abs(ref).max()
    assert numpy.abs(y32 - ref).max() < 5e-6 * scale


@pytest.mark.parametrize('x_shape,w_shape,stride,pad,dtype,expected', [
    ((1, 256, 50, 76), (256, 256, 3, 3), (1, 1), (1, 1), 'f', True),
    ((100, 256, 14, 14), (256, 256, 3, 3), (1, 1), (1, 1), 'f', True),
    ((1, 128, 100, 152), (128, 128, 3, 3), (1, 1), (1, 1), 'd', True),
    ((10, 256, 14, 14), (256, 256, 3, 3), (1, 1), (1, 1), 'f', True),
    ((4, 256, 14, 14), (256, 256, 3, 3), (1, 1), (1, 1), 'f', False),
    ((1, 256, 25, 38), (256, 256, 3, 3), (1, 1), (1, 1), 'f', False),  # small
    ((1, 64, 400, 600), (64, 64, 3, 3), (1, 1), (1, 1), 'f', False),  # narrow
    ((100, 64, 14, 14), (64, 64, 3, 3), (1, 1), (1, 1), 'f', False),  # tiny
    ((1, 256, 50, 76), (256, 256, 3, 3), (2, 2), (1, 1), 'f', False),  # stride
    ((1, 256, 50, 76), (256, 256, 1, 1), (1, 1), (0, 0), 'f', False),  # 1x1
    ((1, 256, 50, 76), (256, 256, 3, 3), (1, 1), (1, 1), 'e', False),  # fp16
])
def test_worthwhile_rule(x_shape, w_shape, stride, pad, dtype, expected):
    assert winograd.worthwhile(numpy, dtype, x_shape, w_shape, stride,
                               pad) is expected


def test_worker_error_reaches_caller():
    def fail(i0, i1):
        if i0 == 3:
            raise ValueError('block 3')

    with pytest.raises(ValueError, match='block 3'):
        winograd._parallel(8, 1, 2, fail)


@pytest.mark.parametrize('relu', [False, True])
def test_convolution_2d_takes_it_with_unchanged_gradients(relu, monkeypatch):
    # Lower the size rule so that a small case goes through Winograd; the
    # forward equals chainer's, and the backward (GEMMs, as before) passes
    # a numerical gradient check.
    monkeypatch.setattr(winograd, 'MIN_CHANNELS', 1)
    monkeypatch.setattr(winograd, 'MIN_MACS', 1)
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, 'conv3x3',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = numpy.random.RandomState(3)
    x = rng.randn(2, 3, 5, 6)
    W = rng.randn(4, 3, 3, 3)
    b = rng.randn(4)
    y = convolution_2d(x, W, b, 1, 1, relu).array
    expected = F.convolution_2d(x, W, b, 1, 1).array
    if relu:
        expected = numpy.maximum(expected, 0)
    assert calls
    numpy.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    gy = rng.randn(*y.shape)
    with chainer.using_config('dtype', numpy.float64):
        gradient_check.check_backward(
            lambda x, W, b: convolution_2d(x, W, b, 1, 1, relu), (x, W, b),
            gy, dtype=numpy.float64, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('affinity,quota,expected', [
    (64, '200000 100000', 2), (64, None, 64), (4, '1000000 100000', 4)])
def test_transform_threads_start_from_the_cgroup_quota(
        tmp_path, monkeypatch, affinity, quota, expected):
    # A library user who never calls set_threads, in a 2-CPU container on
    # a 64-core machine, gets 2 transform threads, not 64.
    from functions import cpu_count
    monkeypatch.setattr(cpu_count.os, 'sched_getaffinity',
                        lambda pid: set(range(affinity)), raising=False)
    path = tmp_path / 'cpu.max'
    if quota:
        path.write_text(quota)
    monkeypatch.setattr(cpu_count, 'CGROUP_CPU_MAX', str(path))
    monkeypatch.setattr(winograd._Workers, 'count', None)
    seen = []
    parallel = winograd._parallel
    monkeypatch.setattr(winograd, '_parallel', lambda count, block, workers,
                        fn: seen.append(workers) or parallel(count, block,
                                                             workers, fn))
    rng = numpy.random.RandomState(0)
    x, W = rng.randn(1, 2, 6, 6), rng.randn(3, 2, 3, 3)
    numpy.testing.assert_allclose(winograd.conv3x3(x, W, 1, 1),
                                  brute_force(x, W, 1, 1), rtol=1e-10,
                                  atol=1e-10)
    assert seen == [expected, expected]
    winograd.set_workers(3)   # set_threads still decides
    winograd.conv3x3(x, W, 1, 1)
    assert seen[2:] == [3, 3]


@pytest.mark.parametrize('pad', [(0, 0), (1, 1), (2, 1), (1, 0), (3, 3)])
def test_input_gradient_by_winograd_equals_chainer(pad, monkeypatch):
    # gx of a 3x3 stride-1 convolution is the correlation of gy with the
    # flipped, transposed kernel, padded 2 - pad: Winograd takes it for
    # pads up to 2 (the GEMM and col2im beyond); chainer is the reference.
    monkeypatch.setattr(winograd, 'MIN_CHANNELS', 1)
    monkeypatch.setattr(winograd, 'MIN_MACS', 1)
    shapes = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, 'conv3x3', lambda x, *a, **k: shapes.append(
        x.shape) or real(x, *a, **k))
    rng = numpy.random.RandomState(7)
    x, W = rng.randn(2, 3, 6, 7), rng.randn(4, 3, 3, 3)
    y_shape = (2, 4) + tuple(s + 2 * p - 2 for s, p in zip((6, 7), pad))
    gy = rng.randn(*y_shape)
    grads = []
    for f in (convolution_2d, F.convolution_2d):
        xv, Wv = chainer.Variable(x), chainer.Variable(W)
        y = f(xv, Wv, None, 1, pad)
        y.grad = gy
        y.backward()
        grads.append((xv.grad, Wv.grad))
    ours, ref = grads
    assert ours[0].shape == x.shape
    numpy.testing.assert_allclose(ours[0], ref[0], rtol=0, atol=1e-12)
    numpy.testing.assert_allclose(ours[1], ref[1], rtol=0, atol=1e-12)
    assert shapes == [x.shape] + ([y_shape] if max(pad) <= 2 else [])
