"""The random perspective against independent expectations: a translation
gives exactly the crop's result, a zoom by 2 hand-worked boxes, masks and
bilinear pixels, a general homography the mapped vertices, OpenCV's warp
of the bitmap and a linear ramp's values; the corners move as drawn, and
D = 0 is the identity that draws nothing."""
import cv2
import numpy
import pycocotools.mask as mask_util
import pytest

from utils.data.perspective import (
    Perspective, corner_homography, map_points, warp_example)
from tests.helpers.hand_instances import FILL, H, W, example
from utils.data.random_crop import crop_example


def _raster(polys, size):
    rle = mask_util.frPyObjects([p.tolist() for p in polys], *size)
    return mask_util.decode(mask_util.merge(rle)).astype(bool)


def _matrix(a, b, tx, c, d, ty, g=0., h=0.):
    return numpy.array([[a, b, tx], [c, d, ty], [g, h, 1.]], numpy.float64)


def _bilinear(img, y, x, fill):
    """Brute-force bilinear sample of (3, H, W) ``img`` at pixel-centre
    coordinates ``(y, x)``, ``fill`` outside."""
    y0, x0 = int(numpy.floor(y)), int(numpy.floor(x))
    out = numpy.zeros(3)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            inside = 0 <= yy < img.shape[1] and 0 <= xx < img.shape[2]
            out += wy * wx * (img[:, yy, xx] if inside else
                              numpy.asarray(fill))
    return out


@pytest.mark.parametrize('window, min_visible', [
    ((2, -3, H, W), 0.), ((-1, 4, H, W), 0.5), ((0, 5, H, W), 0.),
    ((3, 1, H, W), 0.9)])
def test_translation_is_the_crop(window, min_visible):
    img, bbox, label, segms = example()
    y0, x0 = window[:2]
    out = warp_example(img, label, segms, _matrix(1, 0, -x0, 0, 1, -y0),
                       FILL, min_visible)
    expect = crop_example(img, bbox, label, segms, window, FILL, min_visible)
    numpy.testing.assert_array_equal(out[0], expect[0])
    numpy.testing.assert_array_equal(out[1], expect[1])
    numpy.testing.assert_array_equal(out[2], expect[2])
    assert len(out[3]) == len(expect[3])
    for a, b in zip(out[3], expect[3]):
        if isinstance(b, numpy.ndarray):
            numpy.testing.assert_array_equal(a, b)
        else:
            numpy.testing.assert_array_equal(_raster(a, (H, W)),
                                             _raster(b, (H, W)))


def test_zoom_by_two_hand_worked():
    img, _, label, segms = example()
    m = _matrix(2, 0, -6, 0, 2, -4)   # x' = 2x - 6, y' = 2y - 4
    # A: [2, 6] x [1, 4] -> [-2, 6] x [-2, 4], clipped to [0, 6] x [0, 4]:
    # 24 of its 48 pixels. B: pixel squares [7, 10] x [5, 7] -> [8, 14] x
    # [6, 10], inside rows 6..7, columns 8..9: 4 of 24 pixels.
    for min_visible, kept in ((0.5, [1]), (0.1, [1, 2]), (0.6, [])):
        _, c_bbox, c_label, _ = warp_example(img, label, segms, m, FILL,
                                             min_visible)
        numpy.testing.assert_array_equal(c_label, kept)
    c_img, c_bbox, c_label, c_segms = warp_example(img, label, segms, m,
                                                   FILL, 0.1)
    numpy.testing.assert_array_equal(c_bbox, [[0, 0, 5, 3], [8, 6, 9, 7]])
    assert sorted(set(map(tuple, c_segms[0][0].reshape(-1, 2)))) == [
        (0, 0), (0, 4), (6, 0), (6, 4)]
    expect = numpy.zeros((H, W), bool)
    expect[6:8, 8:10] = True
    numpy.testing.assert_array_equal(c_segms[1], expect)
    # Output pixel centre (c + 1/2, r + 1/2) comes from corner point
    # ((c + 6.5) / 2, (r + 4.5) / 2), i.e. pixel-centre (r / 2 + 1.75,
    # c / 2 + 2.75) of the input.
    for r in range(H):
        for c in range(W):
            numpy.testing.assert_allclose(
                c_img[:, r, c], _bilinear(img, r / 2 + 1.75, c / 2 + 2.75,
                                          FILL), rtol=1e-6, atol=1e-4)


