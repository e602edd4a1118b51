"""ROIAlign against values worked by hand and an independent brute-force
loop over Caffe2's ``RoIAlignForward`` formula (caffe2/operators/
roi_align_op.cc; ``aligned`` as detectron2's ROIAlign_cpu.cpp).

Hand cases use the 5x5 image ``v(y, x) = 5 * y + x``. Bilinear
interpolation reproduces a linear image exactly, so a sample at ``(y, x)``
reads ``5 * y + x`` until a coordinate is clamped (``>= H - 1``) or dropped
(``> H``).
"""
import math

import numpy
import pytest

import chainer
from chainer import gradient_check
from chainer.backends import cuda
from chainer.utils import type_check

from functions import roi_align_2d_cpu
from functions.roi_align_2d import ROIAlign2D, roi_align_2d


def pool(xp, rois, outsize, sampling_ratio, aligned=False, scale=1.,
         x=None, roi_indices=None):
    """roi_align_2d on the 5x5 ``arange`` image (or ``x``), as NumPy."""
    if x is None:
        x = numpy.arange(25, dtype=numpy.float32).reshape(1, 1, 5, 5)
    rois = numpy.asarray(rois, numpy.float32).reshape(-1, 4)
    if roi_indices is None:
        roi_indices = numpy.zeros(len(rois), numpy.int32)
    y = roi_align_2d(xp.asarray(x), xp.asarray(rois),
                     xp.asarray(roi_indices), outsize, scale,
                     sampling_ratio, aligned)
    return cuda.to_cpu(y.array)


# (roi x1 y1 x2 y2, outsize, sampling_ratio, aligned, expected, derivation)
HAND_CASES = [
    # aligned: start = 1 - 0.5 = 0.5, bin 1, one sample at 0.5 + p + 0.5:
    # pixel centres y, x in {1, 2} -> 5y + x.
    ((1, 1, 3, 3), 2, 1, True, [[6, 7], [11, 12]]),
    # Detectron: samples at 1.5, 2.5; (1.5, 1.5) = (6 + 7 + 11 + 12) / 4 = 9.
    ((1, 1, 3, 3), 2, 1, False, [[9, 10], [14, 15]]),
    # one 4x4 bin, 2x2 samples at 1 and 3: (6 + 8 + 16 + 18) / 4 = 12.
    ((0, 0, 4, 4), 1, 2, False, [[12]]),
    # adaptive: roi_w 4 -> grid_w 4 (x at 0.5..3.5, mean 2), roi_h 2 ->
    # grid_h 2 (y at 0.5, 1.5, mean 1), count 8: 5 * 1 + 2 = 7.
    ((0, 0, 4, 2), 1, 0, False, [[7]]),
    # adaptive with a dropped sample: roi_w 4 -> grid_w 4, x at 2.5, 3.5,
    # 4.5 (clamped to 4), 5.5 (> W: 0); roi_h 1 -> one y at 0.5:
    # (5 + 6 + 6.5 + 0) / 4 = 4.375.
    ((2, 0, 6, 1), 1, 0, False, [[4.375]]),
    # clamp: samples 3.5 and 4.5; 4.5 has low = 4 >= H - 1, read at 4:
    # (3.5, 3.5) = 21, (3.5, 4) = 21.5, (4, 3.5) = 23.5, (4, 4) = 24.
    ((3, 3, 5, 5), 2, 1, False, [[21, 21.5], [23.5, 24]]),
    # x samples 4.5 (clamped to 4) and 5.5 (> W = 5: 0, still counted);
    # y samples 0.5, 1.5: (v(0.5, 4) + v(1.5, 4) + 0 + 0) / 4
    # = (6.5 + 11.5) / 4 = 4.5.
    ((4, 0, 6, 2), 1, 2, False, [[4.5]]),
    # x1 == x2, Detectron: sides clamped to 1, one sample at 2.5: 15.
    ((2, 2, 2, 2), 1, 0, False, [[15]]),
    # x1 == x2, aligned: roi_w 0 -> adaptive grid 0, count 1: 0.
    ((2, 2, 2, 2), 1, 0, True, [[0]]),
    # x1 == x2, aligned, ratio 2: bin 0, four samples at 1.5: 9.
    ((2, 2, 2, 2), 1, 2, True, [[9]]),
    # entirely outside (all samples > 5 or < -1): 0.
    ((10, 10, 20, 20), 2, 0, False, [[0, 0], [0, 0]]),
    ((-30, -30, -10, -10), 1, 2, True, [[0]]),
]


