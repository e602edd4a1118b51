"""COCODataset: Detectron's cleaning counted on a hand-written JSON, box
conversion by hand, non-contiguous category ids, the model's class ids,
areas from segmentations, clear errors, and the horizontal flip."""
import json

import cv2
import numpy
import pytest

from utils.data.coco_dataset import COCODataset, DatasetError, flip_example
from utils.data.synthetic_coco import make_synthetic_coco

H, W = 50, 100
RECT = [10, 20, 15, 20, 15, 24, 10, 24]


def _ann(i, image_id, cat, bbox, area=20., segm=None, iscrowd=0, **kw):
    return dict(id=i, image_id=image_id, category_id=cat, bbox=bbox,
                area=area, iscrowd=iscrowd,
                segmentation=[RECT] if segm is None else segm, **kw)


def _write(tmp_path, data, images=(10, 20)):
    image_dir = tmp_path / 'images'
    image_dir.mkdir(exist_ok=True)
    for image_id in images:
        bgr = numpy.zeros((H, W, 3), numpy.uint8)
        bgr[:, :, 2] = 200  # red in RGB
        cv2.imwrite(str(image_dir / '{}.png'.format(image_id)), bgr)
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(data))
    return str(path), str(image_dir)


def _hand_json():
    rle = {'counts': [0, 2, 48, 2, 48, 2, 4898], 'size': [H, W]}  # 2x3
    anns = [
        _ann(1, 10, 9, [10, 20, 5, 4]),                        # kept
        _ann(2, 10, 2, [0, 0, 3, 2], segm=rle, iscrowd=1),      # crowd
        _ann(3, 10, 5, [30, 30, 5, 5], area=0.),                # zero area
        _ann(4, 10, 5, [120, 10, 10, 10]),                      # outside
        _ann(5, 10, 5, [90, 40, 30, 30],                        # clipped
             segm=[[90, 40, 92, 41], [90, 40, 99, 40, 99, 49]]),
        _ann(6, 10, 2, [60, 5, 5, 5], ignore=1),                # ignore
        _ann(7, 10, 5, [50, 10, 1, 5]),                         # 1 px wide
        _ann(8, 10, 5, [70, 10, 5, 5], segm=[[70, 10, 75, 15]]),  # 2 points
        _ann(9, 10, 2, [0, 0, 3, 2], segm=rle, area=6.),        # RLE
        _ann(10, 20, 9, [5, 5, 20, 20], segm=rle, iscrowd=1),   # crowd
    ]
    images = [{'id': i, 'file_name': '{}.png'.format(i), 'height': H,
               'width': W} for i in (20, 10)]
    cats = [{'id': 5, 'name': 'five'}, {'id': 9, 'name': 'nine'},
            {'id': 2, 'name': 'two'}]
    return {'images': images, 'annotations': anns, 'categories': cats}


@pytest.fixture
def hand(tmp_path):
    return _write(tmp_path, _hand_json())


def test_cleaning_and_conversion(hand, capsys):
    ds = COCODataset(*hand)
    line = capsys.readouterr().out
    assert line.count('\n') == 1
    assert '2 images (1 without annotations, kept)' in line
    assert ds.class_ids == (2, 5, 9)
    assert ds.class_names == ('two', 'five', 'nine')
    assert ds.image_ids == [10, 20] and len(ds) == 2
    assert ds.skipped == {'crowd': 2, 'ignore': 1, 'zero_area': 1,
                          'outside': 1, 'degenerate': 1, 'no_polygon': 1,
                          'unknown_class': 0}
    assert ds.n_instances == 3
    for reason, n in ds.skipped.items():
        assert '{} {}'.format(n, reason) in line

    img, bbox, label, segms = ds.get_example(0)
    assert img.shape == (3, H, W) and img.dtype == numpy.float32
    assert (img[0] == 200).all() and (img[1:] == 0).all()  # RGB order
    assert bbox.dtype == numpy.float32 and label.dtype == numpy.int32
    # xywh [10, 20, 5, 4] -> [10, 20, 14, 23]; [90, 40, 30, 30] ->
    # [90, 40, 119, 69] clipped to [90, 40, 99, 49]; RLE box [0, 0, 2, 1].
    numpy.testing.assert_array_equal(
        bbox, [[10, 20, 14, 23], [90, 40, 99, 49], [0, 0, 2, 1]])
    numpy.testing.assert_array_equal(label, [3, 2, 1])  # ids 9, 5, 2
    assert len(segms[0]) == 1 and segms[0][0].dtype == numpy.float64
    numpy.testing.assert_array_equal(segms[0][0], RECT)
    numpy.testing.assert_array_equal(segms[1][0], [90, 40, 99, 40, 99, 49])
    assert len(segms[1]) == 1  # the 2-point polygon is gone
    expected = numpy.zeros((H, W), bool)
    expected[:2, :3] = True  # column-major runs of 2 in 3 columns
    assert segms[2].dtype == bool
    numpy.testing.assert_array_equal(segms[2], expected)

    img, bbox, label, segms = ds.get_example(1)
    assert bbox.shape == (0, 4) and label.shape == (0,) and segms == []