def _general_case():
    """A 40 x 50 ramp image, a 10 x 10 square as a polygon and as a bitmap,
    a triangle, and a homography with rotation, shear and perspective."""
    h, w = 40, 50
    ys, xs = numpy.mgrid[:h, :w].astype(numpy.float32)
    img = numpy.stack([3 * xs + 2 * ys, 200 - xs, 50 + ys])
    bitmap = numpy.zeros((h, w), bool)
    bitmap[10:20, 10:20] = True
    square = numpy.array([10, 10, 20, 10, 20, 20, 10, 20], numpy.float64)
    triangle = numpy.array([28, 22, 44, 22, 28, 34], numpy.float64)
    m = _matrix(0.98, 0.17, 1.5, -0.16, 0.97, 6.25, 0.0011, -0.0007)
    return img, [[square], bitmap, [triangle]], m


def _mapped(m, poly):
    out = []
    for x, y in poly.reshape(-1, 2):
        u, v, t = m @ [x, y, 1.]
        out.append((u / t, v / t))
    return numpy.array(out)


def test_general_homography_polygons_bitmaps_and_boxes():
    img, segms, m = _general_case()
    c_img, c_bbox, c_label, c_segms = warp_example(
        img, numpy.array([1, 2, 3], numpy.int32), segms, m, 0., 0.25)
    numpy.testing.assert_array_equal(c_label, [1, 2, 3])
    square = _mapped(m, segms[0][0])
    assert (square > 0).all() and (square < 40).all()   # nothing clipped
    numpy.testing.assert_allclose(c_segms[0][0].reshape(-1, 2), square,
                                  rtol=1e-12)
    lo, hi = square.min(axis=0), square.max(axis=0)
    numpy.testing.assert_allclose(c_bbox[0], [lo[0], lo[1], hi[0] - 1,
                                              hi[1] - 1], rtol=1e-6)
    # The bitmap: OpenCV's nearest-neighbour warp between pixel centres.
    half = numpy.array([[1, 0, .5], [0, 1, .5], [0, 0, 1]])
    centre = numpy.linalg.inv(half) @ m @ half
    expect = cv2.warpPerspective(segms[1].astype(numpy.uint8), centre,
                                 (50, 40), flags=cv2.INTER_NEAREST) > 0
    numpy.testing.assert_array_equal(c_segms[1], expect)
    # Both forms of the square agree but for a few border pixels.
    poly = _raster(c_segms[0], (40, 50))
    assert (poly & expect).sum() / (poly | expect).sum() > 0.95
    rows, cols = numpy.nonzero(expect)
    numpy.testing.assert_array_equal(
        c_bbox[1], [cols.min(), rows.min(), cols.max(), rows.max()])
    # The triangle's box is its mapped vertices' extent; the mapped corner
    # (44, 34) of its box would push x2 2.4 pixels further.
    tri = _mapped(m, segms[2][0])
    corners = _mapped(m, numpy.array([28, 22, 44, 22, 44, 34, 28, 34.]))
    numpy.testing.assert_allclose(
        c_bbox[2], [*tri.min(axis=0), *(tri.max(axis=0) - 1)], rtol=1e-6)
    assert corners[:, 0].max() > tri[:, 0].max() + 2
    # A linear ramp stays linear under bilinear sampling: inside, each
    # pixel is the ramp at its source point, up to OpenCV's 1/32-pixel
    # coordinate grid (slope <= 5 per pixel).
    inv = numpy.linalg.inv(centre)
    checked = 0
    for r in range(0, 40, 3):
        for c in range(0, 50, 3):
            x, y = _mapped(inv, numpy.array([c, r], numpy.float64))[0]
            if 0 <= x <= 48 and 0 <= y <= 38:
                numpy.testing.assert_allclose(
                    c_img[:, r, c], [3 * x + 2 * y, 200 - x, 50 + y],
                    atol=5 / 32)
                checked += 1
    assert checked > 150


