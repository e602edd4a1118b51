"""The subdivision updater: a large batch in little memory.

Each iteration takes one batch from the iterator, splits it into
``subdivisions`` strided pieces (``batch[i::s]``, as chainer's
``ParallelUpdater``), runs them one after another accumulating gradients,
and makes one optimizer step. Each piece's loss is weighted by its share of
the images, so the gradient is the mean over the whole batch (the losses
are per-image means) and the learning rate does not depend on
``subdivisions``. Reported values are likewise image-weighted means over
the pieces, not the last piece's.

``accumulate_gradients`` is that inner loop; the multi-device updater
(``utils/training/multi_device_updater.py``) runs it once per device.
"""
import contextlib

import chainer
from chainer import reporter as reporter_module
from chainer.training import StandardUpdater


def check_divisible(batch_size, devices, subdivisions):
    """Raise ``ValueError`` unless every device gets whole, equal pieces."""
    if subdivisions < 1 or devices < 1 or (
            batch_size is not None and batch_size % (devices * subdivisions)):
        raise ValueError(
            'batch size {} is not divisible by {} device(s) x {} '
            'subdivisions'.format(batch_size, devices, subdivisions))


def loss_scale_of(optimizer):
    """The loss scale of ``optimizer.loss_scaling()`` (None without it).

    ``Optimizer.update(lossfun)`` passes it to ``backward`` itself; an
    updater that calls ``backward`` must do the same, or float16 gradients
    are never scaled (small ones underflow) while the dynamic scale keeps
    doubling. chainer keeps it in ``_loss_scale`` only; ChainerMN's
    optimizer forwards the attribute to the one it wraps.
    """
    return getattr(optimizer, '_loss_scale', None)


def accumulate_gradients(target, converter, device, pieces, n_images,
                         totals, loss_scale=None):
    """Forward and backward each piece, adding gradients into ``target``.

    Args:
        target (chainer.Link): the training chain; returns the loss.
        converter: ``converter(piece, device)`` gives ``target``'s inputs.
        device: where the piece's arrays go (``None``: the converter's
            default).
        pieces (list of lists): examples, run one after another.
        n_images (int): images in the whole batch. A piece's loss is
            weighted by ``len(piece) / n_images``.
        totals (dict): reported name -> float; each piece adds its
            reported values with the same weight.
        loss_scale (float): ``loss_scale_of(optimizer)``: gradients are
            computed for ``loss * loss_scale`` and each parameter records
            the scale, so its update rule divides it out.
    """
    for piece in pieces:
        if not piece:
            continue
        weight = len(piece) / n_images
        observation = {}
        with _using(device):
            with reporter_module.report_scope(observation):
                loss = target(*converter(piece, device))
            (loss * weight).backward(loss_scale=loss_scale)
        del loss
        for key, value in observation.items():
            value = float(chainer.backend.CpuDevice().send(
                getattr(value, 'array', value)))
            totals[key] = totals.get(key, 0.) + weight * value


def _using(device):
    # The device current while a piece runs (its CuPy kernels launch there).
    if device is None:
        return contextlib.nullcontext()
    return chainer.using_device(device)


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
        check_divisible(getattr(iterator, 'batch_size', None), 1,
                        subdivisions)
        self.subdivisions = subdivisions

    def update_core(self):
        batch = self._iterators['main'].next()
        optimizer = self._optimizers['main']
        optimizer.target.cleargrads()
        totals = {}
        s = self.subdivisions
        accumulate_gradients(optimizer.target, self.converter, self.device,
                             [batch[i::s] for i in range(s)], len(batch),
                             totals, loss_scale_of(optimizer))
        chainer.report(totals)
        optimizer.update()

    def serialize(self, serializer):
        super().serialize(serializer)
        if hasattr(self.converter, 'serialize'):
            self.converter.serialize(serializer['converter'])
