"""The data summary and --auto-size on a dataset made here: small objects
(squares of 10 to 20 px) on 512 x 512 images. The preset's resize (fpn-
tiny: 192 px) shrinks them below its smallest anchor (32 px), which the
summary says; --auto-size keeps the images' size and picks anchors that
hold the objects."""
import json
import os

import cv2
import numpy
import pytest

import train
from utils.data.coco_dataset import COCODataset
from utils.data.object_sizes import (DataSizes, auto_sizes, data_sizes,
                                     summary_lines)

SIDES = (10, 12, 14, 16, 18, 20)   # square objects, px


def _small_objects(root, n_images=2, size=512):
    """Images of ``size`` px with one square of each side in SIDES."""
    os.makedirs(os.path.join(root, 'images'))
    rng = numpy.random.RandomState(0)
    images, anns = [], []
    for i in range(1, n_images + 1):
        img = rng.randint(0, 40, (size, size, 3)).astype(numpy.uint8)
        for k, s in enumerate(SIDES):
            x, y = 30 + 80 * k, 40 + 60 * i
            img[y:y + s, x:x + s] = 230
            anns.append({'id': len(anns) + 1, 'image_id': i,
                         'category_id': 1, 'iscrowd': 0, 'area': s * s,
                         'bbox': [x, y, s, s], 'segmentation': [
                             [x, y, x + s, y, x + s, y + s, x, y + s]]})
        name = '{}.png'.format(i)
        cv2.imwrite(os.path.join(root, 'images', name), img)
        images.append({'id': i, 'file_name': name, 'height': size,
                       'width': size})
    with open(os.path.join(root, 'annotations.json'), 'w') as f:
        json.dump({'images': images, 'annotations': anns,
                   'categories': [{'id': 1, 'name': 'cell'}]}, f)
    return root


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    return _small_objects(str(tmp_path_factory.mktemp('small')))


def test_object_sizes_are_the_boxes_sqrt_areas(small):
    sizes = data_sizes(COCODataset(os.path.join(small, 'annotations.json'),
                                   os.path.join(small, 'images')))
    # Inclusive boxes: a COCO w of s is x2 = x + s - 1, width s again.
    numpy.testing.assert_allclose(sizes.object_sizes, SIDES * 2)
    assert sizes.instances.tolist() == [6, 6]
    numpy.testing.assert_allclose(sizes.resized(192, 256),
                                  numpy.array(SIDES * 2) * 192 / 512)


def test_the_summary_warns_about_fpn_tiny_sizes(small):
    sizes = data_sizes(COCODataset(os.path.join(small, 'annotations.json'),
                                   os.path.join(small, 'images')))
    lines = summary_lines(sizes, 192, 256, [32, 64, 128, 256, 512])
    assert lines[0] == ('data: 2 training images, W x H 512x512 (2); '
                        'instances per image mean 6.0, min 6, max 6')
    # 10..20 px x 0.375 = 3.75..7.5 px; percentiles of 12 values.
    assert lines[1].startswith('objects (sqrt box area) at --min-size 192 '
                               '--max-size 256 (scale 0.375): 5% / 50% / '
                               '95% = 4 / 6 / 8 px')
    assert lines[2].startswith('warning: 100% of the objects are below the '
                               'smallest anchor (32 px): use --auto-size')
    # At 512 px they are all below 32 px already: the resize is not what
    # puts them there, so no shrink warning.
    assert len(lines) == 3
    # At 384 px (x0.75) only the 10 px squares fall below 8 px anchors:
    # 2 of 12 objects, none at 512 px.
    lines = summary_lines(sizes, 384, 512, [8, 16, 32, 64, 128])
    assert lines[2:] == [
        'warning: the resize shrinks the images (scale 0.75) and puts 17% '
        'of the objects below the smallest anchor, against 0% at their own '
        'size: --min-size 512 --max-size 512 keeps them']


def test_auto_size_puts_the_objects_within_the_anchors(small):
    sizes = data_sizes(COCODataset(os.path.join(small, 'annotations.json'),
                                   os.path.join(small, 'images')))
    chosen = auto_sizes(sizes)
    # 10th percentile 10 px >= 8: no enlarging; 2 ** floor(log2 10) = 8.
    assert chosen == {'min_size': 512, 'max_size': 512,
                      'anchor_sizes': [8, 16, 32, 64, 128]}
    resized = sizes.resized(chosen['min_size'], chosen['max_size'])
    assert min(chosen['anchor_sizes']) <= resized.min()
    assert resized.max() <= max(chosen['anchor_sizes'])
    assert summary_lines(sizes, 512, 512, chosen['anchor_sizes'])[2:] == []


def test_auto_size_enlarges_tiny_objects():
    # 100 x 200 images with 4 px objects: twice as large puts them at 8.
    sizes = DataSizes(numpy.array([[100, 200]]), numpy.array([3]),
                      numpy.array([4., 4., 6.]), numpy.array([0, 0, 0]))
    assert auto_sizes(sizes) == {'min_size': 200, 'max_size': 400,
                                 'anchor_sizes': [8, 16, 32, 64, 128]}


def test_train_auto_size_records_its_choice(small, tmp_path):
    out = tmp_path / 'o'
    ann, images = os.path.join(small, 'annotations.json'), \
        os.path.join(small, 'images')
    train.main(['--dataset', 'coco-json', '--train-json', ann,
                '--train-images', images, '--val-json', ann, '--val-images',
                images, '--arch', 'fpn-tiny', '--auto-size', '--loaders', '0',
                '--iteration', '1', '--out', str(out)])
    chosen = {'min_size': 512, 'max_size': 512,
              'anchor_sizes': [8, 16, 32, 64, 128]}
    config = json.load(open(str(out / 'config.json')))
    assert config['auto_size'] == chosen
    assert {k: config[k] for k in chosen} == chosen
    with numpy.load(str(out / 'model_final.npz')) as npz:
        meta = json.loads(str(npz['_meta']))
    assert meta['auto_size'] == chosen
    assert (meta['preset']['min_size'], meta['preset']['max_size'],
            meta['preset']['rpn_sizes']) == (512, 512, [[8], [16], [32],
                                                        [64], [128]])
