"""functions/roi_align_2d_cuda.py's CUDA kernels, unchanged, run on the CPU
through tests/helpers/cuda_shim and the GPU path's own launch code
(``forward_gpu`` / ``backward_gpu`` on NumPy arrays), against the NumPy
path: ``aligned`` on and off, sampling 0 and 2, float32 and float64, boxes
outside the map, empty and NaN boxes, several images, the last image's last
row and column, and an image offset past 2^31 elements. The shim surrounds
every array with NaN guards, so a read past an array shows in the result.
"""
import numpy
import pytest

from functions import roi_align_2d_cpu, roi_align_2d_cuda
from tests.helpers import cuda_shim

SCHEDULES = list(cuda_shim.SCHEDULES)


@pytest.fixture
def shim(cuda_shim_libs, monkeypatch):
    """Route ``roi_align_2d_cuda``'s kernels to the shim; returns a
    function that sets the schedule."""
    def use(schedule, seed=0):
        kernels = {dtype: cuda_shim.kernels(cuda_shim_libs,
                                            'roi_align_2d ' + dtype,
                                            schedule, seed)
                   for dtype in ('float32', 'float64')}
        monkeypatch.setattr(roi_align_2d_cuda, '_kernels', kernels.get)
    return use


def rois_and_indices(rng, n_images, height, width, scale):
    """Random boxes (partly outside, x1 > x2, small and large), then empty,
    NaN and edge boxes, in input pixels; image indices cover every image,
    the edge boxes the last."""
    h, w = height / scale, width / scale
    c = rng.uniform([-0.2 * w, -0.2 * h], [1.2 * w, 1.2 * h], (24, 2))
    size = rng.uniform(-0.1, 2.5, (24, 2)) * [w, h]
    rois = numpy.concatenate([c - size / 2, c + size / 2], axis=1)
    rois[::3] = numpy.round(rois[::3])
    nan = numpy.nan
    special = [[3, 3, 3, 3], [2, 5, 2, 5],                     # empty
               [nan, 0, 3, 3], [0, nan, 3, 3], [nan] * 4,      # NaN
               [0, 0, nan, 3], [0, 0, 3, nan],
               [-50, -50, -20, -20], [4 * w, 0, 5 * w, h],     # outside
               [w - 2, h - 2, w - 1, h - 1], [w - 1, 0, w, h],  # edge
               [0, h - 1, w, h + 3]]
    rois = numpy.concatenate([rois, special]).astype(numpy.float32)
    idx = rng.randint(0, n_images, len(rois)).astype(numpy.int32)
    idx[-3:] = n_images - 1
    return rois, idx


@pytest.mark.parametrize('dtype', [numpy.float32, numpy.float64])
@pytest.mark.parametrize('ratio', [0, 2])
@pytest.mark.parametrize('aligned', [False, True])
def test_equals_numpy(shim, dtype, ratio, aligned):
    rng = numpy.random.RandomState(10 * ratio + aligned)
    x = rng.standard_normal((3, 4, 9, 11)).astype(dtype)
    rois, idx = rois_and_indices(rng, 3, 9, 11, 0.5)
    params = (3, 4, 0.5, ratio, aligned)
    gy = rng.standard_normal((len(rois), 4, 3, 4)).astype(dtype)
    top = roi_align_2d_cpu.forward_cpu(x, rois, idx, params)
    gx = roi_align_2d_cpu.backward_cpu(x.shape, rois, idx, gy, params)
    assert numpy.abs(top).sum() > 0 and numpy.abs(gx).sum() > 0
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    for schedule in SCHEDULES:
        shim(schedule, seed=ratio)
        got = roi_align_2d_cuda.forward_gpu(x, rois, idx, params)
        assert got.dtype == dtype
        numpy.testing.assert_allclose(got, top, rtol=tol, atol=tol)
        got = roi_align_2d_cuda.backward_gpu(x.shape, rois, idx, gy, params)
        assert got.dtype == dtype
        numpy.testing.assert_allclose(got, gx, rtol=tol, atol=tol)


def test_no_rois_never_launch(shim):
    # A grid of 0 blocks is an invalid launch: zero ROIs must not launch.
    shim('forward')
    x = numpy.ones((2, 3, 5, 5), numpy.float32)
    rois, idx = numpy.zeros((0, 4), numpy.float32), numpy.zeros(0, numpy.int32)
    params = (2, 2, 1., 0, False)
    top = roi_align_2d_cuda.forward_gpu(x, rois, idx, params)
    gx = roi_align_2d_cuda.backward_gpu(x.shape, rois, idx, top, params)
    assert top.shape == (0, 3, 2, 2) and gx.shape == x.shape
    assert not gx.any()
    assert [k.launches for k in roi_align_2d_cuda._kernels('float32')] == [
        [], []]


def test_grid_stride_loop(shim, monkeypatch):
    # With 3 blocks of 256 threads for 1536 bins, each thread does 2.
    monkeypatch.setattr(roi_align_2d_cuda, '_MAX_BLOCKS', 3)
    rng = numpy.random.RandomState(5)
    x = rng.standard_normal((2, 8, 9, 11)).astype(numpy.float32)
    rois, idx = rois_and_indices(rng, 2, 9, 11, 1.)
    rois, idx = rois[:16], idx[:16]
    gy = rng.standard_normal((16, 8, 3, 4)).astype(numpy.float32)
    params = (3, 4, 1., 0, True)
    for schedule in ('threads', 'shuffled'):
        shim(schedule)
        numpy.testing.assert_allclose(
            roi_align_2d_cuda.forward_gpu(x, rois, idx, params),
            roi_align_2d_cpu.forward_cpu(x, rois, idx, params), atol=1e-5)
        numpy.testing.assert_allclose(
            roi_align_2d_cuda.backward_gpu(x.shape, rois, idx, gy, params),
            roi_align_2d_cpu.backward_cpu(x.shape, rois, idx, gy, params),
            atol=1e-5)
        kernels = roi_align_2d_cuda._kernels('float32')
        assert kernels[0].launches == kernels[1].launches == [
            ((3, 1, 1), (256, 1, 1))]


def test_image_offset_past_2_31_elements(shim, tmp_path):
    # Image 2 of (3, 1, 32768, 32768) starts at element 2^31: a 32-bit
    # offset would wrap (and read 8 GiB before x: a crash). The 12 GiB map
    # is a sparse file; only a 16 x 16 window is written, and NumPy pools
    # the same ROI from that window.
    shape = (3, 1, 2 ** 15, 2 ** 15)
    try:
        x = numpy.memmap(str(tmp_path / 'x.f32'), numpy.float32, 'w+',
                         shape=shape)
    except OSError as e:
        pytest.skip('no 12 GiB sparse file here: {}'.format(e))
    window = numpy.random.RandomState(0).standard_normal((16, 16))
    x[2, 0, 100:116, 100:116] = window
    rois = numpy.array([[102.5, 101, 110, 112.5]], numpy.float32)
    idx = numpy.array([2], numpy.int32)
    params = (3, 2, 1., 2, False)
    want = roi_align_2d_cpu.forward_cpu(
        window[None, None].astype(numpy.float32), rois - 100,
        numpy.zeros(1, numpy.int32), params)
    assert numpy.abs(want).min() > 0
    shim('forward')
    got = roi_align_2d_cuda.forward_gpu(x, rois, idx, params)
    # float32 samples near 100 and near 0 round differently: ~1e-5.
    numpy.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
