"""train.py end to end on tiny synthetic data: exact resume, bad input,
and a short run whose loss falls."""
import json
import os
import subprocess
import sys

import numpy
import pytest

import train
from utils.training.results import evaluate_model, load_evaluated_model
from utils.weights.model_io import load_model
from tests.helpers.in_process import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, name, *extra, schedule=('--lr-steps', '4')):
    out = str(tmp_path / name)
    train.main(['--synthetic-root', str(tmp_path / 'data'),
                '--synthetic-images', '6', '3', '--loaders', '0',
                '--batchsize', '2', '--lr', '0.02', *schedule,
                '--warmup', '2',
                '--log-interval', '1', '--validation', '100',
                '--out', out] + list(extra))
    return out


def _params(path):
    with numpy.load(path) as npz:
        return {k: npz[k] for k in npz.files if k != '_meta'}


def _assert_same_final_params(run_a, run_b):
    a = _params(os.path.join(run_a, 'model_final.npz'))
    b = _params(os.path.join(run_b, 'model_final.npz'))
    assert a.keys() == b.keys()
    for k in a:
        numpy.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6,
                                      err_msg=k)


# Crop, perspective, colour jitter, mosaic, mixup, flip and scale draw from
# the batcher's generator, which the snapshot holds.
AUGMENTATIONS = (
    '--color-jitter', '0.4,0.4,0.4,0.1', '--random-crop', '0.5,1.5',
    '--perspective', '0.05', '--crop-min-visible', '0.3', '--mosaic', '0.5',
    '--mixup', '0.5', '--scales', '160', '192')


def test_resume_equals_uninterrupted_run(tmp_path):
    # With every augmentation on, a 3-iteration run resumed to 6 ends
    # where the whole 6-iteration run ends.
    full = _run(tmp_path, 'full', '--iteration', '6', '--snapshot', '3',
                *AUGMENTATIONS)
    _run(tmp_path, 'first', '--iteration', '3', '--snapshot', '3',
         *AUGMENTATIONS)
    resumed = _run(tmp_path, 'resumed', '--iteration', '6', '--resume',
                   str(tmp_path / 'first' / 'snapshot_iter_3'),
                   *AUGMENTATIONS)
    _assert_same_final_params(full, resumed)
    # The log continues: iteration, learning rate (decayed at 4) and loss.
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    assert [e['iteration'] for e in log_b] == list(range(1, 7))
    for ea, eb in zip(log_a, log_b):
        assert ea['lr'] == pytest.approx(eb['lr'])
        assert ea['main/loss'] == pytest.approx(eb['main/loss'], rel=1e-4)
    assert log_b[-1]['lr'] == pytest.approx(0.02 * 0.1)
    with open(os.path.join(full, 'config.json')) as f:
        config = json.load(f)
    assert config['color_jitter'] == [0.4, 0.4, 0.4, 0.1]
    assert config['random_crop'] == [0.5, 1.5]
    assert config['crop_min_visible'] == 0.3
    assert config['mixup'] == 0.5 and config['mosaic'] == 0.5
    assert config['perspective'] == 0.05


def _snapshot(run, iteration):
    """{key: array} of the trained model ('model/...') and of the weight
    average ('ema/...') in ``run``'s snapshot at ``iteration``."""
    live = 'updater/model:main/model/'
    ema = 'extensions/ema/average/'
    with numpy.load(os.path.join(run, 'snapshot_iter_{}'.format(
            iteration))) as npz:
        return {k.replace(live, 'model/').replace(ema, 'ema/'): npz[k]
                for k in npz.files if k.startswith((live, ema))}


