"""Loss scaling reaches ``backward`` in every updater (``--dtype
mixed16``): a loss whose float16 gradients underflow without scaling
still moves the float32 master weights, by the hand-computed step."""
import chainer
import chainer.functions as F
import numpy
import pytest

from tests.helpers import tiny_training as tiny
from utils.training.multi_device_updater import MultiDeviceUpdater
from utils.training.subdivision_updater import SubdivisionUpdater

# d loss / d w = x * x = 1e-8: zero in float16 (smallest subnormal 6e-8),
# 1e-4 * 2**14 * 1e-4 = 1.6e-4 with the loss scaled; the step is 1e-4.
X, SCALE, LR = float(numpy.float16(1e-4)), 2. ** 14, 1e4


class _Small(chainer.Link):
    """loss = sum(w * x * x) with float16 w and x."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.w = chainer.Parameter(numpy.ones(4, numpy.float16))

    def forward(self, x):
        loss = F.sum(self.w * x * x)
        chainer.report({'loss': loss}, self)
        return loss


def _to_x(batch, device):
    x = numpy.stack(batch).astype(numpy.float16)
    return (x if device is None else device.send(x),)


@pytest.mark.parametrize('updater', ['subdivisions', 'two devices'])
def test_scaled_gradients_do_not_underflow(updater):
    model = _Small()
    optimizer = chainer.optimizers.SGD(LR)
    optimizer.setup(model)
    optimizer.use_fp32_update()
    optimizer.loss_scaling(scale=SCALE)
    # Two images of x = X: the batch-mean gradient of each w is X * X.
    batch = [numpy.full(4, X, numpy.float32)] * 2
    if updater == 'subdivisions':
        up = SubdivisionUpdater(tiny.OneBatch(batch), optimizer, _to_x,
                                None, 2)
    else:
        up = MultiDeviceUpdater(tiny.OneBatch(batch), optimizer, _to_x,
                                ['@numpy', '@numpy'], 1)
    tiny.update_once(up, model)
    assert model.w._loss_scale == optimizer._loss_scale == SCALE
    master = model.w.update_rule._fp32_param.array
    numpy.testing.assert_allclose(1. - master, LR * X * X, rtol=2e-3)
    assert (master < 1.).all()
