"""utils/ops/nms.py against an O(n^2) greedy loop written from Detectron's
``cython_nms.pyx`` (float32 scalars, ``iou >= thresh`` suppresses), hand
cases at the threshold, and a per-class loop for ``batched_nms``.

Each check takes the ``xp`` fixture (NumPy, and CuPy marked ``gpu``); the
last tests compare CuPy with NumPy on larger inputs spanning many 64-box
blocks of the CUDA mask.
"""
import numpy
import pytest
from chainer.backends.cuda import to_cpu

from utils.ops import nms
from utils.ops.nms import batched_nms, non_maximum_suppression

f32 = numpy.float32


def iou_f32(a, b, box_offset):
    """Detectron's nms overlap, one pair, in float32 scalars."""
    off = f32(box_offset)
    area_a = (a[2] - a[0] + off) * (a[3] - a[1] + off)
    area_b = (b[2] - b[0] + off) * (b[3] - b[1] + off)
    w = max(f32(0), min(a[2], b[2]) - max(a[0], b[0]) + off)
    h = max(f32(0), min(a[3], b[3]) - max(a[1], b[1]) + off)
    inter = w * h
    with numpy.errstate(divide='ignore', invalid='ignore'):
        return inter / (area_a + area_b - inter)


def nms_brute_force(bbox, thresh, score=None, limit=None, box_offset=1):
    bbox = bbox.astype(numpy.float32)
    n = len(bbox)
    order = list(range(n))
    if score is not None:
        order = sorted(order, key=lambda i: -float(score[i]))  # stable
    suppressed = [False] * n
    keep = []
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[a + 1:]:
            if not suppressed[j] and iou_f32(bbox[i], bbox[j],
                                             box_offset) >= f32(thresh):
                suppressed[j] = True
    return keep[:limit]


def per_class_brute_force(bbox, score, label, thresh, limit=None,
                          box_offset=1):
    keep = []
    for lab in sorted(set(label.tolist())):
        idx = numpy.where(label == lab)[0]
        keep += [idx[k] for k in nms_brute_force(bbox[idx], thresh,
                                                 score[idx], None,
                                                 box_offset)]
    keep.sort(key=lambda i: (-float(score[i]), i))
    return keep[:limit]


def random_case(rng, n, integer=True):
    """Boxes on a coarse grid (exact ties in IoU), a few degenerate ones,
    and scores with ties."""
    xy = rng.randint(0, 30, size=(n, 2))
    wh = rng.randint(-1, 20, size=(n, 2))
    bbox = numpy.concatenate((xy, xy + wh), axis=1).astype(numpy.float32)
    if not integer:
        bbox += rng.uniform(0, 1, size=bbox.shape).astype(numpy.float32)
    score = (rng.randint(0, 8, size=n) / 8.).astype(numpy.float32)
    return bbox, score


def run(xp, fn, *arrays, **kwargs):
    out = fn(*[a if a is None or numpy.isscalar(a) else xp.asarray(a)
               for a in arrays], **kwargs)
    assert isinstance(out, xp.ndarray) and out.dtype == numpy.int32
    return to_cpu(out).tolist()


@pytest.mark.parametrize('thresh', [0.3, 0.5, 0.7])
@pytest.mark.parametrize('box_offset', [0, 1])
@pytest.mark.parametrize('integer', [True, False])
def test_nms_brute_force(xp, thresh, box_offset, integer):
    rng = numpy.random.RandomState(int(thresh * 10) + 7 * box_offset +
                                   integer)
    for n in (1, 5, 40):
        bbox, score = random_case(rng, n, integer)
        assert run(xp, non_maximum_suppression, bbox, thresh, score,
                   box_offset=box_offset) == nms_brute_force(
                       bbox, thresh, score, box_offset=box_offset)


def test_nms_without_score_keeps_input_order(xp):
    rng = numpy.random.RandomState(4)
    bbox, _ = random_case(rng, 30)
    assert run(xp, non_maximum_suppression, bbox, 0.5) == \
        nms_brute_force(bbox, 0.5)


def test_nms_limit(xp):
    rng = numpy.random.RandomState(5)
    bbox, score = random_case(rng, 40)
    full = nms_brute_force(bbox, 0.5, score)
    assert len(full) > 3
    for limit in (0, 1, 3, 1000):
        assert run(xp, non_maximum_suppression, bbox, 0.5, score,
                   limit=limit) == full[:limit]


def test_nms_iou_at_threshold_suppresses(xp):
    # A = [0, 0, 9, 9] (area 100) contains B = [0, 0, 4, 9] (area 50):
    # inter = 50, IoU = 50 / (100 + 50 - 50) = 0.5 exactly in float32.
    # Detectron's cython_nms drops B at thresh 0.5 (ovr >= thresh) and
    # keeps it just above. C is far away.
    bbox = numpy.array([[0, 0, 9, 9], [0, 0, 4, 9], [20, 20, 29, 29]],
                       numpy.float32)
    score = numpy.array([0.9, 0.8, 0.7], numpy.float32)
    assert run(xp, non_maximum_suppression, bbox, 0.5, score) == [0, 2]
    assert run(xp, non_maximum_suppression, bbox, 0.50001, score) == \
        [0, 1, 2]


