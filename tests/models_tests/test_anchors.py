"""Anchors against values worked by hand from Detectron's
``detectron/modeling/generate_anchors.py`` (base window [0, 0, s-1, s-1],
area-preserving ratio enumeration with numpy rounding, then scaling)."""
import numpy

from models.anchors import generate_anchors, shifted_anchors


def test_c4_anchors_by_hand():
    a = generate_anchors(16, (32, 64, 128, 256, 512))
    assert a.shape == (15, 4)
    # ratio 0.5, size 32: base w = h = 16, centre 7.5, area 256.
    # ws = round(sqrt(256 / 0.5)) = round(22.63) = 23, hs = round(11.5) = 12
    # (round half to even); scale 32/16 = 2 -> w 46, h 24:
    # x1 = 7.5 - 0.5 * 45 = -15, y1 = 7.5 - 0.5 * 23 = -4, x2 = 30, y2 = 19.
    numpy.testing.assert_array_equal(a[0], [-15, -4, 30, 19])
    # ratio 1, size 128: w = h = 16 * 8 = 128 -> 7.5 -+ 63.5.
    numpy.testing.assert_array_equal(a[7], [-56, -56, 71, 71])
    # ratio 2, size 32: ws = round(sqrt(128)) = 11, hs = 22; x2: w 22, h 44
    # -> x1 = 7.5 - 10.5 = -3, y1 = 7.5 - 21.5 = -14.
    numpy.testing.assert_array_equal(a[10], [-3, -14, 18, 29])
    # Ratio-major: anchors 0..4 share ratio 0.5 (w > h), sizes grow.
    w = a[:, 2] - a[:, 0] + 1
    h = a[:, 3] - a[:, 1] + 1
    assert (w[:5] > h[:5]).all() and (w[10:] < h[10:]).all()
    assert (numpy.diff(w[5:10]) > 0).all()
    # Every anchor is centred at 7.5.
    numpy.testing.assert_array_equal((a[:, 0] + a[:, 2]) / 2, 7.5)


def test_fpn_level2_anchors_by_hand():
    # stride 4, size 32: base w = 4, area 16; ratio 0.5: ws = round(5.66) = 6,
    # hs = 3; scale 8 -> 48 x 24 about centre 1.5.
    a = generate_anchors(4, (32,))
    numpy.testing.assert_array_equal(
        a, [[-22, -10, 25, 13], [-14, -14, 17, 17], [-10, -22, 13, 25]])


def test_shifted_anchors_order_is_h_w_a():
    cell = generate_anchors(16, (32, 64))
    a = shifted_anchors(cell, 16, 2, 3)
    assert a.shape == (2 * 3 * 6, 4) and a.dtype == numpy.float32
    # Row (y=1, x=2, anchor 4) is cell anchor 4 shifted by (32, 16).
    numpy.testing.assert_array_equal(a[(1 * 3 + 2) * 6 + 4],
                                     cell[4] + [32, 16, 32, 16])
