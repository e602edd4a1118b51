"""Converting Detectron pickles: every tensor accounted for, unsafe or wrong
files refused with one-line errors, and orientation checks that would catch
a swapped x/y, class row or colour order."""
import os
import pickle
import subprocess
import sys

import chainer
import numpy
import pytest

from utils import detectron_parser as dp
from utils.weights import checks, detectron
from utils.weights.safe_pickle import load_pickle
from utils.weights.model_io import load_model, read_meta
from tests.helpers.crafted_pickles import touch_payload
from tests.helpers.synthetic_weights import detectron_blobs, write_detectron_pickle

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture(scope='module')
def c4_blobs():
    return detectron_blobs('c4', seed=1)


@pytest.fixture(scope='module')
def fpn_blobs():
    return detectron_blobs('fpn', seed=2)


def test_c4_every_parameter_equals_its_blob(c4_blobs):
    model, meta, report = detectron.convert(c4_blobs)
    assert meta['arch'] == 'c4' and meta['depth'] == 50
    assert 'blobs mapped: 173' in report
    body = model.extractor.body
    # Hand-written correspondences (not the converter's table).
    checks = {
        'conv1_w': body.conv1.conv.W,
        'res_conv1_bn_s': body.conv1.norm.scale,
        'res2_0_branch1_bn_b': body.res2[0].branch1.norm.bias,
        'res3_3_branch2b_w': body.res3[3].branch2b.conv.W,
        'res4_5_branch2c_bn_s': body.res4[5].branch2c.norm.scale,
        'res5_0_branch1_w': model.box_head.res5[0].branch1.conv.W,
        'res5_2_branch2a_bn_b': model.box_head.res5[2].branch2a.norm.bias,
        'conv_rpn_w': model.rpn.conv.W,
        'rpn_cls_logits_b': model.rpn.cls_logits.b,
        'rpn_bbox_pred_w': model.rpn.bbox_pred.W,
        'cls_score_w': model.box_head.predictor.cls_score.W,
        'bbox_pred_b': model.box_head.predictor.bbox_pred.b,
        'conv5_mask_w': model.mask_head.predictor.deconv.W,
        'mask_fcn_logits_w': model.mask_head.predictor.logits.W,
    }
    for blob, array in checks.items():
        array = getattr(array, 'array', array)
        numpy.testing.assert_array_equal(array, c4_blobs[blob], err_msg=blob)
    n_params = sum(p.size for p in model.params()) + sum(
        link.scale.size * 2 for link in model.links()
        if hasattr(link, 'scale'))
    n_blobs = sum(v.size for n, v in c4_blobs.items()
                  if not detectron.MOMENTUM.match(n) and not detectron.PRESERVED.match(n))
    assert n_params == n_blobs


def test_fpn_every_parameter_equals_its_blob(fpn_blobs):
    model, meta, report = detectron.convert(fpn_blobs)
    assert meta['arch'] == 'fpn'
    assert 'blobs mapped: 201' in report
    fpn = model.extractor
    checks = {
        'res5_2_branch2c_w': fpn.body.res5[2].branch2c.conv.W,
        'fpn_inner_res5_2_sum_w': fpn.inner[3].W,
        'fpn_inner_res4_5_sum_lateral_b': fpn.inner[2].b,
        'fpn_inner_res2_2_sum_lateral_w': fpn.inner[0].W,
        'fpn_res3_3_sum_w': fpn.outer[1].W,
        'conv_rpn_fpn2_w': model.rpn.conv.W,
        'rpn_bbox_pred_fpn2_b': model.rpn.bbox_pred.b,
        'fc6_w': model.box_head.fc6.W,
        'fc7_b': model.box_head.fc7.b,
        '_[mask]_fcn1_w': model.mask_head.convs[0].W,
        '_[mask]_fcn4_b': model.mask_head.convs[3].b,
        'conv5_mask_w': model.mask_head.predictor.deconv.W,
    }
    for blob, param in checks.items():
        numpy.testing.assert_array_equal(param.array, fpn_blobs[blob],
                                         err_msg=blob)


