"""``train.py --pretrained NAME`` and ``demo.py --modelfile NAME`` with the
model-zoo names of utils/weights/zoo.py: a cached name is used without a
connection; offline, a name is one line naming the URL and the file to
place by hand; a name that cannot fit is refused before any download.
The zoo is a closed port on 127.0.0.1 (tests/helpers/zoo_server.py)."""
import json
import os
import subprocess
import sys

import cv2
import numpy
import pytest

import demo
import train
from models.presets import build_mask_rcnn, get_preset
from utils.training.pretrained import PretrainedError, starting_point
from utils.weights import zoo
from utils.weights.model_io import ModelFileError, save_model
from tests.helpers.zoo_server import closed_port_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty cache folder, and a zoo URL where nothing listens."""
    cache = tmp_path / 'cache'
    monkeypatch.setenv(zoo.CACHE_ENV, str(cache))
    monkeypatch.setenv(zoo.URL_ENV, closed_port_url())
    return cache


def _names_url_and_path(line, name, cache):
    assert '\n' not in line
    assert os.environ[zoo.URL_ENV] + zoo.CATALOGUE[name].path in line, line
    pkl = str(cache / (name if name.endswith('.pkl') else name + '.pkl'))
    assert 'place it at {},'.format(pkl) in line, line


def test_train_offline_is_one_line_naming_url_and_path(offline, tmp_path):
    with pytest.raises(ModelFileError) as e:
        train.main(['--pretrained', 'mask_rcnn_R_50_FPN_3x', '--arch',
                    'fpn', '--out', str(tmp_path / 'out')])
    _names_url_and_path(str(e.value), 'mask_rcnn_R_50_FPN_3x', offline)
    assert not offline.exists() or os.listdir(str(offline)) == []


def test_train_refuses_a_backbone_that_cannot_fit_before_downloading(
        offline, tmp_path):
    with pytest.raises(PretrainedError, match='R-50.pkl is a ResNet '
                       'backbone, which does not fit --arch mobilenetv1'):
        train.main(['--pretrained', 'R-50.pkl', '--arch', 'mobilenetv1-fpn',
                    '--out', str(tmp_path / 'out')])


def test_train_uses_the_cached_npz_without_a_connection(offline):
    offline.mkdir()
    npz = str(offline / 'R-101.npz')
    numpy.savez(npz, _meta=numpy.array(json.dumps(
        {'kind': 'backbone', 'depth': 101})))
    logs = []
    assert starting_point('R-101.pkl', 'c4', None, logs.append) == (
        npz, {'depth': 101})
    assert logs == []


def test_demo_uses_the_cached_npz_without_a_connection(offline, tmp_path):
    """What the cache holds under a name is what runs (here a small
    random model stands in for the converted Detectron C4)."""
    offline.mkdir()
    numpy.random.seed(0)
    save_model(str(offline / 'e2e_mask_rcnn_R-50-C4_1x.npz'),
               build_mask_rcnn(get_preset('fpn-tiny', n_fg_class=2)),
               {'arch': 'fpn-tiny', 'depth': 50, 'n_fg_class': 2})
    image = str(tmp_path / 'a.jpg')
    cv2.imwrite(image, numpy.random.RandomState(0).randint(
        0, 255, (60, 80, 3)).astype(numpy.uint8))
    out = tmp_path / 'a.png'
    demo.main(['--modelfile', 'e2e_mask_rcnn_R-50-C4_1x', '--image', image,
               '--out', str(out)])
    assert cv2.imread(str(out)).shape == (60, 80, 3)


def test_demo_refuses_a_backbone_name(offline, tmp_path):
    with pytest.raises(ModelFileError, match='R-50.pkl is an ImageNet '
                       'backbone for train.py --pretrained'):
        demo.main(['--modelfile', 'R-50.pkl', '--out',
                   str(tmp_path / 'a.png')])


@pytest.mark.parametrize('script, flag, name', [
    ('train.py', '--pretrained', 'R-50.pkl'),
    ('demo.py', '--modelfile', 'e2e_mask_rcnn_R-50-FPN_1x'),
])
def test_scripts_offline_end_in_one_error_line(offline, tmp_path, script,
                                               flag, name):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, script), flag, name, '--out',
         str(tmp_path / 'out.png')],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OPENBLAS_NUM_THREADS='1'))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('{}: error: cannot fetch {} from '.format(
        script, name)), last
    _names_url_and_path(last, name, offline)
