"""Converting detectron2 model-zoo checkpoints: every tensor accounted for,
FrozenBN folded by the formula, background rows added where detectron2 has
none, and the model keeping detectron2's semantics from the npz."""
import os
import pickle
import subprocess
import sys
import zipfile

import numpy
import pytest

from models.conventions import DETECTRON2
from utils import detectron_parser as dp
from utils.weights.detectron2 import convert_d2
from utils.weights.model_io import load_model, read_meta
from utils.weights.safe_pickle import ConversionError
from tests.helpers.crafted_pickles import touch_payload
from tests.helpers.synthetic_weights import (detectron2_state,
                                             write_detectron2_pickle)

# The repository root, three folders up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture(scope='module')
def fpn_state():
    return detectron2_state('fpn', seed=4)


def _folded(state, name):
    """FrozenBatchNorm2d in float64, written out independently."""
    g, b, m, v = (state['{}.norm.{}'.format(name, f)].astype(numpy.float64)
                  for f in ('weight', 'bias', 'running_mean', 'running_var'))
    s = g / numpy.sqrt(v + 1e-5)
    return s, b - m * s


def test_fpn_every_tensor_lands(fpn_state):
    model, meta, report = convert_d2({'model': fpn_state})
    assert meta['arch'] == 'fpn' and meta['n_fg_class'] == 80
    assert 'tensors mapped: {}'.format(len(fpn_state)) in report
    body = model.extractor.body
    pre = 'backbone.bottom_up.'
    numpy.testing.assert_array_equal(body.conv1.conv.W.array,
                                     fpn_state[pre + 'stem.conv1.weight'])
    for name, link in ((pre + 'stem.conv1', body.conv1),
                       (pre + 'res3.2.conv2', body.res3[2].branch2b),
                       (pre + 'res5.0.shortcut', body.res5[0].branch1)):
        s, b = _folded(fpn_state, name)
        numpy.testing.assert_allclose(link.norm.scale, s, rtol=1e-6)
        numpy.testing.assert_allclose(link.norm.bias, b, rtol=1e-5,
                                      atol=1e-6)
    numpy.testing.assert_array_equal(
        body.res4[5].branch2c.conv.W.array,
        fpn_state[pre + 'res4.5.conv3.weight'])
    numpy.testing.assert_array_equal(model.extractor.inner[0].W.array,
                                     fpn_state['backbone.fpn_lateral2.weight'])
    numpy.testing.assert_array_equal(model.extractor.outer[3].b.array,
                                     fpn_state['backbone.fpn_output5.bias'])
    numpy.testing.assert_array_equal(
        model.rpn.bbox_pred.W.array,
        fpn_state['proposal_generator.rpn_head.anchor_deltas.weight'])
    numpy.testing.assert_array_equal(
        model.box_head.fc6.W.array, fpn_state['roi_heads.box_head.fc1.weight'])
    # cls_score as it is (background last, read with background_index -1).
    numpy.testing.assert_array_equal(
        model.box_head.predictor.cls_score.W.array,
        fpn_state['roi_heads.box_predictor.cls_score.weight'])
    # bbox_pred: 4 zero rows for background, then classes 1..80.
    w = model.box_head.predictor.bbox_pred.W.array
    assert w.shape == (324, 1024)
    assert not w[:4].any()
    numpy.testing.assert_array_equal(
        w[4:], fpn_state['roi_heads.box_predictor.bbox_pred.weight'])
    logits = model.mask_head.predictor.logits
    assert logits.W.shape == (81, 256, 1, 1) and not logits.b.array[0]
    numpy.testing.assert_array_equal(
        logits.b.array[1:], fpn_state['roi_heads.mask_head.predictor.bias'])
    numpy.testing.assert_array_equal(
        model.mask_head.convs[3].W.array,
        fpn_state['roi_heads.mask_head.mask_fcn4.weight'])


def test_c4_res5_goes_to_the_box_head():
    state = detectron2_state('c4', seed=5)
    model, meta, report = convert_d2({'model': state})
    assert meta['arch'] == 'c4'
    assert 'tensors mapped: {}'.format(len(state)) in report
    numpy.testing.assert_array_equal(
        model.box_head.res5[0].branch2a.conv.W.array,
        state['roi_heads.res5.0.conv1.weight'])
    numpy.testing.assert_array_equal(
        model.extractor.body.res4[5].branch2b.conv.W.array,
        state['backbone.res4.5.conv2.weight'])
    numpy.testing.assert_array_equal(
        model.mask_head.predictor.deconv.W.array,
        state['roi_heads.mask_head.deconv.weight'])
    assert model.rpn.cls_logits.W.shape == (15, 1024, 1, 1)