def test_drop_empty(hand):
    ds = COCODataset(*hand, keep_empty=False)
    assert ds.image_ids == [10] and len(ds) == 1


def test_synthetic_ids_map_to_contiguous_labels(tmp_path):
    json_path = make_synthetic_coco(str(tmp_path), n_images=6, height=40,
                                    width=48, n_classes=3, seed=3,
                                    empty_fraction=0.)
    ds = COCODataset(json_path, str(tmp_path / 'images'))
    assert ds.class_ids == (1, 3, 7)
    with open(json_path) as f:
        anns = json.load(f)['annotations']
    for i, image_id in enumerate(ds.image_ids):
        want = [{1: 1, 3: 2, 7: 3}[a['category_id']] for a in anns
                if a['image_id'] == image_id and not a['iscrowd']]
        numpy.testing.assert_array_equal(ds.get_example(i)[2], want)
    assert ds.skipped['crowd'] == sum(a['iscrowd'] for a in anns) >= 1


def test_model_class_ids(tmp_path):
    # The model's labels 1, 2, 3 are ids 9, 2, 7: the file's 5 is not the
    # model's (annotation 5, the one kept instance of it, is skipped), 7 is
    # not in the file (its name is the id).
    ds = COCODataset(*_write(tmp_path, _hand_json()), class_ids=(9, 2, 7))
    assert ds.class_ids == (9, 2, 7)
    assert ds.class_names == ('nine', 'two', '7')
    assert ds.skipped['unknown_class'] == 1 and ds.skipped['crowd'] == 2
    assert ds.n_instances == 2
    img, bbox, label, segms = ds.get_example(0)
    numpy.testing.assert_array_equal(label, [1, 2])  # ids 9, 2
    numpy.testing.assert_array_equal(bbox, [[10, 20, 14, 23], [0, 0, 2, 1]])
    # A model of none of the file's categories has nothing to train on.
    none = COCODataset(*_write(tmp_path, _hand_json()), class_ids=[7])
    assert none.n_instances == 0 and none.skipped['unknown_class'] == 3
    with pytest.raises(ValueError, match='duplicate class ids'):
        COCODataset(*_write(tmp_path, _hand_json()), class_ids=(9, 9))


def test_area_from_segmentation(tmp_path):
    data = _hand_json()
    for ann in data['annotations']:
        if ann['id'] in (1, 8, 9):
            del ann['area']
    path, image_dir = _write(tmp_path, data)
    ds = COCODataset(path, image_dir)
    # pycocotools fills the integer rectangle RECT [10, 15] x [20, 24] as
    # pixels 10..14 x 20..23: 5 x 4; the RLE is a 2 x 3 block; annotation
    # 8's only polygon has 2 points: no pixel, so zero_area now.
    assert ds.coco.anns[1]['area'] == 20.
    assert ds.coco.anns[9]['area'] == 6.
    assert ds.coco.anns[8]['area'] == 0.
    assert ds.skipped['zero_area'] == 2 and ds.skipped['no_polygon'] == 0
    assert ds.n_instances == 3
    with open(path) as f:  # filled in memory, not in the file
        assert 'area' not in json.load(f)['annotations'][0]


def test_compressed_rle(tmp_path):
    # COCO's compressed string of the 2 x 3 block of _hand_json, by hand:
    # counts 0, 2, 48, then differences to the count two before 0, 0, 0,
    # 4850 in 5-bit groups: '0', '2', '`1' (48 = 16 + 32 * 1, 0x10 set so
    # 0x20 continues), '0' x 3, 'bg4' (4850 = 18 + 32 * (23 + 32 * 4)).
    data = _hand_json()
    data['annotations'][8]['segmentation'] = {'counts': '02`1000bg4',
                                              'size': [H, W]}
    ds = COCODataset(*_write(tmp_path, data))
    expected = numpy.zeros((H, W), bool)
    expected[:2, :3] = True
    numpy.testing.assert_array_equal(ds.get_example(0)[3][2], expected)


