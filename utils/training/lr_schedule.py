"""Trainer extensions: learning-rate schedules with linear warm-up (the
guards against divergence are in ``utils/training/snapshots.py``).

Both rates are a function of the iteration alone, so a resumed run
continues exactly; ``serialize`` keeps the last value for inspection.
"""
import math

from chainer import training


class _WarmupLR(training.Extension):
    """``lr(it) = decayed(it) * warm(it)``, with ``warm(it) = factor + (1 -
    factor) * it / warmup_iters`` while ``it < warmup_iters``, else 1
    (Detectron's ``SOLVER.WARM_UP_METHOD: linear``)."""

    trigger = 1, 'iteration'
    priority = training.PRIORITY_WRITER + 2

    def __init__(self, base_lr, warmup_iters, warmup_factor,
                 optimizer_name):
        self.base_lr = base_lr
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.optimizer_name = optimizer_name
        self.last_lr = None

    def decayed(self, iteration):
        raise NotImplementedError

    def lr_at(self, iteration):
        lr = self.decayed(iteration)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            lr *= self.warmup_factor * (1 - alpha) + alpha
        return lr

    def initialize(self, trainer):
        self._set(trainer)

    def __call__(self, trainer):
        self._set(trainer)

    def _set(self, trainer):
        # Called before the update of iteration `updater.iteration + 1`,
        # whose 0-based index is updater.iteration.
        optimizer = trainer.updater.get_optimizer(self.optimizer_name)
        self.last_lr = self.lr_at(trainer.updater.iteration)
        optimizer.lr = self.last_lr

    def serialize(self, serializer):
        self.last_lr = serializer('last_lr', self.last_lr)


class WarmupStepLR(_WarmupLR):
    """Detectron's ``steps_with_decay``: ``decayed(it) = base_lr * gamma **
    (number of steps <= it)``, with linear warm-up."""

    def __init__(self, base_lr, steps=(), gamma=0.1, warmup_iters=500,
                 warmup_factor=1. / 3, optimizer_name='main'):
        super().__init__(base_lr, warmup_iters, warmup_factor,
                         optimizer_name)
        self.steps = tuple(sorted(steps))
        self.gamma = gamma

    def decayed(self, iteration):
        return self.base_lr * self.gamma ** sum(iteration >= s
                                                for s in self.steps)


class WarmupCosineLR(_WarmupLR):
    """Cosine decay over the whole run, as detectron2's ``WarmupCosineLR``:
    ``decayed(it) = base_lr * (1 + cos(pi * it / max_iter)) / 2``, from
    ``base_lr`` at 0 to 0 at ``max_iter``, with linear warm-up."""

    def __init__(self, base_lr, max_iter, warmup_iters=500,
                 warmup_factor=1. / 3, optimizer_name='main'):
        super().__init__(base_lr, warmup_iters, warmup_factor,
                         optimizer_name)
        self.max_iter = max_iter

    def decayed(self, iteration):
        return self.base_lr * 0.5 * (1 + math.cos(
            math.pi * min(iteration, self.max_iter) / self.max_iter))
