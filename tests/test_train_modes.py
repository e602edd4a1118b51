"""Documented train.py modes end to end on tiny data, each checked by its
output: --evaluate (the npz decides the classes; mixed16), c4 with
--roi-size, R-50 FPN and C4 (with subdivisions) through to a prediction
of the saved model. Mixed16 training is checked on the tiny problem
(tests/models_tests/test_mixed_precision.py): NumPy's float16 makes a
train.py run of it take minutes."""
import json
import os
import subprocess
import sys

import numpy
import pytest

import train
from utils.data.synthetic_coco import make_synthetic_coco
from utils.ops.image import read_image
from utils.weights.model_io import load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Tiny train/val sets (categories 1, 3, 7) and a 2-iteration model."""
    root = tmp_path_factory.mktemp('modes')
    for split, n, seed in (('train', 6, 0), ('val', 3, 1)):
        make_synthetic_coco(str(root / split), n_images=n, height=64,
                            width=80, seed=seed, empty_fraction=0)
    train.main(_data_flags(root) + [
        '--arch', 'fpn-tiny', '--loaders', '0', '--iteration', '2',
        '--validation', '100', '--out', str(root / 'run')])
    return root


def _data_flags(root, val_json=None):
    return ['--dataset', 'coco-json',
            '--train-json', str(root / 'train' / 'annotations.json'),
            '--train-images', str(root / 'train' / 'images'),
            '--val-json', str(val_json or root / 'val' / 'annotations.json'),
            '--val-images', str(root / 'val' / 'images')]


def _evaluate(data, out, *extra, val_json=None):
    proc = subprocess.run(
        [sys.executable, 'train.py', '--evaluate', '--pretrained',
         str(data / 'run' / 'model_final.npz'), '--out', str(out)] +
        _data_flags(data, val_json) + list(extra),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    return proc


def _with_extra_category(data, tmp_path):
    """The val file with a category 5 the model never saw, listed first,
    and one of its annotations relabelled to it."""
    gt = json.load(open(str(data / 'val' / 'annotations.json')))
    gt['categories'].insert(0, {'id': 5, 'name': 'unseen'})
    gt['annotations'][0]['category_id'] = 5
    path = tmp_path / 'val_extra.json'
    json.dump(gt, open(str(path), 'w'))
    return path


def test_evaluate_reads_val_in_the_models_classes(data, tmp_path):
    val_json = _with_extra_category(data, tmp_path)
    out = tmp_path / 'eval'
    proc = _evaluate(data, out, val_json=val_json)
    assert proc.returncode == 0, proc.stderr[-3000:]
    detections = json.load(open(str(out / 'detections.json')))
    assert detections
    # Labels 1..3 of the model are categories 1, 3, 7 (sorted ids of the
    # training file), whatever the val file lists.
    assert {d['category_id'] for d in detections} <= {1, 3, 7}
    stats = json.load(open(str(out / 'coco_eval.json')))
    assert 0 <= stats['bbox']['AP'] <= 1


def test_evaluate_mixed16(data, tmp_path):
    # One image: NumPy's float16 convolutions are slow.
    gt = json.load(open(str(data / 'val' / 'annotations.json')))
    first = gt['images'][0]['id']
    gt['images'] = gt['images'][:1]
    gt['annotations'] = [a for a in gt['annotations']
                         if a['image_id'] == first]
    val_json = tmp_path / 'one.json'
    json.dump(gt, open(str(val_json), 'w'))
    out = tmp_path / 'eval16'
    proc = _evaluate(data, out, '--dtype', 'mixed16', val_json=val_json)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.load(open(str(out / 'coco_eval.json')))
    assert 0 <= stats['segm']['AP'] <= 1 and stats['n_images'] == 1
    assert json.load(open(str(out / 'detections.json')))


def test_evaluate_refuses_a_model_that_does_not_fit(data, tmp_path):
    with numpy.load(str(data / 'run' / 'model_final.npz')) as npz:
        arrays = {k: npz[k] for k in npz.files}
    del arrays[sorted(k for k in arrays if k.endswith('/W'))[0]]
    partial = tmp_path / 'partial.npz'
    numpy.savez(str(partial), **arrays)
    proc = subprocess.run(
        [sys.executable, 'train.py', '--evaluate', '--pretrained',
         str(partial), '--out', str(tmp_path / 'o')] + _data_flags(data),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'train.py: error: {} does not fit the model'.format(partial))


def test_c4_roi_size_must_be_a_multiple_of_7(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'train.py', '--arch', 'c4', '--roi-size', '10',
         '--out', str(tmp_path / 'o')], cwd=ROOT, capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        'train.py: error: --roi-size 10 with --arch c4: expected a multiple '
        'of 7 (the box and mask heads share res5, which pools to 7 x 7)']


@pytest.mark.slow
def test_c4_roi_size_7_trains_and_predicts(data, tmp_path):
    # Both poolers at 7: res5 at stride 1 gives 7 x 7, the mask head 14 x
    # 14, the size of the targets (this crashed the mask loss before).
    out = tmp_path / 'c4'
    train.main(_data_flags(data) + [
        '--arch', 'c4', '--roi-size', '7', '--loaders', '0', '--iteration',
        '1', '--validation', '1', '--log-interval', '1', '--scales', '64',
        '--out', str(out)])
    log = json.load(open(str(out / 'log')))
    assert numpy.isfinite(log[-1]['main/loss'])
    assert 0 <= log[-1]['validation/main/segm/AP'] <= 1
    assert (out / 'model_final.npz').is_file()


@pytest.mark.slow
@pytest.mark.parametrize('arch, extra', [('fpn', []),
                                         ('c4', ['--subdivisions', '2'])])
def test_resnet_archs_train_evaluate_and_predict(data, tmp_path, arch,
                                                 extra):
    # R-50 from scratch at 64 px: two steps, an evaluation, then the saved
    # model predicts through load_model with its own classes.
    out = tmp_path / arch
    train.main(_data_flags(data) + [
        '--arch', arch, '--scales', '64', '--loaders', '0', '--iteration',
        '2', '--validation', '2', '--log-interval', '1', '--out',
        str(out)] + extra)
    log = json.load(open(str(out / 'log')))
    assert all(numpy.isfinite(e['main/loss']) for e in log)
    assert 0 <= log[-1]['validation/main/bbox/AP'] <= 1
    model, meta = load_model(str(out / 'model_final.npz'))
    assert meta['arch'] == arch and meta['class_ids'] == [1, 3, 7]
    image = sorted((data / 'val' / 'images').iterdir())[0]
    bboxes, labels, scores, masks = model.predict([read_image(str(image))])
    assert bboxes[0].shape == (len(labels[0]), 4)
    assert masks[0].shape == (len(labels[0]), 64, 80)
    assert ((labels[0] >= 1) & (labels[0] <= 3)).all()


def test_norm_bn_trains_its_statistics_and_loads_as_bn(data, tmp_path):
    out = tmp_path / 'bn'
    train.main(_data_flags(data) + [
        '--arch', 'fpn-tiny', '--norm', 'bn', '--loaders', '0',
        '--iteration', '2', '--validation', '100', '--out', str(out)])
    model, meta = load_model(str(out / 'model_final.npz'))
    assert meta['preset']['norm'] == 'bn'
    norm = model.extractor.body.conv1.norm
    assert type(norm).__name__ == 'BatchNormalization'
    # Two training steps moved the running averages off their start.
    assert numpy.abs(norm.avg_mean).max() > 0
    assert numpy.abs(norm.avg_var - 1).max() > 0
    image = sorted((data / 'val' / 'images').iterdir())[0]
    bboxes, labels, _, masks = model.predict([read_image(str(image))])
    assert masks[0].shape == (len(labels[0]), 64, 80)


def test_norm_syncbn_without_processes_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'train.py', '--norm', 'syncbn', '--out',
         str(tmp_path / 'out')], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        'train.py: error: --norm syncbn shares batch statistics between '
        'ChainerMN processes: start train.py with mpiexec and '
        '--communicator (or use --norm bn)']
