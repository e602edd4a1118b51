"""Per-class NMS and the per-image cap against an independent brute force."""
import numpy

from utils.ops.detections import suppress


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
