"""Per-class NMS and the per-image cap against an independent brute force."""
import chainer.functions as F
import numpy
import pytest

from utils.ops.detections import (box_detections, sigmoid, softmax,
                                  suppress, thresholds_of)
from utils.ops.boxes import clip_bbox, decode_bbox


def _iou(a, b):
    w = max(0., min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0., min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = w * h
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _brute(bbox, prob, score_thresh, nms_thresh, limit):
    """Detections (class, score, box) in Detectron's order: by class, then
    by score, ties in row order."""
    dets = []
    for j in range(1, prob.shape[1]):
        cand = sorted((i for i in range(len(prob))
                       if prob[i, j] > score_thresh),
                      key=lambda i: -prob[i, j])
        kept = []
        for i in cand:
            box = bbox[i, 4 * j:4 * j + 4]
            if all(_iou(box, bbox[k, 4 * j:4 * j + 4]) < nms_thresh
                   for k in kept):
                kept.append(i)
        dets += [(j, prob[i, j], tuple(bbox[i, 4 * j:4 * j + 4]))
                 for i in kept]
    if limit and len(dets) > limit:
        th = sorted(d[1] for d in dets)[-limit]
        dets = [d for d in dets if d[1] >= th]
    return dets


def _random_class_boxes(rng, R, K1, extent):
    """(R, 4 * K1) float32 boxes, corners in [0, extent), sides 5-45."""
    xy = rng.rand(R, K1, 2) * extent
    wh = rng.rand(R, K1, 2) * 40 + 5
    bbox = numpy.concatenate([xy, xy + wh], axis=2).reshape(R, 4 * K1)
    return bbox.astype(numpy.float32)


def _rows(dets):
    """(label, score, box) triples as plain Python numbers."""
    return [(int(j), float(sc), tuple(float(v) for v in box))
            for j, sc, box in dets]


def test_matches_brute_force():
    rng = numpy.random.RandomState(0)
    for trial in range(5):
        R, K1 = 40, 4
        bbox = _random_class_boxes(rng, R, K1, 80)
        logits = rng.randn(R, K1) * 2
        prob = (numpy.exp(logits) / numpy.exp(logits).sum(1, keepdims=True)
                ).astype(numpy.float32)
        b, lb, s = suppress(bbox, prob, 0.05, 0.5, 15)
        got = sorted(_rows(zip(lb, s, b)))
        want = _rows(sorted(_brute(bbox, prob, 0.05, 0.5, 15)))
        assert got == want


def test_order_by_class_then_score_ties_in_row_order():
    rng = numpy.random.RandomState(1)
    for trial in range(5):
        R, K1 = 30, 4
        bbox = _random_class_boxes(rng, R, K1, 60)
        # Scores in eighths: many ties, also at the cap.
        prob = (rng.randint(0, 8, size=(R, K1)) / 8.).astype(numpy.float32)
        for limit in (0, 10):
            b, lb, s = suppress(bbox, prob, 0.1, 0.5, limit)
            got = _rows(zip(lb, s, b))
            want = _rows(_brute(bbox, prob, 0.1, 0.5, limit))
            assert got == want


def test_cap_keeps_ties_and_background_never_detected():
    # 4 distant boxes of class 1, scores .9 .8 .8 .7; limit 2 -> the 2nd
    # best score is .8, and both .8 boxes are kept (Detectron's >=).
    boxes = numpy.array([[0, 0, 9, 9], [20, 0, 29, 9], [40, 0, 49, 9],
                         [60, 0, 69, 9]], numpy.float32)
    bbox = numpy.tile(boxes, (1, 2))
    prob = numpy.array([[.1, .9], [.2, .8], [.2, .8], [.3, .7]], numpy.float32)
    b, lb, s = suppress(bbox, prob, 0.05, 0.5, 2)
    numpy.testing.assert_allclose(sorted(s), [.8, .8, .9])
    assert set(lb.tolist()) == {1}


def test_no_detection():
    b, lb, s = suppress(numpy.zeros((3, 8), 'f'),
                        numpy.full((3, 2), 0.01, 'f'), 0.05, 0.5, 100)
    assert b.shape == (0, 4) and lb.shape == (0,) and s.shape == (0,)


def test_sigmoid_and_softmax_are_chainers_numbers():
    """The predictor without chainer applies the same formulas: equal
    float32 numbers, not just close ones."""
    x = numpy.random.RandomState(0).normal(0, 5, (7, 5)).astype('f')
    numpy.testing.assert_array_equal(sigmoid(x), F.sigmoid(x).array)
    numpy.testing.assert_array_equal(softmax(x), F.softmax(x).array)
    numpy.testing.assert_allclose(
        softmax(x), numpy.exp(x) / numpy.exp(x).sum(1, keepdims=True),
        rtol=1e-5)


def test_box_detections_is_decode_clip_suppress():
    rng = numpy.random.RandomState(1)
    rois = numpy.sort(rng.uniform(0, 100, (6, 4)), axis=1).astype('f')
    rois = rois[:, [0, 2, 1, 3]]
    cls_score = rng.normal(0, 2, (6, 3)).astype('f')
    bbox_pred = rng.normal(0, 0.5, (6, 12)).astype('f')
    got = box_detections(rois, cls_score, bbox_pred, 2., (40, 60),
                         (10., 10., 5., 5.), 0.05, 0.5, 100)
    prob = numpy.exp(cls_score) / numpy.exp(cls_score).sum(1, keepdims=True)
    bbox = clip_bbox(decode_bbox(rois / 2., bbox_pred, (10., 10., 5., 5.)),
                     (40, 60))
    want = suppress(bbox, prob.astype('f'), 0.05, 0.5, 100)
    assert len(got[0]) == len(want[0]) > 0
    for g, w in zip(got, want):
        numpy.testing.assert_allclose(g, w, rtol=1e-6)


def test_thresholds_of():
    assert thresholds_of('visualize') == (0.7, 0.3, 100)
    assert thresholds_of({'score_thresh': 0, 'nms_thresh': 1,
                          'limit': 5}) == (0., 1., 5)
    with pytest.raises(ValueError, match='evaluate'):
        thresholds_of('fast')
