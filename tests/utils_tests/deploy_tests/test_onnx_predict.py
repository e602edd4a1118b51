"""The exported model on onnxruntime gives the Chainer model's detections
(issue #18): for c4, fpn, fpn-tiny and mobilenetv1-fpn, and the norms
affine, gn and bn (``tests/helpers/onnx_models.py`` ``CASES``), on three
small images, the same count and labels, boxes within 1e-3 px, scores
within 1e-4 and masks of IoU >= 0.99; also with an empty FPN level, with
no detections, and in a process where chainer cannot be imported."""
import json
import os
import subprocess
import sys

import numpy
import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from models.conventions import DETECTRON2  # noqa: E402
from tests.helpers.onnx_models import images, write_npz  # noqa: E402
from utils import export_onnx  # noqa: E402
from utils.deploy.onnx_predict import OnnxMaskRCNN  # noqa: E402
from utils.ops.fpn_levels import group_by_level  # noqa: E402
from utils.ops.image import network_input  # noqa: E402
from utils.weights.model_io import load_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def assert_same(ours, theirs):
    """Detections of one image from both backends agree (issue #18)."""
    (b0, l0, s0, m0), (b1, l1, s1, m1) = ours, theirs
    assert len(b0) == len(b1)
    assert b1.dtype == numpy.float32 and l1.dtype == numpy.int32
    assert s1.dtype == numpy.float32 and m1.dtype == bool
    assert m1.shape == m0.shape
    numpy.testing.assert_array_equal(l1, l0)
    numpy.testing.assert_allclose(b1, b0, rtol=0, atol=1e-3)
    numpy.testing.assert_allclose(s1, s0, rtol=0, atol=1e-4)
    for a, b in zip(m0, m1):
        union = (a | b).sum()
        assert union == 0 or (a & b).sum() / union >= 0.99


def test_same_detections(pair):
    arch, _, model, path, _ = pair
    onnx_model = OnnxMaskRCNN(path)
    imgs = images()
    ours = model.predict(imgs)
    theirs = onnx_model.predict(imgs)
    for i in range(len(imgs)):
        assert len(ours[0][i]) > 0, 'no detections: the test proves nothing'
        assert_same([o[i] for o in ours], [t[i] for t in theirs])


def test_same_detections_with_detectron2_conventions(tmp_path):
    """ROIAlignV2 ('half_pixel'), background last in cls_score, no "+1",
    detectron2's anchors, resize and paste: an fpn-tiny under them."""
    npz = str(write_npz('fpn-tiny', tmp_path / 'd2.npz', DETECTRON2))
    export_onnx.main([npz, '-o', str(tmp_path / 'd2.onnx')])
    model, _ = load_model(npz)
    assert model.box_head.predictor.background_index == -1
    ours = model.predict(images())
    theirs = OnnxMaskRCNN(str(tmp_path / 'd2.onnx')).predict(images())
    for i in range(3):
        assert len(ours[0][i]) > 0
        assert_same([o[i] for o in ours], [t[i] for t in theirs])


def test_empty_fpn_level_and_level_order(pair):
    """128 px images have no ROI of level 5 (sqrt(area) >= 448): the box
    head gets an empty level, and rows return in the order of the rois."""
    arch, _, model, path, _ = pair
    if arch == 'c4':
        pytest.skip('c4 pools one level')
    onnx_model = OnnxMaskRCNN(path)
    inp, scale, size = network_input(images()[0], model.min_size,
                                     model.max_size, model.pad_stride)
    features, rois = onnx_model.propose(inp, size, scale)
    idx, _ = group_by_level(rois, 2, 4)
    assert len(idx[3]) == 0 and len(rois) > 0
    cls_score, bbox_pred = onnx_model.run_head(
        'box', features, rois, ['cls_score', 'bbox_pred'])
    # Brute force: each ROI alone through the graph gives its own row.
    for r in (0, len(rois) - 1):
        one, _ = onnx_model.run_head('box', features, rois[r:r + 1],
                                     ['cls_score', 'bbox_pred'])
        numpy.testing.assert_allclose(one[0], cls_score[r], atol=1e-5)


def test_no_detections(pair):
    arch, _, model, path, _ = pair
    none = {'score_thresh': 1.0, 'nms_thresh': 0.5, 'limit': 100}
    model.use_thresholds(none)
    try:
        ours = model.predict(images()[:1])
    finally:
        model.use_thresholds('evaluate')
    theirs = OnnxMaskRCNN(path, none).predict(images()[:1])
    assert len(theirs[0][0]) == 0
    assert theirs[0][0].shape == (0, 4)
    assert theirs[3][0].shape == (0,) + images()[0].shape[1:]
    assert_same([o[0] for o in ours], [t[0] for t in theirs])


def test_no_proposals(pair):
    """An RPN that keeps nothing (every box under the minimum size): no
    head runs, no detection, on both backends."""
    arch, _, model, path, _ = pair
    onnx_model = OnnxMaskRCNN(path)
    onnx_model.proposal_generator.min_size = 1e6
    kept, model.proposal_generator.min_size = \
        model.proposal_generator.min_size, 1e6
    try:
        ours = model.predict(images()[:1])
    finally:
        model.proposal_generator.min_size = kept
    theirs = onnx_model.predict(images()[:1])
    assert len(theirs[0][0]) == 0 and theirs[1][0].dtype == numpy.int32
    assert_same([o[0] for o in ours], [t[0] for t in theirs])


RUN_WITHOUT_CHAINER = """
import json, sys
for name in ('chainer', 'cupy', 'onnx', 'PIL', 'pycocotools'):
    sys.modules[name] = None  # importing any of them now fails
sys.path.insert(0, {root!r})
import numpy
from utils.deploy.onnx_predict import OnnxMaskRCNN
with numpy.load({imgs!r}) as f:
    imgs = [f['arr_{{}}'.format(i)] for i in range(len(f.files))]
out = OnnxMaskRCNN({path!r}).predict(imgs)
numpy.savez({out!r}, **{{'{{}}_{{}}'.format(k, i): a
                        for k, arrays in zip('blsm', out)
                        for i, a in enumerate(arrays)}})
print(json.dumps([m for m in sys.modules if m.startswith('chainer.')]))
"""


def test_predict_without_chainer(pair, tmp_path):
    arch, norm, model, path, _ = pair
    if (arch, norm) != ('fpn-tiny', None):
        pytest.skip('one architecture is enough: the imports are the same')
    imgs, out = str(tmp_path / 'imgs.npz'), str(tmp_path / 'out.npz')
    numpy.savez(imgs, *images())
    code = RUN_WITHOUT_CHAINER.format(root=ROOT, path=path, imgs=imgs,
                                      out=out)
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    ours = model.predict(images())
    with numpy.load(out) as theirs:
        for i in range(3):
            assert_same([o[i] for o in ours],
                        [theirs['{}_{}'.format(k, i)] for k in 'blsm'])
