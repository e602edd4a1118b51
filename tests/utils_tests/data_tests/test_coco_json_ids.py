"""load_coco never lets pycocotools score or train the wrong thing: ids
that it would drop or mistype, crowd flags it reads otherwise than the
training, JSON too deep to parse, and image file names that leave the
image folder are each one DatasetError line naming the file and entry."""
import json
import os

import cv2
import numpy
import pytest

from utils.data.coco_dataset import COCODataset, clean_annotations
from utils.data.coco_eval import evaluate_coco
from utils.data.coco_json import DatasetError, load_coco

H, W = 50, 100
RECT = [10, 20, 15, 20, 15, 24, 10, 24]


def _ann(i, image_id, x, **kw):
    poly = [x, 20, x + 5, 20, x + 5, 24, x, 24]
    return dict(dict(id=i, image_id=image_id, category_id=5,
                     bbox=[x, 20, 5, 4], area=20., iscrowd=0,
                     segmentation=[poly]), **kw)


def _data(image_ids=(1, 2), file_names=None):
    file_names = file_names or ['{}.png'.format(i) for i in image_ids]
    return {
        'images': [{'id': i, 'file_name': f, 'height': H, 'width': W}
                   for i, f in zip(image_ids, file_names)],
        'categories': [{'id': 5, 'name': 'five'}],
        'annotations': [_ann(1, image_ids[0], 10), _ann(2, image_ids[0], 40),
                        _ann(3, image_ids[-1], 60)]}


def _load(tmp_path, data):
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def _refused(tmp_path, data, *words):
    path = _load(tmp_path, data)
    with pytest.raises(DatasetError) as info:
        load_coco(path)
    text = str(info.value)
    assert '\n' not in text and path in text, text
    for word in words:
        assert word in text, text
    return text


def test_unique_ids_score_the_ground_truth_as_perfect(tmp_path):
    # The reference: the ground truth given back as detections scores AP
    # 1.0 (every detection matches its own annotation at IoU 1).
    coco = load_coco(_load(tmp_path, _data()))
    dets = [dict(image_id=a['image_id'], category_id=5, bbox=a['bbox'],
                 score=1.) for a in coco.dataset['annotations']]
    stats, _ = evaluate_coco(coco, dets, ('bbox',), [1, 2], [5])
    assert stats['bbox'][0] == pytest.approx(1.0)


def test_duplicate_annotation_ids_are_refused(tmp_path):
    # Two files concatenated: pycocotools' index keeps one annotation per
    # id, and COCOeval then scored the ground truth against itself below
    # 1.0 with no message.
    data = _data()
    data['annotations'][2]['id'] = 1
    _refused(tmp_path, data, 'duplicate annotation id 1')


@pytest.mark.parametrize('ann_id', [0, -3, 'a', 1.0, True, None])
def test_annotation_ids_are_positive_integers(tmp_path, ann_id):
    # COCOeval keeps matched ids in a float array where 0 is "unmatched":
    # id 0 would make its match a false positive, a string would fail.
    data = _data()
    data['annotations'][0]['id'] = ann_id
    _refused(tmp_path, data, 'has no integer id', 'positive integer')


def test_image_ids_of_mixed_types_are_refused(tmp_path):
    _refused(tmp_path, _data(image_ids=(1, 'b')), "image id b",
             'mixed types', "1 and 'b'")


def test_string_image_ids_of_one_type_load(tmp_path):
    coco = load_coco(_load(tmp_path, _data(image_ids=('a', 'b'))))
    assert sorted(coco.imgToAnns) == ['a', 'b']


def test_annotation_image_id_of_another_type_is_refused(tmp_path):
    # "1" for image 1 would be an orphan nobody trains on or scores.
    data = _data()
    data['annotations'][1]['image_id'] = '1'
    _refused(tmp_path, data, "annotation id 2: image_id '1'", 'int')


def test_json_nested_deep_is_one_line(tmp_path):
    _refused(tmp_path, '[' * 200000 + ']' * 200000, 'nested too deep')


@pytest.mark.parametrize('key, value', [
    ('iscrowd', '1'), ('iscrowd', 1.0), ('iscrowd', 2), ('iscrowd', None),
    ('ignore', '0'), ('ignore', [1])])
def test_crowd_and_ignore_flags_are_0_or_1(tmp_path, key, value):
    # "1" was trained as an instance (the cleaning compares with 1) while
    # COCOeval's int("1") made it a crowd.
    data = _data()
    data['annotations'][0][key] = value
    _refused(tmp_path, data, 'annotation id 1: {} {!r} is not 0 or 1'.format(
        key, value))


def test_boolean_crowd_flags_mean_the_same_to_both_readers(tmp_path):
    data = _data()
    data['annotations'][0]['iscrowd'] = True
    data['annotations'][1]['iscrowd'] = False
    coco = load_coco(_load(tmp_path, data))
    anns = coco.imgToAnns[1]
    reasons = [r for r, _, _ in clean_annotations(anns, H, W)]
    # COCOeval's reading: int(iscrowd).
    assert [int(a['iscrowd']) for a in anns] == [1, 0]
    assert reasons == ['crowd', None]


@pytest.mark.parametrize('file_name, words', [
    ('../outside.png', ['leads out of the image folder']),
    ('a/../../outside.png', ['leads out of the image folder']),
    ('..', ['leads out of the image folder']),
    ('/etc/outside.png', ['absolute path']),
    ('a\0.png', ['NUL']),
])
def test_file_names_leaving_the_folder_are_refused(tmp_path, file_name,
                                                    words):
    # The image is there: without the check it was read and drawn.
    image_dir = tmp_path / 'images'
    image_dir.mkdir()
    outside = numpy.full((H, W, 3), 255, numpy.uint8)
    cv2.imwrite(str(tmp_path / 'outside.png'), outside)
    path = _load(tmp_path, _data(file_names=['1.png', file_name]))
    cv2.imwrite(str(image_dir / '1.png'), outside)
    with pytest.raises(DatasetError) as info:
        COCODataset(path, str(image_dir))
    text = str(info.value)
    assert '\n' not in text and 'image id 2' in text and path in text
    assert str(image_dir) in text
    for word in words:
        assert word in text, text


def test_paths_and_symlinks_inside_the_folder_are_read(tmp_path):
    image_dir = tmp_path / 'images'
    (image_dir / 'sub').mkdir(parents=True)
    bgr = numpy.zeros((H, W, 3), numpy.uint8)
    bgr[:, :, 1] = 77
    cv2.imwrite(str(tmp_path / 'elsewhere.png'), bgr)
    # A link inside the folder is the user's own choice: it is followed.
    os.symlink(str(tmp_path / 'elsewhere.png'), str(image_dir / 'link.png'))
    cv2.imwrite(str(image_dir / 'sub' / 'x.png'), bgr)
    path = _load(tmp_path, _data(file_names=['link.png', 'sub/../sub/x.png']))
    dataset = COCODataset(path, str(image_dir))
    for i in range(2):
        img = dataset.get_example(i)[0]
        assert img.shape == (3, H, W) and (img[1] == 77).all()