def test_ema_with_cosine_resumes_exactly(tmp_path):
    # Interrupted at a snapshot of the same 6-iteration run (the cosine
    # depends on --iteration), resumed, it ends where the whole run ends.
    # The weight average follows a_t = d a_(t-1) + (1 - d) p_t, continues
    # exactly from a snapshot, is what the evaluation sees and what
    # model_final.npz holds.
    flags = ('--lr-schedule', 'cosine', '--ema', '0.5', '--snapshot', '1')
    full = _run(tmp_path, 'full', '--iteration', '6', schedule=flags)
    resumed = _run(tmp_path, 'resumed', '--iteration', '6', '--resume',
                   os.path.join(full, 'snapshot_iter_3'), schedule=flags)
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    for key in ('iteration', 'lr', 'main/loss', 'main/mask',
                'validation/main/bbox/AP', 'validation/main/segm/AP'):
        assert [e.get(key) for e in log_a] == pytest.approx(
            [e.get(key) for e in log_b], rel=1e-4), key
    # Rates fall along the cosine after the 2 warm-up iterations.
    lrs = [e['lr'] for e in log_a]
    assert all(x > y for x, y in zip(lrs[1:], lrs[2:]))
    last_a, last_b = _snapshot(full, 6), _snapshot(resumed, 6)
    assert last_a.keys() == last_b.keys()
    for k in last_a:
        numpy.testing.assert_allclose(last_a[k], last_b[k], rtol=1e-5,
                                      atol=1e-6, err_msg=k)
    _assert_same_final_params(full, resumed)
    # The recurrence, checked on the snapshots of every iteration.
    before = _snapshot(full, 5)
    names = [k[len('ema/'):] for k in last_a if k.startswith('ema/')]
    assert len(names) > 20
    for name in names:
        numpy.testing.assert_allclose(
            last_a['ema/' + name], 0.5 * before['ema/' + name] +
            0.5 * last_a['model/' + name], rtol=1e-6, atol=1e-7,
            err_msg=name)
    # The saved model is the average, not the last weights.
    final = _params(os.path.join(full, 'model_final.npz'))
    differ = 0
    for name in names:
        numpy.testing.assert_array_equal(final[name], last_a['ema/' + name])
        differ += not numpy.allclose(final[name], last_a['model/' + name])
    assert differ > 20
    # The evaluation at iteration 6 saw the average: the saved model's
    # detections are the logged ones.
    model, class_ids = load_evaluated_model(
        os.path.join(full, 'model_final.npz'))
    val = tmp_path / 'data' / 'val'
    evaluate_model(model, class_ids, (str(val / 'annotations.json'),
                                      str(val / 'images')),
                   str(tmp_path / 'eval'))
    logged = json.load(open(os.path.join(full, 'detections_iter_6.json')))
    again = json.load(open(str(tmp_path / 'eval' / 'detections.json')))
    assert len(logged) == len(again) > 0
    assert [d['score'] for d in logged] == pytest.approx(
        [d['score'] for d in again], rel=1e-4)
    with open(os.path.join(full, 'config.json')) as f:
        config = json.load(f)
    assert config['ema'] == 0.5 and config['lr_schedule'] == 'cosine'
    with numpy.load(os.path.join(full, 'model_final.npz')) as npz:
        assert json.loads(str(npz['_meta']))['ema'] == 0.5


@pytest.mark.parametrize('decay, warned', [(0.999, True), (0.99, False)])
def test_ema_warns_while_the_start_weighs_over_5_percent(tmp_path, capsys,
                                                         decay, warned):
    # 0.999 ** 500 = exp(-0.50025) = 0.606; 0.99 ** 500 = 0.0066.
    args = train.resolve_defaults(train.parse_args([
        '--ema', str(decay), '--iteration', '500', '--out', str(tmp_path)]))
    train.write_config(args, 'preset')
    expected = ('warning: with --ema 0.999 the starting weights still weigh '
                '0.61 in the average after --iteration 500')
    assert (expected in capsys.readouterr().out) == warned


def test_sizes_and_anchors_travel_to_the_model_file(tmp_path):
    from utils.weights.model_io import load_model
    out = _run(tmp_path, 'sizes', '--iteration', '1', '--min-size', '80',
               '--max-size', '100', '--anchor-sizes', '8', '16', '40', '80',
               '160')
    model, _ = load_model(os.path.join(out, 'model_final.npz'))
    assert (model.min_size, model.max_size) == (80, 100)
    # Square cell anchor (ratio 1) of each level: "+1" width = the size.
    widths = [a[1, 2] - a[1, 0] + 1 for a in model.cell_anchors]
    assert widths == pytest.approx([8, 16, 40, 80, 160])
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    assert config['anchor_sizes'] == [8, 16, 40, 80, 160]


def test_box_loss_is_recorded_for_training_only(tmp_path):
    from utils.weights.model_io import read_meta
    out = _run(tmp_path, 'giou', '--iteration', '2', '--box-loss', 'giou')
    with open(os.path.join(out, 'config.json')) as f:
        assert json.load(f)['box_loss'] == 'giou'
    log = json.load(open(os.path.join(out, 'log')))
    assert all(0 < e['main/roi_loc'] < 2 for e in log)
    # Inference does not depend on it: the model file does not keep it.
    assert 'box_loss' not in json.dumps(read_meta(
        os.path.join(out, 'model_final.npz')))