def test_npz_keeps_detectron2_semantics(tmp_path, fpn_state):
    pkl = str(tmp_path / 'model_final_f10217.pkl')
    write_detectron2_pickle(pkl, 'fpn', state=fpn_state)
    out = str(tmp_path / 'd2.npz')
    proc = subprocess.run(
        [sys.executable, 'utils/detectron_parser.py', pkl, '-o', out],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert 'FrozenBN folded' in proc.stdout
    meta = read_meta(out)
    assert meta['source']['format'] == 'detectron2'
    assert meta['conventions'] == DETECTRON2.to_dict()
    model, _ = load_model(out)
    assert model.conventions == DETECTRON2
    assert model.box_head.pooler.sampling_ratio == 0
    assert model.box_head.pooler.aligned
    assert model.proposal_generator.collect_top_n == (1000, 1000)
    # The anchors are detectron2's: level 2 (size 32), ratio 1 at the
    # origin cell is [-16, -16, 16, 16].
    numpy.testing.assert_allclose(model.cell_anchors[0][1],
                                  [-16, -16, 16, 16])
    numpy.testing.assert_array_equal(
        model.rpn.conv.W.array,
        fpn_state['proposal_generator.rpn_head.conv.weight'])


def test_buffers_and_pixel_statistics(fpn_state):
    state = dict(fpn_state)
    state['pixel_mean'] = numpy.array([1., 2., 3.]).reshape(3, 1, 1)
    state['pixel_std'] = numpy.array([4., 5., 6.]).reshape(3, 1, 1)
    state['proposal_generator.anchor_generator.cell_anchors.0'] = \
        _d2_cell_anchors(32)
    state['backbone.bottom_up.stem.conv1.norm.num_batches_tracked'] = \
        numpy.zeros(())
    model, meta, report = convert_d2({'model': state})
    assert meta['conventions']['pixel_mean'] == [1., 2., 3.]
    assert model.normalization['pixel_std'] == (4., 5., 6.)
    assert 'ignored buffers: 4' in '\n'.join(report)


@pytest.mark.parametrize('change,message', [
    (lambda s: s.pop('roi_heads.box_head.fc2.bias'), 'missing'),
    (lambda s: s.update(extra=numpy.zeros(2)), 'unexpected tensor'),
    (lambda s: s.update({'roi_heads.box_head.fc2.bias': numpy.zeros(3)}),
     'has shape'),
    (lambda s: s.update({'roi_heads.box_head.fc2.bias': [0.] * 1024}),
     'expected an ndarray'),
])
def test_wrong_checkpoints_fail_with_one_line(fpn_state, change, message):
    state = dict(fpn_state)
    change(state)
    with pytest.raises(ConversionError, match=message):
        convert_d2({'model': state})


def test_torch_files_are_refused(tmp_path):
    pth = tmp_path / 'model_final.pth'
    with zipfile.ZipFile(str(pth), 'w') as z:
        z.writestr('archive/data.pkl', b'')
    with pytest.raises(ConversionError, match='PyTorch'):
        dp.main([str(pth)])
    evil, marker = tmp_path / 'evil.pkl', tmp_path / 'pwned'
    evil.write_bytes(pickle.dumps({'model': {'a': touch_payload(marker)}},
                                  protocol=2))
    with pytest.raises(ConversionError, match='refusing'):
        dp.main([str(evil)])
    assert not marker.exists()


def test_r101_fpn():
    state = detectron2_state('fpn', depth=101, seed=6)
    model, meta, report = convert_d2({'model': state})
    assert meta['depth'] == 101
    assert 'tensors mapped: {}'.format(len(state)) in report
    numpy.testing.assert_array_equal(
        model.extractor.body.res4[22].branch2a.conv.W.array,
        state['backbone.bottom_up.res4.22.conv1.weight'])


def _d2_cell_anchors(size, ratios=(0.5, 1., 2.)):
    """detectron2's ``generate_cell_anchors`` for one size, by its formula:
    w = sqrt(size^2 / ratio), h = ratio * w, centred at 0."""
    out = []
    for ratio in ratios:
        w = numpy.sqrt(size * size / ratio)
        h = ratio * w
        out.append([-w / 2, -h / 2, w / 2, h / 2])
    return numpy.array(out, numpy.float32)


def test_stored_cell_anchors_are_checked(fpn_state):
    prefix = 'proposal_generator.anchor_generator.cell_anchors.'
    state = dict(fpn_state)
    for level, size in enumerate((32, 64, 128, 256, 512)):
        state[prefix + str(level)] = _d2_cell_anchors(size)
    convert_d2({'model': state})  # detectron2's own anchors: accepted
    state[prefix + '2'] = _d2_cell_anchors(128, ratios=(0.25, 1., 4.))
    with pytest.raises(ConversionError, match=prefix + '2 differs'):
        convert_d2({'model': state})
