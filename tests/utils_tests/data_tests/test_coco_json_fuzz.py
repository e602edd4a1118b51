"""A property-based fuzz of the COCO instances reader: a valid file with
any one entry replaced by any small JSON value, or its text cut or
changed, is either refused in one ``DatasetError`` line naming the file,
or read whole: pycocotools indexes every annotation (none dropped), the
dataset loads, and COCOeval runs. Numbers stay small: the bounds of
coordinates are checked elsewhere (a huge polygon coordinate crashes
pycocotools' rasteriser)."""
import json

import cv2
import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils.data.coco_dataset import COCODataset
from utils.data.coco_eval import evaluate_coco
from utils.data.coco_json import DatasetError, load_coco

H, W = 20, 30


def _valid():
    poly = [2, 2, 12, 2, 12, 9, 2, 9]
    return {
        'images': [{'id': i, 'file_name': '{}.png'.format(i), 'height': H,
                    'width': W} for i in (1, 2)],
        'categories': [{'id': 3, 'name': 'c'}, {'id': 7, 'name': 'd'}],
        'annotations': [
            {'id': 1, 'image_id': 1, 'category_id': 3, 'bbox': [2, 2, 10, 7],
             'area': 70, 'iscrowd': 0, 'segmentation': [poly]},
            {'id': 2, 'image_id': 2, 'category_id': 7, 'bbox': [0, 0, 2, 2],
             'iscrowd': 1, 'segmentation': {'counts': [0, 2, 18, 2, 578],
                                            'size': [H, W]}},
            {'id': 3, 'image_id': 2, 'category_id': 3, 'bbox': [2, 2, 10, 7],
             'segmentation': [poly]}]}


def _paths(data, prefix=()):
    """Every (key path) into ``data``."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(_valid()) if p]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.sampled_from(
        [0.5, '1', '', '../1.png', '/1.png', 'x']),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.sampled_from(['id', 'counts', 'size', 'x']), inner,
                    max_size=3), max_leaves=8)
FUZZ = settings(max_examples=300, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def folder(tmp_path):
    (tmp_path / 'images').mkdir()
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / 'images' / '{}.png'.format(i)),
                    numpy.zeros((H, W, 3), numpy.uint8))
    return tmp_path


def _check(folder, text):
    path = str(folder / 'ann.json')
    with open(path, 'w') as f:
        f.write(text)
    try:
        coco = load_coco(path)
        dataset = COCODataset(path, str(folder / 'images'))
    except DatasetError as e:
        assert '\n' not in str(e) and path in str(e), str(e)
        return
    data = json.loads(text)
    assert len(coco.anns) == len(data['annotations'])  # none dropped
    for i in range(len(dataset)):
        try:  # an image whose size is not the file's: named when read
            dataset.get_example(i)
        except DatasetError as e:
            assert '\n' not in str(e) and 'annotations say' in str(e)
    gt = [dict(image_id=a['image_id'], category_id=a['category_id'],
               bbox=a['bbox'], score=1.) for a in data['annotations']]
    evaluate_coco(coco, gt, ('bbox',), dataset.image_ids,
                  [c['id'] for c in data['categories']])


@FUZZ
@given(path=st.sampled_from(PATHS), value=_JSON)
def test_fuzz_one_entry_replaced(folder, path, value):
    data = _valid()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    _check(folder, json.dumps(data))


@settings(FUZZ, max_examples=150)
@given(cut=st.integers(0, 2000), edits=st.lists(st.tuples(
    st.integers(0, 2000), st.sampled_from('[]{},:"0-1a. ')), max_size=3))
def test_fuzz_text_changed(folder, cut, edits):
    text = list(json.dumps(_valid()))
    for i, ch in edits:
        text[i % len(text)] = ch
    _check(folder, ''.join(text)[:cut] if cut < len(text) else ''.join(text))
