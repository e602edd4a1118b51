"""utils/ops/nms_cuda.py's CUDA kernels, unchanged, run on the CPU through
tests/helpers/cuda_shim and the GPU path's own launch code
(``greedy_launch`` on NumPy arrays), against ``nms._greedy_cpu``: labels,
``box_offset`` 0 and 1, limits, ties, n around the 64-box block, and every
block's threads in four schedules (OS threads; one at a time in order, in
reverse, shuffled) so that a race changes the result."""
import numpy
import pytest

from tests.helpers import cuda_shim
from utils.ops import nms, nms_cuda

SCHEDULES = list(cuda_shim.SCHEDULES)


def random_case(rng, n):
    """Boxes on a coarse grid (exact IoU ties at the threshold), some
    degenerate (x2 < x1), scores with ties."""
    xy = rng.randint(0, 30, size=(n, 2))
    wh = rng.randint(-1, 20, size=(n, 2))
    bbox = numpy.concatenate((xy, xy + wh), axis=1).astype(numpy.float32)
    score = (rng.randint(0, 8, size=n) / 8.).astype(numpy.float32)
    return bbox, score


def both(libs, schedule, bbox, score, label, thresh, limit, box_offset):
    """(shim, NumPy) kept positions in score order, as ``_nms`` calls
    them."""
    order = nms.argsort_desc(score)
    bbox = bbox[order]
    label = None if label is None else label[order].astype(numpy.int32)
    n_max = len(bbox) if limit is None else min(limit, len(bbox))
    kernels = cuda_shim.kernels(libs, 'nms', schedule, seed=len(bbox))
    got = nms_cuda.greedy_launch(numpy, kernels, bbox, label, thresh, n_max,
                             box_offset)
    return got, nms._greedy_cpu(bbox, label, thresh, n_max, box_offset)


@pytest.mark.parametrize('schedule', SCHEDULES)
@pytest.mark.parametrize('n', [1, 63, 64, 65, 129, 300])
@pytest.mark.parametrize('box_offset', [0, 1])
def test_equals_greedy_cpu(cuda_shim_libs, schedule, n, box_offset):
    rng = numpy.random.RandomState(n + 1000 * box_offset)
    bbox, score = random_case(rng, n)
    for thresh in (0.3, 0.5):
        got, want = both(cuda_shim_libs, schedule, bbox, score, None,
                         thresh, None, box_offset)
        numpy.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('schedule', SCHEDULES)
@pytest.mark.parametrize('n,limit', [(65, 1), (200, 70), (300, 5)])
def test_labels_and_limits(cuda_shim_libs, schedule, n, limit):
    rng = numpy.random.RandomState(n)
    bbox, score = random_case(rng, n)
    label = rng.randint(0, 4, size=n)
    got, want = both(cuda_shim_libs, schedule, bbox, score, label, 0.4,
                     limit, 1)
    assert len(want) == limit  # the limit binds
    numpy.testing.assert_array_equal(got, want)
    got, want = both(cuda_shim_libs, schedule, bbox, score, label, 0.4,
                     None, 1)
    assert len(got) > limit
    numpy.testing.assert_array_equal(got, want)


def test_threshold_ties_by_hand(cuda_shim_libs):
    # "+1" widths: [0, 0, 9, 9] and [0, 0, 9, 4] have areas 100 and 50 and
    # share 50: IoU 50 / (100 + 50 - 50) = 0.5 exactly, suppressed (>=).
    bbox = numpy.array([[0, 0, 9, 9], [0, 0, 9, 4], [20, 20, 29, 29]],
                       numpy.float32)
    score = numpy.array([1, 1, 1], numpy.float32)  # ties keep index order
    for schedule in SCHEDULES:
        got, want = both(cuda_shim_libs, schedule, bbox, score, None, 0.5,
                         None, 1)
        assert got.tolist() == want.tolist() == [0, 2]


def test_a_missing_barrier_shows(tmp_path):
    # The shim must see races: without nms_reduce's __syncthreads(), thread
    # 0 walks ahead of the threads that own the later words of `removed`.
    cxx = cuda_shim.compiler()
    if cxx is None:
        pytest.skip('needs a C++20 compiler (g++ >= 11) for the CUDA shim')
    source, options = nms_cuda.cuda_module()
    broken = source.replace('__syncthreads();  // removed[b]', '//')
    assert broken != source
    libs = cuda_shim.build(cxx, str(tmp_path), {'nms': broken})
    rng = numpy.random.RandomState(0)
    bbox, score = random_case(rng, 300)
    got, want = both(libs, 'forward', bbox, score, None, 0.3, None, 1)
    assert got.tolist() != want.tolist()


def test_no_boxes_never_launch(cuda_shim_libs, monkeypatch):
    # A grid of 0 blocks is an invalid launch on CUDA, as in the shim: with
    # n = 0 (or limit 0) NMS must return before any walk.
    kernels = cuda_shim.kernels(cuda_shim_libs, 'nms', 'forward')
    with pytest.raises(ValueError, match='invalid launch'):
        nms_cuda.greedy_launch(numpy, kernels, numpy.zeros((0, 4),
                                                           numpy.float32),
                               None, 0.5, 0, 1)

    def no_walk(*args):
        raise AssertionError('walked')
    monkeypatch.setattr(nms, '_greedy', no_walk)
    bbox, score = random_case(numpy.random.RandomState(0), 5)
    empty = numpy.zeros((0, 4), numpy.float32)
    assert len(nms.non_maximum_suppression(empty, 0.5)) == 0
    assert len(nms.non_maximum_suppression(bbox, 0.5, score, limit=0)) == 0
    assert len(nms.batched_nms(empty, score[:0], numpy.zeros(0, int),
                               0.5)) == 0


@pytest.mark.parametrize('schedule', ['threads', 'shuffled'])
def test_batched_walks_on_the_kernels(cuda_shim_libs, monkeypatch,
                                      schedule):
    # batched_nms in groups of at most 100 boxes, each walk on the kernels.
    rng = numpy.random.RandomState(7)
    bbox, score = random_case(rng, 400)
    label = rng.randint(0, 12, size=400)
    want = nms.batched_nms(bbox, score, label, 0.4, limit=150)
    kernels = cuda_shim.kernels(cuda_shim_libs, 'nms', schedule, seed=7)
    monkeypatch.setattr(nms, 'BATCH_BOXES', 100)
    monkeypatch.setattr(nms, '_greedy', lambda *args: nms_cuda.greedy_launch(
        numpy, kernels, *args))
    got = nms.batched_nms(bbox, score, label, 0.4, limit=150)
    assert len(kernels[0].launches) > 4  # several walks
    numpy.testing.assert_array_equal(got, want)
