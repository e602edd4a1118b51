"""demo.py's command line (``demo.cli``, in process): images, folders,
JSON and errors. A converted Detectron model runs in
test_readme.py::test_readme_convert_and_demo_commands_run."""
import json
import os

import cv2
import numpy
import pytest

import demo
from utils.weights.model_io import save_model
from tests.helpers.in_process import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(*args):
    # In process (tests/helpers/in_process.py); test_demo_bad_inputs.py runs
    # demo.py's __main__ in a subprocess.
    return run_cli(demo.cli, args, cwd=ROOT)


def _one_line_error(proc, text):
    assert proc.returncode != 0
    assert text in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_and_corrupt_inputs(tmp_path):
    _one_line_error(_demo('--image', str(tmp_path / 'none.jpg')),
                    'image file not found')
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8 not really a jpeg')
    model = tmp_path / 'model.npz'
    numpy.savez(str(model), x=numpy.zeros(1))
    _one_line_error(_demo('--image', str(bad), '--modelfile', str(model),
                          '--arch', 'fpn'), 'does not fit')
    _one_line_error(_demo('--image', str(bad), '--modelfile',
                          str(tmp_path / 'missing.npz')),
                    'model file not found')
    empty = tmp_path / 'empty'
    empty.mkdir()
    _one_line_error(_demo('--image', str(empty)), 'no images found')


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    """A quickstart-sized random model saved with its metadata."""
    from models.presets import build_mask_rcnn, get_preset
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset('fpn-tiny', n_fg_class=2))
    # Every proposal is class 2 with a high score: detections guaranteed.
    model.box_head.predictor.cls_score.b.array[2] = 8.
    path = str(tmp_path_factory.mktemp('m') / 'tiny.npz')
    save_model(path, model, {'arch': 'fpn-tiny', 'depth': 50,
                             'n_fg_class': 2, 'class_ids': [5, 9],
                             'class_names': ['circle', 'square']})
    return path


def test_folder_to_folder_with_json(tmp_path, tiny_model):
    images = tmp_path / 'images'
    images.mkdir()
    rng = numpy.random.RandomState(0)
    for name in ('a.png', 'b.jpg'):
        cv2.imwrite(str(images / name),
                    rng.randint(0, 255, (120, 160, 3)).astype(numpy.uint8))
    (images / 'notes.txt').write_text('not an image')
    out = tmp_path / 'out'
    results = tmp_path / 'results.json'
    proc = _demo('--image', str(images), '--modelfile', tiny_model,
                 '--out', str(out), '--json', str(results), '--contour',
                 '--score-thresh', '0.5')
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ['a.png', 'b.png']
    dets = json.load(open(results))
    assert dets and {d['category_id'] for d in dets} == {9}
    assert {d['image_id'] for d in dets} == {0, 1}
    d = dets[0]
    assert len(d['bbox']) == 4 and d['segmentation']['size'] == [120, 160]
    assert 'square' in proc.stdout


def test_corrupt_image_with_a_model(tmp_path, tiny_model):
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8 not really a jpeg')
    _one_line_error(_demo('--image', str(bad), '--modelfile', tiny_model),
                    'cannot decode image')


def test_zero_detections_is_not_an_error(tmp_path, tiny_model):
    img = tmp_path / 'x.png'
    cv2.imwrite(str(img), numpy.zeros((50, 70, 3), numpy.uint8))
    proc = _demo('--image', str(img), '--modelfile', tiny_model,
                 '--score-thresh', '1.01', '--out', str(tmp_path / 'o.png'))
    assert proc.returncode == 0, proc.stderr
    assert '0 detections' in proc.stdout
    assert os.path.isfile(tmp_path / 'o.png')
