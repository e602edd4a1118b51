"""FPN level assignment (equation 1 in Detectron's form) and the pooler's
order bookkeeping."""
import chainer
import numpy
import pytest

from functions.roi_align_2d import roi_align_2d
from models.poolers import ROIPooler
from utils.ops.fpn_levels import assign_levels


def test_levels_by_hand():
    # "+1" sides: sqrt(area) = 224 -> level 4; 112 -> 3; 448 -> 5; 56 -> 2;
    # 28 -> log2(1/8) = -3 -> 1 -> clipped to 2; 2000 -> 7.16 -> 5.
    rois = numpy.array([[0, 0, 223, 223], [10, 10, 121, 121],
                        [0, 0, 447, 447], [0, 0, 55, 55], [0, 0, 27, 27],
                        [0, 0, 1999, 1999],
                        # 223 x 225 -> sqrt = 223.998 -> log2 slightly < 0,
                        # but the 1e-6 guard is not enough: level 3.
                        [0, 0, 222, 224]], numpy.float32)
    assert assign_levels(rois, 2, 5).tolist() == [4, 3, 5, 2, 2, 5, 3]


def test_level_boundary_uses_plus_one_area():
    # x2 - x1 = 223 is a 224-px box with Detectron's inclusive widths.
    assert assign_levels(numpy.array([[0, 0, 223, 223]], 'f'), 2, 5) == 4
    assert assign_levels(numpy.array([[0, 0, 223, 223]], 'f'), 2, 5,
                         box_offset=0) == 3


def test_multi_level_pooling_keeps_roi_order():
    rng = numpy.random.RandomState(0)
    scales = (1 / 4., 1 / 8., 1 / 16., 1 / 32.)
    feats = [rng.rand(2, 3, 256 // int(1 / s), 256 // int(1 / s))
             .astype(numpy.float32) for s in scales]
    # sqrt areas 31, 501, 121, 56 -> levels 2, 5, 3, 2.
    rois = numpy.array([[0, 0, 30, 30], [0, 0, 500, 500], [10, 10, 130, 130],
                        [5, 5, 60, 60]], numpy.float32)
    roi_indices = numpy.array([0, 1, 1, 0], numpy.int32)
    pooler = ROIPooler(7, scales, 2)
    out = pooler([chainer.Variable(f) for f in feats], rois, roi_indices)
    levels = assign_levels(rois, 2, 5)
    assert levels.tolist() == [2, 5, 3, 2]
    for i, lvl in enumerate(levels):
        expected = roi_align_2d(feats[lvl - 2], rois[i:i + 1],
                                roi_indices[i:i + 1], 7, scales[lvl - 2], 2)
        numpy.testing.assert_allclose(out.array[i], expected.array[0],
                                      rtol=1e-6)


def test_pooler_gradient_flows_to_each_level():
    scales = (1 / 4., 1 / 8.)
    feats = [chainer.Variable(numpy.ones((1, 2, 128, 128), 'f')),
             chainer.Variable(numpy.ones((1, 2, 64, 64), 'f'))]
    # sqrt areas 21 -> level 2, 401 -> 4.8 -> clipped to 3.
    rois = numpy.array([[0, 0, 20, 20], [0, 0, 400, 400]], 'f')
    assert assign_levels(rois, 2, 3).tolist() == [2, 3]
    out = ROIPooler(2, scales, 2, k_min=2)(feats, rois,
                                           numpy.zeros(2, numpy.int32))
    out.grad = numpy.ones(out.shape, 'f')
    out.backward()
    # Each ROI's 2x2x2 outputs of weight 1 land on its own level.
    assert feats[0].grad.sum() == pytest.approx(8.)
    assert feats[1].grad.sum() == pytest.approx(8.)
