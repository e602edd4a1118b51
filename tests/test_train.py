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


def _run(tmp_path, name, *extra):
    out = str(tmp_path / name)
    train.main(['--synthetic-root', str(tmp_path / 'data'),
                '--synthetic-images', '6', '3', '--loaders', '0',
                '--batchsize', '2', '--lr', '0.02', '--lr-steps', '4',
                '--warmup', '2',
                '--log-interval', '1', '--validation', '100',
                '--out', out] + list(extra))
    return out


def _params(path):
    with numpy.load(path) as npz:
        return {k: npz[k] for k in npz.files if k != '_meta'}


def test_resume_equals_uninterrupted_run(tmp_path):
    full = _run(tmp_path, 'full', '--iteration', '6', '--snapshot', '3')
    _run(tmp_path, 'first', '--iteration', '3', '--snapshot', '3')
    resumed = _run(tmp_path, 'resumed', '--iteration', '6', '--resume',
                   str(tmp_path / 'first' / 'snapshot_iter_3'))
    a = _params(os.path.join(full, 'model_final.npz'))
    b = _params(os.path.join(resumed, 'model_final.npz'))
    assert a.keys() == b.keys()
    for k in a:
        numpy.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6,
                                      err_msg=k)
    # The log continues: iteration, learning rate (decayed at 4) and loss.
    log_a = json.load(open(os.path.join(full, 'log')))
    log_b = json.load(open(os.path.join(resumed, 'log')))
    assert [e['iteration'] for e in log_b] == list(range(1, 7))
    for ea, eb in zip(log_a, log_b):
        assert ea['lr'] == pytest.approx(eb['lr'])
        assert ea['main/loss'] == pytest.approx(eb['main/loss'], rel=1e-4)
    assert log_b[-1]['lr'] == pytest.approx(0.02 * 0.1)


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