def test_leftover_and_missing_blobs_fail_by_name(c4_blobs):
    extra = dict(c4_blobs, mystery_conv_w=numpy.zeros(3, numpy.float32))
    with pytest.raises(dp.ConversionError, match='mystery_conv_w'):
        detectron.convert(extra)
    missing = {k: v for k, v in c4_blobs.items() if k != 'res4_2_branch2b_w'}
    with pytest.raises(dp.ConversionError, match='res4_2_branch2b_w'):
        detectron.convert(missing)
    bad = dict(c4_blobs, conv_rpn_b=numpy.zeros(7, numpy.float32))
    with pytest.raises(dp.ConversionError, match='conv_rpn_b'):
        detectron.convert(bad)


def test_wrong_architecture_requested(c4_blobs):
    with pytest.raises(dp.ConversionError, match='c4 model, not fpn'):
        detectron.convert(c4_blobs, 'fpn')


def _convert_file(path):
    """What the command does with ``path``, up to the npz."""
    return detectron.convert_file(load_pickle(path), 'auto', path)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'blobs': {'conv1_w': touch_payload(marker)}}, f,
                    protocol=2)
    with pytest.raises(dp.ConversionError, match='refusing to load'):
        _convert_file(str(path))
    assert not marker.exists()


@pytest.mark.parametrize('content, message', [
    (b'', 'not a readable pickle'),
    (b'PK\x03\x04 this is a zip, not a pickle', 'not a readable pickle'),
    (pickle.dumps([1, 2, 3], protocol=2), 'expected a dict'),
    (pickle.dumps({'blobs': {'a': 1.5}}, protocol=2), 'expected an ndarray'),
])
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / 'bad.pkl'
    path.write_bytes(content)
    with pytest.raises(dp.ConversionError, match=message):
        _convert_file(str(path))


def test_truncated_pickle(tmp_path):
    path = tmp_path / 'model_final.pkl'
    data = pickle.dumps({'blobs': {'x': numpy.ones(1000, numpy.float32)}},
                        protocol=2)
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(dp.ConversionError, match='not a readable pickle'):
        _convert_file(str(path))


