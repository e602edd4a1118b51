"""load_coco: each malformed entry is one DatasetError naming the file and
the entry; the compressed RLE string decoded by hand."""
import copy
import json
import re

import pytest

from utils.data.coco_json import DatasetError, load_coco
from utils.data.coco_segm import rle_string_counts

H, W = 50, 100
BLOCK = [0, 2, 48, 2, 48, 2, 4898]  # a 2 x 3 block, column-major runs


def _good():
    return {
        'images': [{'id': 20, 'file_name': '20.png', 'height': H,
                    'width': W}],
        'categories': [{'id': 5, 'name': 'five'}],
        'annotations': [
            {'id': 1, 'image_id': 20, 'category_id': 5, 'area': 20.,
             'bbox': [10, 20, 5, 4], 'iscrowd': 0,
             'segmentation': [[10, 20, 15, 20, 15, 24, 10, 24]]},
            {'id': 2, 'image_id': 20, 'category_id': 5, 'area': 6.,
             'bbox': [0, 0, 3, 2], 'iscrowd': 1,
             'segmentation': {'counts': BLOCK, 'size': [H, W]}}]}


def _set(path, value):
    """A copy of the good file with ``path`` (keys) set, or deleted when
    ``value`` is ``DELETE``."""
    data = copy.deepcopy(_good())
    *parents, last = path
    node = data
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()
RLE = ('annotations', 1, 'segmentation')
CASES = [
    (('images',), [], r'no images in .*ann\.json$'),
    (('categories',), [], r'no categories in .*ann\.json$'),
    (('categories', 0, 'id'), DELETE, r'categories\[0\] has no integer id'),
    (('categories', 0), 5, r'categories\[0\] has no integer id'),
    (('images', 0, 'width'), DELETE,
     'image id 20 has no positive integer height and width'),
    (('images', 0, 'height'), '50',
     'image id 20 has no positive integer height and width'),
    (('images', 0, 'file_name'), DELETE, 'image id 20 has no file_name'),
    (('images', 0, 'id'), DELETE, r'images\[0\] has no integer id'),
    (('images', 0, 'id'), [20], r'images\[0\] has no integer id'),
    (('annotations', 0, 'id'), DELETE,
     r'annotations\[0\] has no integer id'),
    (('annotations', 0, 'image_id'), None,
     'annotation id 1: image_id None is not an integer'),
    (('annotations', 0, 'category_id'), [5],
     r'annotation id 1 has category_id \[5\], not a listed category'),
    (('annotations', 0, 'image_id'), DELETE,
     'annotation id 1 has no image_id'),
    (('annotations', 1, 'segmentation'), DELETE,
     'annotation id 2 has no segmentation'),
    (('annotations', 0, 'category_id'), 4,
     'annotation id 1 has category_id 4, not a listed category'),
    (('annotations', 0, 'bbox'), [10, 20, 5], r'annotation id 1: bbox'),
    (('annotations', 0, 'bbox'), [10, 20, 'x', 4], r'annotation id 1: bbox'),
    (('annotations', 0, 'area'), 'big', 'annotation id 1: area'),
    (('annotations', 0, 'segmentation'), [[10, 20, 'x', 20, 15, 24]],
     'annotation id 1: a polygon is not a list of numbers'),
    (('annotations', 0, 'segmentation'), [[10, 20, 15, 20, 15]],
     'annotation id 1: a polygon has an odd number of coordinates'),
    (('annotations', 0, 'segmentation'), 'x',
     'annotation id 1: segmentation is neither polygons nor an RLE'),
    (RLE + ('counts',), 123, 'annotation id 2: RLE counts are neither'),
    (RLE + ('counts',), [0, 2, 'a'], 'annotation id 2: RLE counts are'),
    (RLE + ('counts',), [0, 2, 48], 'annotation id 2: RLE run lengths do '
                                    'not add up to 50 x 100'),
    (RLE + ('counts',), [0, -2, 5002], 'annotation id 2: RLE run lengths'),
    (RLE + ('counts',), '0', 'annotation id 2: RLE run lengths'),
    (RLE + ('counts',), 'zzz', "annotation id 2: RLE counts: character 'z'"),
    (RLE + ('counts',), 'b', 'annotation id 2: RLE counts: the string ends'),
    (RLE + ('size',), [H], 'annotation id 2: RLE size'),
    (RLE + ('size',), [10, 10], r'annotation id 2: RLE size \[10, 10\] is '
                                r'not the image size \[50, 100\]'),
]


@pytest.mark.parametrize('path, value, message', CASES)
def test_malformed_entry(tmp_path, path, value, message):
    json_path = tmp_path / 'ann.json'
    json_path.write_text(json.dumps(_set(path, value)))
    with pytest.raises(DatasetError) as info:
        load_coco(str(json_path))
    text = str(info.value)
    assert '\n' not in text and str(json_path) in text
    assert re.search(message, text), text


def test_duplicates(tmp_path):
    data = _good()
    data['images'].append(dict(data['images'][0]))
    data['categories'].append({'id': 5})
    json_path = tmp_path / 'ann.json'
    json_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match='duplicate image id 20'):
        load_coco(str(json_path))
    data['images'].pop()
    json_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match='duplicate category id 5'):
        load_coco(str(json_path))


def test_good_file_and_unlisted_image(tmp_path):
    data = _good()
    # An annotation of an image the file does not list is read by nobody;
    # its RLE is checked without an image size.
    data['annotations'].append(dict(data['annotations'][1], id=3,
                                    image_id=99))
    json_path = tmp_path / 'ann.json'
    json_path.write_text(json.dumps(data))
    coco = load_coco(str(json_path))
    assert sorted(coco.anns) == [1, 2, 3] and coco.imgToAnns[20][0]['id'] == 1


def test_rle_string_counts_by_hand():
    # 0 -> '0'; 2 -> '2'; 48 = 16 + 32 * 1: group 16 has the sign bit
    # 0x10, so 0x20 marks a next group: chr(48 + 48) '`', then '1'. From
    # the fourth count on, differences to two before: 0, 0, 0 and 4898 -
    # 48 = 4850 = 18 + 32 * (23 + 32 * 4): 'b', 'g', '4'.
    assert rle_string_counts('02`1000bg4') == BLOCK
    assert rle_string_counts('') == []
    # A last group with the sign bit and nothing after it is negative:
    # chr(48 + 31) 'O' is -1.
    assert rle_string_counts('O') == [-1]
    with pytest.raises(ValueError, match='ends inside a count'):
        rle_string_counts('`')
