"""utils/ops/boxes.py against hand-worked Detectron cases and brute force.

Each check takes the ``xp`` fixture, so it runs on NumPy and, marked
``gpu``, on CuPy; references are computed on the host, never by the code
under test.
"""
import math

import numpy
import pytest
from chainer.backends.cuda import to_cpu

from utils.ops.boxes import (BBOX_XFORM_CLIP, bbox_iou, clip_bbox,
                             decode_bbox, encode_bbox, expand_bbox,
                             xywh_to_xyxy, xyxy_to_xywh)


def random_bbox(rng, n, dtype=numpy.float32):
    """(n, 4) boxes with x2 >= x1, y2 >= y1, in [0, 100 + 60]."""
    xy = rng.uniform(0, 100, size=(n, 2))
    wh = rng.uniform(0, 60, size=(n, 2))
    return numpy.concatenate((xy, xy + wh), axis=1).astype(dtype)


@pytest.mark.parametrize('weights', [(10., 10., 5., 5.), (1., 1., 1., 1.)])
@pytest.mark.parametrize('box_offset', [0, 1])
def test_decode_inverts_encode(xp, weights, box_offset):
    rng = numpy.random.RandomState(0)
    bbox = random_bbox(rng, 50, numpy.float64)
    gt = random_bbox(rng, 50, numpy.float64)
    deltas = encode_bbox(xp.asarray(bbox), xp.asarray(gt), weights,
                         box_offset)
    assert deltas.shape == (50, 4)
    back = decode_bbox(xp.asarray(bbox), deltas, weights,
                       box_offset=box_offset)
    numpy.testing.assert_allclose(to_cpu(back), gt, rtol=0, atol=1e-9)


@pytest.mark.parametrize('box_offset, expected', [
    # w = h = 9 - 0 + 1 = 10, cx = cy = 0 + 0.5 * 10 = 5.
    # dx = 1 / 10 = 0.1 -> pred_cx = 0.1 * 10 + 5 = 6; dw = 5 log 2 / 5 ->
    # pred_w = 2 * 10 = 20; x1 = 6 - 10 = -4, x2 = 6 + 10 - 1 = 15.
    # dy = dh = 0 -> y1 = 5 - 5 = 0, y2 = 5 + 5 - 1 = 9.
    (1, [-4., 0., 15., 9.]),
    # w = h = 9, cx = cy = 4.5: pred_cx = 0.9 + 4.5 = 5.4, pred_w = 18;
    # x1 = 5.4 - 9 = -3.6, x2 = 5.4 + 9 = 14.4; y1 = 0, y2 = 9.
    (0, [-3.6, 0., 14.4, 9.]),
])
def test_decode_hand_case(xp, box_offset, expected):
    box = xp.asarray([[0., 0., 9., 9.]], dtype=numpy.float32)
    delta = xp.asarray([[1., 0., 5. * math.log(2.), 0.]], dtype=numpy.float32)
    out = decode_bbox(box, delta, (10., 10., 5., 5.), box_offset=box_offset)
    assert out.dtype == numpy.float32
    numpy.testing.assert_allclose(to_cpu(out), [expected], atol=1e-5)
    # And back: the same deltas.
    gt = xp.asarray([expected], dtype=numpy.float32)
    numpy.testing.assert_allclose(
        to_cpu(encode_bbox(box, gt, (10., 10., 5., 5.), box_offset)),
        [[1., 0., 5. * math.log(2.), 0.]], atol=1e-5)


def test_decode_clips_dw_dh(xp):
    # dw = dh = 100 is clipped to log(1000 / 16): pred_w = 62.5 * 10 = 625
    # about cx = 5: x1 = 5 - 312.5 = -307.5, x2 = 5 + 312.5 - 1 = 316.5.
    box = xp.asarray([[0., 0., 9., 9.]], dtype=numpy.float32)
    delta = xp.asarray([[0., 0., 100., 100.]], dtype=numpy.float32)
    out = to_cpu(decode_bbox(box, delta))
    numpy.testing.assert_allclose(out, [[-307.5, -307.5, 316.5, 316.5]],
                                  rtol=1e-5)
    assert math.isclose(BBOX_XFORM_CLIP, math.log(62.5))
    # Negative dw is not clipped: exp(-100) * 10 ~ 0 -> x1 = 5, x2 = 4.
    delta = xp.asarray([[0., 0., -100., 0.]], dtype=numpy.float32)
    numpy.testing.assert_allclose(to_cpu(decode_bbox(box, delta))[0, [0, 2]],
                                  [5., 4.], atol=1e-5)


def test_decode_class_specific_columns(xp):
    rng = numpy.random.RandomState(1)
    bbox = random_bbox(rng, 7)
    deltas = rng.normal(size=(7, 12)).astype(numpy.float32)
    out = to_cpu(decode_bbox(xp.asarray(bbox), xp.asarray(deltas),
                             (10., 10., 5., 5.)))
    assert out.shape == (7, 12) and out.dtype == numpy.float32
    for k in range(3):
        one = decode_bbox(xp.asarray(bbox),
                          xp.asarray(deltas[:, 4 * k:4 * k + 4]),
                          (10., 10., 5., 5.))
        numpy.testing.assert_array_equal(out[:, 4 * k:4 * k + 4], to_cpu(one))


def test_decode_zero_rows(xp):
    out = decode_bbox(xp.zeros((0, 4), numpy.float32),
                      xp.zeros((0, 8), numpy.float32))
    assert out.shape == (0, 8) and out.dtype == numpy.float32


