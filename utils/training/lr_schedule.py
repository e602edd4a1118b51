"""Trainer extension: Detectron's learning-rate schedule (the guards
against divergence are in ``utils/training/snapshots.py``)."""
from chainer import training


class WarmupStepLR(training.Extension):
    """Detectron's ``steps_with_decay`` with linear warm-up.

    ``lr(it) = base_lr * gamma ** (number of steps <= it) * warm(it)``,
    ``warm(it) = factor + (1 - factor) * it / warmup_iters`` while
    ``it < warmup_iters``, else 1 (``SOLVER.WARM_UP_METHOD: linear``).

    The rate is a function of the iteration alone, so a resumed run
    continues exactly; ``serialize`` keeps the last value for inspection.
    """

    trigger = 1, 'iteration'
    priority = training.PRIORITY_WRITER + 2

    def __init__(self, base_lr, steps=(), gamma=0.1, warmup_iters=500,
                 warmup_factor=1. / 3, optimizer_name='main'):
        self.base_lr = base_lr
        self.steps = tuple(sorted(steps))
        self.gamma = gamma
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.optimizer_name = optimizer_name
        self.last_lr = None

    def lr_at(self, iteration):
        lr = self.base_lr * self.gamma ** sum(iteration >= s
                                              for s in self.steps)
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
