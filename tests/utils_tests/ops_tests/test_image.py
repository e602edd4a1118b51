"""Detectron test-time resize and padding, checked on several aspect ratios
against sizes worked out by hand."""
import os

import numpy
import pytest

from utils.ops.image import (DETECTRON_PIXEL_MEANS, ImageError, prepare,
                             prepare_d2, read_image, target_scale)


@pytest.mark.parametrize('h, w, size, padded', [
    # 800 / 480 = 1.667; long side 640 * 1.667 = 1066.7 -> 1067 <= 1333.
    (480, 640, (800, 1067), (800, 1088)),
    # 800 / 300 = 2.667 would make 2667 > 1333 -> scale 1333 / 1000.
    (300, 1000, (400, 1333), (416, 1344)),
    # portrait: 800 / 600, 900 * 1.333 = 1200.
    (900, 600, (1200, 800), (1216, 800)),
    # square already at target.
    (800, 800, (800, 800), (800, 800)),
])
def test_resize_sizes(h, w, size, padded):
    img = numpy.zeros((3, h, w), numpy.float32)
    x, scale, resized = prepare(img, 800, 1333, stride=32)
    assert resized == size
    assert x.shape == (3,) + padded
    assert scale == pytest.approx(target_scale(h, w))


def test_too_thin_and_empty_images_are_image_errors():
    # 1 x 5000: scale 1333 / 5000 = 0.2666 (the long side caps it), the
    # short side 0.27 rounds to 0; 2 pixels (0.53) is the least that works.
    with pytest.raises(ImageError, match=r'5000x1 pixels .* too thin.* at '
                                         r'least 2 pixels'):
        prepare(numpy.zeros((3, 1, 5000), numpy.float32))
    x, _, size = prepare(numpy.zeros((3, 2, 5000), numpy.float32))
    assert size == (1, 1333) and x.shape == (3, 1, 1333)
    with pytest.raises(ImageError, match='empty image of 10x0 pixels'):
        prepare(numpy.zeros((3, 0, 10), numpy.float32))


def test_bgr_means_and_zero_padding():
    # A constant RGB colour becomes BGR minus Detectron's means everywhere
    # inside the resized image; the padding is exactly 0.
    img = numpy.empty((3, 30, 50), numpy.float32)
    img[0], img[1], img[2] = 10., 20., 30.
    x, scale, (rh, rw) = prepare(img, 40, 1000, stride=32)
    assert (rh, rw) == (40, 67)
    expected = numpy.array([30., 20., 10.]) - DETECTRON_PIXEL_MEANS
    numpy.testing.assert_allclose(x[:, :rh, :rw],
                                  expected[:, None, None] *
                                  numpy.ones((1, rh, rw)), rtol=1e-5)
    assert (x[:, rh:, :] == 0).all() and (x[:, :, rw:] == 0).all()


def test_read_image_errors(tmp_path):
    with pytest.raises(ImageError, match='not found'):
        read_image(str(tmp_path / 'missing.jpg'))
    bad = tmp_path / 'corrupt.jpg'
    bad.write_bytes(b'not a jpeg at all')
    with pytest.raises(ImageError, match='cannot decode'):
        read_image(str(bad))


def test_read_image_is_rgb_chw(tmp_path):
    import cv2
    bgr = numpy.zeros((4, 5, 3), numpy.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's BGR order
    path = os.path.join(str(tmp_path), 'blue.png')
    cv2.imwrite(path, bgr)
    img = read_image(path)
    assert img.shape == (3, 4, 5)
    assert (img[2] == 255).all() and (img[:2] == 0).all()


@pytest.mark.parametrize('h, w, size', [
    (480, 640, (800, 1067)),     # 640 * 800 / 480 = 1066.7 -> int(+0.5)
    (100, 1000, (133, 1333)),    # capped: 800 * 1333 / 8000 = 133.3
    (601, 400, (1202, 800)),     # 601 * 2 = 1202 (tall image)
])
def test_detectron2_resize_sizes_by_hand(h, w, size):
    img = numpy.zeros((3, h, w), numpy.float32)
    x, scale, resized = prepare_d2(img, 800, 1333, 32)
    assert resized == size
    assert x.shape[1:] == (-(-size[0] // 32) * 32, -(-size[1] // 32) * 32)
    numpy.testing.assert_allclose(scale, [size[1] / w, size[0] / h] * 2)


def test_detectron2_resize_is_pillow_on_uint8_then_float32_means():
    rng = numpy.random.RandomState(3)
    img = rng.randint(0, 256, (3, 30, 40)).astype(numpy.float32)
    mean = (103.53, 116.28, 123.675)
    x, _, (h, w) = prepare_d2(img, 45, 1000, 1, mean)
    assert (h, w) == (45, 60)
    # BGR uint8, Pillow's bilinear, then (x - mean) in float32.
    from PIL import Image
    bgr = img[::-1].transpose(1, 2, 0).astype(numpy.uint8)
    resized = numpy.asarray(Image.fromarray(bgr).resize((60, 45),
                                                        Image.BILINEAR))
    expected = resized.astype(numpy.float32) - numpy.float32(mean)
    numpy.testing.assert_array_equal(x, expected.transpose(2, 0, 1))
