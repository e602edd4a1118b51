"""Gradient clipping by the global L2 norm (``--clip-grad``) on hand
cases: the norm after the hook equals the threshold, with loss scaling
and float16 gradients too, and inside the updaters' step."""
import math

import chainer
import chainer.functions as F
import numpy
import pytest

from tests.helpers import tiny_training as tiny
from utils.training.clipping import GlobalNormClipping, global_grad_norm
from utils.training.subdivision_updater import SubdivisionUpdater


class _Two(chainer.Link):
    """Two parameters, a (2,) and b (1,); loss = a . x[:2] + b * x[2]."""

    def __init__(self, dtype=numpy.float32):
        super().__init__()
        with self.init_scope():
            self.a = chainer.Parameter(numpy.zeros(2, dtype))
            self.b = chainer.Parameter(numpy.zeros(1, dtype))

    def forward(self, x):
        x = x.astype(self.a.dtype)
        loss = F.sum(self.a * x[:, :2]) / len(x) + \
            F.sum(self.b * x[:, 2:]) / len(x)
        chainer.report({'loss': loss}, self)
        return loss


def _optimizer(model, threshold, scale=None):
    opt = chainer.optimizers.SGD(1.)
    opt.setup(model)
    if scale:
        opt.use_fp32_update()
        opt.loss_scaling(scale=scale)
    hook = GlobalNormClipping(threshold)
    opt.add_hook(hook)
    return opt, hook


def _set_grads(model, a, b, scale=1.):
    model.a.grad = (numpy.array(a) * scale).astype(model.a.dtype)
    model.b.grad = (numpy.array(b) * scale).astype(model.b.dtype)


@pytest.mark.parametrize('dtype, scale', [(numpy.float32, None),
                                          (numpy.float16, 1024.)])
def test_norm_after_clipping_is_the_threshold(dtype, scale):
    # |(3, 4, 12)| = 13; clipped to 6.5 every gradient halves.
    model = _Two(dtype)
    opt, hook = _optimizer(model, 6.5, scale)
    _set_grads(model, [3., 4.], [12.], scale or 1.)
    opt.call_hooks('pre')
    assert hook.last_norm == pytest.approx(13.)
    numpy.testing.assert_allclose(model.a.grad / (scale or 1.), [1.5, 2.])
    numpy.testing.assert_allclose(model.b.grad / (scale or 1.), [6.])
    assert global_grad_norm([model.a, model.b], scale) == \
        pytest.approx(6.5)


def test_float16_squares_do_not_overflow():
    # 300 ** 2 overflows float16 (max 65504): the norm is summed in float32.
    model = _Two(numpy.float16)
    _set_grads(model, [300., 400.], [0.])
    assert global_grad_norm([model.a, model.b]) == pytest.approx(500.)


def test_below_the_threshold_nothing_changes_and_frozen_is_ignored():
    model = _Two()
    opt, _ = _optimizer(model, 13.5)
    model.b.update_rule.enabled = False   # frozen: its gradient is ignored
    _set_grads(model, [3., 4.], [1000.])
    opt.call_hooks('pre')
    numpy.testing.assert_array_equal(model.a.grad, [3., 4.])
    numpy.testing.assert_array_equal(model.b.grad, [1000.])


@pytest.mark.parametrize('scale', [None, 2. ** 10])
def test_the_step_of_a_subdivided_batch_is_clipped(scale):
    # Two images x = (6, 8, 24) and (0, 0, 2): the batch-mean gradient is
    # (3, 4, 13) with norm sqrt(194); clipped to 1 and SGD at lr 1, the
    # step is (3, 4, 13) / sqrt(194).
    model = _Two(numpy.float16 if scale else numpy.float32)
    opt, _ = _optimizer(model, 1., scale)
    batch = [numpy.array([6., 8., 24.], numpy.float32),
             numpy.array([0., 0., 2.], numpy.float32)]
    up = SubdivisionUpdater(tiny.OneBatch(batch), opt,
                            lambda b, d: (numpy.stack(b),), None, 2)
    tiny.update_once(up, model)
    weights = model.a.update_rule._fp32_param if scale else model.a
    expected = -numpy.array([3., 4.]) / math.sqrt(194.)
    numpy.testing.assert_allclose(weights.array, expected, rtol=1e-3)
