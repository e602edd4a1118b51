"""Grouping ROIs by FPN level and restoring their order, shared by the
Chainer pooler and the onnxruntime predictor."""
import numpy

from utils.ops.array_module import get_array_module
from utils.ops.fpn_levels import assign_levels, group_by_level


def test_groups_and_restore_by_brute_force():
    rng = numpy.random.RandomState(0)
    xy = rng.uniform(0, 300, (40, 2))
    wh = rng.uniform(1, 300, (40, 2))
    rois = numpy.hstack((xy, xy + wh)).astype(numpy.float32)
    idx, restore = group_by_level(rois, 2, 4)
    levels = assign_levels(rois, 2, 5)
    for k, i in enumerate(idx):
        assert i.tolist() == [r for r in range(40) if levels[r] == 2 + k]
    # Rows pooled level by level, then restored: the rois' own order.
    grouped = numpy.concatenate([rois[i] for i in idx])
    numpy.testing.assert_array_equal(grouped[restore], rois)


def test_an_empty_level_and_no_rois():
    # Level 2 (small), level 4 (224 px), none of levels 3 and 5.
    rois = numpy.array([[0, 0, 223, 223], [0, 0, 9, 9], [5, 5, 228, 228]],
                       numpy.float32)
    idx, restore = group_by_level(rois, 2, 4)
    assert [i.tolist() for i in idx] == [[1], [], [0, 2], []]
    assert restore.tolist() == [1, 0, 2]
    idx, restore = group_by_level(numpy.zeros((0, 4), numpy.float32), 2, 4)
    assert [len(i) for i in idx] == [0, 0, 0, 0] and len(restore) == 0


def test_array_module_without_chainer():
    assert get_array_module(numpy.zeros(1)) is numpy
    assert get_array_module([1.], 2.) is numpy


def test_a_nan_roi_goes_to_the_finest_level():
    # Before, the NaN row got no level: restore was one row short (NumPy
    # raised IndexError; CuPy would have wrapped the index silently).
    rois = numpy.array([[0, 0, 223, 223], [numpy.nan, 0, 9, 9],
                        [0, 0, 9, numpy.nan]], numpy.float32)
    assert assign_levels(rois, 2, 5).tolist() == [4, 2, 2]
    idx, restore = group_by_level(rois, 2, 4)
    assert [i.tolist() for i in idx] == [[1, 2], [], [0], []]
    assert restore.tolist() == [2, 0, 1]
