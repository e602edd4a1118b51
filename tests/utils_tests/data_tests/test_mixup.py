"""MixUp against a hand-worked case: two examples of different sizes, a
polygon instance and a bitmap instance, after a flip; the blended pixels,
boxes and masks are checked one by one."""
import numpy
import pycocotools.mask as mask_util
import pytest

from utils.data.coco_dataset import flip_example
from utils.data.mixup import MixUp, mixup_examples


def _example_a():
    """3 x 4 image of 10s; a polygon over rows 0..1, columns 1..2."""
    img = numpy.full((3, 3, 4), 10, numpy.float32)
    bbox = numpy.array([[1, 0, 2, 1]], numpy.float32)
    segms = [[numpy.array([1, 0, 3, 0, 3, 2, 1, 2], numpy.float64)]]
    return img, bbox, numpy.array([1], numpy.int32), segms


def _example_b():
    """5 x 2 image of 100s; a bitmap over rows 3..4, column 1."""
    img = numpy.full((3, 5, 2), 100, numpy.float32)
    bitmap = numpy.zeros((5, 2), bool)
    bitmap[3:5, 1] = True
    bbox = numpy.array([[1, 3, 1, 4]], numpy.float32)
    return img, bbox, numpy.array([2], numpy.int32), [bitmap]


def test_hand_case_after_a_flip():
    a = _example_a()
    f_img, f_bbox, f_segms = flip_example(a[0], a[1], a[3])
    # Box columns 1..2 -> 4 - 1 - 2 = 1 .. 2; the polygon, by Detectron's
    # rule x' = W - x - 1, to corners 0..2, i.e. columns 0..1.
    a = (f_img, f_bbox, a[2], f_segms)
    img, bbox, label, segms = mixup_examples(a, _example_b(), 0.25,
                                             fill=(1., 2., 3.))
    assert img.shape == (3, 5, 4) and img.dtype == numpy.float32
    for k, fill in enumerate((1., 2., 3.)):
        for r in range(5):
            for c in range(4):
                va = 10. if r < 3 else fill
                vb = 100. if c < 2 else fill
                assert img[k, r, c] == pytest.approx(0.25 * va + 0.75 * vb)
    numpy.testing.assert_array_equal(bbox, [[1, 0, 2, 1], [1, 3, 1, 4]])
    numpy.testing.assert_array_equal(label, [1, 2])
    rle = mask_util.frPyObjects([p.tolist() for p in segms[0]], 5, 4)
    poly_mask = mask_util.decode(mask_util.merge(rle)).astype(bool)
    expect_a = numpy.zeros((5, 4), bool)
    expect_a[0:2, 0:2] = True
    numpy.testing.assert_array_equal(poly_mask, expect_a)
    expect_b = numpy.zeros((5, 4), bool)
    expect_b[3:5, 1] = True
    numpy.testing.assert_array_equal(segms[1], expect_b)


def test_draws():
    rng, ref = numpy.random.RandomState(0), numpy.random.RandomState(0)
    mixup = MixUp(0.5)
    for _ in range(50):
        lam = mixup.draw(rng)
        if ref.rand() < 0.5:
            assert lam == ref.beta(32, 32)
        else:
            assert lam is None
    assert MixUp(0.).draw(rng) is None


def test_bad_probability():
    with pytest.raises(ValueError, match='mixup'):
        MixUp(1.5)
