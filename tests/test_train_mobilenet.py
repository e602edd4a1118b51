"""train.py --arch mobilenetv1-fpn end to end on tiny data: from scratch
(GroupNorm) and from a converted ImageNet backbone (frozen affine, which
the npz metadata keeps so that demo.py and load_model rebuild it), each
saved model then loaded and run; --depth is refused in one line."""
import os
import subprocess
import sys

import numpy
import pytest

from tests.helpers.synthetic_weights import write_mobilenet_caffemodel
from tests.helpers.tiny_coco import coco_json_flags, write_tiny_coco
from utils import mobilenet_parser
from utils.weights.model_io import load_model, read_meta

ROOT = os.path.dirname(os.path.abspath(__file__ + '/..'))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('mnet')
    write_tiny_coco(root, 4, 2)
    return root


def _train(data, out, *extra):
    args = ['--arch', 'mobilenetv1-fpn'] + coco_json_flags(data) + [
        '--min-size', '64', '--max-size', '96', '--iteration', '2',
        '--loaders', '0', '--threads', '1', '--validation', '100',
        '--out', str(out)] + list(extra)
    return subprocess.run([sys.executable, 'train.py'] + args, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def _predicts(path):
    model, meta = load_model(path)
    img = numpy.random.RandomState(0).uniform(0, 255, (3, 64, 80))
    bboxes, labels, scores, masks = model.predict([img.astype('f')])
    assert masks[0].shape[1:] == (64, 80)
    return model, meta


def test_from_scratch_with_groupnorm(data, tmp_path):
    proc = _train(data, tmp_path / 'run')
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = str(tmp_path / 'run' / 'model_final.npz')
    meta = read_meta(path)
    assert meta['arch'] == 'mobilenetv1-fpn'
    assert meta['preset'] == {'min_size': 64, 'max_size': 96}
    model, _ = _predicts(path)
    assert type(model.extractor.body.conv6.sep.norm).__name__ == \
        'GroupNormalization'
    # demo.py reads the npz's arch (and its preset) from the metadata.
    demo = subprocess.run(
        [sys.executable, 'demo.py', '--modelfile', path, '--threads', '1',
         '--out', str(tmp_path / 'demo.png')], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert os.path.isfile(tmp_path / 'demo.png')


def test_from_an_imagenet_backbone_keeps_the_affine(data, tmp_path):
    caffemodel = str(tmp_path / 'mobilenet.caffemodel')
    write_mobilenet_caffemodel(caffemodel, seed=5)
    backbone = mobilenet_parser.main([caffemodel])
    proc = _train(data, tmp_path / 'run', '--pretrained', backbone)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'pretrained: 81 of ' in proc.stdout
    assert 'frozen: conv1, conv2_1, conv2_2, conv3_1' in proc.stdout
    path = str(tmp_path / 'run' / 'model_final.npz')
    assert read_meta(path)['preset']['norm'] == 'affine'
    model, _ = _predicts(path)
    # frozen stages (FREEZE_AT 2) kept the converted weights
    with numpy.load(backbone) as npz:
        numpy.testing.assert_array_equal(
            model.extractor.body.conv2_2.sep.conv.W.array,
            npz['conv2_2/sep/conv/W'])


def test_depth_is_refused(data, tmp_path):
    proc = _train(data, tmp_path / 'run', '--depth', '101')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: --depth 101 with --arch mobilenetv1-fpn: the "
        "depth is a ResNet's, MobileNetV1 has no other"]
