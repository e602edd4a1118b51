"""Colour jitter against hand-computed pixels: brightness multiplies,
contrast and saturation blend with grey (0 gives grey), hue turns red into
green, the order of the steps matters through clipping, and the draws come
from the given generator only."""
import numpy
import pytest

from utils.data.color_jitter import (
    ColorJitter, adjust_brightness, adjust_contrast, adjust_hue,
    adjust_saturation, apply_jitter)


def _rgb(*pixels):
    """(3, 1, P) float32 image of P RGB pixels."""
    return numpy.array(pixels, numpy.float32).T[:, None, :]


def test_brightness_multiplies_and_clips():
    out = adjust_brightness(_rgb((100, 200, 50), (0, 10, 20)), 1.5)
    numpy.testing.assert_allclose(out, _rgb((150, 255, 75), (0, 15, 30)))
    assert out.dtype == numpy.float32


def test_saturation_zero_gives_grey_and_two_doubles_the_distance():
    img = _rgb((100, 200, 50), (10, 20, 30))
    g1 = 0.299 * 100 + 0.587 * 200 + 0.114 * 50    # 153.0
    g2 = 0.299 * 10 + 0.587 * 20 + 0.114 * 30      # 18.15
    numpy.testing.assert_allclose(adjust_saturation(img, 0),
                                  _rgb((g1,) * 3, (g2,) * 3), rtol=1e-6)
    # 2 x - grey: 200 - 153 = 47, 400 - 153 = 247, 100 - 153 -> 0.
    numpy.testing.assert_allclose(
        adjust_saturation(img, 2),
        _rgb((47, 247, 0), (20 - g2, 40 - g2, 60 - g2)), rtol=1e-5)


def test_contrast_blends_with_the_mean_grey_level():
    img = _rgb((100, 100, 100), (20, 20, 20))     # greys 100 and 20, mean 60
    numpy.testing.assert_allclose(adjust_contrast(img, 0),
                                  _rgb((60,) * 3, (60,) * 3), rtol=1e-6)
    # 0.5 x + 30
    numpy.testing.assert_allclose(adjust_contrast(img, 0.5),
                                  _rgb((80,) * 3, (40,) * 3), rtol=1e-6)


def test_hue_turns_primaries_and_keeps_greys():
    img = _rgb((255, 0, 0), (128, 128, 128), (255, 127.5, 0))
    # A third of a turn: red -> green; orange (30 degrees) -> 150 degrees.
    numpy.testing.assert_allclose(
        adjust_hue(img, 1 / 3),
        _rgb((0, 255, 0), (128, 128, 128), (0, 255, 127.5)), atol=1e-3)
    # -1/3: red -> blue; 1/12 turns orange into yellow (60 degrees).
    numpy.testing.assert_allclose(adjust_hue(img[:, :, :1], -1 / 3),
                                  _rgb((0, 0, 255)), atol=1e-3)
    numpy.testing.assert_allclose(adjust_hue(img[:, :, 2:], 1 / 12),
                                  _rgb((255, 255, 0)), atol=1e-3)


def test_order_matters_through_clipping():
    img = _rgb((200, 200, 200), (10, 10, 10))
    # brightness 2 first: 255 and 20, then contrast 0: their mean 137.5.
    numpy.testing.assert_allclose(
        apply_jitter(img, [2, 0, 1, 0], order=[0, 1, 2, 3]),
        _rgb((137.5,) * 3, (137.5,) * 3), rtol=1e-6)
    # contrast 0 first: the mean 105, then doubled: 210.
    numpy.testing.assert_allclose(
        apply_jitter(img, [2, 0, 1, 0], order=[1, 0, 2, 3]),
        _rgb((210,) * 3, (210,) * 3), rtol=1e-6)


def test_jitter_draws_its_factors_from_the_generator():
    jitter = ColorJitter(0.4, 0.3, 0.2, 0.1)
    img = numpy.random.RandomState(0).uniform(0, 255, (3, 5, 6)).astype(
        numpy.float32)
    rng = numpy.random.RandomState(3)
    expect_rng = numpy.random.RandomState(3)
    factors = [expect_rng.uniform(0.6, 1.4), expect_rng.uniform(0.7, 1.3),
               expect_rng.uniform(0.8, 1.2), expect_rng.uniform(-0.1, 0.1)]
    order = expect_rng.permutation(4)
    numpy.testing.assert_allclose(jitter(img, rng),
                                  apply_jitter(img, factors, order))
    assert rng.rand() == expect_rng.rand()   # no other draw


def test_zero_ranges_change_nothing_but_draw_as_many():
    img = numpy.random.RandomState(0).uniform(0, 255, (3, 4, 4)).astype(
        numpy.float32)
    a, b = numpy.random.RandomState(5), numpy.random.RandomState(5)
    numpy.testing.assert_array_equal(ColorJitter()(img, a), img)
    ColorJitter(0.4, 0.4, 0.4, 0.1)(img, b)
    assert a.rand() == b.rand()


def test_brightness_range_starts_at_zero():
    assert ColorJitter(brightness=1.5).ranges[0] == (0., 2.5)


@pytest.mark.parametrize('kwargs', [dict(brightness=-0.1), dict(hue=0.6),
                                    dict(saturation=float('nan'))])
def test_bad_ranges_are_refused(kwargs):
    with pytest.raises(ValueError, match='color jitter'):
        ColorJitter(**kwargs)
