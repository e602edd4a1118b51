"""train.py end to end on tiny synthetic data: exact resume, bad input,
and a short run whose loss falls."""
import json
import os
import subprocess
import sys

import numpy
import pytest

import train

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


def test_resume_equals_uninterrupted_run(tmp_path):
    full = _run(tmp_path, 'full', '--iteration', '6', '--snapshot', '3')
    _run(tmp_path, 'first', '--iteration', '3', '--snapshot', '3')
    resumed = _run(tmp_path, 'resumed', '--iteration', '6', '--resume',
                   str(tmp_path / 'first' / 'snapshot_iter_3'))
    _assert_same_final_params(full, resumed)
    # The log continues: iteration, learning rate (decayed at 4) and loss.
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    assert [e['iteration'] for e in log_b] == list(range(1, 7))
    for ea, eb in zip(log_a, log_b):
        assert ea['lr'] == pytest.approx(eb['lr'])
        assert ea['main/loss'] == pytest.approx(eb['main/loss'], rel=1e-4)
    assert log_b[-1]['lr'] == pytest.approx(0.02 * 0.1)


def test_cosine_schedule_resumes_exactly(tmp_path):
    # Interrupted at a snapshot of the same 6-iteration run (the cosine
    # depends on --iteration), resumed, it ends where the whole run ends.
    cosine = ('--lr-schedule', 'cosine')
    full = _run(tmp_path, 'full', '--iteration', '6', '--snapshot', '3',
                schedule=cosine)
    resumed = _run(tmp_path, 'resumed', '--iteration', '6', '--resume',
                   os.path.join(full, 'snapshot_iter_3'), schedule=cosine)
    _assert_same_final_params(full, resumed)
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    assert [e['lr'] for e in log_a] == pytest.approx(
        [e['lr'] for e in log_b])
    assert [e['main/loss'] for e in log_a] == pytest.approx(
        [e['main/loss'] for e in log_b], rel=1e-4)
    # Rates fall along the cosine after the 2 warm-up iterations.
    lrs = [e['lr'] for e in log_a]
    assert all(x > y for x, y in zip(lrs[1:], lrs[2:]))
    with open(os.path.join(full, 'config.json')) as f:
        assert json.load(f)['lr_schedule'] == 'cosine'


def test_augmentations_resume_exactly(tmp_path):
    # Crop, colour jitter, mosaic, mixup, flip and scale draw from the
    # batcher's generator, which the snapshot holds: the resumed half ends
    # where the whole run ends.
    aug = ('--color-jitter', '0.4,0.4,0.4,0.1', '--random-crop', '0.5,1.5',
           '--crop-min-visible', '0.3', '--mosaic', '0.5',
           '--mixup', '0.5', '--scales', '160', '192')
    full = _run(tmp_path, 'full', '--iteration', '6', '--snapshot', '3', *aug)
    resumed = _run(tmp_path, 'resumed', '--iteration', '6', '--resume',
                   os.path.join(full, 'snapshot_iter_3'), *aug)
    _assert_same_final_params(full, resumed)
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    assert [e['main/loss'] for e in log_a] == pytest.approx(
        [e['main/loss'] for e in log_b], rel=1e-4)
    with open(os.path.join(full, 'config.json')) as f:
        config = json.load(f)
    assert config['color_jitter'] == [0.4, 0.4, 0.4, 0.1]
    assert config['random_crop'] == [0.5, 1.5]
    assert config['crop_min_visible'] == 0.3
    assert config['mixup'] == 0.5 and config['mosaic'] == 0.5


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


def test_bad_dataset_paths_give_one_line_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'train.py', '--dataset', 'coco-json',
         '--train-json', str(tmp_path / 'missing.json'),
         '--train-images', str(tmp_path), '--val-json',
         str(tmp_path / 'missing.json'), '--val-images', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'annotations not found' in proc.stderr
    assert 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_short_run_learns(tmp_path):
    # The quickstart's model and learning rate, 150 iterations on 40 images.
    out = _run(tmp_path, 'learn', '--iteration', '150', '--lr', '0.01',
               '--lr-steps', '1000', '--warmup', '20',
               '--synthetic-images', '40', '8', '--log-interval', '25')
    log = json.load(open(os.path.join(out, 'log')))
    first, last = log[0]['main/loss'], log[-1]['main/loss']
    assert last < 0.8 * first, [e['main/loss'] for e in log]
    assert log[-1]['validation/main/segm/AP'] > 0.01
    for name in ('demo.png', 'loss.png', 'ap.png', 'model_final.npz',
                 'coco_eval_iter_150.json'):
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
    # iteration 2), with its own flips and samples; only rank 0 writes.
    full, stdout = _run_mpi(mpiexec, tmp_path, 'full', '--iteration', '3',
                            '--snapshot', '2')
    assert stdout.count('learning rate 0.02 for batch 4 = 2 processes x '
                        '2') == 1
    _run_mpi(mpiexec, tmp_path, 'first', '--iteration', '2',
             '--snapshot', '2')
    resumed, _ = _run_mpi(mpiexec, tmp_path, 'resumed', '--iteration', '3',
                          '--resume', str(tmp_path / 'first' /
                                          'snapshot_iter_2'))
    _assert_same_final_params(full, resumed)
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    assert [e['iteration'] for e in log_b] == [1, 2, 3]
    for ea, eb in zip(log_a, log_b):
        assert ea['main/loss'] == pytest.approx(eb['main/loss'], rel=1e-4)
    assert sorted(f for f in os.listdir(full) if 'snapshot' in f) == [
        'snapshot_iter_2']
    assert os.path.isfile(os.path.join(full, 'demo.png'))


def test_impossible_split_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'train.py', '--gpus', '0,1', '--batchsize', '6',
         '--subdivisions', '2', '--out', str(tmp_path / 'out')],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
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
