"""Winograd F(2x2, 3x3) inside a whole model: fpn-tiny (narrow, so the
shipped rule keeps it on the direct path) with the rule's thresholds
lowered sends every 3x3 stride-1 convolution through
``functions/winograd.py``; its features and detections equal the direct
path's within float32 rounding (bench/winograd.py --model times it)."""
import chainer
import numpy

from functions import winograd
from models.presets import build_mask_rcnn, get_preset
from utils.ops.image import prepare

# 90 x 120 at min_size 96: resized 96 x 128 (P2 24 x 32).
TINY = dict(n_fg_class=2, min_size=96, max_size=128)


def _run(model, image):
    """Pyramid features and the detections of one image."""
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        x = prepare(image, 96, 128, 32, **model.normalization)[0]
        features = [f.array.copy() for f in model.extractor(x[None])]
    return features, model.predict([image])


def test_fpn_tiny_with_winograd_equals_the_direct_path(monkeypatch):
    numpy.random.seed(0)
    model = build_mask_rcnn(get_preset('fpn-tiny', **TINY))
    model.use_thresholds({'score_thresh': 0., 'nms_thresh': 0.5,
                          'limit': 20})
    image = numpy.random.RandomState(1).uniform(
        0, 255, (3, 90, 120)).astype(numpy.float32)
    calls = []
    conv3x3 = winograd.conv3x3
    monkeypatch.setattr(winograd, 'conv3x3', lambda *a, **k: calls.append(
        a[0].shape) or conv3x3(*a, **k))
    features, (bboxes, labels, scores, masks) = _run(model, image)
    assert calls == []  # the shipped rule: fpn-tiny is too narrow
    monkeypatch.setattr(winograd, 'MIN_CHANNELS', 1)
    monkeypatch.setattr(winograd, 'MIN_MACS', 1)
    wino, (w_bboxes, w_labels, w_scores, w_masks) = _run(model, image)
    # The FPN outputs, the RPN and the mask head's 3x3 convolutions.
    assert len(calls) >= 10, calls
    for a, b in zip(features, wino):
        scale = numpy.abs(a).max()
        numpy.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * scale)
    assert len(bboxes[0]) == len(w_bboxes[0]) == 20
    numpy.testing.assert_array_equal(w_labels[0], labels[0])
    numpy.testing.assert_allclose(w_bboxes[0], bboxes[0], atol=1e-2)
    numpy.testing.assert_allclose(w_scores[0], scores[0], rtol=1e-4,
                                  atol=1e-6)
    numpy.testing.assert_allclose(w_masks[0], masks[0], atol=1e-3)
