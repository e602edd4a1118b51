"""train.py on bad input: a one-line error naming the file or flag, no
traceback, no code run from any file, no input changed and no work lost.
The corpus is built here, in tmp_path. The checks call ``train.cli`` in
this process (tests/helpers/in_process.py); one runs train.py as a user
runs it, in a subprocess."""
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy
import pytest

import train
from tests.helpers.crafted_pickles import touch_payload
from tests.helpers.in_process import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sha(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def _train(*args):
    return run_cli(train.cli, args)


def _assert_one_line_error(proc, *words):
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert 'error:' in last, proc.stderr[-2000:]
    for word in words:
        assert word in last, last


@pytest.fixture
def data(tiny_coco_run):
    """Tiny train/val sets (categories 1, 3, 7) and a 2-iteration run's
    snapshot and model, shared by the session (tests/conftest.py)."""
    return tiny_coco_run


def _data_flags(root, train_json=None, val_json=None):
    return ['--dataset', 'coco-json',
            '--train-json', str(train_json or root / 'train' /
                                'annotations.json'),
            '--train-images', str(root / 'train' / 'images'),
            '--val-json', str(val_json or root / 'val' / 'annotations.json'),
            '--val-images', str(root / 'val' / 'images')]


def _flags(root, out, *extra, **json_paths):
    return _data_flags(root, **json_paths) + [
        '--arch', 'fpn-tiny', '--loaders', '0', '--iteration', '4',
        '--validation', '100', '--out', str(out)] + list(extra)


def _bad_snapshots(data, tmp_path):
    """name -> (file, words the error must hold)."""
    marker = tmp_path / 'PWNED'
    snapshot = data / 'run' / 'snapshot_iter_2'
    files = {}
    files['pickle'] = tmp_path / 'evil.pkl'
    files['pickle'].write_bytes(pickle.dumps(touch_payload(marker)))
    with numpy.load(str(snapshot)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays['updater/iteration'] = numpy.array([touch_payload(marker)], object)
    files['object array'] = tmp_path / 'evil.npz'
    numpy.savez(str(files['object array']), **arrays)
    files['truncated'] = tmp_path / 'truncated'
    files['truncated'].write_bytes(snapshot.read_bytes()[:4000])
    files['npy'] = tmp_path / 'one.npy'
    numpy.save(str(files['npy']), numpy.zeros(3))
    files['empty'] = tmp_path / 'empty.npz'
    files['empty'].write_bytes(b'')
    files['model'] = data / 'run' / 'model_final.npz'
    return marker, files


def test_resume_never_runs_code_and_refuses_bad_files(data, tmp_path):
    marker, files = _bad_snapshots(data, tmp_path)
    words = {'pickle': 'never loaded', 'object array': 'object array',
             'truncated': 'not a readable', 'npy': 'single .npy',
             'empty': 'not a readable', 'model': '--pretrained'}
    for name, path in files.items():
        before = _sha(str(path))
        out = tmp_path / ('out-' + name)
        proc = _train(*_flags(data, out, '--resume', str(path)))
        _assert_one_line_error(proc, str(path), words[name])
        assert _sha(str(path)) == before, name
        assert not marker.exists(), name
        assert not (out / 'model_final.npz').exists(), name


def _replace(flags, flag, value):
    flags = list(flags)
    flags[flags.index(flag) + 1] = str(value)
    return flags


def test_resume_of_another_dataset_or_a_missing_file(data, tmp_path):
    # The snapshot is of 6 training images; train on the 3 of val instead.
    snapshot = str(data / 'run' / 'snapshot_iter_2')
    flags = _flags(data, tmp_path / 'o', '--resume', snapshot)
    flags = _replace(flags, '--train-json',
                     data / 'val' / 'annotations.json')
    flags = _replace(flags, '--train-images', data / 'val' / 'images')
    _assert_one_line_error(_train(*flags), snapshot,
                           'training set of 6 images, this one has 3')
    proc = _train(*_flags(data, tmp_path / 'o', '--resume',
                          str(tmp_path / 'missing')))
    _assert_one_line_error(proc, 'not found', str(tmp_path / 'missing'))


@pytest.mark.parametrize('flag', ['--batchsize', '--iteration', '--snapshot',
                                  '--validation', '--scales'])
def test_meaningless_numbers_are_refused(flag, tmp_path):
    proc = _train(flag, '0', '--out', str(tmp_path / 'o'))
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert flag in last and "expected a positive integer, got '0'" in last
    assert not os.path.exists(str(tmp_path / 'o'))


@pytest.mark.parametrize('value', ['1', '0', 'x'])
def test_ema_decay_must_be_between_0_and_1(value, tmp_path):
    proc = _train('--ema', value, '--out', str(tmp_path / 'o'))
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith("argument --ema: expected a decay in (0, 1), got "
                         "'{}'".format(value))
    assert not os.path.exists(str(tmp_path / 'o'))


def test_resume_with_ema_of_a_snapshot_without_it(data, tmp_path):
    snapshot = str(data / 'run' / 'snapshot_iter_2')
    proc = _train(*_flags(data, tmp_path / 'o', '--resume', snapshot,
                          '--ema', '0.9'))
    _assert_one_line_error(proc, snapshot, 'does not fit', 'no weight '
                           'average (it was written without --ema)')


def test_resume_without_ema_of_a_snapshot_with_it(data, tmp_path):
    # Loading would ignore the average: refused rather than lost.
    first = tmp_path / 'ema'
    train.main(_data_flags(data) + [
        '--arch', 'fpn-tiny', '--loaders', '0', '--iteration', '2',
        '--snapshot', '2', '--validation', '100', '--ema', '0.75', '--out',
        str(first)])
    snapshot = str(first / 'snapshot_iter_2')
    proc = _train(*_flags(data, tmp_path / 'o', '--resume', snapshot))
    _assert_one_line_error(proc, snapshot, 'holds a weight average (--ema '
                           '0.75): resume with that --ema')


def test_lr_steps_with_the_cosine_schedule_is_one_line(tmp_path):
    # The end-to-end check of the file: a real interpreter, so the one line
    # is what train.py's __main__ prints, without a traceback.
    proc = subprocess.run(
        [sys.executable, 'train.py', '--lr-schedule', 'cosine',
         '--lr-steps', '300', '--out', str(tmp_path / 'o')], cwd=ROOT,
        capture_output=True, text=True, timeout=60)
    _assert_one_line_error(proc, '--lr-steps', '--lr-schedule step')
    assert not os.path.exists(str(tmp_path / 'o'))


@pytest.mark.parametrize('flags, words', [
    (('--color-jitter', '0.4,0.4'), ('--color-jitter', 'expected 4 comma')),
    (('--color-jitter', '0.4,0.4,0.4,0.7'), ('hue', '[0, 0.5], got 0.7')),
    (('--color-jitter=-1,0,0,0',), ('brightness', '>= 0, got -1.0')),
    (('--random-crop', '1.5,0.5'), ('--random-crop', '0 < LO <= HI')),
    (('--random-crop', 'a,b'), ('--random-crop', 'expected 2 comma')),
    (('--crop-min-visible', '0.5'), ('--crop-min-visible', '--mosaic')),
    (('--mixup', '1.5'), ('--mixup', "probability in [0, 1], got '1.5'")),
    (('--mosaic', 'x'), ('--mosaic', "probability in [0, 1], got 'x'")),
    (('--perspective', '0.25'),
     ('--perspective', "corner move in [0, 0.25) of the image sides, got "
      "'0.25'")),
    (('--perspective=-0.1',), ('--perspective', "got '-0.1'")),
    (('--perspective', 'x'), ('--perspective', "got 'x'")),
    (('--random-crop', '0.5,1', '--crop-min-visible', '2'),
     ('--crop-min-visible', 'fraction in [0, 1], got 2.0')),
])
def test_bad_augmentation_flags_are_one_line(flags, words, tmp_path):
    proc = _train(*flags, '--out', str(tmp_path / 'o'))
    _assert_one_line_error(proc, *words)
    assert not os.path.exists(str(tmp_path / 'o'))


def test_anchor_sizes_of_the_wrong_count_is_one_line(data, tmp_path):
    proc = _train(*_flags(data, tmp_path / 'o', '--anchor-sizes', '16', '32'))
    _assert_one_line_error(proc, '--anchor-sizes', 'expected 5 sizes, got 2')


def test_output_folder_that_is_a_file(data, tmp_path):
    a_file = tmp_path / 'file'
    a_file.write_text('keep me')
    for out in (a_file, a_file / 'below'):
        proc = _train(*_flags(data, out))
        _assert_one_line_error(proc, '--out', str(out))
    assert a_file.read_text() == 'keep me'


def test_gpu_without_cupy_is_one_line(tmp_path):
    import importlib.util
    if importlib.util.find_spec('cupy') is not None:
        pytest.skip('CuPy is installed here')
    for flags in (['--gpu', '0'], ['--gpus', '0,1']):
        proc = _train(*flags, '--out', str(tmp_path / 'o'))
        _assert_one_line_error(proc, flags[0], 'needs CuPy')


def _rewrite(src, dst, change):
    data = json.load(open(str(src)))
    change(data)
    json.dump(data, open(str(dst), 'w'))
    return dst


def test_training_set_without_usable_instance(data, tmp_path):
    def all_crowd(d):
        for a in d['annotations']:
            a['iscrowd'] = 1
    bad = _rewrite(data / 'train' / 'annotations.json',
                   tmp_path / 'crowd.json', all_crowd)
    proc = _train(*_flags(data, tmp_path / 'o', train_json=bad))
    _assert_one_line_error(proc, str(bad), 'no usable instance')


def test_failing_evaluation_keeps_snapshot_and_model(data, tmp_path):
    # A val image that cannot be decoded fails the evaluation at
    # iteration 2, the last one: the snapshot and the model still exist.
    val = tmp_path / 'val'
    shutil.copytree(str(data / 'val'), str(val))
    first = sorted((val / 'images').iterdir())[0]
    first.write_bytes(b'not an image')
    out = tmp_path / 'o'
    flags = _flags(data, out, '--iteration', '2', '--snapshot', '2',
                   '--validation', '2')
    proc = _train(*_replace(flags, '--val-images', val / 'images'))
    _assert_one_line_error(proc, 'evaluation at iteration 2 failed',
                           'snapshot_iter_2', 'model_final.npz')
    assert (out / 'snapshot_iter_2').is_file()
    assert (out / 'model_final.npz').is_file()


def test_interrupted_snapshot_folders_are_removed(data, tmp_path):
    out = tmp_path / 'o'
    (out / 'tmpsnapshot_iter_250abc').mkdir(parents=True)
    (out / 'tmpsnapshot_iter_250abc' / 'snapshot_iter_250').write_bytes(b'x')
    (out / 'keep').write_text('not ours')
    proc = _train(*_flags(data, out, '--iteration', '1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / 'tmpsnapshot_iter_250abc').exists()
    assert (out / 'keep').read_text() == 'not ours'


def test_in_process_runs_leave_the_process_as_they_found_it(tmp_path):
    # mixed16 sets chainer's global dtype and --threads 1 the thread
    # counts before the missing model file is refused: both put back.
    import chainer
    from threadpoolctl import threadpool_info
    from functions import winograd

    def state():
        return (chainer.global_config.dtype, winograd._Workers.count,
                [lib['num_threads'] for lib in threadpool_info()],
                os.getcwd(), numpy.random.get_state()[1][:4].tolist())
    winograd._Workers.count += 1  # not the value --threads 1 sets
    try:
        before = state()
        missing = tmp_path / 'missing.npz'
        proc = _train('--evaluate', '--pretrained', missing, '--dtype',
                      'mixed16', '--threads', '1', '--out', tmp_path / 'o')
        _assert_one_line_error(proc, str(missing))
        assert state() == before
    finally:
        winograd._Workers.count -= 1
