"""shicai/MobileNet-Caffe's caffemodel as a MobileNetV1 backbone npz: every
blob used, BatchNorm and the Caffe input normalisation folded (checked by
hand and against a float64 Caffe-style forward of conv1 and the first
depthwise block), loaded into mobilenetv1-fpn with its frozen affine, and
bad files refused in one line."""
import os
import subprocess
import sys

import chainer
import chainer.functions as F
import numpy
import pytest

from models.presets import build_mask_rcnn, get_preset
from utils import mobilenet_parser as mp
from utils.ops.image import DETECTRON_PIXEL_MEANS
from utils.training.pretrained import (PretrainedError, freeze,
                                       load_pretrained, pretrained_fields,
                                       resolve)
from utils.weights.model_io import read_meta
from utils.weights.safe_pickle import ConversionError
from tests.helpers.synthetic_weights import (write_imagenet_pickle,
                                             write_mobilenet_caffemodel)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CAFFE_MEAN = numpy.array([103.94, 116.78, 123.68])   # the model's BGR mean


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """(caffemodel layers, backbone npz path, its arrays)."""
    folder = tmp_path_factory.mktemp('mobilenet')
    caffemodel = str(folder / 'mobilenet.caffemodel')
    layers = write_mobilenet_caffemodel(caffemodel, seed=3)
    out = mp.main([caffemodel, '-o', str(folder / 'mnet.npz')])
    with numpy.load(out) as npz:
        arrays = {n: npz[n] for n in npz.files if n != '_meta'}
    return layers, out, arrays


def _bn(layers, name):
    """Caffe BatchNorm + Scale of layer ``name`` as (s, b), float64."""
    mean, var, factor = (b.astype(numpy.float64)
                         for b in layers[name + '/bn'])
    gamma, beta = (b.astype(numpy.float64) for b in layers[name + '/scale'])
    s = gamma / numpy.sqrt(var / factor[0] + 1e-5)
    return s, beta - mean / factor[0] * s


def test_every_layer_used_and_folded_by_hand(converted):
    layers, out, arrays = converted
    meta = read_meta(out)
    assert (meta['kind'], meta['body']) == ('backbone', 'mobilenetv1')
    assert len(arrays) == 27 * 3
    # conv1: W x 0.017; bias + s * sum W x 0.017 x (m_detectron - m_caffe)
    w = layers['conv1'][0].astype(numpy.float64)
    s, b = _bn(layers, 'conv1')
    d = numpy.array(DETECTRON_PIXEL_MEANS) - CAFFE_MEAN
    shift = numpy.array([(w[o] * 0.017 * d[:, None, None]).sum()
                         for o in range(32)])
    numpy.testing.assert_allclose(arrays['conv1/conv/W'], w * 0.017,
                                  rtol=1e-6)
    numpy.testing.assert_allclose(arrays['conv1/norm/scale'], s, rtol=1e-6)
    numpy.testing.assert_allclose(arrays['conv1/norm/bias'], b + s * shift,
                                  rtol=1e-5, atol=1e-6)
    # a depthwise and a pointwise layer: weights as they are, BN folded
    numpy.testing.assert_array_equal(arrays['conv5_3/dw/conv/W'],
                                     layers['conv5_3/dw'][0])
    assert arrays['conv5_3/dw/conv/W'].shape == (512, 1, 3, 3)
    s, b = _bn(layers, 'conv6/sep')
    numpy.testing.assert_allclose(arrays['conv6/sep/norm/scale'], s,
                                  rtol=1e-6)
    numpy.testing.assert_allclose(arrays['conv6/sep/norm/bias'], b,
                                  rtol=1e-5, atol=1e-6)
    assert arrays['conv6/sep/conv/W'].shape == (1024, 1024, 1, 1)


def _caffe_conv_bn_relu(x, layers, name, stride, groups=1):
    """Caffe's conv -> BatchNorm -> Scale -> ReLU in float64."""
    w = layers[name][0].astype(numpy.float64)
    y = F.convolution_2d(x, w, stride=stride, pad=1 if w.shape[2] == 3
                         else 0, groups=groups).array
    s, b = _bn(layers, name)
    return numpy.maximum(y * s[:, None, None] + b[:, None, None], 0)


