"""IoU-type box losses (``models/box_losses.py``) against values worked by
hand and a NumPy formula written here, and their gradients."""
import math

import chainer
import numpy
import pytest
from chainer import gradient_check

from models import train_chain
from models.box_head import box_head_loss
from models.box_losses import box_iou_loss, decode_deltas
from tests.helpers import tiny_training as tiny
from utils.ops.boxes import decode_bbox

WEIGHTS = (10., 10., 5., 5.)


def _ref_loss(kind, p, g, o):
    """1 - (G/D/C)IoU of (R, 4) float64 boxes, the papers' formulas with
    sides ``x2 - x1 + o`` (no eps)."""
    pw, ph = p[:, 2] - p[:, 0] + o, p[:, 3] - p[:, 1] + o
    gw, gh = g[:, 2] - g[:, 0] + o, g[:, 3] - g[:, 1] + o
    iw = numpy.maximum(numpy.minimum(p[:, 2], g[:, 2]) -
                       numpy.maximum(p[:, 0], g[:, 0]) + o, 0)
    ih = numpy.maximum(numpy.minimum(p[:, 3], g[:, 3]) -
                       numpy.maximum(p[:, 1], g[:, 1]) + o, 0)
    union = pw * ph + gw * gh - iw * ih
    iou = iw * ih / union
    cw = numpy.maximum(p[:, 2], g[:, 2]) - numpy.minimum(p[:, 0], g[:, 0]) + o
    ch = numpy.maximum(p[:, 3], g[:, 3]) - numpy.minimum(p[:, 1], g[:, 1]) + o
    if kind == 'giou':
        return 1 - iou + (cw * ch - union) / (cw * ch)
    dx = (p[:, 0] + p[:, 2]) / 2 - (g[:, 0] + g[:, 2]) / 2
    dy = (p[:, 1] + p[:, 3]) / 2 - (g[:, 1] + g[:, 3]) / 2
    diou = iou - (dx ** 2 + dy ** 2) / (cw ** 2 + ch ** 2)
    if kind == 'diou':
        return 1 - diou
    v = 4 / math.pi ** 2 * (numpy.arctan(gw / gh) - numpy.arctan(pw / ph)) ** 2
    return 1 - diou + v / (1 - iou + v) * v


def _random_boxes(rng, n, lo=0, hi=60):
    xy = rng.uniform(lo, hi, (n, 2))
    return numpy.concatenate([xy, xy + rng.uniform(2, 30, (n, 2))], axis=1)


# (pred, gt) with "+1" widths. Identical: IoU 1, nothing to add.
# Disjoint: 10 x 10 boxes 20 px apart. I = 0, U = 200, enclosing 30 x 10
# = 300, so GIoU = 0 - 100 / 300; centres (5, 5) and (25, 5): rho^2 = 400,
# diagonal^2 = 30^2 + 10^2 = 1000, DIoU = -0.4; equal aspect: v = 0.
# Nested: 10 x 10 in the left of 20 x 10. I = 100, U = 200, IoU = 0.5,
# enclosing = gt (GIoU 0.5); centres (5, 5) and (10, 5): rho^2 = 25,
# diagonal^2 = 500, DIoU = 0.45; v = 4 / pi^2 (atan 2 - atan 1)^2
# = 0.0419564, alpha = v / (0.5 + v) = 0.0774163, alpha v = 0.0032481.
CASES = [
    ([0, 0, 9, 9], [0, 0, 9, 9], 1, {'giou': 0, 'diou': 0, 'ciou': 0}),
    ([0, 0, 9, 9], [20, 0, 29, 9], 1,
     {'giou': 4 / 3, 'diou': 1.4, 'ciou': 1.4}),
    ([0, 0, 9, 9], [0, 0, 19, 9], 1,
     {'giou': 0.5, 'diou': 0.55, 'ciou': 0.5532481}),
    # box_offset 0: 4 x 4 boxes overlapping 2 x 2. IoU = 4 / 28, enclosing
    # 6 x 6: GIoU = 1/7 - 8/36; centres 2 px apart on each axis: rho^2 = 8,
    # diagonal^2 = 72, DIoU = 1/7 - 1/9; v = 0.
    ([0, 0, 4, 4], [2, 2, 6, 6], 0,
     {'giou': 1 - 1 / 7 + 8 / 36, 'diou': 1 - 1 / 7 + 1 / 9,
      'ciou': 1 - 1 / 7 + 1 / 9}),
]


