"""The random window against hand-worked cases: a polygon instance and a
bitmap (RLE) instance go through the flip and then a crop, and their
boxes and masks are checked pixel by pixel; the visibility rule, zoom out,
detectron2's box offset and the drawn windows' bounds."""
import numpy
import pycocotools.mask as mask_util
import pytest

from utils.data.coco_dataset import flip_example
from tests.helpers.hand_instances import FILL, W, example
from utils.data.random_crop import RandomCrop, clip_polygon, crop_example


def _raster(segm, size):
    """(H, W) bool of a polygon list (pycocotools) or the bitmap itself."""
    if isinstance(segm, numpy.ndarray):
        return segm
    rle = mask_util.frPyObjects([p.tolist() for p in segm], *size)
    return mask_util.decode(mask_util.merge(rle)).astype(bool)


def _box_mask(h, w, rows, cols):
    m = numpy.zeros((h, w), bool)
    m[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return m


def test_polygon_through_flip_and_crop():
    img, bbox, label, segms = example()
    f_img, f_bbox, f_segms = flip_example(img, bbox, segms)
    # Flipped (W = 10): A's box at columns 4..7 and, by Detectron's rule
    # for polygons (x' = W - x - 1, flip_segms), its polygon one pixel to
    # the left, at columns 3..6; B at columns 0..2. The window rows 1..5,
    # columns 4..7 holds 9 of the polygon's 12 pixels and none of B's.
    out = crop_example(f_img, f_bbox, label, f_segms, (1, 4, 5, 4), FILL,
                       min_visible=0.75)
    c_img, c_bbox, c_label, c_segms = out
    numpy.testing.assert_array_equal(c_label, [1])
    # A's box: columns 4..7 -> 0..3, rows 1..3 -> 0..2.
    numpy.testing.assert_array_equal(c_bbox, [[0, 0, 3, 2]])
    numpy.testing.assert_array_equal(_raster(c_segms[0], (5, 4)),
                                     _box_mask(5, 4, (0, 2), (0, 2)))
    # Pixel (r, c) of the crop is pixel (r + 1, W - 1 - (c + 4)) of img.
    for r in range(5):
        for c in range(4):
            numpy.testing.assert_array_equal(c_img[:, r, c],
                                             img[:, r + 1, W - 1 - (c + 4)])


def test_bitmap_through_flip_and_a_window_past_the_left_edge():
    img, bbox, label, segms = example()
    f_img, f_bbox, f_segms = flip_example(img, bbox, segms)
    # Window rows 4..7, columns -1..3: column 0 is outside (fill); B
    # (rows 5..6, columns 0..2) -> rows 1..2, columns 1..3; A is outside.
    c_img, c_bbox, c_label, c_segms = crop_example(
        f_img, f_bbox, label, f_segms, (4, -1, 4, 5), FILL)
    numpy.testing.assert_array_equal(c_label, [2])
    numpy.testing.assert_array_equal(c_bbox, [[1, 1, 3, 2]])
    assert c_segms[0].dtype == bool
    numpy.testing.assert_array_equal(c_segms[0],
                                     _box_mask(4, 5, (1, 2), (1, 3)))
    numpy.testing.assert_array_equal(c_img[:, :, 0],
                                     numpy.array(FILL)[:, None] *
                                     numpy.ones((3, 4)))
    for r in range(4):
        for c in range(1, 5):
            numpy.testing.assert_array_equal(c_img[:, r, c],
                                             img[:, r + 4, W - 1 - (c - 1)])


def test_visibility_rule():
    img, bbox, label, segms = example()
    window = (0, 3, 8, 7)   # columns 3..9: 9 of A's 12 pixels, all of B
    for min_visible, kept in ((0.75, [1, 2]), (0.76, [2]), (0., [1, 2])):
        _, c_bbox, c_label, _ = crop_example(img, bbox, label, segms,
                                             window, 0, min_visible)
        numpy.testing.assert_array_equal(c_label, kept)
    # Only A's last column (5) inside: a box of "+1" width 1 (x2 == x1) is
    # degenerate, as the loader says, and goes whatever min_visible.
    _, c_bbox, c_label, _ = crop_example(img, bbox, label, segms,
                                         (0, 5, 5, 2), 0, 0.)
    assert len(c_label) == 0 and c_bbox.shape == (0, 4)


def test_zoom_out_keeps_everything_and_pads_with_fill():
    img, bbox, label, segms = example()
    c_img, c_bbox, c_label, c_segms = crop_example(
        img, bbox, label, segms, (-2, -3, 12, 15), FILL, 1.)
    numpy.testing.assert_array_equal(c_label, label)
    numpy.testing.assert_array_equal(c_bbox, bbox + [3, 2, 3, 2])
    numpy.testing.assert_array_equal(c_img[:, 2:10, 3:13], img)
    outside = numpy.ones((12, 15), bool)
    outside[2:10, 3:13] = False
    for k in range(3):
        assert (c_img[k][outside] == FILL[k]).all()
    numpy.testing.assert_array_equal(_raster(c_segms[0], (12, 15)),
                                     _box_mask(12, 15, (3, 5), (5, 8)))
    numpy.testing.assert_array_equal(c_segms[1],
                                     _box_mask(12, 15, (7, 8), (10, 12)))


def test_detectron2_boxes_clip_to_the_window_width():
    img, _, label, segms = example()
    bbox = numpy.array([[2, 1, 6, 4], [7, 5, 10, 7]], numpy.float32)
    f_img, f_bbox, f_segms = flip_example(img, bbox, segms, box_offset=0)
    # A mirrored: (4, 1, 8, 4); shifted by (3, 1) and clipped to [0, 4].
    _, c_bbox, c_label, _ = crop_example(f_img, f_bbox, label, f_segms,
                                         (1, 3, 5, 4), box_offset=0)
    numpy.testing.assert_array_equal(c_label, [1])
    numpy.testing.assert_array_equal(c_bbox, [[1, 0, 4, 3]])


def test_empty_example():
    img = numpy.zeros((3, 4, 4), numpy.float32)
    c_img, c_bbox, c_label, c_segms = crop_example(
        img, numpy.zeros((0, 4), numpy.float32),
        numpy.zeros(0, numpy.int32), [], (1, 1, 2, 2))
    assert c_img.shape == (3, 2, 2) and c_bbox.shape == (0, 4)
    assert c_label.shape == (0,) and c_segms == []


@pytest.mark.parametrize('scale_range', [(0.3, 1.), (1., 2.), (0.5, 1.5)])
def test_drawn_windows(scale_range):
    crop = RandomCrop(scale_range)
    rng = numpy.random.RandomState(0)
    offsets = set()
    for _ in range(300):
        y0, x0, h, w = crop.draw((40, 60), rng)
        f = h / 40.
        assert scale_range[0] - 0.02 <= f <= scale_range[1] + 0.02
        assert abs(w - f * 60) <= 1.5   # one factor for both sides
        for off, n, size in ((y0, h, 40), (x0, w, 60)):
            if n <= size:   # a crop lies inside the image
                assert 0 <= off <= size - n
            else:           # a zoom-out window holds it
                assert size - n <= off <= 0
        offsets.add((y0, x0))
    assert len(offsets) > 100


@pytest.mark.parametrize('args', [((0., 1.),), ((1., 0.5),),
                                  ((0.5, 1.), 1.5)])
def test_bad_arguments(args):
    with pytest.raises(ValueError, match='random crop'):
        RandomCrop(*args)


def _shoelace(poly):
    x, y = poly[0::2], poly[1::2]
    return 0.5 * abs(numpy.dot(x, numpy.roll(y, -1)) -
                     numpy.dot(y, numpy.roll(x, -1)))


def test_clip_polygon_hand_cases():
    square = numpy.array([0, 0, 4, 0, 4, 4, 0, 4], numpy.float64)
    out = clip_polygon(square, (1, 1, 3, 5))
    assert sorted(map(tuple, out.reshape(-1, 2))) == [
        (1, 1), (1, 4), (3, 1), (3, 4)]
    # A right triangle (0,0) (4,0) (0,4) cut at x <= 2: the trapezoid
    # (0,0) (2,0) (2,2) (0,4), area 6.
    tri = numpy.array([0, 0, 4, 0, 0, 4], numpy.float64)
    out = clip_polygon(tri, (0, 0, 2, 10))
    assert sorted(map(tuple, out.reshape(-1, 2))) == [
        (0, 0), (0, 4), (2, 0), (2, 2)]
    assert _shoelace(out) == pytest.approx(6)
    assert len(clip_polygon(square, (5, 5, 6, 6))) == 0
    numpy.testing.assert_array_equal(clip_polygon(square, (-1, -1, 9, 9)),
                                     square)


def test_clip_polygon_of_a_concave_shape_matches_its_pixels():
    # A "U" of 6 x 5 pixels with a 2 x 3 notch, cut by a rectangle that
    # splits both arms: pixel by pixel, the cut polygon is the shape's
    # pixels inside the rectangle.
    u = numpy.array([1, 1, 3, 1, 3, 4, 5, 4, 5, 1, 7, 1, 7, 6, 1, 6],
                    numpy.float64)
    full = _raster([u], (8, 9))
    rect = (2, 0, 9, 5)
    cut = _raster([clip_polygon(u, rect)], (8, 9))
    expect = full.copy()
    expect[5:, :] = False
    expect[:, :2] = False
    numpy.testing.assert_array_equal(cut, expect)
