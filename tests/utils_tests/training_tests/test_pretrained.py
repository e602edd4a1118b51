"""ImageNet starting weights: Detectron's R-50/R-101.pkl and MSRA's
caffemodels become a backbone npz that fills the ResNet of C4 and FPN
models (heads untouched), and Detectron's frozen stages stay frozen."""
import os
import subprocess
import sys

import chainer
import numpy
import pytest

from models.presets import build_mask_rcnn, get_preset
from utils import detectron_parser as dp
from utils.weights.model_io import read_meta
from utils.training.pretrained import (PretrainedError, freeze, load_pretrained,
                                       resolve)
from tests.helpers.synthetic_weights import (write_imagenet_pickle,
                                             write_msra_caffemodel)

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture(scope='module')
def r50(tmp_path_factory):
    """(blobs, backbone npz) of a synthetic R-50.pkl."""
    folder = tmp_path_factory.mktemp('r50')
    pkl = str(folder / 'R-50.pkl')
    blobs = write_imagenet_pickle(pkl, 50, seed=7)
    out = dp.main([pkl, '-o', str(folder / 'R-50.npz')])
    return blobs, out


def test_backbone_pickle_every_blob_accounted(r50):
    blobs, out = r50
    meta = read_meta(out)
    assert meta['kind'] == 'backbone' and meta['depth'] == 50
    assert 'arch' not in meta
    with numpy.load(out) as npz:
        arrays = {n: npz[n] for n in npz.files if n != '_meta'}
    # 53 convs x (W, scale, bias); conv1_b, fc1000_* and conv biases unused.
    assert len(arrays) == 159
    numpy.testing.assert_array_equal(arrays['conv1/conv/W'],
                                     blobs['conv1_w'])
    numpy.testing.assert_array_equal(arrays['res4/5/branch2b/norm/scale'],
                                     blobs['res4_5_branch2b_bn_s'])
    numpy.testing.assert_array_equal(arrays['res5/0/branch1/conv/W'],
                                     blobs['res5_0_branch1_w'])


def test_r101_backbone(tmp_path):
    pkl = str(tmp_path / 'R-101.pkl')
    blobs = write_imagenet_pickle(pkl, 101, seed=8)
    out = dp.main([pkl, '--arch', 'backbone'])
    assert read_meta(out)['depth'] == 101
    model = build_mask_rcnn(get_preset('c4', depth=101, n_fg_class=2))
    report = load_pretrained(model, out)
    assert report.startswith('pretrained: 312 of ')
    numpy.testing.assert_array_equal(
        model.extractor.body.res4[22].branch2c.conv.W.array,
        blobs['res4_22_branch2c_w'])


@pytest.mark.parametrize('arch', ['c4', 'fpn'])
def test_backbone_fills_the_resnet_and_nothing_else(r50, arch):
    blobs, out = r50
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset(arch, n_fg_class=3))
    head_before = model.box_head.predictor.cls_score.W.array.copy()
    report = load_pretrained(model, out)
    assert report.startswith('pretrained: 159 of ')
    res5 = (model.box_head.res5 if arch == 'c4'
            else model.extractor.body.res5)
    numpy.testing.assert_array_equal(res5[2].branch2a.conv.W.array,
                                     blobs['res5_2_branch2a_w'])
    numpy.testing.assert_array_equal(model.extractor.body.conv1.norm.bias,
                                     blobs['res_conv1_bn_b'])
    numpy.testing.assert_array_equal(
        model.box_head.predictor.cls_score.W.array, head_before)


def test_backbone_of_the_wrong_depth_is_refused(r50):
    model = build_mask_rcnn(get_preset('fpn', depth=101, n_fg_class=3))
    with pytest.raises(PretrainedError, match=r'leaves \d+ array'):
        load_pretrained(model, r50[1])


def test_caffemodel_folds_batchnorm_and_conv1_bias(tmp_path):
    folder = tmp_path / 'models'
    folder.mkdir()
    caffemodel = str(folder / 'ResNet-50-model.caffemodel')
    layers = {n: b for n, _, b in write_msra_caffemodel(caffemodel, 50, 9)}
    logs = []
    path = resolve('imagenet', 50, str(folder), log=logs.append)
    assert path == str(folder / 'ResNet-50-model.npz')
    assert 'unused caffemodel layers: fc1000' in logs[-1]
    with numpy.load(path) as npz:
        arrays = {n: npz[n] for n in npz.files if n != '_meta'}
    assert len(arrays) == 159

    def folded(name):  # Caffe BatchNorm + Scale, float64
        mean, var, factor = (b.astype(numpy.float64)
                             for b in layers['bn' + name])
        gamma, beta = layers['scale' + name]
        s = gamma / numpy.sqrt(var / factor[0] + 1e-5)
        return s, beta - mean / factor[0] * s

    s, b = folded('4c_branch2b')
    numpy.testing.assert_allclose(arrays['res4/2/branch2b/norm/scale'], s,
                                  rtol=1e-6)
    numpy.testing.assert_allclose(arrays['res4/2/branch2b/norm/bias'], b,
                                  rtol=1e-5, atol=1e-6)
    numpy.testing.assert_array_equal(arrays['res4/2/branch2b/conv/W'],
                                     layers['res4c_branch2b'][0])
    s, b = folded('_conv1')
    numpy.testing.assert_allclose(arrays['conv1/norm/bias'],
                                  b + s * layers['conv1'][1], rtol=1e-5,
                                  atol=1e-6)
    # Cached: the second call converts nothing.
    logs.clear()
    assert resolve('imagenet', 50, str(folder), log=logs.append) == path
    assert logs == []


