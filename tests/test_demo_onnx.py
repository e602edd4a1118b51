"""demo.py --backend onnxruntime: the same results and flags as the
Chainer backend on exported models (fpn-tiny; mobilenetv1-fpn with batch
norm), and one-line refusals (#18)."""
import json
import os
import subprocess
import sys

import cv2
import numpy
import pytest

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import pycocotools.mask as mask_util  # noqa: E402

from tests.helpers.onnx_models import images, write_npz  # noqa: E402
from utils import export_onnx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(cwd, *args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'demo.py')] + [str(a) for a in
                                                           args],
        cwd=str(cwd), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """M.npz (crafted fpn-tiny), MB.npz (mobilenetv1-fpn with batch
    norm), their .onnx and two photos a.png, b.png."""
    folder = tmp_path_factory.mktemp('demo_onnx')
    write_npz('fpn-tiny', folder / 'M.npz')
    write_npz('mobilenetv1-fpn', folder / 'MB.npz', norm='bn')
    for stem in ('M', 'MB'):
        export_onnx.main([str(folder / (stem + '.npz')), '-o',
                          str(folder / (stem + '.onnx'))])
    for name, img in zip(('a.png', 'b.png'), images()):
        # RGB CHW float -> BGR HWC uint8 (lossless PNG)
        cv2.imwrite(str(folder / name), numpy.clip(
            img[::-1].transpose(1, 2, 0), 0, 255).astype(numpy.uint8))
    return folder


@pytest.mark.parametrize('stem', ['M', 'MB'])
def test_same_results_as_chainer(folder, stem):
    flags = ['--image', 'a.png', 'b.png', '--score-thresh', '0.3',
             '--nms-thresh', '0.5', '--contour', '--threads', '1']
    runs = {}
    for backend, model in (('chainer', stem + '.npz'),
                           ('onnxruntime', stem + '.onnx')):
        out = '{}_{}'.format(stem, backend)
        proc = _demo(folder, '--backend', backend, '--modelfile', model,
                     '--out', out, '--json', out + '.json', *flags)
        assert proc.returncode == 0, proc.stderr
        with open(str(folder / (out + '.json'))) as f:
            runs[backend] = json.load(f)
        assert (folder / out / 'a.png').is_file()
    ours, theirs = runs['chainer'], runs['onnxruntime']
    assert len(ours) == len(theirs) > 0
    areas = []
    for a, b in zip(ours, theirs):
        assert (a['image_id'], a['category_id']) == (b['image_id'],
                                                     b['category_id'])
        numpy.testing.assert_allclose(a['bbox'], b['bbox'], atol=1e-3)
        assert abs(a['score'] - b['score']) <= 1e-4
        rle_a, rle_b = ([dict(r['segmentation'], counts=r['segmentation'][
            'counts'].encode())] for r in (a, b))  # JSON str -> RLE bytes
        areas.append(mask_util.area(rle_a)[0])
        if areas[-1] == 0:  # iou() says 0 for two empty masks
            assert mask_util.area(rle_b)[0] == 0
        else:
            assert mask_util.iou(rle_a, rle_b, [0])[0, 0] >= 0.99
    assert max(areas) > 0


def _one_line(proc, *words):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('demo.py: error: '), \
        proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_refusals_in_one_line(folder):
    corrupt = folder / 'corrupt.onnx'
    corrupt.write_bytes(b'\x08\x07garbage' * 10)
    _one_line(_demo(folder, '--backend', 'onnxruntime', '--modelfile',
                    corrupt, '--image', 'a.png', '--out', 'x.png'),
              str(corrupt), 'not a readable ONNX model')
    _one_line(_demo(folder, '--backend', 'onnxruntime', '--modelfile',
                    'M.npz', '--image', 'a.png', '--out', 'x.png'),
              'M.npz')
    _one_line(_demo(folder, '--backend', 'onnxruntime', '--image',
                    'a.png'), '--modelfile')
    _one_line(_demo(folder, '--backend', 'onnxruntime', '--modelfile',
                    'M.onnx', '--gpu', '0', '--image', 'a.png'), '--gpu')
    # A file whose npz metadata is wrong: refused as load_model would.
    proto = onnx.load(str(folder / 'M.onnx'))
    props = {p.key: p.value for p in proto.metadata_props}
    props['meta'] = '{"n_fg_class": "three"}'
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(folder / 'bad_meta.onnx'))
    _one_line(_demo(folder, '--backend', 'onnxruntime', '--modelfile',
                    'bad_meta.onnx', '--image', 'a.png', '--out', 'x.png'),
              'bad_meta.onnx', 'n_fg_class')
    assert not (folder / 'x.png').exists()
