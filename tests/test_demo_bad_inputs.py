"""demo.py on inputs and flags that cannot all work: it never writes onto an
input, skips images it cannot use but still writes the others' results,
and refuses anything else in one line, before the slow work where it can
(issue #13). The checks call ``demo.cli`` in this process
(tests/helpers/in_process.py); one runs demo.py as a user runs it, in a
subprocess."""
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import cv2
import numpy
import pytest

import demo
from utils.weights.model_io import save_model
from tests.helpers.in_process import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(*args, cwd=None):
    return run_cli(demo.cli, args, cwd=cwd)


def _demo_subprocess(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'demo.py')] + [str(a) for a in
                                                           args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def _digests(*paths):
    """sha256 of every file at or under ``paths``."""
    files = []
    for path in map(str, paths):
        if os.path.isdir(path):
            files += [os.path.join(d, f) for d, _, fs in os.walk(path)
                      for f in fs]
        else:
            files.append(path)
    return {f: hashlib.sha256(open(f, 'rb').read()).hexdigest()
            for f in files}


def _last_error(proc, *words, status=1):
    """The one-line ``demo.py: error:`` that ends stderr, naming ``words``."""
    assert proc.returncode == status, proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('demo.py: error: '), proc.stderr
    for word in words:
        assert word in last, last
    return last


def _refused(proc, *words):
    """Refused in one line before the model ran."""
    _last_error(proc, *words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert 'detections' not in proc.stdout


def _write_image(path, h=40, w=50, seed=0):
    rng = numpy.random.RandomState(seed)
    cv2.imwrite(str(path), rng.randint(0, 255, (h, w, 3)).astype(
        numpy.uint8))


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """npz files of one small random model (FPN-tiny, 2 classes, every
    proposal class 2) with different metadata."""
    from models.presets import build_mask_rcnn, get_preset
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset('fpn-tiny', n_fg_class=2))
    model.box_head.predictor.cls_score.b.array[2] = 8.
    folder = tmp_path_factory.mktemp('models')
    base = {'arch': 'fpn-tiny', 'depth': 50, 'n_fg_class': 2}
    metas = {'named': dict(base, class_ids=[5, 9],
                           class_names=['circle', 'square']),
             'custom': base,
             'mismatch': dict(base, class_names=['a', 'b', 'c'])}
    paths = {}
    for name, meta in metas.items():
        paths[name] = str(folder / (name + '.npz'))
        save_model(paths[name], model, meta)
    return paths


@pytest.fixture
def photos(tmp_path):
    """A folder of three small images, two of them with the stem 'a'."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    for seed, name in enumerate(('a.jpg', 'a.png', 'b.png')):
        _write_image(folder / name, seed=seed)
    return folder


# Few, well separated detections keep the drawing quick.
FEW = ('--score-thresh', '0.5', '--nms-thresh', '0.01')
NONE = ('--score-thresh', '1.01')


# --- item 8: no output onto an input, distinct names ----------------------

def test_out_that_is_the_input_image_is_refused(photos, models):
    before = _digests(photos)
    _refused(_demo('--image', photos / 'a.png', '--modelfile',
                   models['named'], '--out', photos / 'a.png'),
             '--out', 'a.png', 'is an input')
    assert _digests(photos) == before


def test_out_that_is_an_input_folder_is_refused(photos, models):
    before = _digests(photos)
    _refused(_demo('--image', photos, '--modelfile', models['named'],
                   '--out', photos), '--out', 'is an input')
    assert _digests(photos) == before


def test_out_folder_that_would_overwrite_an_input_is_refused(photos,
                                                             models):
    before = _digests(photos)
    _refused(_demo('--image', photos / 'b.png', '--modelfile',
                   models['named'], '--out', photos),
             '--out', 'would overwrite the input', 'b.png')
    assert _digests(photos) == before


def test_json_that_is_the_model_file_is_refused(photos, models, tmp_path):
    model = tmp_path / 'copy.npz'
    shutil.copy(models['named'], str(model))
    before = _digests(photos, model)
    _refused(_demo('--image', photos / 'b.png', '--modelfile', model,
                   '--json', model, '--out', tmp_path / 'o.png'),
             '--json', 'is an input')
    assert _digests(photos, model) == before


def test_out_without_extension_is_written_exactly_there(photos, models):
    # matplotlib alone would append '.png' and write onto photos/a.png.
    before = _digests(photos)
    proc = _demo('--image', photos / 'a.png', '--modelfile',
                 models['named'], '--out', photos / 'a', *NONE)
    assert proc.returncode == 0, proc.stderr
    assert open(str(photos / 'a'), 'rb').read(4) == b'\x89PNG'
    (photos / 'a').unlink()
    assert _digests(photos) == before


def test_images_sharing_a_stem_get_distinct_drawings(photos, models,
                                                     tmp_path):
    out = tmp_path / 'out'
    proc = _demo('--image', photos, '--modelfile', models['named'],
                 '--out', out, *NONE)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(str(out))) == ['a.jpg.png', 'a.png.png',
                                            'b.png']


def test_output_names():
    from utils.demo_io import output_names
    assert output_names(['x/a.jpg', 'x/b.png']) == ['a.png', 'b.png']
    assert output_names(['x/a.jpg', 'x/A.png', 'x/b.png']) == [
        'a.jpg.png', 'A.png.png', 'b.png']
    # One name in two folders, and a stem that is another's whole name.
    assert output_names(['x/a.png', 'y/a.png', 'z/a.png.jpg']) == [
        'a.png.png', 'a.png.2.png', 'a.png.3.png']


# --- item 9: skip bad images, keep the rest; outputs checked first --------

def test_bad_images_are_skipped_and_the_rest_written(photos, models,
                                                     tmp_path):
    (photos / 'a.jpg').unlink()
    (photos / 'bad.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    cv2.imwrite(str(photos / 'thin.png'), numpy.zeros((1, 5000, 3),
                                                      numpy.uint8))
    before = _digests(photos)
    results = tmp_path / 'new' / 'sub' / 'results.json'  # folders missing
    out = tmp_path / 'out'
    proc = _demo('--image', photos, '--modelfile', models['named'],
                 '--out', out, '--json', results, '--contour', *FEW)
    last = _last_error(proc, '2 of 4 images failed', 'bad.jpg', 'thin.png')
    skipped = [line for line in proc.stderr.splitlines()
               if line.startswith('demo.py: skipped')]
    assert len(skipped) == 2 and 'cannot decode' in skipped[0]
    assert '5000x1' in skipped[1], skipped
    assert 'a.png' not in last
    assert sorted(os.listdir(str(out))) == ['a.png', 'b.png']
    dets = json.load(open(str(results)))
    assert {d['image_id'] for d in dets} == {0, 1}  # a.png, b.png
    assert _digests(photos) == before


def test_a_too_thin_image_is_one_line(tmp_path, models):
    thin = tmp_path / 'thin.png'
    cv2.imwrite(str(thin), numpy.zeros((1, 5000, 3), numpy.uint8))
    proc = _demo('--image', thin, '--modelfile', models['named'],
                 '--out', tmp_path / 'o.png')
    _last_error(proc, 'thin.png', '5000x1', 'too thin')
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not os.path.exists(str(tmp_path / 'o.png'))


def test_outputs_in_missing_folders_are_created(photos, models, tmp_path):
    out = tmp_path / 'new1' / 'a.png'
    results = tmp_path / 'new2' / 'r.json'
    proc = _demo('--image', photos / 'a.png', '--modelfile',
                 models['named'], '--out', out, '--json', results, *NONE)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(str(out))
    assert json.load(open(str(results))) == []


@pytest.mark.parametrize('flag, path, words', [
    ('--json', 'file.txt/r.json', ('--json', 'cannot be created')),
    ('--out', 'file.txt/drawings', ('--out', 'cannot be created')),
    ('--out', 'file.txt', ('--out', 'is a file', 'need a folder')),
    ('--json', 'photos', ('--json', 'is an input')),
    ('--json', '.', ('--json', 'is a folder')),
])
def test_unusable_outputs_are_refused_before_any_work(photos, models,
                                                      tmp_path, flag, path,
                                                      words):
    (tmp_path / 'file.txt').write_text('not a folder')
    before = _digests(photos, tmp_path / 'file.txt')
    args = ['--image', photos, '--modelfile', models['named'], flag,
            tmp_path / path]
    if flag == '--json':
        args += ['--out', tmp_path / 'out']
    _refused(_demo(*args), *words)
    assert _digests(photos, tmp_path / 'file.txt') == before


def test_out_format_is_checked_before_any_work(photos, models, tmp_path):
    # The end-to-end check of the file: a real interpreter, so the one line
    # is what demo.py's __main__ prints, without a traceback.
    _refused(_demo_subprocess('--image', photos / 'a.png', '--modelfile',
                   models['named'], '--out', tmp_path / 'o.txt'),
             '--out', '.txt', '.png')


# --- item 13: --gpu without CuPy ------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec('cupy') is not None,
                    reason='CuPy is installed')
def test_gpu_without_cupy_is_one_line_before_the_model(photos, tmp_path):
    # The model file does not exist: the GPU check must come first.
    _refused(_demo('--image', photos / 'a.png', '--modelfile',
                   tmp_path / 'missing.npz', '--gpu', '0'),
             '--gpu 0 needs CuPy, which is not installed')


# --- item 15: class names, default output folder ---------------------------

def test_custom_classes_are_not_given_coco_names(photos, models, tmp_path):
    results = tmp_path / 'r.json'
    proc = _demo('--image', photos / 'a.png', '--modelfile',
                 models['custom'], '--out', tmp_path / 'o.png', '--json',
                 results, *FEW)
    assert proc.returncode == 0, proc.stderr
    assert 'a.png: class 2 ' in proc.stdout
    assert 'bicycle' not in proc.stdout  # COCO's label 2
    dets = json.load(open(str(results)))
    assert dets and {d['category_id'] for d in dets} == {2}


def test_class_names_of_the_wrong_length_are_refused(photos, models,
                                                     tmp_path):
    _refused(_demo('--image', photos / 'a.png', '--modelfile',
                   models['mismatch'], '--out', tmp_path / 'o.png'),
             'mismatch.npz', 'class_names', '3')


def test_several_images_default_to_an_output_folder(photos, models,
                                                    tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    proc = _demo('--image', photos / 'a.png', photos / 'b.png',
                 '--modelfile', models['named'], *NONE, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(str(work)) == ['output']
    assert sorted(os.listdir(str(work / 'output'))) == ['a.png', 'b.png']


# --- item 17: --help -------------------------------------------------------

def test_help_states_each_default_once_in_words():
    proc = _demo('--help')
    assert proc.returncode == 0, proc.stderr
    assert 'None' not in proc.stdout
    options = re.split('options:|optional arguments:', proc.stdout)[1]
    blocks = ['--' + b for b in options.split('\n  --')[1:]]
    assert len(blocks) == 12, blocks
    for block in blocks:
        assert block.count('default') == 1, block


# --- model files (utils/weights/model_io.py checks them) ---------------------

def _corrupt_crc(src, dst):
    """Copy ``src`` with one byte flipped inside its largest member's
    data, so only the zip CRC check can notice."""
    shutil.copy(src, dst)
    with zipfile.ZipFile(dst) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(dst, 'r+b') as f:
        f.seek(info.header_offset + 26)
        n, m = numpy.frombuffer(f.read(4), '<u2')
        f.seek(info.header_offset + 30 + int(n) + int(m) +
               info.compress_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xff]))


def _bad_model(kind, models, path):
    if kind == 'text':
        path.write_text('not an npz')
    elif kind == 'crc':
        _corrupt_crc(models['named'], str(path))
    elif kind == 'meta-list':
        numpy.savez(str(path), _meta=numpy.array(json.dumps([1, 2])))
    elif kind == 'backbone':
        numpy.savez(str(path), _meta=numpy.array(json.dumps(
            {'kind': 'backbone', 'depth': 50})))


@pytest.mark.parametrize('kind, words', [
    ('text', ('bad.npz', 'npz')),
    ('crc', ('bad.npz', 'corrupt')),
    ('meta-list', ('bad.npz', 'metadata')),
    ('backbone', ('bad.npz', 'backbone')),
])
def test_bad_model_files_are_one_line(photos, models, tmp_path, kind,
                                      words):
    model = tmp_path / 'bad.npz'
    _bad_model(kind, models, model)
    before = _digests(photos, model)
    _refused(_demo('--image', photos / 'a.png', '--modelfile', model,
                   '--out', tmp_path / 'o.png'), *words)
    assert _digests(photos, model) == before
