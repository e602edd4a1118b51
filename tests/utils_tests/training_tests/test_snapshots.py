"""Snapshots a diverged run can restart from: the loss guard and the
weight check stop before a bad snapshot is written and name the last good
one; a failing evaluation still leaves its iteration's snapshot."""
import os

import chainer
import numpy
import pytest
from chainer import training

from utils.training.lr_schedule import WarmupStepLR
from utils.training.snapshots import (EvaluationFailed, HoldFailure,
                                      NonFiniteLossGuard, SoundSnapshot,
                                      TrainingDiverged, latest_snapshot,
                                      remove_partial_snapshots)


class _Scripted(chainer.Link):
    """A one-weight model: iteration i reports ``losses[i]`` and then sets
    its weight to ``weights[i]`` (what a diverging update would do)."""

    def __init__(self, losses, weights):
        super().__init__()
        with self.init_scope():
            self.w = chainer.Parameter(numpy.ones(1, numpy.float32))
        self.script = iter(zip(losses, weights))

    def forward(self, *args):
        loss, weight = next(self.script)
        out = self.w[0] * 0 + loss
        self.w.array[...] = weight
        chainer.report({'loss': out}, self)
        return out


def _trainer(tmp_path, losses, weights, n=4):
    model = _Scripted(losses, weights)
    opt = chainer.optimizers.SGD(0.)
    opt.setup(model)
    it = chainer.iterators.SerialIterator([numpy.zeros(1, 'f')] * n, 1)
    trainer = training.Trainer(training.StandardUpdater(it, opt),
                               (n, 'iteration'), str(tmp_path))
    trainer.extend(NonFiniteLossGuard())
    trainer.extend(WarmupStepLR(0., warmup_iters=0))
    trainer.extend(SoundSnapshot(model), trigger=(1, 'iteration'))
    return trainer


def test_guard_stops_before_the_snapshot_and_names_the_last(tmp_path):
    trainer = _trainer(tmp_path, [1., 2., float('nan'), 3.], [1.] * 4)
    with pytest.raises(TrainingDiverged) as e:
        trainer.run(show_loop_exception_msg=False)
    assert str(e.value) == (
        'main/loss is nan at iteration 3: training stopped; resume from {} '
        'with a lower --lr (or check the data)'.format(
            os.path.join(str(tmp_path), 'snapshot_iter_2')))
    assert sorted(os.listdir(str(tmp_path))) == ['snapshot_iter_1',
                                                 'snapshot_iter_2']


def test_exploded_weights_are_never_snapshotted(tmp_path):
    # The loss is still finite while the weight explodes at iteration 2.
    trainer = _trainer(tmp_path, [1., 2., 3., 4.], [1., 2e6, 2e6, 1.])
    with pytest.raises(TrainingDiverged) as e:
        trainer.run(show_loop_exception_msg=False)
    assert str(e.value).startswith('parameter /w reached 2e+06 at '
                                   'iteration 2: no snapshot written; '
                                   'resume from ')
    assert str(e.value).endswith('snapshot_iter_1 with a lower --lr (or '
                                 'check the data)')
    assert sorted(os.listdir(str(tmp_path))) == ['snapshot_iter_1']


def test_non_finite_weights_without_a_snapshot(tmp_path):
    trainer = _trainer(tmp_path, [1., 2.], [float('inf'), 1.], n=2)
    with pytest.raises(TrainingDiverged, match='no snapshot was written; '
                       'start again with a lower --lr'):
        trainer.run(show_loop_exception_msg=False)


def test_failing_evaluation_comes_after_the_snapshot(tmp_path):
    def evaluator(trainer):
        raise ValueError('val image 7 is broken')

    trainer = _trainer(tmp_path, [1., 2., 3.], [1.] * 3, n=3)
    hold = HoldFailure(evaluator)
    trainer.extend(hold, trigger=(2, 'iteration'), name='validation')
    trainer.extend(hold.raise_held, name='evaluation_failure')
    with pytest.raises(EvaluationFailed) as e:
        trainer.run(show_loop_exception_msg=False)
    assert str(e.value) == ('evaluation at iteration 2 failed (ValueError: '
                            'val image 7 is broken)')
    assert sorted(os.listdir(str(tmp_path))) == ['snapshot_iter_1',
                                                 'snapshot_iter_2']


def test_latest_snapshot_and_partial_writes(tmp_path):
    for name in ('snapshot_iter_10', 'snapshot_iter_9', 'snapshot_iter_30',
                 'snapshot_iter_5.tmp', 'model_final.npz'):
        (tmp_path / name).write_bytes(b'')
    (tmp_path / 'tmpsnapshot_iter_40xyz').mkdir()
    (tmp_path / 'tmpsnapshot_iter_40xyz' / 'snapshot_iter_40').write_bytes(
        b'half')
    (tmp_path / 'tmp_mine').mkdir()
    assert latest_snapshot(str(tmp_path)).endswith('snapshot_iter_30')
    assert latest_snapshot(str(tmp_path), 29).endswith('snapshot_iter_10')
    assert latest_snapshot(str(tmp_path), 8) is None
    assert remove_partial_snapshots(str(tmp_path)) == [
        'tmpsnapshot_iter_40xyz']
    assert (tmp_path / 'tmp_mine').is_dir()