def test_nms_suppressed_boxes_do_not_suppress(xp):
    # A, B, C slide by 5 px: IoU(A, B) = IoU(B, C) = 50 / 150 = 1/3,
    # IoU(A, C) = 0. At 0.3, A drops B, and C survives because B is gone.
    bbox = numpy.array([[0, 0, 9, 9], [5, 0, 14, 9], [10, 0, 19, 9]],
                       numpy.float32)
    score = numpy.array([0.9, 0.8, 0.7], numpy.float32)
    assert run(xp, non_maximum_suppression, bbox, 0.3, score) == [0, 2]
    assert run(xp, non_maximum_suppression, bbox, 0.34, score) == [0, 1, 2]
    # With box_offset 0 the widths are 9: inter = 4 * 9 = 36,
    # IoU = 36 / (81 + 81 - 36) = 2/7 ~ 0.286 < 0.3: all kept.
    assert run(xp, non_maximum_suppression, bbox, 0.3, score,
               box_offset=0) == [0, 1, 2]


def test_nms_score_order_and_ties(xp):
    # Identical boxes: only the best survives; equal scores keep index
    # order (stable sort), so index 1 beats index 2.
    bbox = numpy.array([[0, 0, 9, 9]] * 3, numpy.float32)
    score = numpy.array([0.5, 0.7, 0.7], numpy.float32)
    assert run(xp, non_maximum_suppression, bbox, 0.7, score) == [1]
    # Disjoint boxes come back best score first.
    bbox = numpy.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21]],
                       numpy.float32)
    assert run(xp, non_maximum_suppression, bbox, 0.5, score) == [1, 2, 0]


def test_nms_zero_and_one_box(xp):
    assert run(xp, non_maximum_suppression,
               numpy.zeros((0, 4), numpy.float32), 0.5,
               numpy.zeros((0,), numpy.float32)) == []
    assert run(xp, non_maximum_suppression,
               numpy.array([[1, 2, 3, 4]], numpy.float32), 0.5,
               numpy.array([0.3], numpy.float32)) == [0]


def test_nms_degenerate_boxes(xp):
    # Detectron does not clamp areas. Two identical zero-area boxes
    # ([5, 5, 4, 4]: w = h = 4 - 5 + 1 = 0) have inter 0 and union 0:
    # IoU = NaN, which suppresses nothing, so both stay. A box with
    # x2 < x1 - 1 (area (-1) * 10 = -10) against A: inter 0 -> IoU 0.
    bbox = numpy.array([[0, 0, 9, 9], [5, 5, 4, 4], [5, 5, 4, 4],
                        [6, 0, 4, 9]], numpy.float32)
    score = numpy.array([0.9, 0.8, 0.7, 0.6], numpy.float32)
    assert run(xp, non_maximum_suppression, bbox, 0.5, score) == \
        [0, 1, 2, 3] == nms_brute_force(bbox, 0.5, score)


@pytest.mark.parametrize('thresh', [0.3, 0.7])
def test_batched_nms_per_class_loop(xp, thresh):
    rng = numpy.random.RandomState(6)
    for n in (1, 12, 60):
        bbox, score = random_case(rng, n)
        label = rng.randint(1, 4, size=n).astype(numpy.int32)
        expected = per_class_brute_force(bbox, score, label, thresh)
        assert run(xp, batched_nms, bbox, score, label, thresh) == expected
        assert run(xp, batched_nms, bbox, score, label, thresh,
                   limit=5) == expected[:5]


def test_batched_nms_labels_never_suppress_each_other(xp):
    bbox = numpy.array([[0, 0, 9, 9]] * 4, numpy.float32)
    score = numpy.array([0.1, 0.4, 0.3, 0.2], numpy.float32)
    label = numpy.array([2, 1, 2, 1], numpy.int32)
    assert run(xp, batched_nms, bbox, score, label, 0.5) == [1, 2]
    assert run(xp, batched_nms, numpy.zeros((0, 4), numpy.float32),
               numpy.zeros(0, numpy.float32), numpy.zeros(0, numpy.int32),
               0.5) == []


def many_classes_case(rng, sizes):
    """Boxes of ``len(sizes)`` classes (labels 1.., class k has sizes[k]
    boxes) in shuffled order, within each class a ``random_case``."""
    bbox, score = random_case(rng, sum(sizes), integer=False)
    label = numpy.repeat(numpy.arange(1, len(sizes) + 1), sizes)
    return bbox, score, rng.permutation(label).astype(numpy.int32)


def one_walk(bbox, score, label, thresh, limit=None, box_offset=1):
    """The previous batched_nms: one labelled greedy walk over all boxes."""
    return nms._nms(bbox, thresh, score, label, limit, box_offset).tolist()


