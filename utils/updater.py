"""The subdivision updater: a large batch in little memory.

Each iteration takes one batch from the iterator, splits it into
``subdivisions`` strided pieces (``batch[i::s]``, as chainer's
``ParallelUpdater``), runs them one after another accumulating gradients,
and makes one optimizer step. Each piece's loss is weighted by its share of
the images, so the gradient is the mean over the whole batch (the losses
are per-image means) and the learning rate does not depend on
``subdivisions``. Reported values are likewise image-weighted means over
the pieces, not the last piece's.
"""
import chainer
from chainer import reporter as reporter_module
from chainer.training import StandardUpdater


class SubdivisionUpdater(StandardUpdater):
    """``StandardUpdater`` with gradient accumulation over sub-batches.

    Args:
        iterator, optimizer, converter, device: as ``StandardUpdater``.
        subdivisions (int): number of pieces; must divide the batch size.
    """

    def __init__(self, iterator, optimizer, converter, device=None,
                 subdivisions=1):
        super().__init__(iterator, optimizer, converter=converter,
                         device=device)
        batch_size = getattr(iterator, 'batch_size', None)
        if subdivisions < 1 or (batch_size is not None and
                                batch_size % subdivisions):
            raise ValueError(
                'batch size {} is not divisible by subdivisions {}'.format(
                    batch_size, subdivisions))
        self.subdivisions = subdivisions

    def update_core(self):
        batch = self._iterators['main'].next()
        optimizer = self._optimizers['main']
        target = optimizer.target
        target.cleargrads()
        n = len(batch)
        totals = {}
        for i in range(self.subdivisions):
            sub = batch[i::self.subdivisions]
            if not sub:
                continue
            weight = len(sub) / n
            observation = {}
            with reporter_module.report_scope(observation):
                loss = target(*self.converter(sub, self.device))
            (loss * weight).backward()
            del loss
            for key, value in observation.items():
                value = float(chainer.backend.CpuDevice().send(
                    getattr(value, 'array', value)))
                totals[key] = totals.get(key, 0.) + weight * value
        chainer.report(totals)
        optimizer.update()

    def serialize(self, serializer):
        super().serialize(serializer)
        if hasattr(self.converter, 'serialize'):
            self.converter.serialize(serializer['converter'])
