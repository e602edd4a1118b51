"""The chainer ``Trainer`` of ``train.py``: Detectron's learning-rate
schedule, the divergence guard and the weight average (``--ema``) on every
process; on rank 0 the writers (log, plots, progress, sound snapshots) and
the COCO evaluation, whose failure is raised only after the snapshot of
its iteration."""
import dataclasses

import chainer
from chainer.training import extensions

from utils.training.distributed import (RankStates, SerializableRandomState,
                                        average_observations)
from utils.training.lr_schedule import WarmupCosineLR, WarmupStepLR
from utils.training.plots import AtomicPlotReport
from utils.training.snapshots import (HoldFailure, NonFiniteLossGuard,
                                      SoundSnapshot)

LOSS_KEYS = ('main/loss', 'main/rpn_loc', 'main/rpn_cls', 'main/roi_loc',
             'main/roi_cls', 'main/mask')
AP_KEYS = ('validation/main/bbox/AP', 'validation/main/segm/AP')


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The iteration numbers of a run.

    ``iteration`` (SOLVER.MAX_ITER), ``lr`` (SOLVER.BASE_LR), ``lr_steps``
    (SOLVER.STEPS, each multiplies by 0.1), ``warmup`` (SOLVER.WARM_UP_ITERS,
    linear from lr / 3), and the intervals of snapshots, COCO evaluations
    (and always at the end) and log lines. ``lr_schedule`` is 'step'
    (Detectron's) or 'cosine' (``lr_steps`` unused).
    """
    iteration: int
    lr: float
    lr_steps: tuple
    warmup: int
    snapshot: int
    validation: int
    log_interval: int
    lr_schedule: str = 'step'

    def lr_extension(self):
        """The trainer extension that sets the learning rate."""
        if self.lr_schedule == 'cosine':
            return WarmupCosineLR(self.lr, self.iteration,
                                  warmup_iters=self.warmup)
        return WarmupStepLR(self.lr, self.lr_steps,
                            warmup_iters=self.warmup)

    def evaluations(self):
        """Iterations the COCO evaluation runs at."""
        return sorted(set(range(self.validation, self.iteration,
                                self.validation)) | {self.iteration})


def make_trainer(updater, schedule, out, comm=None, rank_states=None,
                 average=None):
    """A trainer with the schedule, the guard and ``average`` (an
    ``ema.WeightAverage``, or None), which goes into the snapshot as
    ``extensions/ema``. With ChainerMN (``comm``), losses are averaged
    over ranks and ``rank_states`` (name -> iterator, batcher, random
    state) go into rank 0's snapshot."""
    trainer = chainer.training.Trainer(updater, (schedule.iteration,
                                                 'iteration'), out)
    trainer.extend(NonFiniteLossGuard())
    trainer.extend(schedule.lr_extension())
    if average is not None:
        trainer.extend(average, name='ema')
    if comm is not None:
        average_observations(trainer, comm, LOSS_KEYS)
        trainer.extend(RankStates(comm, {
            name: (SerializableRandomState(target) if name == 'sampling'
                   else target) for name, target in rank_states.items()}),
            trigger=(schedule.snapshot, 'iteration'))
    return trainer


def extend_writers(trainer, schedule, model, evaluator):
    """Rank 0's extensions: log, plots, progress, snapshots of ``model``
    (never of exploded weights) and ``evaluator`` (a ``COCOEvaluator``)."""
    log = (schedule.log_interval, 'iteration')
    keys = list(LOSS_KEYS)
    trainer.extend(extensions.LogReport(trigger=log))
    trainer.extend(extensions.observe_lr(), trigger=log)
    trainer.extend(extensions.PrintReport(
        ['iteration', 'lr'] + keys + list(AP_KEYS) + ['elapsed_time']),
        trigger=log)
    trainer.extend(AtomicPlotReport(keys, 'iteration', log,
                                    filename='loss.png'))
    trainer.extend(AtomicPlotReport(
        list(AP_KEYS), 'iteration', (schedule.validation, 'iteration'),
        filename='ap.png'))
    trainer.extend(extensions.ProgressBar(update_interval=10))
    trainer.extend(SoundSnapshot(model), name='snapshot',
                   trigger=(schedule.snapshot, 'iteration'))
    evaluation = HoldFailure(evaluator)
    trainer.extend(evaluation, name='validation',
                   trigger=chainer.training.triggers.ManualScheduleTrigger(
                       schedule.evaluations(), 'iteration'))
    # After the snapshot (-100): an evaluation error stops training only
    # once the snapshot of its iteration is written.
    trainer.extend(evaluation.raise_held, name='evaluation_failure')