@pytest.mark.parametrize('batch_boxes', [1, 7, 50, nms.BATCH_BOXES])
def test_batched_nms_label_groups_equal_one_walk(xp, monkeypatch,
                                                  batch_boxes):
    # Walks of whole labels, merged, keep what one walk over all boxes and
    # a per-class loop keep, in the same order, with the limit counted
    # over all classes; labels need not be contiguous or positive.
    monkeypatch.setattr(nms, 'BATCH_BOXES', batch_boxes)
    rng = numpy.random.RandomState(batch_boxes)
    for sizes in ([1], [3, 1, 9], list(rng.randint(1, 12, size=40))):
        bbox, score, label = many_classes_case(rng, sizes)
        label = label * 3 - 7
        for box_offset in (0, 1):
            expected = per_class_brute_force(bbox, score, label, 0.5,
                                             box_offset=box_offset)
            assert one_walk(bbox, score, label, 0.5,
                            box_offset=box_offset) == expected
            for limit in (None, 0, 1, 10, 1000):
                assert run(xp, batched_nms, bbox, score, label, 0.5,
                           limit=limit, box_offset=box_offset) == \
                    expected[:limit]


def record_walks(monkeypatch):
    """Make ``_greedy_cpu`` record the labels of each walk it runs."""
    walks, greedy = [], nms._greedy_cpu

    def recording(bbox, label, *args):
        walks.append(label.copy())
        return greedy(bbox, label, *args)
    monkeypatch.setattr(nms, '_greedy_cpu', recording)
    return walks


def test_batched_nms_walks_are_bounded(monkeypatch):
    # 80 classes of 60..140 boxes (--score-thresh 0 on 140 ROIs): 8000+
    # boxes, one walk before. Now each walk takes whole classes and at most
    # BATCH_BOXES boxes (the CUDA mask grows as the square of a walk).
    rng = numpy.random.RandomState(0)
    sizes = rng.randint(60, 141, size=80)
    bbox, score, label = many_classes_case(rng, sizes)
    expected = one_walk(bbox, score, label, 0.5)
    walks = record_walks(monkeypatch)
    monkeypatch.setattr(nms, 'BATCH_BOXES', 1000)
    assert batched_nms(bbox, score, label, 0.5).tolist() == expected
    assert max(len(w) for w in walks) <= 1000
    assert sum(len(w) for w in walks) == len(bbox)
    seen = numpy.concatenate([numpy.unique(w) for w in walks])
    assert sorted(seen.tolist()) == list(range(1, 81))  # whole classes
    # One class per walk: the largest walk is the largest class.
    walks.clear()
    monkeypatch.setattr(nms, 'BATCH_BOXES', 1)
    assert batched_nms(bbox, score, label, 0.5, limit=100).tolist() == \
        expected[:100]
    assert len(walks) == 80 and max(len(w) for w in walks) == sizes.max()


def test_batched_nms_default_walk_bound(monkeypatch):
    # The default bound: 8 MiB of CUDA mask, where 80 classes of 1000 ROIs
    # in one walk took 800 MB.
    assert nms.BATCH_BOXES * -(-nms.BATCH_BOXES // 64) * 8 == 8 * 2 ** 20
    rng = numpy.random.RandomState(1)
    bbox, score, label = many_classes_case(rng, [400] * 30)
    expected = one_walk(bbox, score, label, 0.7)
    walks = record_walks(monkeypatch)
    assert batched_nms(bbox, score, label, 0.7).tolist() == expected
    assert [len(w) for w in walks] == [8000, 4000]


@pytest.mark.gpu
def test_cupy_label_groups_equal_numpy(monkeypatch):
    import cupy
    rng = numpy.random.RandomState(3)
    bbox, score, label = many_classes_case(rng, rng.randint(1, 200, 30))
    bbox *= 10
    expected = one_walk(bbox, score, label, 0.5)
    for batch_boxes in (1, 300, nms.BATCH_BOXES):
        monkeypatch.setattr(nms, 'BATCH_BOXES', batch_boxes)
        for limit in (None, 50):
            got = batched_nms(cupy.asarray(bbox), cupy.asarray(score),
                              cupy.asarray(label), 0.5, limit)
            assert cupy.asnumpy(got).tolist() == expected[:limit]


@pytest.mark.gpu
@pytest.mark.parametrize('n', [63, 64, 65, 700])
def test_cupy_equals_numpy(n):
    import cupy
    rng = numpy.random.RandomState(n)
    bbox, score = random_case(rng, n, integer=False)
    bbox *= 10  # spread over ~500 px so that many survive
    label = rng.randint(0, 5, size=n).astype(numpy.int32)
    for thresh in (0.3, 0.5, 0.7):
        for limit in (None, 50):
            expected = non_maximum_suppression(bbox, thresh, score, limit)
            got = non_maximum_suppression(cupy.asarray(bbox), thresh,
                                          cupy.asarray(score), limit)
            numpy.testing.assert_array_equal(cupy.asnumpy(got), expected)
            expected = batched_nms(bbox, score, label, thresh, limit)
            got = batched_nms(cupy.asarray(bbox), cupy.asarray(score),
                              cupy.asarray(label), thresh, limit)
            numpy.testing.assert_array_equal(cupy.asnumpy(got), expected)
