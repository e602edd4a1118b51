"""Training targets on hand-built cases (Detectron's roi_data semantics)."""
import numpy
import pytest

from utils.ops.boxes import encode_bbox
from utils.ops.targets import (anchor_targets, bitmap_to_mask, mask_targets,
                               polygons_to_mask, sample_rois)

# Detectron's numbers (TRAIN.RPN_*, TRAIN.FG_*/BG_*), written out here.
RPN = dict(n_sample=256, fg_fraction=0.5, pos_iou=0.7, neg_iou=0.3,
           straddle=0, box_offset=1)
ROI = dict(n_sample=512, fg_fraction=0.25, fg_iou=0.5, bg_iou=(0., 0.5),
           weights=(10., 10., 5., 5.), box_offset=1)


def test_anchor_labels_by_hand():
    gt = numpy.array([[10., 10., 49., 49.]], numpy.float32)   # 40 x 40
    anchors = numpy.array([
        [10., 10., 49., 49.],    # IoU 1            -> fg
        [10., 10., 45., 49.],    # 36*40/1600 = .9  -> fg (>= .7)
        [30., 30., 69., 69.],    # 20*20/(3200-400) = .143 -> bg (< .3)
        [10., 10., 29., 49.],    # 20*40/1600 = .5  -> ignored
        [-5., 0., 20., 20.],     # crosses the left border -> ignored
        [200., 200., 239., 239.],  # IoU 0          -> bg
    ], numpy.float32)
    label, loc = anchor_targets(anchors, gt, (300, 300),
                                numpy.random.RandomState(0), **RPN)
    assert label.tolist() == [1, 1, 0, -1, -1, 0]
    numpy.testing.assert_allclose(loc[1], encode_bbox(anchors[1:2], gt)[0])
    assert (loc[[0, 2, 3, 4, 5]] == 0).all()  # anchor 0 is exact: delta 0


def test_best_anchor_is_positive_below_threshold():
    gt = numpy.array([[0., 0., 99., 99.]], numpy.float32)
    # Best IoU only 0.25 (< 0.3): still positive as the gt's best anchor.
    anchors = numpy.array([[0., 0., 49., 49.], [50., 50., 99., 74.]],
                          numpy.float32)
    label, _ = anchor_targets(anchors, gt, (100, 100),
                              numpy.random.RandomState(0), **RPN)
    assert label.tolist() == [1, 0]


def test_anchor_sampling_counts():
    rng = numpy.random.RandomState(0)
    gt = numpy.array([[0., 0., 63., 63.]], numpy.float32)
    fg = numpy.tile(gt, (300, 1))
    bg = numpy.array([[200., 200., 220., 220.]] * 500, numpy.float32)
    label, _ = anchor_targets(numpy.concatenate([fg, bg]), gt, (300, 300),
                              rng, **RPN)
    assert (label == 1).sum() == 128 and (label == 0).sum() == 128
    label, _ = anchor_targets(numpy.concatenate([fg[:10], bg]), gt,
                              (300, 300), rng, **RPN)
    assert (label == 1).sum() == 10 and (label == 0).sum() == 246


def test_no_ground_truth_all_negative():
    anchors = numpy.array([[0., 0., 9., 9.]] * 5, numpy.float32)
    label, loc = anchor_targets(anchors, numpy.zeros((0, 4), 'f'), (20, 20),
                                numpy.random.RandomState(0),
                                **dict(RPN, n_sample=3))
    assert (label == 0).sum() == 3 and (label == -1).sum() == 2


def test_roi_sampling_ratio_and_targets():
    rng = numpy.random.RandomState(0)
    gt = numpy.array([[0., 0., 99., 99.], [200., 200., 299., 299.]], 'f')
    gt_label = numpy.array([3, 7], numpy.int32)
    near = gt[0] + rng.uniform(-5, 5, (200, 4)).astype('f')     # IoU > .5
    far = numpy.array([[400., 0., 450., 50.]] * 300, 'f')       # IoU 0
    s = sample_rois(numpy.concatenate([near, far]), gt, gt_label, rng,
                    **dict(ROI, n_sample=64))
    assert len(s.rois) == 64
    assert (s.label[:16] > 0).all() and (s.label[16:] == 0).all()
    assert (s.gt_index[16:] == -1).all()
    fg = s.rois[:16]
    numpy.testing.assert_allclose(
        s.loc[:16], encode_bbox(fg, gt[s.gt_index[:16]], (10., 10., 5., 5.)),
        rtol=1e-5)
    # Ground truth boxes are candidates too: with no proposals at all the
    # two gt boxes are the foreground.
    s = sample_rois(numpy.zeros((0, 4), 'f'), gt, gt_label, rng, **ROI)
    assert s.label.tolist() == [3, 7]
    numpy.testing.assert_allclose(s.loc, 0, atol=1e-6)


def test_square_polygon_in_a_known_roi():
    # A 14-px square [7, 21) on a 28 x 28 grid.
    square = [numpy.array([7., 7., 21., 7., 21., 21., 7., 21.])]
    expected = numpy.zeros((28, 28), numpy.int32)
    expected[7:21, 7:21] = 1
    m = polygons_to_mask(square, numpy.array([0., 0., 28., 28.]), 28)
    numpy.testing.assert_array_equal(m, expected)
    # The same square in image pixels, ROI [10, 10, 66, 66] (w = 56,
    # Detectron's width without +1): (24 - 10) * 28 / 56 = 7 -> same mask.
    square = [numpy.array([24., 24., 52., 24., 52., 52., 24., 52.])]
    m = polygons_to_mask(square, numpy.array([10., 10., 66., 66.]), 28)
    numpy.testing.assert_array_equal(m, expected)


def test_bitmap_and_polygon_targets_agree():
    bitmap = numpy.zeros((60, 60), bool)
    bitmap[24:52, 24:52] = True
    box = numpy.array([10., 10., 66., 66.])
    poly = [numpy.array([24., 24., 52., 24., 52., 52., 24., 52.])]
    numpy.testing.assert_array_equal(bitmap_to_mask(bitmap, box, 28),
                                     polygons_to_mask(poly, box, 28))
    t = mask_targets([poly, bitmap], numpy.stack([box, box]),
                     numpy.array([0, 1]), 28)
    assert t.shape == (2, 28, 28) and (t[0] == t[1]).all()


@pytest.mark.parametrize('M', [14, 28])
def test_polygon_target_is_binary(M):
    tri = [numpy.array([0., 0., 30., 0., 0., 30.])]
    m = polygons_to_mask(tri, numpy.array([0., 0., 30., 30.]), M)
    assert set(numpy.unique(m)) <= {0, 1}
    assert m[0, 0] == 1 and m[-1, -1] == 0
