"""Sizes a COCO file declares are bounded at load (``load_coco``), before
pycocotools rasterises anything: image sizes, polygon vertices (a vertex
near 2e7 made ``frPyObjects`` segfault) and polygon lengths; the dataset
reads every image header at construction."""
import json

import numpy
import pytest

from tests.helpers.crafted_sizes import png
from utils.data.batching import CarryReadErrors, ReadError
from utils.data.coco_dataset import COCODataset
from utils.data.coco_eval import COCOEvaluator
from utils.data.coco_json import DatasetError, load_coco

H, W = 50, 100


def _file(tmp_path, polygon, height=H, width=W):
    data = {'images': [{'id': 20, 'file_name': '20.png', 'height': height,
                        'width': width}],
            'categories': [{'id': 5, 'name': 'five'}],
            'annotations': [{'id': 7, 'image_id': 20, 'category_id': 5,
                             'bbox': [10, 20, 5, 4], 'iscrowd': 0,
                             'segmentation': [polygon]}]}
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(data))
    return str(path)


def _error(path, **kwargs):
    with pytest.raises(DatasetError) as e:
        load_coco(path, **kwargs)
    text = str(e.value)
    assert '\n' not in text and text.startswith(path + ': annotation id 7')
    return text


@pytest.mark.parametrize('vertex', [(2e7, 20), (10, -2e7), (-401, 20),
                                    (501, 20), (10, 251)])
def test_a_vertex_beyond_four_image_sides_is_refused(vertex, tmp_path):
    polygon = [10, 20, 15, 20, 15, 24] + list(vertex)
    text = _error(_file(tmp_path, polygon))
    assert 'more than 4 image sides outside the 100 x 50 image' in text
    assert text.endswith('(image 20.png)')


def test_vertices_at_four_sides_are_kept(tmp_path):
    # -4 W <= x <= 5 W and -4 H <= y <= 5 H: the bounds themselves pass.
    coco = load_coco(_file(tmp_path, [-400, -200, 500, -200, 500, 250]))
    assert coco.anns[7]['area'] > 0


def test_a_zigzag_longer_than_64_perimeters_is_refused(tmp_path):
    # 200 vertices alternating x = 0 and x = W: 200 edges of 100 pixels,
    # 20000 > 64 * (100 + 50) = 9600, all inside the image.
    zigzag = [v for i in range(100) for v in (0, i % 50, W, i % 50)]
    text = _error(_file(tmp_path, zigzag))
    assert 'its polygons are 20000 pixels long, more than 9600' in text
    # 90 vertices, about 9000 pixels long, pass.
    load_coco(_file(tmp_path, zigzag[:180]))


def test_an_image_size_beyond_the_limit_is_refused(tmp_path):
    path = _file(tmp_path, [10, 20, 15, 20, 15, 24], height=100000,
                 width=100000)
    with pytest.raises(DatasetError, match=r'image id 20 \(20\.png\) '
                       r'declares 100000 x 100000 pixels, more than the '
                       r'limit of 89478485 \(--max-image-pixels\)$'):
        load_coco(path)
    assert load_coco(path, max_pixels=10 ** 10).anns[7]['area'] > 0


def test_the_evaluator_reads_its_ground_truth_with_the_same_checks(
        tmp_path):
    path = _file(tmp_path, [10, 20, 15, 20, 15, 24, 2e7, 20])

    class Empty:
        class_ids = (5,)

    with pytest.raises(DatasetError, match='annotation id 7: polygon x '):
        COCOEvaluator(Empty(), None, path, str(tmp_path))


def _dataset_files(tmp_path, image_bytes):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'images' / '20.png').write_bytes(image_bytes)
    return _file(tmp_path, [10, 20, 15, 20, 15, 24, 10, 24]), str(
        tmp_path / 'images')


def test_the_dataset_reads_every_header_at_load(tmp_path):
    json_path, images = _dataset_files(tmp_path, png(60000, 60000))
    with pytest.raises(DatasetError, match=r'^image id 20: .*20\.png: its '
                       r'header declares 60000 x 60000 = 3600000000 '
                       r'pixels, more than the limit of 89478485'):
        COCODataset(json_path, images)


def test_an_image_swapped_after_load_reaches_the_trainer_as_one_error(
        tmp_path):
    """The loader processes (--loaders 2) carry the error back as a value
    instead of a TypeError from MultiprocessIterator."""
    pixels = numpy.zeros((H, W, 3), numpy.uint8)
    json_path, images = _dataset_files(tmp_path, png(W, H, pixels))
    dataset = COCODataset(json_path, images)
    assert dataset[0][0].shape == (3, H, W)
    (tmp_path / 'images' / '20.png').write_bytes(png(60000, 60000))
    example = CarryReadErrors(dataset)[0]
    assert isinstance(example, ReadError)
    assert example.message.startswith('image id 20: ')
    assert '3600000000 pixels' in example.message
