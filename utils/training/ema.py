"""An exponential moving average of the weights (``train.py --ema DECAY``).

After every optimizer update, for every parameter ``p`` of the model::

    average = decay * average + (1 - decay) * p

starting from the weights the training starts from (iteration 0), with a
fixed ``decay`` (no warm-up of the decay): after ``t`` updates the
starting weights still weigh ``decay ** t``, so ``1 / (1 - decay)``
iterations is the time the average needs to forget them. The average is
what the COCO evaluation sees and what ``model_final.npz`` holds.

* It is an extension run once per trainer iteration, so once per real
  optimizer step whatever the subdivisions (gradient accumulation) or the
  devices of one process: it reads the main model, whose parameters the
  multi-device updater copies to its replicas.
* With ChainerMN every rank averages its own copy of the parameters, which
  the multi-node optimizer keeps identical, so every rank holds the same
  average; rank 0 writes it.
* The average is kept on the device of the model and in its dtype, except
  under mixed16: float16 weights are averaged from the optimizer's float32
  master copy into float32 (a step of ``(1 - decay) * p`` is below float16
  resolution), then rounded into the float16 averaged model.
* Persistent arrays (the frozen affine ``scale``/``bias``, any running
  statistics) are not averaged: the averaged model takes the trained
  model's after every update.
* ``serialize`` keeps the average in the trainer snapshot, so ``--resume``
  continues it exactly.
"""
import copy

import chainer
import numpy
from chainer import training


class WeightAverage(training.Extension):
    """Exponential moving average of ``link``'s parameters.

    Args:
        link (chainer.Link): the trained model, already on its device.
        decay (float): in (0, 1); the weight of the old average.

    Attributes:
        averaged (chainer.Link): a copy of ``link`` whose parameters are
            the average (evaluate and save this one).
        averages (dict): parameter path -> array, the running average, on
            ``link``'s device; float32 for float16 parameters, otherwise
            the very arrays of ``averaged``.
    """

    trigger = 1, 'iteration'
    # After the update, before the evaluation and the snapshot (writers).
    priority = training.PRIORITY_WRITER + 3

    def __init__(self, link, decay):
        if not 0 < decay < 1:
            raise ValueError('decay must be in (0, 1), got {}'.format(decay))
        self.link = link
        self.decay = decay
        self.averaged = copy.deepcopy(link)
        self.averages = {}
        for name, param in sorted(self.averaged.namedparams()):
            self.averages[name] = (
                param.array.astype(numpy.float32)
                if param.dtype == numpy.float16 else param.array)

    def initialize(self, trainer):
        # After a resume the trained model's persistents come from the
        # snapshot; the average itself was loaded by ``serialize``.
        self.publish()

    def __call__(self, trainer):
        decay = self.decay
        for name, param in sorted(self.link.namedparams()):
            average = self.averages[name]
            average *= decay
            average += (1 - decay) * _master(param).astype(average.dtype,
                                                           copy=False)
        self.publish()

    def publish(self):
        """Write the averages into ``averaged`` (where they are not its
        arrays already) and copy ``link``'s persistents there."""
        for name, param in sorted(self.averaged.namedparams()):
            average = self.averages[name]
            if average is not param.array:
                chainer.backend.get_array_module(average).copyto(
                    param.array, average, casting='same_kind')
        live = dict(self.link.namedlinks())
        for name, link in self.averaged.namedlinks():
            # chainer 7 lists a link's persistents only in ``_persistent``.
            for key in link._persistent:
                source = getattr(live[name], key)
                target = getattr(link, key)
                if isinstance(target, chainer.get_array_types()):
                    chainer.backend.copyto(target, source)
                else:
                    setattr(link, key, copy.deepcopy(source))

    def serialize(self, serializer):
        try:
            decay = serializer('decay', self.decay)
        except KeyError:  # loading a snapshot of a run without it
            raise ValueError('it holds no weight average (it was written '
                             'without --ema)') from None
        if decay != self.decay:  # only loading can give another value
            raise ValueError('its weight average has decay {}, this run '
                             '--ema {}'.format(decay, self.decay))
        for name, average in sorted(self.averages.items()):
            # Loading copies into ``average`` in place (on its device).
            serializer['average'](name.lstrip('/'), average)
        if isinstance(serializer, chainer.serializer.Deserializer):
            self.publish()


def _master(param):
    """The float32 master copy of a float16 parameter under
    ``optimizer.use_fp32_update()`` (once the first update made it), else
    the parameter's array."""
    master = getattr(param.update_rule, '_fp32_param', None)
    return param.array if master is None else master.array