def test_missing_and_bad_json(tmp_path):
    missing = str(tmp_path / 'nope.json')
    with pytest.raises(DatasetError, match='not found: .*nope.json'):
        COCODataset(missing, str(tmp_path))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [')
    with pytest.raises(DatasetError, match='not valid JSON: .*bad.json'):
        COCODataset(str(bad), str(tmp_path))
    bad.write_text(json.dumps({'images': [], 'categories': []}))
    with pytest.raises(DatasetError, match="no 'annotations' list"):
        COCODataset(str(bad), str(tmp_path))


def test_missing_and_corrupt_images(tmp_path):
    path, image_dir = _write(tmp_path, _hand_json(), images=(10,))
    with pytest.raises(DatasetError, match='1 of 2 image files not found.*'
                                           '20.png'):
        COCODataset(path, image_dir)
    (tmp_path / 'images' / '20.png').write_bytes(b'not a png')
    ds = COCODataset(path, image_dir)
    with pytest.raises(DatasetError, match='image id 20: cannot decode.*'
                                           '20.png'):
        ds.get_example(1)


def test_unknown_category(tmp_path):
    data = _hand_json()
    data['annotations'][0]['category_id'] = 4
    with pytest.raises(DatasetError, match='category_id 4'):
        COCODataset(*_write(tmp_path, data))


def test_flip_hand_case():
    img = numpy.arange(3 * 4 * 10, dtype=numpy.float32).reshape(3, 4, 10)
    bbox = numpy.array([[2, 1, 5, 3]], numpy.float32)
    mask = numpy.zeros((4, 10), bool)
    mask[1:4, 2:6] = True  # the pixels of the box
    segms = [[numpy.array([2., 1., 6., 1., 6., 4.])], mask]
    f_img, f_bbox, f_segms = flip_example(img, bbox, segms)
    numpy.testing.assert_array_equal(f_img[:, :, 0], img[:, :, 9])
    numpy.testing.assert_array_equal(f_bbox, [[4, 1, 7, 3]])
    numpy.testing.assert_array_equal(f_segms[0][0], [7, 1, 3, 1, 3, 4])
    flipped_mask = numpy.zeros((4, 10), bool)
    flipped_mask[1:4, 4:8] = True  # columns 4..7, as the flipped box
    numpy.testing.assert_array_equal(f_segms[1], flipped_mask)
    assert bbox[0, 0] == 2 and segms[0][0][0] == 2  # inputs untouched


def test_flip_twice_is_identity(hand):
    img, bbox, label, segms = COCODataset(*hand).get_example(0)
    twice = flip_example(*flip_example(img, bbox, segms))
    numpy.testing.assert_array_equal(twice[0], img)
    numpy.testing.assert_array_equal(twice[1], bbox)
    for a, b in zip(twice[2], segms):
        if isinstance(b, numpy.ndarray):
            numpy.testing.assert_array_equal(a, b)
        else:
            for pa, pb in zip(a, b):
                numpy.testing.assert_array_equal(pa, pb)
    assert flip_example(img, bbox[:0], [])[1].shape == (0, 4)


def test_detectron2_box_offset(hand):
    # detectron2 reads xywh as x2 = x + w and clips to [0, W] x [0, H]:
    # [10, 20, 5, 4] -> [10, 20, 15, 24]; [90, 40, 30, 30] -> [90, 40,
    # 100, 50]; the 1-pixel-wide [50, 10, 1, 5] -> [50, 10, 51, 15] is no
    # longer degenerate; the RLE box [0, 0, 3, 2].
    ds = COCODataset(*hand, box_offset=0)
    assert ds.skipped['degenerate'] == 0
    bbox = ds.get_example(0)[1]
    numpy.testing.assert_array_equal(
        bbox, [[10, 20, 15, 24], [90, 40, 100, 50], [50, 10, 51, 15],
               [0, 0, 3, 2]])


def test_flip_without_offset_is_a_mirror():
    img = numpy.zeros((3, 4, 10), numpy.float32)
    bbox = numpy.array([[2, 1, 6, 4]], numpy.float32)
    _, f_bbox, f_segms = flip_example(
        img, bbox, [[numpy.array([2., 1., 6., 1., 6., 4.])]], box_offset=0)
    numpy.testing.assert_array_equal(f_bbox, [[4, 1, 8, 4]])
    numpy.testing.assert_array_equal(f_segms[0][0], [8, 1, 4, 1, 4, 4])


@pytest.mark.parametrize('declared,refused', [
    ((H, W), False), ((W, H), False),      # the file's size, either way
    ((9000, 9000), True), ((H, W + 1), True)])
def test_declared_sizes_are_the_files_at_construction(tmp_path, declared,
                                                      refused):
    # The declared size decides the loaders' shared memory before any image
    # is decoded: a JSON claiming 9000 x 9000 for a 50 x 100 file is one
    # line at construction, naming the JSON, the image and both sizes.
    data = {'images': [{'id': 10, 'file_name': '10.png',
                        'height': declared[0], 'width': declared[1]}],
            'annotations': [_ann(1, 10, 9, [10, 20, 5, 4])],
            'categories': [{'id': 9, 'name': 'nine'}]}
    path, image_dir = _write(tmp_path, data, images=(10,))
    if not refused:
        assert COCODataset(path, image_dir).example_boxes(0)[0] == declared
        return
    with pytest.raises(DatasetError) as e:
        COCODataset(path, image_dir)
    line = str(e.value)
    assert '\n' not in line and line.startswith(path + ': image id ')
    assert line.endswith('is {}x{} (HxW) but the annotations say {}x{}'
                         .format(H, W, *declared))