def test_caffemodel_missing_says_where_to_put_it(tmp_path):
    with pytest.raises(PretrainedError,
                       match='ResNet-101-model.caffemodel in .*models'):
        resolve('imagenet', 101, str(tmp_path / 'models'))
    with pytest.raises(PretrainedError, match='not found'):
        resolve(str(tmp_path / 'none.npz'), 50)


@pytest.mark.parametrize('arch,freeze_at,frozen', [
    ('fpn', 0, []), ('fpn', 2, ['conv1', 'res2']),
    ('c4', 5, ['conv1', 'res2', 'res3', 'res4', 'res5'])])
def test_freeze_at(arch, freeze_at, frozen):
    model = build_mask_rcnn(get_preset(arch, n_fg_class=2))
    with pytest.raises(RuntimeError, match='before optimizer.setup'):
        freeze(model, freeze_at)
    chainer.optimizers.MomentumSGD().setup(model)
    assert freeze(model, freeze_at) == frozen
    body = model.extractor.body
    links = {'conv1': body.conv1, 'res2': body.res2, 'res3': body.res3,
             'res4': body.res4,
             'res5': getattr(body, 'res5', None) or model.box_head.res5}
    for name, link in links.items():
        assert all(not p.update_rule.enabled
                   for p in link.params()) == (name in frozen), name
    # ... and run without a graph (models/frozen.py).
    assert body.frozen_stages == freeze_at
    assert getattr(model.box_head, 'frozen_res5', False) == (
        arch == 'c4' and 'res5' in frozen)
    with pytest.raises(PretrainedError):
        freeze(model, 6)


def _train_fpn(tmp_path, pretrained, iterations, n_train):
    """Run train.py on synthetic data at 64 px from ``pretrained``;
    returns (stdout, output folder)."""
    out = tmp_path / 'result'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'train.py'), '--arch', 'fpn',
         '--pretrained', pretrained, '--iteration', str(iterations),
         '--synthetic-images', str(n_train), '2', '--synthetic-root',
         str(tmp_path / 'syn'), '--scales', '64', '--loaders', '0',
         '--validation', str(iterations), '--out', str(out)],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, out


@pytest.mark.slow
def test_training_from_a_backbone_keeps_frozen_stages(r50, tmp_path):
    blobs, npz = r50
    stdout, out = _train_fpn(tmp_path, npz, 2, 4)
    assert 'frozen: conv1, res2' in stdout
    with numpy.load(str(out / 'model_final.npz')) as final:
        body = 'extractor/body/'
        numpy.testing.assert_array_equal(final[body + 'conv1/conv/W'],
                                         blobs['conv1_w'])
        numpy.testing.assert_array_equal(
            final[body + 'res2/1/branch2b/conv/W'], blobs['res2_1_branch2b_w'])
        # Affine norms never train, frozen stage or not.
        numpy.testing.assert_array_equal(
            final[body + 'res4/0/branch2a/norm/scale'],
            blobs['res4_0_branch2a_bn_s'])
        # res3 and later are trained.
        assert not numpy.array_equal(final[body + 'res3/0/branch2a/conv/W'],
                                     blobs['res3_0_branch2a_w'])


@pytest.mark.slow
def test_finetuning_a_detectron2_model_keeps_its_semantics(tmp_path):
    from models.conventions import DETECTRON2
    from tests.helpers.synthetic_weights import write_detectron2_pickle
    pkl = str(tmp_path / 'model_final_f10217.pkl')
    write_detectron2_pickle(pkl, 'fpn', seed=3)
    _, out = _train_fpn(tmp_path, dp.main([pkl]), 1, 2)
    meta = read_meta(str(out / 'model_final.npz'))
    assert meta['conventions'] == DETECTRON2.to_dict()
    assert meta['preset']['box_sampling_ratio'] == 0
    assert meta['preset']['rpn_collect_top_n'] == [1000, 1000]