def test_corners_move_as_drawn():
    size = (40, 60)
    moves = numpy.random.RandomState(1).uniform(-9, 9, (4, 2))
    corners = numpy.array([[0, 0], [60, 0], [60, 40], [0, 40]], float)
    numpy.testing.assert_allclose(
        map_points(corner_homography(size, moves), corners),
        corners + moves, atol=1e-9)
    # Perspective(D).draw: 8 uniforms in [-D, D] times (W, H), in order.
    rng, ref = numpy.random.RandomState(5), numpy.random.RandomState(5)
    m = Perspective(0.1).draw(size, rng)
    expect = corners + ref.uniform(-0.1, 0.1, (4, 2)) * [60, 40]
    numpy.testing.assert_allclose(map_points(m, corners), expect,
                                  atol=1e-9)
    assert rng.rand() == ref.rand()


def test_moved_corners_stay_convex_below_a_quarter():
    # What makes a mapped polygon exact: for D < 1/4 the image stays on
    # the positive side of M's horizon (t > 0 at the four corners, so on
    # the whole rectangle) and the moved corners turn one way.
    rng = numpy.random.RandomState(0)
    for k in range(500):
        h, w = rng.randint(2, 800, 2)
        d = 0.2499 * (rng.choice([-1, 1], (4, 2)) if k % 2 else
                      rng.uniform(-1, 1, (4, 2)))
        m = corner_homography((h, w), d * [w, h])
        corners = numpy.array([[0, 0], [w, 0], [w, h], [0, h]], float)
        assert (corners @ m[2, :2] + m[2, 2] > 0).all()
        q = map_points(m, corners)
        e = numpy.roll(q, -1, axis=0) - q
        turns = e[:, 0] * numpy.roll(e, -1, axis=0)[:, 1] - \
            e[:, 1] * numpy.roll(e, -1, axis=0)[:, 0]
        assert (turns > 0).all()


def test_zero_is_the_identity_and_draws_nothing():
    img, bbox, label, segms = example()
    rng = numpy.random.RandomState(2)
    out = Perspective(0.)(img, bbox, label, segms, rng)
    assert out[0] is img and out[1] is bbox and out[3] is segms
    assert rng.rand() == numpy.random.RandomState(2).rand()
    # The identity matrix through the warp gives the example back.
    c_img, c_bbox, c_label, c_segms = warp_example(
        img, label, segms, numpy.eye(3), FILL, 1.)
    numpy.testing.assert_array_equal(c_img, img)
    numpy.testing.assert_array_equal(c_bbox, bbox)
    numpy.testing.assert_array_equal(c_label, label)
    numpy.testing.assert_array_equal(c_segms[0][0], segms[0][0])
    numpy.testing.assert_array_equal(c_segms[1], segms[1])


def test_empty_example():
    img = numpy.zeros((3, 4, 4), numpy.float32)
    c_img, c_bbox, c_label, c_segms = Perspective(0.1)(
        img, numpy.zeros((0, 4), numpy.float32), numpy.zeros(0, numpy.int32),
        [], numpy.random.RandomState(0))
    assert c_img.shape == (3, 4, 4) and c_bbox.shape == (0, 4)
    assert c_label.shape == (0,) and c_segms == []


@pytest.mark.parametrize('args', [(-0.01,), (0.25,), (0.1, 1.5)])
def test_bad_arguments(args):
    with pytest.raises(ValueError, match='perspective'):
        Perspective(*args)