def test_body_computes_caffes_network_on_our_input(converted):
    layers, out, _ = converted
    model = build_mask_rcnn(get_preset('mobilenetv1-fpn', n_fg_class=2,
                                       norm='affine'))
    load_pretrained(model, out)
    body = model.extractor.body
    rng = numpy.random.RandomState(0)
    bgr = rng.uniform(0, 255, (1, 3, 20, 24))
    ours = (bgr - numpy.array(DETECTRON_PIXEL_MEANS)[:, None, None])
    with chainer.using_config('train', False):
        h = body.conv1(ours.astype(numpy.float32), relu=True)
        y = body.conv2_1.dw(h, relu=True).array
    caffe = (bgr - CAFFE_MEAN[:, None, None]) * 0.017
    ref = _caffe_conv_bn_relu(caffe, layers, 'conv1', 2)
    ref = _caffe_conv_bn_relu(ref, layers, 'conv2_1/dw', 1, groups=32)
    # Exact where conv1 reads no padding (its first row and column do;
    # the 3x3 depthwise conv spreads them by one more pixel).
    numpy.testing.assert_allclose(y[:, :, 2:, 2:], ref[:, :, 2:, 2:],
                                  rtol=1e-4, atol=1e-4)
    # On the border Caffe pads x_caffe = 0, we pad x = 0 (x_caffe = -0.016)
    assert numpy.abs(y - ref).max() < 0.05 * numpy.abs(ref).max()


def test_backbone_sets_affine_and_fills_the_body_only(converted):
    layers, out, _ = converted
    fields = pretrained_fields(out, 'mobilenetv1-fpn')
    assert fields == {'norm': 'affine'}
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset('mobilenetv1-fpn', n_fg_class=2,
                                       **fields))
    head = model.box_head.predictor.cls_score.W.array.copy()
    assert load_pretrained(model, out).startswith('pretrained: 81 of ')
    numpy.testing.assert_array_equal(
        model.extractor.body.conv4_2.sep.conv.W.array,
        layers['conv4_2/sep'][0])
    numpy.testing.assert_array_equal(
        model.box_head.predictor.cls_score.W.array, head)
    optimizer = chainer.optimizers.MomentumSGD()
    optimizer.setup(model)
    assert freeze(model, 2) == ['conv1', 'conv2_1', 'conv2_2', 'conv3_1']
    assert not model.extractor.body.conv3_1.sep.conv.W.update_rule.enabled
    assert model.extractor.body.conv3_2.dw.conv.W.update_rule.enabled


def test_backbones_of_the_other_body_are_refused(converted, tmp_path):
    with pytest.raises(PretrainedError, match='mobilenetv1 backbone, which '
                       'does not fit --arch fpn'):
        pretrained_fields(converted[1], 'fpn')
    pkl = str(tmp_path / 'R-50.pkl')
    write_imagenet_pickle(pkl, 50)
    from utils import detectron_parser
    r50 = detectron_parser.main([pkl, '-o', str(tmp_path / 'R-50.npz')])
    with pytest.raises(PretrainedError, match='resnet backbone'):
        pretrained_fields(r50, 'mobilenetv1-fpn')


def test_imagenet_converts_mobilenet_once(tmp_path):
    write_mobilenet_caffemodel(str(tmp_path / 'mobilenet.caffemodel'))
    logs = []
    path = resolve('imagenet', 50, str(tmp_path), logs.append,
                   arch='mobilenetv1-fpn')
    assert path == str(tmp_path / 'mobilenet.npz')
    assert 'unused caffemodel layers: fc7' in logs[-1]
    with pytest.raises(PretrainedError, match='mobilenet.caffemodel in .*'
                       'utils/mobilenet_parser.py'):
        resolve('imagenet', 50, str(tmp_path / 'none'), logs.append,
                arch='mobilenetv1-fpn')


@pytest.mark.parametrize('drop, extra, match', [
    ('conv4_1/sep/bn', None, 'layer conv4_1/sep/bn missing'),
    ('conv1', [('conv1', 'Convolution', [numpy.ones((32, 3, 5, 5))])],
     r'conv1 has blobs of shapes \[\(32, 3, 5, 5\)\], expected '
     r'\[\(32, 3, 3, 3\)\]'),
    ('conv2_1/dw', [('conv2_1/dw', 'Convolution',
                     [numpy.ones((32, 1, 3, 3)), numpy.ones(32)])],
     'conv2_1/dw has blobs of shapes'),
    (None, [('fc8', 'InnerProduct', [numpy.ones((10, 4))])],
     'unexpected caffemodel layer.*fc8'),
])
def test_bad_caffemodels_are_refused(tmp_path, drop, extra, match):
    path = str(tmp_path / 'mobilenet.caffemodel')
    write_mobilenet_caffemodel(path, drop=drop, extra=extra)
    with pytest.raises(ConversionError, match=match):
        mp.main([path, '-o', str(tmp_path / 'out.npz')])
    assert not os.path.exists(tmp_path / 'out.npz')


@pytest.mark.parametrize('content, match', [
    (b'\x0a\xff\xff', 'not a readable caffemodel'),
    (None, 'caffemodel not found'),
])
def test_bad_files_are_one_line(tmp_path, content, match):
    path = tmp_path / 'mobilenet.caffemodel'
    if content is not None:
        path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, 'utils/mobilenet_parser.py', str(path)], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        'mobilenet_parser.py: error: ') and match in lines[0], proc.stderr
    assert str(path) in lines[0]