@pytest.mark.parametrize('roi,outsize,ratio,aligned,expected', HAND_CASES)
def test_by_hand(xp, roi, outsize, ratio, aligned, expected):
    y = pool(xp, roi, outsize, ratio, aligned)
    numpy.testing.assert_allclose(y[0, 0], expected, rtol=0, atol=1e-5)


def test_spatial_scale_and_batch_by_hand(xp):
    # scale 0.5 maps (2, 2, 6, 6) onto (1, 1, 3, 3): the Detectron case
    # above; image 1 is image 0 + 100.
    v = numpy.arange(25, dtype=numpy.float32).reshape(1, 1, 5, 5)
    x = numpy.concatenate([v, v + 100])
    y = pool(xp, [(2, 2, 6, 6), (2, 2, 6, 6)], 2, 1, scale=0.5, x=x,
             roi_indices=numpy.array([1, 0], numpy.int32))
    numpy.testing.assert_allclose(y[:, 0], [[[109, 110], [114, 115]],
                                            [[9, 10], [14, 15]]])


@pytest.mark.parametrize('roi,expected', [
    # one sample at (1.5, 1.5): a quarter to each of the four pixels.
    ((1, 1, 2, 2), {(1, 1): .25, (1, 2): .25, (2, 1): .25, (2, 2): .25}),
    # one sample at (4, 4): low = 4 >= H - 1, all weight on pixel (4, 4).
    ((3, 3, 5, 5), {(4, 4): 1.}),
])
def test_gradient_by_hand(xp, roi, expected):
    x = chainer.Variable(xp.zeros((1, 1, 5, 5), xp.float32))
    y = roi_align_2d(x, xp.asarray([roi], xp.float32),
                     xp.zeros(1, xp.int32), 1, 1., 1)
    y.grad = xp.ones_like(y.array)
    y.backward()
    want = numpy.zeros((5, 5), numpy.float32)
    for (i, j), w in expected.items():
        want[i, j] = w
    numpy.testing.assert_allclose(cuda.to_cpu(x.grad)[0, 0], want)


# ---------------------------------------------------------------------------
# Brute force: one Python loop per output bin, float64, written from the
# Caffe2 source, sharing no code with the module.

