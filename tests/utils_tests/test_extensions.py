"""The learning-rate schedule against hand-computed values, and the guard
that stops on a non-finite loss before any snapshot is written."""
import os

import chainer
import numpy
import pytest
from chainer import training

from utils.extensions import NonFiniteLossGuard, TrainingDiverged, WarmupStepLR


def test_warmup_and_steps_by_hand():
    s = WarmupStepLR(0.02, steps=(60, 80), warmup_iters=10,
                     warmup_factor=1. / 3)
    # it 0: 0.02 / 3; it 5: alpha 0.5 -> factor 1/3 * 0.5 + 0.5 = 2/3.
    assert s.lr_at(0) == pytest.approx(0.02 / 3)
    assert s.lr_at(5) == pytest.approx(0.02 * 2 / 3)
    assert s.lr_at(10) == pytest.approx(0.02)
    assert s.lr_at(59) == pytest.approx(0.02)
    assert s.lr_at(60) == pytest.approx(0.002)
    assert s.lr_at(80) == pytest.approx(0.0002)


class _Loss(chainer.Link):
    """A model whose loss is given per iteration."""

    def __init__(self, losses):
        super().__init__()
        with self.init_scope():
            self.w = chainer.Parameter(numpy.ones(1, numpy.float32))
        self.losses = iter(losses)

    def forward(self, *args):
        loss = self.w[0] * next(self.losses)
        chainer.report({'loss': loss}, self)
        return loss


def test_guard_stops_before_the_snapshot(tmp_path):
    model = _Loss([1., 2., float('nan'), 3.])
    opt = chainer.optimizers.SGD(0.1)
    opt.setup(model)
    it = chainer.iterators.SerialIterator([numpy.zeros(1, 'f')] * 4, 1)
    updater = training.StandardUpdater(it, opt)
    trainer = training.Trainer(updater, (4, 'iteration'), str(tmp_path))
    trainer.extend(NonFiniteLossGuard())
    trainer.extend(WarmupStepLR(0.1, warmup_iters=0))
    trainer.extend(training.extensions.snapshot(
        filename='snapshot_iter_{.updater.iteration}'),
        trigger=(1, 'iteration'))
    with pytest.raises(TrainingDiverged, match='nan at iteration 3'):
        trainer.run(show_loop_exception_msg=False)
    assert sorted(os.listdir(str(tmp_path))) == ['snapshot_iter_1',
                                                 'snapshot_iter_2']
