"""Both READMEs have the same structure and the same commands, and the
cheap commands run."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name), encoding='utf-8') as f:
        return f.read()


def _headings(text):
    return re.findall(r'^#+ ', text, flags=re.M)


def _code_blocks(text):
    # Any language tag (bash, python): both READMEs carry the same code.
    return re.findall(r'```\w*\n(.*?)```', text, flags=re.S)


def _commands(text):
    return [line for b in _code_blocks(text) for line in b.splitlines()
            if line.strip() and not line.startswith('#')]


def test_same_headings_and_code_blocks():
    en, jp = _read('README.md'), _read('README_JP.md')
    assert _headings(en) == _headings(jp)
    assert _commands(en) == _commands(jp)


def test_first_two_commands_are_setup_and_tests():
    cmds = _commands(_read('README.md'))
    assert cmds[0] == 'bash setup.sh && .venv/bin/python train.py'
    assert cmds[1] == '.venv/bin/python -m pytest'
    ci = _read('.ci/run')
    assert cmds[1] in ci and 'bash setup.sh' in ci


@pytest.mark.parametrize('script', ['train.py', 'demo.py',
                                    'utils/detectron_parser.py',
                                    'utils/mobilenet_parser.py',
                                    'utils/export_onnx.py',
                                    'bench/inference.py', 'bench/roi_align.py',
                                    'bench/train.py', 'bench/compare.py'])
def test_every_cli_explains_its_flags(script):
    proc = subprocess.run([sys.executable, script, '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cmds = _commands(_read('README.md'))
    # Every flag a README command passes to this script exists.
    for cmd in cmds:
        if re.search(r'(^|\s){}(\s|$)'.format(re.escape(script)), cmd):
            for flag in re.findall(r'(--[a-z][a-z0-9-]*)', cmd):
                assert flag in proc.stdout, (script, flag)


def _readme_lines(script):
    return [c for c in _commands(_read('README.md'))
            if c.startswith('.venv/bin/python ' + script)]


@pytest.mark.slow
def test_readme_convert_and_demo_commands_run(tmp_path):
    """Run the README's converter and CPU demo commands as written, in a
    folder holding the files they name (a synthetic Detectron pickle, a
    small model, small photos)."""
    import cv2
    import numpy
    from models.presets import build_mask_rcnn, get_preset
    from utils.weights.model_io import save_model
    from tests.helpers.synthetic_weights import (
        write_detectron2_pickle, write_detectron_pickle,
        write_imagenet_pickle, write_mobilenet_caffemodel)
    from tests.helpers.zoo_server import closed_port_url
    (tmp_path / 'modelfiles').mkdir()
    write_detectron_pickle(str(tmp_path / 'modelfiles' / 'model_final.pkl'),
                           'fpn', seed=7)
    # A model-zoo name: its file placed by hand in the cache, no network.
    (tmp_path / 'cache').mkdir()
    shutil.copy(str(tmp_path / 'modelfiles' / 'model_final.pkl'),
                str(tmp_path / 'cache' / 'e2e_mask_rcnn_R-50-FPN_1x.pkl'))
    env = dict(os.environ, MASK_RCNN_CHAINER_CACHE=str(tmp_path / 'cache'),
               MASK_RCNN_CHAINER_ZOO_URL=closed_port_url())
    write_imagenet_pickle(str(tmp_path / 'modelfiles' / 'R-50.pkl'))
    write_detectron2_pickle(
        str(tmp_path / 'modelfiles' / 'model_final_f10217.pkl'), 'fpn')
    write_mobilenet_caffemodel(
        str(tmp_path / 'modelfiles' / 'mobilenet.caffemodel'))
    numpy.random.seed(0)
    save_model(str(tmp_path / 'M.npz'),
               build_mask_rcnn(get_preset('fpn-tiny')),
               {'arch': 'fpn-tiny', 'depth': 50, 'n_fg_class': 80})
    rng = numpy.random.RandomState(0)
    (tmp_path / 'photos').mkdir()
    for name in ('photo.jpg', 'a.jpg', 'b.jpg', 'photos/c.jpg'):
        cv2.imwrite(str(tmp_path / name), rng.randint(
            0, 255, (90, 120, 3)).astype(numpy.uint8))
    lines = _readme_lines('utils/detectron_parser.py') + \
        _readme_lines('utils/mobilenet_parser.py') + \
        _readme_lines('utils/export_onnx.py') + [
            c for c in _readme_lines('demo.py') if '--gpu' not in c]
    assert len(lines) >= 10
    if not all(importlib.util.find_spec(m) for m in ('onnx', 'onnxruntime')):
        lines = [c for c in lines if 'onnx' not in c]  # setup.sh --onnx
    for line in lines:
        args = line.split()[1:]
        args[0] = os.path.join(ROOT, args[0])
        proc = subprocess.run([sys.executable] + args, cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=600,
                              env=env)
        assert proc.returncode == 0, (line, proc.stderr[-1500:])
        if args[0].endswith('demo.py'):  # converted models run in demo.py
            assert 'detections' in proc.stdout, (line, proc.stdout)
    # The single-image demos without --out draw into output.png.
    assert (tmp_path / 'output.png').is_file()
    assert (tmp_path / 'outdir').is_dir()
    assert (tmp_path / 'cache' / 'e2e_mask_rcnn_R-50-FPN_1x.npz').is_file()
    assert (tmp_path / 'results.json').is_file()
    assert (tmp_path / 'modelfiles' / 'mobilenet_backbone.npz').is_file()
