"""Outputs the user can trust (#26, sections 3 and 5): nothing the user
owns is deleted, every output is written whole or not at all (a full
disk is one line naming the output, with no partial or temporary file
left, and the file that was there before kept), and strings from files
reach the terminal with their control characters escaped.

A full disk is simulated by a file object whose ``write`` stores at most
a budget of bytes and then raises ``OSError(ENOSPC)``, as the kernel
does; an optional test checks the same on a real 64 KiB tmpfs."""
import contextlib
import errno
import json
import os
import subprocess

import chainer
import cv2
import numpy
import pytest

import demo
import train
from utils.atomic_write import OutputError, atomic_write
from utils.data.coco_json import DatasetError
from utils.data.synthetic_coco import make_synthetic_coco
from utils.vis import draw_detections
from utils.weights.model_io import ModelFileError, load_model, save_model


class _FullDisk:
    """A file object that accepts ``budget`` bytes, then ENOSPC."""

    def __init__(self, f, budget):
        self._f, self._budget = f, budget

    def write(self, data):
        n = len(data)
        if n > self._budget:
            self._f.write(data[:self._budget])
            self._budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= n
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


@contextlib.contextmanager
def full_disk(monkeypatch, budget=100, modes=('w', 'wb')):
    """Every file ``atomic_write`` opens in one of ``modes`` holds at most
    ``budget`` bytes."""
    real = os.fdopen

    def fdopen(fd, mode='r', *args, **kwargs):
        f = real(fd, mode, *args, **kwargs)
        return _FullDisk(f, budget) if mode in modes else f

    monkeypatch.setattr(os, 'fdopen', fdopen)
    yield
    monkeypatch.setattr(os, 'fdopen', real)


def _files(folder):
    return sorted(os.listdir(str(folder)))


def test_atomic_write_keeps_the_old_file_on_a_full_disk(tmp_path,
                                                        monkeypatch):
    path = tmp_path / 'out.json'
    path.write_text('old')
    with full_disk(monkeypatch, budget=10):
        with pytest.raises(OutputError) as info:
            with atomic_write(str(path), 'w', '--json') as f:
                f.write('x' * 1000)
                f.flush()
    assert str(info.value) == 'cannot write the --json {}: No space left ' \
        'on device'.format(path)
    assert path.read_text() == 'old' and _files(tmp_path) == ['out.json']


def test_atomic_write_removes_its_file_on_any_exception(tmp_path):
    path = tmp_path / 'out.bin'
    with pytest.raises(KeyError):
        with atomic_write(str(path), 'wb') as f:
            f.write(b'half')
            raise KeyError('caller')
    assert _files(tmp_path) == []
    with atomic_write(str(path), 'wb') as f:
        f.write(b'whole')
    assert path.read_bytes() == b'whole' and _files(tmp_path) == ['out.bin']
    # The permissions of open(): 0o666 less the umask.
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(str(path)).st_mode & 0o777 == 0o666 & ~umask


def test_unwritable_folder_is_one_line(tmp_path):
    with pytest.raises(OutputError, match='cannot write the drawing .*'
                       'No such file or directory'):
        with atomic_write(str(tmp_path / 'no' / 'x.png'), 'wb',
                          'drawing') as f:
            f.write(b'x')


def test_drawing_on_a_full_disk_leaves_no_partial_png(tmp_path, monkeypatch):
    img = numpy.zeros((3, 40, 50), numpy.float32)
    path = tmp_path / 'demo.png'
    with full_disk(monkeypatch, budget=200):
        with pytest.raises(OutputError, match='drawing .*demo.png'):
            draw_detections(img, numpy.zeros((0, 4)), [], [], [], [],
                            str(path))
    assert _files(tmp_path) == []


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    """fpn-tiny with guaranteed class-2 detections and hostile names:
    terminal escapes and TeX for matplotlib."""
    from models.presets import build_mask_rcnn, get_preset
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset('fpn-tiny', n_fg_class=2))
    model.box_head.predictor.cls_score.b.array[2] = 8.
    folder = tmp_path_factory.mktemp('m')
    path = str(folder / 'tiny.npz')
    save_model(path, model, {
        'arch': 'fpn-tiny', 'depth': 50, 'n_fg_class': 2, 'class_ids': [5, 9],
        'class_names': ['\x1b]0;retitled\x07', '\x1b[2J$\\frac$ \u202e']})
    image = str(folder / 'a.png')
    cv2.imwrite(image, numpy.random.RandomState(0).randint(
        0, 255, (96, 128, 3)).astype(numpy.uint8))
    return path, image


