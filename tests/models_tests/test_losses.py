"""Head losses on tiny inputs against NumPy formulas written here."""
import chainer
import numpy
import pytest

from models.box_head import box_head_loss
from models.mask_head import mask_head_loss
from models.rpn import rpn_loss


def _smooth_l1(d, beta):
    d = numpy.abs(d)
    return numpy.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta)


def _bce(x, t):
    return numpy.maximum(x, 0) - x * t + numpy.log1p(numpy.exp(-abs(x)))


def test_rpn_loss():
    rng = numpy.random.RandomState(0)
    N, A = 2, 7
    logits = rng.randn(N, A)
    deltas = rng.randn(N, A, 4)
    label = numpy.array([[1, 0, -1, 0, 1, -1, -1],
                         [0, 0, 0, -1, -1, -1, 1]], numpy.int32)
    loc = rng.randn(N, A, 4)
    loc_loss, cls_loss = rpn_loss(chainer.Variable(logits),
                                  chainer.Variable(deltas), label, loc)
    cls_ref = loc_ref = 0.
    for i in range(N):
        valid = label[i] >= 0
        n = valid.sum()
        cls_ref += _bce(logits[i][valid], label[i][valid]).sum() / n / N
        fg = label[i] == 1
        loc_ref += _smooth_l1(deltas[i][fg] - loc[i][fg], 1 / 9.).sum() / n / N
    assert float(cls_loss.array) == pytest.approx(cls_ref, rel=1e-6)
    assert float(loc_loss.array) == pytest.approx(loc_ref, rel=1e-6)


def test_box_head_loss():
    rng = numpy.random.RandomState(1)
    R, K1 = 5, 3
    score = rng.randn(R, K1)
    pred = rng.randn(R, 4 * K1)
    label = numpy.array([2, 0, 1, 0, 0], numpy.int32)
    loc = rng.randn(R, 4)
    roi_indices = numpy.array([0, 0, 1, 1, 1], numpy.int32)
    loc_loss, cls_loss = box_head_loss(chainer.Variable(score),
                                       chainer.Variable(pred), label, loc,
                                       roi_indices, 2)
    logp = score - numpy.log(numpy.exp(score).sum(1, keepdims=True))
    ce = -logp[numpy.arange(R), label]
    cls_ref = ce[:2].sum() / 2 / 2 + ce[2:].sum() / 3 / 2
    l0 = _smooth_l1(pred[0, 8:12] - loc[0], 1.).sum()
    l2 = _smooth_l1(pred[2, 4:8] - loc[2], 1.).sum()
    loc_ref = l0 / 2 / 2 + l2 / 3 / 2
    assert float(cls_loss.array) == pytest.approx(cls_ref, rel=1e-6)
    assert float(loc_loss.array) == pytest.approx(loc_ref, rel=1e-6)


def test_mask_head_loss():
    rng = numpy.random.RandomState(2)
    F_, K1, M = 3, 4, 5
    logits = rng.randn(F_, K1, M, M)
    label = numpy.array([1, 3, 2], numpy.int32)
    target = rng.randint(0, 2, (F_, M, M)).astype(numpy.int32)
    roi_indices = numpy.array([0, 0, 2], numpy.int32)  # image 1: no fg
    loss = mask_head_loss(chainer.Variable(logits), label, target,
                          roi_indices, 3)
    per = [_bce(logits[i, label[i]], target[i]).sum() for i in range(F_)]
    ref = (per[0] + per[1]) / (2 * M * M) / 3 + per[2] / (M * M) / 3
    assert float(loss.array) == pytest.approx(ref, rel=1e-6)


def test_gradients_only_reach_labelled_channels():
    logits = chainer.Variable(numpy.zeros((1, 3, 2, 2)))
    mask_head_loss(logits, numpy.array([2], numpy.int32),
                   numpy.ones((1, 2, 2), numpy.int32),
                   numpy.zeros(1, numpy.int32), 1).backward()
    assert (logits.grad[0, [0, 1]] == 0).all()
    # d/dx of BCE(x, 1) at 0 is sigmoid(0) - 1 = -0.5, over 4 pixels.
    numpy.testing.assert_allclose(logits.grad[0, 2], -0.5 / 4)
