"""The synthetic COCO data: the stored polygons are exactly where the
class colours are in the image, the COCO fields agree with the masks,
generation is deterministic, and ``ensure_synthetic_coco`` regenerates
exactly when the parameters change."""
import json
import os
import subprocess
import sys

import numpy
import pycocotools.mask as mask_util
import pytest

from utils.ops.image import read_image
from utils.data.coco_json import DatasetError
from utils.data.synthetic_coco import (GENERATOR_VERSION, ensure_synthetic_coco,
                                       make_synthetic_coco)
from utils.data.synthetic_shapes import uncompressed_rle

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
H, W = 64, 80


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    json_path = make_synthetic_coco(root, n_images=12, height=H, width=W,
                                    n_classes=3, seed=0)
    with open(json_path) as f:
        return root, json.load(f)


def _mask(segm):
    """pycocotools' rasterisation of a polygon list or uncompressed RLE."""
    rle = mask_util.frPyObjects(segm, H, W)
    if isinstance(rle, list):
        rle = mask_util.merge(rle)
    return mask_util.decode(rle).astype(bool)


def _colour_labels(img):
    """Label of each pixel read from its colour alone: 0 where the colour
    is greyish (saturation < 0.3), else the class whose hue centre
    (0, 120, 240 degrees for labels 1, 2, 3) is nearest."""
    r, g, b = img.astype(numpy.float64)
    mx, mn = numpy.maximum(numpy.maximum(r, g), b), \
        numpy.minimum(numpy.minimum(r, g), b)
    chroma = numpy.maximum(mx - mn, 1e-9)
    hue = numpy.where(mx == r, ((g - b) / chroma) % 6,
                      numpy.where(mx == g, (b - r) / chroma + 2,
                                  (r - g) / chroma + 4)) * 60.
    dist = numpy.abs((hue[None] - numpy.array([0., 120., 240.])[:, None,
                                                                None]
                      + 180.) % 360. - 180.)
    labels = dist.argmin(axis=0) + 1
    return numpy.where(chroma / numpy.maximum(mx, 1e-9) > 0.3, labels, 0)


def test_structure(data):
    root, d = data
    assert [c['id'] for c in d['categories']] == [7, 3, 1]
    assert [c['name'] for c in d['categories']] == ['blue', 'green', 'red']
    assert [im['id'] for im in d['images']] == list(range(1, 13))
    for im in d['images']:
        assert (im['height'], im['width']) == (H, W)
        assert os.path.isfile(os.path.join(root, 'images', im['file_name']))
    annotated = {a['image_id'] for a in d['annotations']}
    assert len(annotated) == 12 - round(0.1 * 12)
    crowds = [a for a in d['annotations'] if a['iscrowd']]
    assert len(crowds) >= 1
    for a in crowds:
        assert isinstance(a['segmentation']['counts'], list)
    ids = [a['id'] for a in d['annotations']]
    assert ids == list(range(1, len(ids) + 1))


def test_polygons_are_where_the_colours_are(data):
    root, d = data
    label_of = {7: 3, 3: 2, 1: 1}
    for im in d['images']:
        expected = numpy.zeros((H, W), numpy.int64)
        for a in d['annotations']:  # painting order: increasing id
            if a['image_id'] == im['id']:
                expected[_mask(a['segmentation'])] = \
                    label_of[a['category_id']]
        img = read_image(os.path.join(root, 'images', im['file_name']))
        numpy.testing.assert_array_equal(_colour_labels(img), expected)


def test_area_and_bbox_agree_with_masks(data):
    _, d = data
    rectangles = 0
    for a in d['annotations']:
        mask = _mask(a['segmentation'])
        assert a['area'] == mask.sum() > 0
        ys, xs = numpy.nonzero(mask)
        x, y, w, h = a['bbox']
        if a['iscrowd']:  # the RLE's own extent
            assert [x, y, w, h] == [xs.min(), ys.min(), xs.max() -
                                    xs.min() + 1, ys.max() - ys.min() + 1]
            continue
        poly = numpy.array(a['segmentation'][0])
        assert [x, y] == [poly[0::2].min(), poly[1::2].min()]
        assert x + w == pytest.approx(poly[0::2].max())
        assert y + h == pytest.approx(poly[1::2].max())
        assert xs.min() >= numpy.floor(x) and xs.max() <= numpy.ceil(x + w)
        assert ys.min() >= numpy.floor(y) and ys.max() <= numpy.ceil(y + h)
        if len(poly) == 8 and len(set(poly[0::2])) == 2 and \
                len(set(poly[1::2])) == 2 and (poly == poly.round()).all():
            # Integer rectangle [x, x + w] x [y, y + h]: COCO's pixels
            # x .. x + w - 1 and y .. y + h - 1.
            block = numpy.zeros((H, W), bool)
            block[int(y):int(y + h), int(x):int(x + w)] = True
            numpy.testing.assert_array_equal(mask, block)
            rectangles += 1
    assert rectangles >= 1