def test_demo_prints_names_from_the_model_escaped(tmp_path, tiny_model,
                                                   capsys):
    model, image = tiny_model
    out = tmp_path / 'drawn.png'
    demo.main(['--image', image, '--modelfile', model, '--out', str(out)])
    stdout = capsys.readouterr().out
    assert '\x1b' not in stdout and '\u202e' not in stdout
    assert 'a.png: \\x1b[2J$\\frac$ \\u202e 1.000' in stdout, stdout
    assert cv2.imread(str(out)).shape == (96, 128, 3)


def test_demo_json_on_a_full_disk_is_one_line(tmp_path, tiny_model,
                                              monkeypatch):
    model, image = tiny_model
    results = tmp_path / 'results.json'
    results.write_text('[]')  # an earlier run's: kept whole
    drawn = tmp_path / 'drawn.png'
    with full_disk(monkeypatch, modes=('w',)):  # the drawing ('wb') fits
        with pytest.raises(OutputError) as info:
            demo.main(['--image', image, '--modelfile', model, '--out',
                       str(drawn), '--json', str(results)])
    assert str(info.value).startswith('cannot write the --json {}: No '
                                      'space left'.format(results))
    assert results.read_text() == '[]'
    assert _files(tmp_path) == ['drawn.png', 'results.json']


def test_model_npz_on_a_full_disk_keeps_the_old_one(tmp_path, tiny_model,
                                                    monkeypatch):
    model, _ = tiny_model
    net, meta = load_model(model)
    path = tmp_path / 'model.npz'
    save_model(str(path), net, dict(meta, note='old'))
    before = path.read_bytes()
    with full_disk(monkeypatch, budget=5000):
        with pytest.raises(ModelFileError, match='cannot write the model '
                           'file .*model.npz: No space left on device'):
            save_model(str(path), net, meta)
    assert path.read_bytes() == before and _files(tmp_path) == ['model.npz']


class _Scripted(chainer.Link):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.w = chainer.Parameter(numpy.ones(1, numpy.float32))

    def forward(self, *args):
        loss = self.w[0] * 0 + 1.
        chainer.report({'loss': loss}, self)
        return loss


def _trainer(out, n=3):
    from utils.training.snapshots import SoundSnapshot
    from utils.training.plots import AtomicPlotReport
    model = _Scripted()
    opt = chainer.optimizers.SGD(0.)
    opt.setup(model)
    it = chainer.iterators.SerialIterator([numpy.zeros(1, 'f')] * n, 1)
    trainer = chainer.training.Trainer(
        chainer.training.StandardUpdater(it, opt), (n, 'iteration'), out)
    trainer.extend(SoundSnapshot(model), trigger=(1, 'iteration'))
    trainer.extend(chainer.training.extensions.LogReport(
        trigger=(1, 'iteration')))
    trainer.extend(AtomicPlotReport(['main/loss'], 'iteration',
                                    (1, 'iteration'), filename='loss.png'))
    return trainer


def test_snapshot_on_a_full_disk_names_the_one_to_resume(tmp_path,
                                                         monkeypatch):
    from utils.training import snapshots
    real = snapshots.save_npz_synced
    calls = []

    def second_fails(path, target):
        calls.append(path)
        if len(calls) == 2:
            with full_disk(monkeypatch, budget=50):
                return real(path, target)
        return real(path, target)

    # SoundSnapshot hands chainer the function it finds when built.
    monkeypatch.setattr(snapshots, 'save_npz_synced', second_fails)
    trainer = _trainer(str(tmp_path))
    with pytest.raises(OutputError) as info:
        trainer.run(show_loop_exception_msg=False)
    first = os.path.join(str(tmp_path), 'snapshot_iter_1')
    assert str(info.value) == (
        'cannot write the snapshot of iteration 2 into {} (No space left on '
        'device): training stopped; resume with --resume {} once there is '
        'space'.format(tmp_path, first))
    # The earlier snapshot is whole; no temporary folder or file is left.
    with numpy.load(first) as npz:
        assert int(npz['updater/iteration']) == 1
    assert _files(tmp_path) == ['log', 'loss.png', 'snapshot_iter_1']


