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

import chainer
import numpy
import pytest

import train
from utils.ops.image import prepare, read_image
from utils.training.results import evaluate_model, load_evaluated_model
from utils.weights.model_io import load_model
from tests.helpers.in_process import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def data(tiny_coco_run):
    """Tiny train/val sets (categories 1, 3, 7) and a 2-iteration run's
    snapshot and model, shared by the session (tests/conftest.py)."""
    return tiny_coco_run


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


def _evaluate_in_process(npz, val_json, images, out):
    """detections.json of ``npz`` evaluated here, in float32."""
    model, class_ids = load_evaluated_model(str(npz))
    evaluate_model(model, class_ids, (str(val_json), str(images)), str(out))
    return json.load(open(str(out / 'detections.json')))


def _assert_same_detections(got, expected, atol=1e-3, rtol=1e-4,
                            some=True):
    assert len(got) == len(expected) and (len(got) > 0 or not some)
    for a, b in zip(got, expected):
        assert (a['image_id'], a['category_id']) == (
            b['image_id'], b['category_id'])
        assert a['bbox'] == pytest.approx(b['bbox'], abs=atol)
        assert a['score'] == pytest.approx(b['score'], rel=rtol)


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
    # The extra category changes nothing the model detects: the same
    # detections as the model on the original val file.
    _assert_same_detections(detections, _evaluate_in_process(
        data / 'run' / 'model_final.npz', data / 'val' / 'annotations.json',
        data / 'val' / 'images', tmp_path / 'here'))


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
    half = json.load(open(str(out / 'detections.json')))
    # float16 features, float32 proposals and scores: the float32 model's
    # best detections up to float16 rounding.
    full = _evaluate_in_process(data / 'run' / 'model_final.npz', val_json,
                                data / 'val' / 'images', tmp_path / 'f32')
    assert abs(len(half) - len(full)) <= max(2, len(full) // 10)
    _assert_same_detections(half[:5], full[:5], atol=1., rtol=0.02)


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
    proc = run_cli(train.cli, ['--arch', 'c4', '--roi-size', '10',
                               '--out', tmp_path / 'o'])
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
    # The saved model pools 7 x 7 for both heads (the default, 14, pools
    # 14 x 14), res5 keeps 7 x 7 (stride 1, not 2) and the mask head
    # upsamples it to 14 x 14, the size of its targets.
    model, meta = load_model(str(out / 'model_final.npz'))
    assert meta['preset']['box_roi_size'] == 7
    image = read_image(str(sorted((data / 'val' / 'images').iterdir())[0]))
    rois = numpy.array([[0, 0, 40, 30], [10, 5, 63, 60]], numpy.float32)
    index = numpy.zeros(2, numpy.int32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        x = prepare(image, 64, 96, 1, **model.normalization)[0]
        features = model.extractor(x[None])[model.head_levels]
        for pooler in (model.box_head.pooler, model.mask_head.pooler):
            pooled = pooler(features, rois, index)
            assert pooled.shape == (2, 1024, 7, 7)
        assert model.box_head.res5(pooled).shape == (2, 2048, 7, 7)
        assert model.mask_head(features, rois, index).shape == (2, 4, 14,
                                                                14)


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
    # The reloaded npz detects what the in-memory model detected in its
    # evaluation at iteration 2 (after two steps of R-50 from scratch both
    # runs detected nothing above 0.05 here, so this can hold vacuously).
    logged = json.load(open(str(out / 'detections_iter_2.json')))
    _assert_same_detections(_evaluate_in_process(
        out / 'model_final.npz', data / 'val' / 'annotations.json',
        data / 'val' / 'images', tmp_path / 'again'), logged, some=False)


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
    proc = run_cli(train.cli, ['--norm', 'syncbn', '--out',
                               tmp_path / 'out'])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        'train.py: error: --norm syncbn shares batch statistics between '
        'ChainerMN processes: start train.py with mpiexec and '
        '--communicator (or use --norm bn)']
