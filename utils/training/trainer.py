"""The chainer ``Trainer`` of ``train.py``: Detectron's learning-rate
schedule, the divergence guard and the weight average (``--ema``) on every
process; on rank 0 the writers (log, plots, progress, sound snapshots) and
the COCO evaluation, whose failure is raised only after the snapshot of
its iteration."""
import dataclasses

import chainer
from chainer.training import extensions
from chainer.training.triggers import ManualScheduleTrigger

from utils.training.distributed import (RankStates, SerializableRandomState,
                                        average_observations)
from utils.training.lr_schedule import WarmupCosineLR, WarmupStepLR
from utils.training.plots import AtomicPlotReport
from utils.training.progress import PlainProgress, WithoutEscapes
from utils.training.snapshots import (HoldFailure, NonFiniteLossGuard,
                                      SoundSnapshot, restart_hint)

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
                 average=None, advice=restart_hint):
    """A trainer with the schedule, the guard and ``average`` (an
    ``ema.WeightAverage``, or None), which goes into the snapshot as
    ``extensions/ema``. With ChainerMN (``comm``), losses are averaged
    over ranks and ``rank_states`` (name -> iterator, batcher, random
    state) go into rank 0's snapshot. ``advice(out, iteration)`` ends the
    error of a diverged run (``divergence.DivergenceAdvice``)."""
    trainer = chainer.training.Trainer(updater, (schedule.iteration,
                                                 'iteration'), out)
    trainer.extend(NonFiniteLossGuard(advice=advice))
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


def extend_writers(trainer, schedule, model, evaluator, advice=restart_hint):
    """Rank 0's extensions: log, plots, progress, snapshots of ``model``
    (never of exploded weights; ``advice`` as ``make_trainer``'s) and
    ``evaluator`` (a ``COCOEvaluator``)."""
    log = (schedule.log_interval, 'iteration')
    keys = list(LOSS_KEYS)
    trainer.extend(extensions.LogReport(trigger=log))
    trainer.extend(extensions.observe_lr(), trigger=log)
    trainer.extend(extensions.PrintReport(
        ['iteration', 'lr'] + keys + list(AP_KEYS) + ['elapsed_time'],
        out=WithoutEscapes()), trigger=log)
    trainer.extend(AtomicPlotReport(keys, 'iteration', log,
                                    filename='loss.png'))
    # At the evaluations' iterations, the last included: a run shorter
    # than --validation still plots its final AP.
    trainer.extend(AtomicPlotReport(
        list(AP_KEYS), 'iteration', ManualScheduleTrigger(
            schedule.evaluations(), 'iteration'), filename='ap.png'))
    trainer.extend(PlainProgress(schedule.iteration, schedule.log_interval))
    trainer.extend(SoundSnapshot(model, advice=advice), name='snapshot',
                   trigger=(schedule.snapshot, 'iteration'))
    evaluation = HoldFailure(evaluator)
    trainer.extend(evaluation, name='validation',
                   trigger=ManualScheduleTrigger(
                       schedule.evaluations(), 'iteration'))
    # After the snapshot (-100): an evaluation error stops training only
    # once the snapshot of its iteration is written.
    trainer.extend(evaluation.raise_held, name='evaluation_failure')