def iou_brute_force(a, b, box_offset):
    out = numpy.zeros((len(a), len(b)))
    for n, p in enumerate(a.tolist()):
        for k, q in enumerate(b.tolist()):
            iw = min(p[2], q[2]) - max(p[0], q[0]) + box_offset
            ih = min(p[3], q[3]) - max(p[1], q[1]) + box_offset
            if iw > 0 and ih > 0:
                area_p = ((p[2] - p[0] + box_offset) *
                          (p[3] - p[1] + box_offset))
                area_q = ((q[2] - q[0] + box_offset) *
                          (q[3] - q[1] + box_offset))
                out[n, k] = iw * ih / (area_p + area_q - iw * ih)
    return out


@pytest.mark.parametrize('box_offset', [0, 1])
def test_iou_brute_force(xp, box_offset):
    rng = numpy.random.RandomState(2)
    a = random_bbox(rng, 9, numpy.float64)
    b = random_bbox(rng, 6, numpy.float64)
    b[0] = a[0]                      # identical: 1
    b[1] = [500, 500, 510, 510]      # far away: 0
    out = to_cpu(bbox_iou(xp.asarray(a), xp.asarray(b), box_offset))
    assert out.shape == (9, 6)
    numpy.testing.assert_allclose(out, iou_brute_force(a, b, box_offset),
                                  rtol=1e-12, atol=0)
    assert out[0, 0] == 1


def test_iou_hand_case(xp):
    # [0, 0, 9, 9] and [5, 0, 14, 9]: inter = (9 - 5 + 1) * 10 = 50,
    # union = 100 + 100 - 50 = 150 -> 1/3. Touching at x = 10 with "+1":
    # [10, 0, 19, 9] has iw = 9 - 10 + 1 = 0 -> 0.
    a = xp.asarray([[0., 0., 9., 9.]])
    b = xp.asarray([[5., 0., 14., 9.], [10., 0., 19., 9.], [9., 0., 9., 9.]])
    # Third: a one-pixel-wide column inside: inter = 1 * 10 = 10,
    # union = 100 + 10 - 10 = 100 -> 0.1.
    numpy.testing.assert_allclose(to_cpu(bbox_iou(a, b)),
                                  [[1. / 3., 0., 0.1]], rtol=1e-12)


def test_iou_degenerate_boxes_give_zero(xp):
    # Zero-area boxes (w = 0 with "+1": x2 = x1 - 1) intersect nothing.
    a = xp.asarray([[5., 5., 4., 4.], [0., 0., 9., 9.]], dtype=numpy.float32)
    out = to_cpu(bbox_iou(a, a))
    numpy.testing.assert_array_equal(out, [[0., 0.], [0., 1.]])


@pytest.mark.parametrize('box_offset, expected', [
    # H = 20, W = 30: x in [0, 29], y in [0, 19] with "+1".
    (1, [[0., 0., 29., 19., 3., 4., 5., 6.]]),
    (0, [[0., 0., 30., 20., 3., 4., 5., 6.]]),
])
def test_clip_bbox(xp, box_offset, expected):
    bbox = xp.asarray([[-5., -3., 40., 25., 3., 4., 5., 6.]],
                      dtype=numpy.float32)
    out = clip_bbox(bbox, (20, 30), box_offset)
    assert out.dtype == numpy.float32
    numpy.testing.assert_array_equal(to_cpu(out), expected)
    assert to_cpu(bbox)[0, 0] == -5  # input untouched


@pytest.mark.parametrize('box_offset', [0, 1])
def test_xywh_round_trip(xp, box_offset):
    rng = numpy.random.RandomState(3)
    xyxy = random_bbox(rng, 20, numpy.float64)
    back = xywh_to_xyxy(xyxy_to_xywh(xp.asarray(xyxy), box_offset), box_offset)
    numpy.testing.assert_allclose(to_cpu(back), xyxy, atol=1e-12)


def test_xywh_hand_case(xp):
    # Detectron: x2 = x1 + max(0, w - 1); w = 0 and w = 1 both give x2 = x1.
    xywh = xp.asarray([[10., 20., 5., 1.], [3., 4., 0., 2.]])
    numpy.testing.assert_array_equal(
        to_cpu(xywh_to_xyxy(xywh)), [[10., 20., 14., 20.], [3., 4., 3., 5.]])
    numpy.testing.assert_array_equal(
        to_cpu(xyxy_to_xywh(xp.asarray([[10., 20., 14., 20.]]))),
        [[10., 20., 5., 1.]])
    numpy.testing.assert_array_equal(
        to_cpu(xyxy_to_xywh(xp.asarray([[10., 20., 14., 20.]]), box_offset=0)),
        [[10., 20., 4., 0.]])


def test_expand_bbox(xp):
    # Centre (5, 10); half sizes (5, 10) * 2 -> [-5, -10, 15, 30].
    bbox = xp.asarray([[0., 0., 10., 20.]], dtype=numpy.float32)
    out = expand_bbox(bbox, 2.)
    assert out.dtype == numpy.float32
    numpy.testing.assert_array_equal(to_cpu(out), [[-5., -10., 15., 30.]])
    # Mask pasting: M = 28, scale 30 / 28 about (14.5, 14.5) for [1, 1, 28, 28]
    out = to_cpu(expand_bbox(xp.asarray([[1., 1., 28., 28.]]), 30. / 28.))
    numpy.testing.assert_allclose(
        out, [[14.5 - 13.5 * 30 / 28, 14.5 - 13.5 * 30 / 28,
               14.5 + 13.5 * 30 / 28, 14.5 + 13.5 * 30 / 28]], rtol=1e-12)
