"""Mosaic against a hand-worked case: four examples (one flipped first),
bitmap and polygon instances, one cut by its quadrant; the canvas pixels,
boxes and masks are checked one by one, and the drawn centres."""
import numpy
import pycocotools.mask as mask_util
import pytest

from utils.data.coco_dataset import flip_example
from utils.data.mosaic import Mosaic, mosaic_examples

F = 1.   # fill


def _const(value, h, w):
    return numpy.full((3, h, w), value, numpy.float32)


def _bitmap(h, w, rows, cols):
    m = numpy.zeros((h, w), bool)
    m[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return m


def _poly(x1, y1, x2, y2):
    """A rectangle of pixel corners: covers columns x1..x2-1, rows
    y1..y2-1."""
    return [numpy.array([x1, y1, x2, y1, x2, y2, x1, y2], numpy.float64)]


def _examples():
    # 0: 6 x 8, a bitmap at rows 4..5, columns 0..2, flipped to 5..7.
    img, bbox, segms = flip_example(
        _const(10, 6, 8), numpy.array([[0, 4, 2, 5]], numpy.float32),
        [_bitmap(6, 8, (4, 5), (0, 2))])
    ex0 = (img, bbox, numpy.array([1], numpy.int32), segms)
    # 1: 4 x 4, a polygon at rows 1..3, columns 0..1 (6 pixels), running
    # on past the image's bottom edge to row 4 as annotations may (the
    # loader clipped its box).
    ex1 = (_const(20, 4, 4), numpy.array([[0, 1, 1, 3]], numpy.float32),
           numpy.array([2], numpy.int32), [_poly(0, 1, 2, 5)])
    # 2: 3 x 3, a polygon at rows 0..2, columns 1..2.
    ex2 = (_const(30, 3, 3), numpy.array([[1, 0, 2, 2]], numpy.float32),
           numpy.array([3], numpy.int32), [_poly(1, 0, 3, 3)])
    # 3: 4 x 4, a bitmap at rows 0..1, columns 0..3.
    ex3 = (_const(40, 4, 4), numpy.array([[0, 0, 3, 1]], numpy.float32),
           numpy.array([4], numpy.int32), [_bitmap(4, 4, (0, 1), (0, 3))])
    return [ex0, ex1, ex2, ex3]


def _mask(segm, size):
    if isinstance(segm, numpy.ndarray):
        return segm
    rle = mask_util.frPyObjects([p.tolist() for p in segm], *size)
    return mask_util.decode(mask_util.merge(rle)).astype(bool)


def test_hand_case():
    # Canvas 6 x 8 split at (2, 3): quadrants TL rows 0..1 x columns 0..2,
    # TR 0..1 x 3..7, BL 2..5 x 0..2, BR 2..5 x 3..7. Each example shows
    # the window next to its corner facing the centre:
    # 0 rows 4..5, columns 5..7; 1 rows 2..3, columns 0..4 (4 is past its
    # edge); 2 rows 0..3 (3 past), columns 0..2; 3 rows 0..3, columns 0..4.
    img, bbox, label, segms = mosaic_examples(_examples(), (2, 3), F, 0.5)
    expect = numpy.full((6, 8), F, numpy.float32)
    expect[0:2, 0:3] = 10
    expect[0:2, 3:7] = 20
    expect[2:5, 0:3] = 30
    expect[2:6, 3:7] = 40
    for k in range(3):
        numpy.testing.assert_array_equal(img[k], expect)
    numpy.testing.assert_array_equal(label, [1, 2, 3, 4])
    # Instance 1 keeps rows 2..3 of rows 1..3: 4 of 6 pixels >= 0.5. Its
    # polygon is cut at the image's edge: the part past it would fall in
    # the bottom-right quadrant (canvas row 2).
    numpy.testing.assert_array_equal(bbox, [[0, 0, 2, 1], [3, 0, 4, 1],
                                            [1, 2, 2, 4], [3, 2, 6, 3]])
    expect_masks = [_bitmap(6, 8, (0, 1), (0, 2)),
                    _bitmap(6, 8, (0, 1), (3, 4)),
                    _bitmap(6, 8, (2, 4), (1, 2)),
                    _bitmap(6, 8, (2, 3), (3, 6))]
    for segm, expect_mask in zip(segms, expect_masks):
        numpy.testing.assert_array_equal(_mask(segm, (6, 8)), expect_mask)
    assert isinstance(segms[0], numpy.ndarray)
    assert isinstance(segms[1], list)


def test_cut_instance_follows_the_visibility_rule():
    _, bbox, label, _ = mosaic_examples(_examples(), (2, 3), F, 0.7)
    numpy.testing.assert_array_equal(label, [1, 3, 4])   # 4/6 < 0.7
    assert bbox.shape == (3, 4)


def test_drawn_centres():
    rng = numpy.random.RandomState(0)
    mosaic = Mosaic(1.)
    for _ in range(200):
        yc, xc = mosaic.draw((40, 9), rng)
        assert 10 <= yc <= 30 and 2 <= xc <= 6
    assert mosaic.draw((1, 9), rng) is None
    assert Mosaic(0.).draw((40, 40), rng) is None


def test_bad_probability():
    with pytest.raises(ValueError, match='mosaic'):
        Mosaic(-0.1)