def test_bad_dataset_paths_give_one_line_errors(tmp_path):
    proc = run_cli(train.cli, [
        '--dataset', 'coco-json', '--train-json', tmp_path / 'missing.json',
        '--train-images', tmp_path, '--val-json', tmp_path / 'missing.json',
        '--val-images', tmp_path, '--out', tmp_path / 'out'])
    assert proc.returncode != 0
    assert 'annotations not found' in proc.stderr
    assert 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_short_run_learns(tmp_path):
    # The quickstart's model and learning rate on 40 images, 60 iterations
    # at 128 px (150 at 192 px cost 446 CPU s in review, this 22-74 here).
    # One run gave losses 2.17 (mean of iterations 1-10) ... 1.27, 1.45 and
    # AP 0.105 (bbox), 0.064 (segm).
    out = _run(tmp_path, 'learn', '--iteration', '60', '--lr', '0.01',
               '--lr-steps', '1000', '--warmup', '20', '--min-size', '128',
               '--max-size', '170', '--synthetic-images', '40', '8',
               '--log-interval', '10', '--validation', '60')
    log = json.load(open(os.path.join(out, 'log')))
    losses = [e['main/loss'] for e in log]
    assert len(losses) == 6
    assert numpy.mean(losses[-2:]) < 0.75 * losses[0], losses
    assert log[-1]['validation/main/bbox/AP'] > 0.03
    assert log[-1]['validation/main/segm/AP'] > 0.02
    for name in ('demo.png', 'loss.png', 'ap.png', 'model_final.npz',
                 'coco_eval_iter_60.json'):
        assert os.path.isfile(os.path.join(out, name)), name


def _run_mpi(mpiexec, tmp_path, name, *extra):
    out = str(tmp_path / name)
    proc = subprocess.run(
        [mpiexec, '-n', '2', sys.executable, 'train.py', '--communicator',
         'naive', '--synthetic-root', str(tmp_path / 'data'),
         '--synthetic-images', '6', '2', '--loaders', '0', '--batchsize',
         '2', '--lr', '0.02', '--lr-steps', '2', '--warmup', '1',
         '--log-interval', '1', '--validation', '100', '--out', out] +
        list(extra), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_two_processes_resume_exactly(tmp_path, mpiexec):
    # Each rank trains on its 3 of the 6 images (an epoch boundary inside
    # iteration 2), with its own flips and samples and its own weight
    # average (--ema); only rank 0 writes, every rank resumes.
    full, stdout = _run_mpi(mpiexec, tmp_path, 'full', '--iteration', '3',
                            '--snapshot', '2', '--ema', '0.5')
    assert stdout.count('learning rate 0.02 for batch 4 = 2 processes x '
                        '2') == 1
    _run_mpi(mpiexec, tmp_path, 'first', '--iteration', '2',
             '--snapshot', '2', '--ema', '0.5')
    resumed, _ = _run_mpi(mpiexec, tmp_path, 'resumed', '--iteration', '3',
                          '--ema', '0.5', '--resume',
                          str(tmp_path / 'first' / 'snapshot_iter_2'))
    _assert_same_final_params(full, resumed)
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    assert [e['iteration'] for e in log_b] == [1, 2, 3]
    for ea, eb in zip(log_a, log_b):
        assert ea['main/loss'] == pytest.approx(eb['main/loss'], rel=1e-4)
    assert sorted(f for f in os.listdir(full) if 'snapshot' in f) == [
        'snapshot_iter_2']
    assert os.path.isfile(os.path.join(full, 'demo.png'))


def test_two_processes_with_syncbn_save_a_bn_model(tmp_path, mpiexec):
    # The synchronised batch norm through train.py (its numbers are checked
    # against one process in test_sync_batch_norm.py): both ranks step, and
    # the saved model is a plain 'bn' one with trained running averages.
    out, _ = _run_mpi(mpiexec, tmp_path, 'syncbn', '--norm', 'syncbn',
                      '--iteration', '2')
    model, meta = load_model(os.path.join(out, 'model_final.npz'))
    assert meta['preset']['norm'] == 'bn'
    norm = model.extractor.body.conv1.norm
    assert type(norm).__name__ == 'BatchNormalization'
    assert numpy.abs(norm.avg_mean).max() > 0


def test_impossible_split_is_a_one_line_error(tmp_path):
    proc = run_cli(train.cli, ['--gpus', '0,1', '--batchsize', '6',
                               '--subdivisions', '2', '--out',
                               tmp_path / 'out'])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        'train.py: error: --batchsize 6 is not divisible by 2 device(s) x 2 '
        'subdivisions']


def test_corrupt_training_image_is_one_line_error(tmp_path):
    from utils.data.synthetic_coco import make_synthetic_coco
    for split, n in (('train', 4), ('val', 2)):
        make_synthetic_coco(str(tmp_path / split), n_images=n, height=64,
                            width=80, seed=3)
    for f in (tmp_path / 'train' / 'images').iterdir():
        f.write_bytes(b'not a png')
    proc = subprocess.run(
        [sys.executable, 'train.py', '--dataset', 'coco-json',
         '--arch', 'fpn-tiny', '--iteration', '2', '--loaders', '2',
         '--train-json', str(tmp_path / 'train' / 'annotations.json'),
         '--train-images', str(tmp_path / 'train' / 'images'),
         '--val-json', str(tmp_path / 'val' / 'annotations.json'),
         '--val-images', str(tmp_path / 'val' / 'images'),
         '--out', str(tmp_path / 'out')],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'cannot decode image' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert 'TypeError' not in proc.stderr