def bilinear(v, y, x):
    """Caffe2's bilinear_interpolate on v (C, H, W): (C,)."""
    height, width = v.shape[1:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return numpy.zeros(v.shape[0])
    y, x = max(y, 0.), max(x, 0.)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1. - ly, 1. - lx
    return (hy * hx * v[:, y_low, x_low] + hy * lx * v[:, y_low, x_high]
            + ly * hx * v[:, y_high, x_low] + ly * lx * v[:, y_high, x_high])


def roi_align_reference(x, rois, roi_indices, outsize, scale, ratio,
                        aligned):
    ph_n, pw_n = outsize
    top = numpy.zeros((len(rois), x.shape[1], ph_n, pw_n))
    offset = 0.5 if aligned else 0.
    for n, (x1, y1, x2, y2) in enumerate(rois.tolist()):
        sx, sy = x1 * scale - offset, y1 * scale - offset
        rw, rh = x2 * scale - offset - sx, y2 * scale - offset - sy
        if not aligned:
            rw, rh = max(rw, 1.), max(rh, 1.)
        bh, bw = rh / ph_n, rw / pw_n
        gh = ratio if ratio > 0 else math.ceil(rh / ph_n)
        gw = ratio if ratio > 0 else math.ceil(rw / pw_n)
        count = max(gh * gw, 1)
        v = x[roi_indices[n]]
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = numpy.zeros(x.shape[1])
                for iy in range(gh):
                    yy = sy + ph * bh + (iy + .5) * bh / gh
                    for ix in range(gw):
                        xx = sx + pw * bw + (ix + .5) * bw / gw
                        acc += bilinear(v, yy, xx)
                top[n, :, ph, pw] = acc / count
    return top


def random_rois(rng, n, height, width, scale):
    """Boxes in input pixels: partly outside the map, small and large
    (adaptive grids up to ~8), some with x1 > x2, every third on integers
    (so that ``roi_w / PW`` can be a whole number for ``ceil``)."""
    h, w = height / scale, width / scale
    c = rng.uniform([-0.2 * w, -0.2 * h], [1.2 * w, 1.2 * h], (n, 2))
    size = rng.uniform(-0.1, 2.5, (n, 2)) * [w, h]
    rois = numpy.concatenate([c - size / 2, c + size / 2], axis=1)
    rois[::3] = numpy.round(rois[::3])
    return rois


@pytest.mark.parametrize('ratio', [0, 2])
@pytest.mark.parametrize('aligned', [False, True])
@pytest.mark.parametrize('scale', [1., 0.5, 0.25])
def test_matches_brute_force(xp, ratio, aligned, scale):
    rng = numpy.random.default_rng(int(scale * 8) + 10 * ratio + aligned)
    x = rng.standard_normal((2, 3, 7, 9))
    rois = random_rois(rng, 10, 7, 9, scale)
    roi_indices = rng.integers(0, 2, len(rois)).astype(numpy.int32)
    y = roi_align_2d(xp.asarray(x), xp.asarray(rois), xp.asarray(roi_indices),
                     (3, 4), scale, ratio, aligned)
    expected = roi_align_reference(x, rois, roi_indices, (3, 4), scale,
                                   ratio, aligned)
    numpy.testing.assert_allclose(cuda.to_cpu(y.array), expected,
                                  rtol=1e-12, atol=1e-12)


def test_float32_matches_float64(xp):
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((2, 4, 12, 15))
    rois = random_rois(rng, 20, 12, 15, 0.5).astype(numpy.float32)
    roi_indices = rng.integers(0, 2, len(rois)).astype(numpy.int32)
    y = [cuda.to_cpu(roi_align_2d(
        xp.asarray(x.astype(dtype)), xp.asarray(rois),
        xp.asarray(roi_indices), 3, 0.5, 0).array)
        for dtype in (numpy.float32, numpy.float64)]
    assert y[0].dtype == numpy.float32 and y[1].dtype == numpy.float64
    numpy.testing.assert_allclose(y[0], y[1], rtol=1e-4, atol=1e-5)


def test_chunks_do_not_change_the_result(monkeypatch):
    # Chunking pads windows per chunk; results must not depend on it.
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((2, 3, 10, 12))
    rois = random_rois(rng, 30, 10, 12, 1.)
    roi_indices = rng.integers(0, 2, len(rois)).astype(numpy.int32)
    gy = rng.standard_normal((30, 3, 4, 4))

    def run():
        xv = chainer.Variable(x)
        y = roi_align_2d(xv, rois, roi_indices, 4, 1., 0)
        y.grad = gy
        y.backward()
        return y.array, xv.grad

    whole = run()
    monkeypatch.setattr(roi_align_2d_cpu, 'CHUNK_ELEMENTS', 1)  # 1 ROI/chunk
    for a, b in zip(whole, run()):
        numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('ratio,aligned', [(0, False), (2, True)])
def test_check_backward(xp, ratio, aligned):
    rng = numpy.random.default_rng(3)
    x = xp.asarray(rng.standard_normal((2, 2, 6, 7)))
    rois = xp.asarray(random_rois(rng, 5, 6, 7, 0.5))
    roi_indices = xp.asarray(numpy.array([0, 1, 1, 0, 1], numpy.int32))
    gy = xp.asarray(rng.standard_normal((5, 2, 2, 3)))
    ggx = xp.asarray(rng.standard_normal(x.shape))
    gradient_check.check_backward(
        lambda x: roi_align_2d(x, rois, roi_indices, (2, 3), 0.5, ratio,
                               aligned), x, gy, dtype=numpy.float64)
    gradient_check.check_double_backward(
        lambda x: roi_align_2d(x, rois, roi_indices, (2, 3), 0.5, ratio,
                               aligned), x, gy, ggx, dtype=numpy.float64)


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [numpy.float32, numpy.float64])
@pytest.mark.parametrize('ratio,aligned', [(0, False), (2, False),
                                           (0, True), (2, True)])
def test_cupy_equals_numpy(dtype, ratio, aligned):
    import cupy
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal((2, 8, 20, 30)).astype(dtype)
    rois = random_rois(rng, 40, 20, 30, 1 / 8).astype(numpy.float32)
    roi_indices = rng.integers(0, 2, len(rois)).astype(numpy.int32)
    gy = rng.standard_normal((40, 8, 7, 7)).astype(dtype)
    results = []
    for xp in (numpy, cupy):
        xv = chainer.Variable(xp.asarray(x))
        y = roi_align_2d(xv, xp.asarray(rois), xp.asarray(roi_indices), 7,
                         1 / 8, ratio, aligned)
        y.grad = xp.asarray(gy)
        y.backward()
        results.append((cuda.to_cpu(y.array), cuda.to_cpu(xv.grad)))
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    for a, b in zip(*results):
        assert a.dtype == b.dtype == dtype
        numpy.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize('ratio', [0, 2])