@pytest.mark.parametrize('kind', ['giou', 'diou', 'ciou'])
@pytest.mark.parametrize('pred, gt, offset, expected', CASES)
def test_hand_computed(xp, kind, pred, gt, offset, expected):
    loss = box_iou_loss(kind, chainer.Variable(xp.array([pred], 'f')),
                        xp.array([gt], 'f'), offset)
    assert loss.dtype == numpy.float32
    assert float(loss.array[0]) == pytest.approx(expected[kind], abs=1e-6)


@pytest.mark.parametrize('kind', ['giou', 'diou', 'ciou'])
@pytest.mark.parametrize('offset', [0, 1])
def test_matches_the_formula_on_random_boxes(kind, offset):
    rng = numpy.random.RandomState(0)
    p, g = _random_boxes(rng, 50), _random_boxes(rng, 50)
    loss = box_iou_loss(kind, chainer.Variable(p), g, offset)
    numpy.testing.assert_allclose(loss.array, _ref_loss(kind, p, g, offset),
                                  rtol=1e-7)


@pytest.mark.parametrize('offset', [0, 1])
def test_decode_is_the_inference_decode(xp, offset):
    rng = numpy.random.RandomState(1)
    rois = _random_boxes(rng, 6).astype('f')
    deltas = rng.randn(6, 4).astype('f')
    deltas[0, 2] = deltas[1, 3] = 30  # past BBOX_XFORM_CLIP
    box = decode_deltas(xp.asarray(rois), chainer.Variable(
        xp.asarray(deltas)), WEIGHTS, offset)
    numpy.testing.assert_allclose(
        chainer.backend.CpuDevice().send(box.array),
        decode_bbox(rois, deltas, WEIGHTS, box_offset=offset), rtol=1e-6)


def _head_inputs(seed, R=6, K1=3):
    """Random head outputs for R ROIs of 2 images, labels with background,
    ground truth near each ROI (so boxes overlap, some do not)."""
    rng = numpy.random.RandomState(seed)
    score = rng.randn(R, K1)
    bbox_pred = rng.randn(R, 4 * K1) * 2
    label = rng.randint(0, K1, R).astype(numpy.int32)
    label[:2] = [1, 2]
    rois = _random_boxes(rng, R)
    gt_bbox = rois + rng.uniform(-8, 8, (R, 4))
    roi_indices = numpy.array([0, 1, 0, 1, 1, 1], numpy.int32)[:R]
    return score, bbox_pred, label, rois, gt_bbox, roi_indices