def test_plot_on_a_full_disk_leaves_no_partial_png(tmp_path, monkeypatch):
    import matplotlib.figure
    trainer = _trainer(str(tmp_path), n=2)
    real = matplotlib.figure.Figure.savefig

    def fails_at_two(self, fname, *a, **k):
        real(self, fname, *a, **k)
        if trainer.updater.iteration == 2:
            with open(fname, 'r+b') as f:  # what a full disk leaves
                f.truncate(10)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fname)

    monkeypatch.setattr(matplotlib.figure.Figure, 'savefig', fails_at_two)
    with pytest.raises(OSError):
        trainer.run(show_loop_exception_msg=False)
    files = _files(tmp_path)
    assert '.tmp-loss.png' not in files and 'loss.png' in files
    assert cv2.imread(str(tmp_path / 'loss.png')) is not None  # iteration 1


def test_train_refuses_a_synthetic_root_it_did_not_write(tmp_path):
    # The user's data, shaped like the synthetic set: it was deleted.
    root = tmp_path / 'mine'
    make_synthetic_coco(str(root / 'train'), n_images=2, height=24,
                        width=32)
    before = {p: p.read_bytes() for p in root.rglob('*') if p.is_file()}
    with pytest.raises(DatasetError, match='has no synthetic.json'):
        train.main(['--synthetic-root', str(root), '--out',
                    str(tmp_path / 'result'), '--iteration', '1'])
    assert {p: p.read_bytes() for p in root.rglob('*')
            if p.is_file()} == before


def _tmpfs(folder):
    folder.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k',
                           'tmpfs', str(folder)], capture_output=True)
    if proc.returncode:
        pytest.skip('cannot mount a tmpfs here')


def test_real_full_disk_on_a_tmpfs(tmp_path):
    disk = tmp_path / 'disk'
    _tmpfs(disk)
    try:
        path = disk / 'results.json'
        path.write_text('[]')
        with pytest.raises(OutputError, match='No space left on device'):
            with atomic_write(str(path)) as f:
                json.dump([0] * 100000, f)
        assert path.read_text() == '[]' and _files(disk) == ['results.json']
    finally:
        subprocess.run(['umount', str(disk)])


def test_a_log_or_plot_on_a_full_disk_is_one_line(tmp_path):
    # train.py's reading of an OSError out of trainer.run.
    from types import SimpleNamespace
    from utils.training.snapshots import write_failure
    for name in ('snapshot_iter_5', 'snapshot_iter_10', 'snapshot_iter_15'):
        (tmp_path / name).write_bytes(b'')
    trainer = SimpleNamespace(out=str(tmp_path),
                              updater=SimpleNamespace(iteration=15))
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                    str(tmp_path / 'log'))
    assert write_failure(trainer, 'file {}'.format(error.filename),
                         error) == (
        'cannot write the file {0}/log of iteration 15 into {0} (No space '
        'left on device): training stopped; resume with --resume '
        '{0}/snapshot_iter_10 once there is space'.format(tmp_path))


def test_model_metadata_nested_deep_is_one_line(tmp_path):
    from utils.weights.model_io import META_KEY, read_meta
    path = str(tmp_path / 'deep.npz')
    numpy.savez(path, **{META_KEY: numpy.array('[' * 200000 +
                                               ']' * 200000)})
    with pytest.raises(ModelFileError, match='_meta is not valid JSON'):
        read_meta(path)


def test_a_deep_manifest_is_not_the_generators(tmp_path):
    from utils.data.synthetic_coco import ensure_synthetic_coco
    root = tmp_path / 'train'
    root.mkdir()
    (root / 'synthetic.json').write_text('[' * 200000 + ']' * 200000)
    with pytest.raises(DatasetError, match='has no synthetic.json'):
        ensure_synthetic_coco(str(root), 2, 24, 32, seed=0)