def test_cli_one_line_errors(tmp_path):
    for args, message in [([str(tmp_path / 'none.pkl')], 'file not found'),
                          ([], 'file not found')]:
        proc = subprocess.run(
            [sys.executable, 'utils/detectron_parser.py'] + args, cwd=ROOT,
            capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert message in proc.stderr
        assert 'Traceback' not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_round_trip_and_metadata(tmp_path):
    pkl = tmp_path / 'model_final.pkl'
    blobs = write_detectron_pickle(str(pkl), 'c4', seed=3)
    proc = subprocess.run(
        [sys.executable, 'utils/detectron_parser.py', str(pkl)], cwd=ROOT,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert 'momentum blobs dropped: ' in proc.stdout
    out = str(tmp_path / 'model_final_c4.npz')
    meta = read_meta(out)
    assert meta['arch'] == 'c4' and meta['n_fg_class'] == 80
    assert meta['conventions'] == {
        'channel_order': 'BGR', 'aligned': False, 'box_offset': 1,
        'background_index': 0, 'anchors': 'detectron', 'paste': 'detectron',
        'proposal_bounds': 'padded', 'resize': 'detectron',
        'pixel_mean': [102.9801, 115.9465, 122.7717],
        'pixel_std': [1., 1., 1.]}
    assert meta['source']['sha256'] == checks.sha256(str(pkl))
    assert meta['class_ids'][:3] == [1, 2, 3]
    model, _ = load_model(out)
    numpy.testing.assert_array_equal(model.box_head.res5[1].branch2b.conv.W
                                     .array, blobs['res5_1_branch2b_w'])
    n_momentum = sum(n.endswith('_momentum') for n in blobs)
    assert 'momentum blobs dropped: {}'.format(n_momentum) in proc.stdout


# --- orientation: would a swapped x/y, class row or colour order show? ---

def _zero_like(blobs, *names):
    for n in names:
        blobs[n] = numpy.zeros_like(blobs[n])


def test_rpn_dx_moves_proposals_along_x(c4_blobs):
    blobs = dict(c4_blobs)
    _zero_like(blobs, 'conv_rpn_w', 'conv_rpn_b', 'rpn_cls_logits_w',
               'rpn_bbox_pred_w', 'rpn_bbox_pred_b', 'rpn_cls_logits_b')
    # Anchor 7 (ratio 1, size 128) scores highest everywhere; every anchor
    # predicts dx = 0.25 (channel a * 4 + 0 in Detectron's layout).
    blobs['rpn_cls_logits_b'][7] = 5.
    blobs['rpn_bbox_pred_b'][0::4] = 0.25
    model, _, _ = detectron.convert(blobs)
    model.proposal_generator.nms_thresh = 0.  # keep every box
    feat = numpy.zeros((1, 1024, 8, 8), numpy.float32)
    with chainer.using_config('train', False):
        rois = model.propose([chainer.Variable(feat)], (1000, 1000), 1.)
    # The 64 best proposals are anchor 7 ([-56, -56, 71, 71] at cell
    # (0, 0)) of each cell, moved +0.25 * 128 = 32 px along x, clipped.
    ys, xs = numpy.mgrid[0:8, 0:8] * 16
    shifts = numpy.stack([xs.ravel(), ys.ravel()] * 2, axis=1)
    expected = numpy.array([-56., -56., 71., 71.]) + shifts + [32, 0, 32, 0]
    expected = numpy.clip(expected, 0, 999)
    numpy.testing.assert_allclose(_sorted_rows(rois[:64]),
                                  _sorted_rows(expected), atol=1e-4)


def _sorted_rows(a):
    a = numpy.asarray(a, numpy.float64)
    return a[numpy.lexsort(a.T[::-1])]


def test_class_rows_box_dx_and_mask_channel(fpn_blobs):
    blobs = dict(fpn_blobs)
    k = 17  # a foreground class
    _zero_like(blobs, 'cls_score_w', 'cls_score_b', 'bbox_pred_w',
               'bbox_pred_b', 'mask_fcn_logits_w', 'mask_fcn_logits_b')
    blobs['cls_score_b'][k] = 10.
    blobs['bbox_pred_b'][4 * k] = 1.   # dx = 1 / 10 -> +0.1 w along x
    blobs['mask_fcn_logits_b'][:] = -10.
    blobs['mask_fcn_logits_b'][k] = 10.
    model, _, _ = detectron.convert(blobs)
    feats = [chainer.Variable(numpy.random.RandomState(0).rand(
        1, 256, 200 // s, 200 // s).astype(numpy.float32))
        for s in (4, 8, 16, 32)]
    rois = numpy.array([[20., 30., 119., 79.]], numpy.float32)  # w 100, h 50
    with chainer.using_config('train', False):
        bbox, label, score = model.detect_boxes(feats, rois, 1., (200, 200))
        probs = model.detect_masks(feats, bbox, label, 1.)
    assert label.tolist() == [k]
    numpy.testing.assert_allclose(bbox[0], [30., 30., 129., 79.], atol=1e-3)
    assert probs.shape == (1, 28, 28) and (probs > 0.99).all()


def test_bgr_input_reaches_conv1_channel_0(c4_blobs):
    blobs = dict(c4_blobs)
    blobs['conv1_w'] = numpy.zeros_like(blobs['conv1_w'])
    blobs['conv1_w'][:, 0] = 1. / 49  # Detectron's conv1 channel 0 is blue
    model, _, _ = detectron.convert(blobs)
    conv = model.extractor.body.conv1.conv
    from utils.ops.image import prepare
    out = {}
    for name, rgb in (('blue', (0, 0, 255)), ('red', (255, 0, 0))):
        img = numpy.empty((3, 64, 64), numpy.float32)
        img[:] = numpy.array(rgb, numpy.float32)[:, None, None]
        x, _, _ = prepare(img, 64, 64)
        out[name] = conv(x[None]).array[0, :, 8:-8, 8:-8]
    # Blue pixels are 255 above red ones in channel 0, a sum of 49 taps / 49.
    numpy.testing.assert_allclose(out['blue'] - out['red'], 255., rtol=1e-4)