def _loc_loss(kind, bbox_pred, label, rois, gt_bbox, roi_indices, offset=1):
    score = numpy.zeros((len(label), bbox_pred.shape[1] // 4))
    return box_head_loss(score, bbox_pred, label, numpy.zeros((len(label), 4)),
                         roi_indices, 2, box_loss=kind, rois=rois,
                         gt_bbox=gt_bbox, box_offset=offset)[0]


@pytest.mark.parametrize('kind', ['giou', 'diou', 'ciou'])
def test_head_loss_is_normalised_like_smooth_l1(kind):
    # Summed over foreground ROIs, divided by each image's ROI count
    # (foreground and background) and averaged over the 2 images.
    score, bbox_pred, label, rois, gt_bbox, roi_indices = _head_inputs(2)
    loss = _loc_loss(kind, chainer.Variable(bbox_pred), label, rois,
                     gt_bbox, roi_indices)
    R = len(label)
    deltas = bbox_pred.reshape(R, -1, 4)[numpy.arange(R), label]
    per = _ref_loss(kind, decode_bbox(rois, deltas, WEIGHTS), gt_bbox, 1)
    fg = label > 0
    counts = numpy.bincount(roi_indices)
    ref = sum(per[fg & (roi_indices == i)].sum() / counts[i] / 2
              for i in range(2))
    assert float(loss.array) == pytest.approx(ref, rel=1e-7)


@pytest.mark.parametrize('kind', ['giou', 'diou'])
@pytest.mark.parametrize('offset', [0, 1])
def test_gradient_check(kind, offset):
    _, bbox_pred, label, rois, gt_bbox, roi_indices = _head_inputs(3)
    gradient_check.check_backward(
        lambda x: _loc_loss(kind, x, label, rois, gt_bbox, roi_indices,
                            offset),
        bbox_pred, None, eps=1e-6, atol=1e-7, rtol=1e-5)


def _aspect_term(p, g):
    """CIoU's v = 4 / pi^2 (atan(w_g / h_g) - atan(w_p / h_p))^2, "+1"."""
    def atan_ratio(b):
        return numpy.arctan((b[:, 2] - b[:, 0] + 1) / (b[:, 3] - b[:, 1] + 1))
    return 4 / math.pi ** 2 * (atan_ratio(g) - atan_ratio(p)) ** 2


def test_ciou_gradient_holds_alpha_constant():
    # alpha = v / (1 - IoU + v) carries no gradient: the backward pass is
    # the numerical derivative of 1 - DIoU + alpha0 v, alpha0 frozen at the
    # point of evaluation.
    rng = numpy.random.RandomState(4)
    p, g = _random_boxes(rng, 8), _random_boxes(rng, 8, 0, 20)
    iw = numpy.maximum(numpy.minimum(p[:, 2], g[:, 2]) -
                       numpy.maximum(p[:, 0], g[:, 0]) + 1, 0)
    ih = numpy.maximum(numpy.minimum(p[:, 3], g[:, 3]) -
                       numpy.maximum(p[:, 1], g[:, 1]) + 1, 0)
    area_p = (p[:, 2] - p[:, 0] + 1) * (p[:, 3] - p[:, 1] + 1)
    area_g = (g[:, 2] - g[:, 0] + 1) * (g[:, 3] - g[:, 1] + 1)
    iou = iw * ih / (area_p + area_g - iw * ih)
    assert (iou > 0).any() and (iou == 0).any()
    v = _aspect_term(p, g)
    alpha0 = v / (1 - iou + v)

    def frozen():
        return (_ref_loss('diou', p, g, 1) + alpha0 * _aspect_term(p, g),)

    numeric, = gradient_check.numerical_grad(
        frozen, (p,), (numpy.ones(len(p)),), eps=1e-6)
    x = chainer.Variable(p.copy())
    chainer.functions.sum(box_iou_loss('ciou', x, g, 1)).backward()
    numpy.testing.assert_allclose(x.grad, numeric, rtol=1e-5, atol=1e-8)
    # alpha's own derivative is not small here: holding it matters.
    assert (alpha0 > 0.01).any()


@pytest.mark.parametrize('kind', ['smooth_l1', 'giou', 'diou', 'ciou'])
@pytest.mark.parametrize('n_rois', [0, 4])
def test_no_foreground_gives_zero(xp, kind, n_rois):
    # Background ROIs carry zero ground truth: left out, no NaN.
    x = chainer.Variable(xp.ones((n_rois, 12), 'f'))
    loss = box_head_loss(
        xp.zeros((n_rois, 3), 'f'), x, xp.zeros(n_rois, numpy.int32),
        xp.zeros((n_rois, 4), 'f'), xp.zeros(n_rois, numpy.int32), 1,
        box_loss=kind, rois=xp.zeros((n_rois, 4), 'f'),
        gt_bbox=xp.zeros((n_rois, 4), 'f'), box_offset=0)[0]
    loss.backward()
    assert float(loss.array) == 0
    assert (x.grad == 0).all()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="one of .*'giou'.*got 'iou'"):
        box_iou_loss('iou', chainer.Variable(numpy.zeros((1, 4))),
                     numpy.zeros((1, 4)))


def _reported(chain):
    """What the chain reports on one batch of 2 tiny images."""
    reporter = chainer.reporter.Reporter()
    reporter.add_observer('main', chain)
    observation = {}
    with reporter.scope(observation):
        chain(*tiny.batcher()(tiny.examples(2)))
    return {k: float(v.array) for k, v in observation.items()}


def _chain_forward(monkeypatch, box_loss):
    """Reported losses of the tiny chain, and the per-ROI (GT-class
    deltas, loc targets, rois, gt_bbox, label, roi_indices, n_images) it
    passed to ``box_head_loss``, as host arrays."""
    seen = {}

    def spy(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        return box_head_loss(*args, **kwargs)

    monkeypatch.setattr(train_chain, 'box_head_loss', spy)
    reported = _reported(tiny.chain(box_loss=box_loss))
    monkeypatch.undo()
    _, bbox_pred, label, loc, roi_indices, n = seen['args']
    R = len(label)
    deltas = bbox_pred.array.reshape(R, -1, 4)[numpy.arange(R), label]
    return reported, (deltas, loc, seen['kwargs']['rois'],
                      seen['kwargs']['gt_bbox'], label, roi_indices, n)


def _image_mean(per_roi, label, roi_indices, n):
    """Foreground sum / the image's ROI count, averaged over images."""
    counts = numpy.bincount(roi_indices, minlength=n)
    fg = label > 0
    return sum(per_roi[fg & (roi_indices == i)].sum() / counts[i] / n
               for i in range(n))


def test_train_chain_smooth_l1_is_the_default(monkeypatch):
    smooth, (deltas, loc, _, _, label, roi_indices, n) = _chain_forward(
        monkeypatch, 'smooth_l1')
    assert (label > 0).any() and (label == 0).any()
    d = numpy.abs(deltas - loc)
    sl1 = numpy.where(d < 1, 0.5 * d ** 2, d - 0.5).sum(axis=1)
    assert smooth['main/roi_loc'] == pytest.approx(
        _image_mean(sl1, label, roi_indices, n), rel=1e-5)
    # A chain built without box_loss reports the same, value for value.
    assert _reported(tiny.chain()) == smooth


def test_train_chain_giou(monkeypatch):
    smooth = _reported(tiny.chain())
    giou, (deltas, loc, rois, gt_bbox, label, roi_indices, n) = \
        _chain_forward(monkeypatch, 'giou')
    fg = label > 0
    # The matched ground truth is the box the targets were encoded to.
    numpy.testing.assert_allclose(
        decode_bbox(rois[fg], loc[fg], WEIGHTS), gt_bbox[fg], atol=1e-3)
    per = _ref_loss('giou', decode_bbox(rois, deltas, WEIGHTS).astype(
        numpy.float64), gt_bbox.astype(numpy.float64), 1)
    assert giou['main/roi_loc'] == pytest.approx(
        _image_mean(per, label, roi_indices, n), rel=1e-5)
    assert giou['main/roi_loc'] != smooth['main/roi_loc']
    assert giou['main/loss'] != smooth['main/loss']
    # Same seed, same samples: only the box loss moves.
    for key in ('main/rpn_loc', 'main/rpn_cls', 'main/roi_cls', 'main/mask'):
        assert giou[key] == smooth[key], key


def test_train_chain_refuses_an_unknown_box_loss():
    with pytest.raises(ValueError, match="box_loss must be one of"):
        tiny.chain(box_loss='l2')
