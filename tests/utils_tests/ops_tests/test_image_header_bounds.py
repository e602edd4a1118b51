"""Image headers are read, and their declared pixels bounded, before any
decoding (``utils.ops.image.check_image_header``)."""
import numpy
import pytest

from tests.helpers.crafted_sizes import bmp, jpeg, png
from utils.ops.image import (MAX_IMAGE_PIXELS, ImageError,
                             check_image_header, read_image)


def test_the_default_limit_is_pillows():
    # Pillow's decompression-bomb limit: 1024 * 1024 * 1024 // 4 // 3.
    assert MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3 == 89478485


@pytest.mark.parametrize('make, ext', [(png, 'png'), (jpeg, 'jpg'),
                                       (bmp, 'bmp')])
def test_a_tiny_file_declaring_a_huge_image_is_one_line(make, ext,
                                                        tmp_path):
    path = tmp_path / ('bomb.' + ext)
    path.write_bytes(make(60000, 50000))
    assert path.stat().st_size < 100
    with pytest.raises(ImageError) as e:
        read_image(str(path))
    text = str(e.value)
    assert '\n' not in text and str(path) in text
    assert '60000 x 50000 = 3000000000 pixels' in text
    assert 'limit of 89478485 (--max-image-pixels)' in text


def test_the_limit_is_inclusive_and_can_be_raised(tmp_path):
    path = tmp_path / 'big.png'
    path.write_bytes(png(10000, 9000))          # 9e7 > 89478485
    with pytest.raises(ImageError, match='90000000 pixels'):
        check_image_header(str(path))
    assert check_image_header(str(path), 90000000) == (10000, 9000)
    with pytest.raises(ImageError, match='limit of 89999999'):
        check_image_header(str(path), 89999999)


def test_a_valid_image_within_the_limit_is_decoded(tmp_path):
    pixels = numpy.arange(4 * 5 * 3, dtype=numpy.uint8).reshape(4, 5, 3)
    path = tmp_path / 'ok.png'
    path.write_bytes(png(5, 4, pixels))
    img = read_image(str(path), max_pixels=20)
    assert img.shape == (3, 4, 5) and img.dtype == numpy.float32
    numpy.testing.assert_array_equal(img.transpose(1, 2, 0), pixels)
    with pytest.raises(ImageError, match='5 x 4 = 20 pixels, more than '
                       'the limit of 19'):
        read_image(str(path), max_pixels=19)


def test_a_file_pillow_cannot_identify_is_left_to_opencv(tmp_path):
    path = tmp_path / 'noise.png'
    path.write_bytes(b'not an image at all')
    assert check_image_header(str(path)) is None
    with pytest.raises(ImageError, match='^cannot decode image'):
        read_image(str(path))