def test_nan_coordinates_sample_nothing(xp, ratio):
    # A NaN coordinate makes every sample that depends on it outside the
    # image (weight 0), on NumPy and CuPy alike; other ROIs are unchanged.
    nan = float('nan')
    # A NaN x2 or y2 too: CUDA's max(roi_w, 1) would make that side 1.
    rois = [[nan, 0, 3, 3], [0, nan, 3, 3], [nan, nan, nan, nan],
            [0, 0, nan, 3], [0, 0, 3, nan], [0, 0, 3, 3]]
    y = pool(xp, rois, 2, ratio)
    assert not numpy.isnan(y).any()
    numpy.testing.assert_array_equal(y[:5], 0)
    numpy.testing.assert_allclose(y[5], pool(numpy, rois[5:], 2, ratio)[0])


@pytest.mark.parametrize('n', [0, 2])
def test_zero_rois(xp, n):
    x = chainer.Variable(xp.ones((n, 3, 4, 5), xp.float32))
    y = roi_align_2d(x, xp.zeros((0, 4), xp.float32), xp.zeros(0, xp.int32),
                     (2, 3), 1., 0)
    assert y.shape == (0, 3, 2, 3) and y.dtype == numpy.float32
    y.grad = xp.zeros(y.shape, xp.float32)
    y.backward()
    assert x.grad.shape == x.shape and not cuda.to_cpu(x.grad).any()


@pytest.mark.parametrize('index', [2, -1, 7])
def test_roi_indices_out_of_range(xp, index):
    # NumPy raised IndexError for 2 and 7 and pooled image 1 for -1; the
    # CUDA kernel read outside x. Now one ValueError naming both numbers.
    x = xp.ones((2, 1, 5, 5), xp.float32)
    rois = xp.asarray([[0, 0, 3, 3]] * 3, xp.float32)
    roi_indices = xp.asarray([0, index, 1], xp.int32)
    with pytest.raises(ValueError, match=r'roi_indices must be in \[0, 2\)'
                       r'.* from {} to {}'.format(min(index, 0),
                                                  max(index, 1))):
        roi_align_2d(x, rois, roi_indices, 2, 1.)


def test_roi_indices_last_image(xp):
    # The largest valid index, N - 1, pools the last image: by hand, the
    # (1, 1, 3, 3) Detectron case of the arange image (HAND_CASES) plus 100.
    x = numpy.arange(50, dtype=numpy.float32).reshape(2, 1, 5, 5)
    x[1] = x[0] + 100
    y = pool(xp, [[1, 1, 3, 3]] * 2, 2, 1, x=x,
             roi_indices=numpy.array([1, 0], numpy.int32))
    numpy.testing.assert_allclose(y[:, 0], [[[109, 110], [114, 115]],
                                            [[9, 10], [14, 15]]], atol=1e-5)


def test_roi_indices_must_be_integers(xp):
    # The type check refuses them too, unless it is switched off.
    x = xp.ones((2, 1, 5, 5), xp.float32)
    rois = xp.asarray([[0, 0, 3, 3]], xp.float32)
    with chainer.using_config('type_check', False):
        with pytest.raises(ValueError, match='roi_indices must be integers'):
            roi_align_2d(x, rois, xp.asarray([1.], xp.float32), 2, 1.)


@pytest.mark.parametrize('kwargs,match', [
    ({'sampling_ratio': -1}, 'sampling_ratio'),
    ({'sampling_ratio': 1.5}, 'sampling_ratio'),
    ({'sampling_ratio': True}, 'sampling_ratio'),
    ({'outsize': 0}, 'outsize'),
    ({'outsize': (7, 7, 7)}, 'outsize'),
    ({'spatial_scale': 0}, 'spatial_scale'),
    ({'aligned': 1}, 'aligned'),
])
def test_bad_arguments(kwargs, match):
    args = dict(outsize=7, spatial_scale=1 / 16, sampling_ratio=0,
                aligned=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ROIAlign2D(**args)


@pytest.mark.parametrize('x_dtype,rois_shape,index_dtype', [
    (numpy.float32, (3, 5), numpy.int32),    # (R, 5) Caffe2-style rois
    (numpy.float32, (3, 4), numpy.int64),    # roi_indices must be int32
    (numpy.float32, (3, 4), numpy.float32),
    (numpy.float16, (3, 4), numpy.int32),    # float16 maps
    (numpy.float32, (2, 4), numpy.int32),    # R mismatch below
])
def test_bad_inputs(x_dtype, rois_shape, index_dtype):
    x = numpy.zeros((1, 2, 5, 5), x_dtype)
    with pytest.raises(type_check.InvalidType):
        roi_align_2d(x, numpy.zeros(rois_shape, numpy.float32),
                     numpy.zeros(3, index_dtype), 2, 1.)
