"""Gradient clipping by the global L2 norm (``train.py --clip-grad``).

detectron2's ``SOLVER.CLIP_GRADIENTS`` with ``CLIP_TYPE: full_model``:
when the L2 norm of all trained gradients together exceeds ``threshold``,
every gradient is multiplied by ``threshold / norm``, so the step keeps
its direction and its length is bounded.

chainer's ``GradientClipping`` hook sees the gradients as they are when
the optimizer's 'pre' hooks run: with ``--dtype mixed16`` they are still
multiplied by the loss scale (the update rules divide it out later) and
float16, whose sum of squares overflows at 256. This hook computes the
norm in float32 and divides the loss scale out first, so the threshold
means the same with and without mixed precision. It runs before the
per-parameter ``WeightDecay`` hook (which runs inside the update rules),
so, as in detectron2, the decay term is not clipped.
"""
import collections
import math

import chainer
import numpy


def trained_params(link):
    """The parameters of ``link`` the optimizer updates (frozen stages and
    uninitialised parameters left out)."""
    return [p for p in link.params() if p.grad is not None and
            p.update_rule is not None and p.update_rule.enabled]


def global_grad_norm(params, loss_scale=None):
    """L2 norm of the gradients of ``params`` together, as a float, in
    float32 and with ``loss_scale`` (None: 1) divided out; one transfer
    to the host per device."""
    partial = collections.defaultdict(list)
    for param in params:
        partial[param.device].append(param)
    total = 0.
    for device, group in partial.items():
        xp = device.xp
        with chainer.using_device(device):
            sums = [xp.square(p.grad.astype(numpy.float32, copy=False)).sum()
                    for p in group]
            total += float(xp.stack(sums).sum())
    return math.sqrt(total) / (loss_scale or 1.)


class GlobalNormClipping(object):
    """Optimizer hook: scale all trained gradients to a global L2 norm of
    at most ``threshold``; reports the norm before clipping as
    ``main/grad_norm``.

    Args:
        threshold (float): largest global L2 norm of the (unscaled)
            gradients, > 0.
    """

    name = 'GlobalNormClipping'
    timing = 'pre'
    call_for_each_param = False

    def __init__(self, threshold):
        if not threshold > 0:
            raise ValueError('threshold must be > 0, got {}'.format(
                threshold))
        self.threshold = threshold
        self.last_norm = None

    def __call__(self, optimizer):
        params = trained_params(optimizer.target)
        norm = global_grad_norm(params, getattr(optimizer, '_loss_scale',
                                                None))
        self.last_norm = norm
        chainer.report({'main/grad_norm': norm})
        # A non-finite norm: dynamic loss scaling skips this update; in
        # float32 the loss guard stops the run on the loss itself.
        if not math.isfinite(norm) or norm <= self.threshold:
            return
        rate = self.threshold / norm
        for param in params:
            with chainer.using_device(param.device):
                param.grad *= param.grad.dtype.type(rate)