def test_deterministic(tmp_path, data):
    root, d = data
    again = make_synthetic_coco(str(tmp_path / 'a'), n_images=12, height=H,
                                width=W, n_classes=3, seed=0)
    with open(again) as f:
        assert json.load(f) == d
    for name in ('000001.png', '000012.png'):
        with open(os.path.join(root, 'images', name), 'rb') as f1, \
                open(str(tmp_path / 'a' / 'images' / name), 'rb') as f2:
            assert f1.read() == f2.read()
    other = make_synthetic_coco(str(tmp_path / 'b'), n_images=12, height=H,
                                width=W, n_classes=3, seed=1)
    with open(other) as f:
        assert json.load(f)['annotations'] != d['annotations']


def test_uncompressed_rle_round_trip():
    rng = numpy.random.RandomState(0)
    for first in (False, True):
        mask = rng.rand(7, 5) > 0.5
        mask[0, 0] = first
        rle = uncompressed_rle(mask)
        assert rle['size'] == [7, 5] and sum(rle['counts']) == 35
        decoded = mask_util.decode(mask_util.frPyObjects(rle, 7, 5))
        numpy.testing.assert_array_equal(decoded.astype(bool), mask)


def test_cli(tmp_path):
    out = str(tmp_path / 'cli')
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'utils', 'data', 'synthetic_coco.py'),
         out, '--n-images', '2', '--height', '32', '--width', '40'],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert 'wrote 2 images' in proc.stdout
    assert sorted(os.listdir(os.path.join(out, 'images'))) == \
        ['000001.png', '000002.png']


def _annotations(root):
    with open(os.path.join(root, 'annotations.json')) as f:
        return json.load(f)['annotations']


def test_ensure_regenerates_when_parameters_change(tmp_path):
    root = str(tmp_path / 'train')
    used = ensure_synthetic_coco(root, 3, 32, 40, seed=0)
    assert used == {'n_images': 3, 'height': 32, 'width': 40, 'seed': 0,
                    'n_classes': 3, 'empty_fraction': 0.1,
                    'class_names': None, 'max_instances': 4,
                    'crowd_fraction': 0.1, 'generator': GENERATOR_VERSION}
    with open(os.path.join(root, 'synthetic.json')) as f:
        assert json.load(f) == used
    first = _annotations(root)
    stat = os.stat(os.path.join(root, 'annotations.json'))

    assert ensure_synthetic_coco(root, 3, 32, 40, seed=0) == used
    again = os.stat(os.path.join(root, 'annotations.json'))
    assert (again.st_mtime_ns, again.st_ino) == (stat.st_mtime_ns,
                                                 stat.st_ino)

    assert ensure_synthetic_coco(root, 3, 32, 40, seed=1)['seed'] == 1
    assert _annotations(root) != first
    ensure_synthetic_coco(root, 2, 24, 40, seed=1)
    assert sorted(os.listdir(os.path.join(root, 'images'))) == \
        ['000001.png', '000002.png']
    assert read_image(os.path.join(root, 'images', '000001.png')).shape == \
        (3, 24, 40)
    assert os.listdir(str(tmp_path)) == ['train']  # no temporary folder


def test_ensure_refuses_a_folder_without_manifest(tmp_path):
    # Shaped like a synthetic dataset (images/NNNNNN.png, annotations.json)
    # but without the manifest: it may be the user's own data, and was
    # deleted. Only a folder the generator marked is ever replaced.
    root = tmp_path / 'val'
    make_synthetic_coco(str(root), n_images=2, height=24, width=32, seed=5)
    before = {p: p.read_bytes() for p in root.rglob('*') if p.is_file()}
    with pytest.raises(DatasetError, match='has no synthetic.json'):
        ensure_synthetic_coco(str(root), 2, 24, 32, seed=6)
    assert {p: p.read_bytes() for p in root.rglob('*')
            if p.is_file()} == before
    assert os.listdir(str(tmp_path)) == ['val']
    (root / 'synthetic.json').write_text('[1]')  # not the generator's
    with pytest.raises(DatasetError, match='has no synthetic.json'):
        ensure_synthetic_coco(str(root), 2, 24, 32, seed=6)


def test_ensure_fills_an_empty_folder(tmp_path):
    root = tmp_path / 'empty'
    root.mkdir()
    ensure_synthetic_coco(str(root), 2, 24, 32, seed=5)
    assert os.path.isfile(str(root / 'synthetic.json'))


def test_cli_refuses_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'annotations.json').write_text('{"mine": 1}')
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'utils', 'data',
                                      'synthetic_coco.py'), str(out)],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.count('\n') == 1
    assert 'has no synthetic.json' in proc.stderr, proc.stderr
    assert (out / 'annotations.json').read_text() == '{"mine": 1}'


def test_ensure_refuses_to_delete_other_data(tmp_path):
    root = tmp_path / 'data'
    (root / 'images').mkdir(parents=True)
    (root / 'images' / 'photo.jpg').write_bytes(b'')
    with pytest.raises(DatasetError, match='has no synthetic.json'):
        ensure_synthetic_coco(str(root), 2, 24, 32, seed=0)
    # Even with a manifest, a file the generator does not write is kept.
    (root / 'synthetic.json').write_text('{"generator": 1}')
    with pytest.raises(DatasetError, match='photo.jpg besides synthetic'):
        ensure_synthetic_coco(str(root), 2, 24, 32, seed=0)
    assert (root / 'images' / 'photo.jpg').exists()
    assert os.listdir(str(tmp_path)) == ['data']
