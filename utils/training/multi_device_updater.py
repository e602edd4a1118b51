"""Several devices in one process, each with gradient accumulation.

One iteration with ``D`` devices and ``s`` subdivisions:

1. the batch of ``N`` images is split across devices with a stride
   (device ``d`` gets ``batch[d::D]``, as chainer's ``ParallelUpdater``),
   and each device's share again into ``s`` pieces (``share[i::s]``);
2. every device runs its pieces one after another on its own copy of the
   model (``accumulate_gradients`` of
   ``utils/training/subdivision_updater.py``, the loop of
   ``SubdivisionUpdater``): piece ``p``'s loss is weighted by
   ``len(p) / N``;
3. the replicas' gradients are summed into the main model (device 0):
   one NCCL reduce when every device is a distinct GPU and CuPy has NCCL,
   else chainer's ``addgrads`` (device-to-device copies);
4. one optimizer step on the main model; ``copyparams`` sends the new
   parameters back to the replicas.

The summed gradient is the mean over the ``N`` images, the same as
``SubdivisionUpdater`` on one device, so the learning rate depends on
``N`` only. Reported values are image-weighted means over all pieces.

The devices take their turns: this saves memory per device, it does not
run them concurrently. For speed, run one process per GPU with ChainerMN
(``train.py --communicator``).
"""
import copy

import chainer
import numpy
from chainer import reporter as reporter_module

from utils.training.subdivision_updater import (
    SubdivisionUpdater, accumulate_gradients, check_divisible, loss_scale_of)


class MultiDeviceUpdater(SubdivisionUpdater):
    """``SubdivisionUpdater`` over several devices of one process.

    Args:
        iterator, optimizer, converter: as ``StandardUpdater``; the
            optimizer's target is the main model.
        devices (list): chainer device specifiers, e.g.
            ``['@cupy:0', '@cupy:1']``; the first holds the main model.
            The same specifier may repeat (``['@numpy', '@numpy']`` gives
            two model copies on the host, which is how the tests check
            the reduction).
        subdivisions (int): pieces per device. The batch size must be a
            multiple of ``len(devices) * subdivisions``.
    """

    def __init__(self, iterator, optimizer, converter, devices,
                 subdivisions=1):
        devices = [chainer.get_device(d) for d in devices]
        check_divisible(getattr(iterator, 'batch_size', None), len(devices),
                        subdivisions)
        target = optimizer.target
        # Copies made on the host before the main model moves; they share
        # the target's random generators, so the snapshot's one generator
        # resumes every replica's sampling exactly.
        replicas = [copy.deepcopy(target, _shared_generators(target))
                    for _ in devices[1:]]
        super().__init__(iterator, optimizer, converter, devices[0],
                         subdivisions)
        for replica, device in zip(replicas, devices[1:]):
            replica.to_device(device)
        self.devices = devices
        self.models = [target] + replicas
        self.sum_gradients = make_gradient_sum(devices)
        self._replicas_stale = False

    def update_core(self):
        batch = self._iterators['main'].next()
        optimizer = self._optimizers['main']
        if self._replicas_stale:  # --resume loaded the main model only
            self._copy_to_replicas()
        reporter = reporter_module.get_current_reporter()
        for replica in self.models[1:]:
            # Replicas report under the main model's name ('main/loss').
            reporter.add_observer('main', replica)
        n_devices, s = len(self.devices), self.subdivisions
        totals = {}
        for d, (model, device) in enumerate(zip(self.models, self.devices)):
            model.cleargrads()
            share = batch[d::n_devices]
            accumulate_gradients(model, self.converter, device,
                                 [share[i::s] for i in range(s)],
                                 len(batch), totals, loss_scale_of(optimizer))
        self.sum_gradients(self.models)
        chainer.report(totals)
        optimizer.update()
        self._copy_to_replicas()

    def _copy_to_replicas(self):
        for replica in self.models[1:]:
            replica.copyparams(self.models[0])
        self._replicas_stale = False

    def serialize(self, serializer):
        super().serialize(serializer)
        if isinstance(serializer, chainer.serializer.Deserializer):
            self._replicas_stale = True


def _shared_generators(target):
    # deepcopy memo: every numpy RandomState held by a link of target.
    return {id(v): v for link in target.links() for v in vars(link).values()
            if isinstance(v, numpy.random.RandomState)}


def addgrads_sum(models):
    """Add every replica's gradients into ``models[0]`` (``addgrads``)."""
    for replica in models[1:]:
        models[0].addgrads(replica)


def make_gradient_sum(devices):
    """NCCL when every device is a distinct GPU and NCCL loads, else
    ``addgrads_sum``."""
    ids = [getattr(getattr(d, 'device', None), 'id', None) for d in devices]
    if len(devices) < 2 or None in ids or len(set(ids)) < len(ids):
        return addgrads_sum
    try:
        from cupy.cuda import nccl
    except ImportError:
        return addgrads_sum
    if not getattr(nccl, 'available', False):
        return addgrads_sum
    return NcclGradientSum(ids)


def pack_grads(params, xp):
    """One flat array of every gradient (zeros where a gradient is None)."""
    return xp.concatenate([
        (p.grad if p.grad is not None else xp.zeros_like(p.array)).ravel()
        for p in params])


def unpack_grads(flat, params):
    """Set each parameter's gradient to its slice of ``flat`` (views)."""
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.array.size].reshape(p.shape)
        offset += p.array.size


class NcclGradientSum:
    """Sum the replicas' gradients into ``models[0]`` with one grouped
    NCCL reduce (GPU only; one communicator per device, made once)."""

    def __init__(self, device_ids):
        from cupy.cuda import nccl
        self.nccl = nccl
        self.device_ids = list(device_ids)
        self.comms = nccl.NcclCommunicator.initAll(self.device_ids)

    def __call__(self, models):
        import cupy
        nccl = self.nccl
        params = [[p for _, p in sorted(m.namedparams())
                   if p.array is not None] for m in models]
        if len({p.dtype for p in params[0]}) > 1:
            return addgrads_sum(models)  # one flat buffer needs one dtype
        flats = []
        for device_id, ps in zip(self.device_ids, params):
            with cupy.cuda.Device(device_id):
                flats.append(pack_grads(ps, cupy))
        dtype = {numpy.dtype(numpy.float16): nccl.NCCL_FLOAT16,
                 numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32,
                 numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64}[
                     numpy.dtype(flats[0].dtype)]
        nccl.groupStart()
        for device_id, comm, flat in zip(self.device_ids, self.comms, flats):
            with cupy.cuda.Device(device_id):
                # In place: the root (rank 0, the main device) receives the
                # sum in its own buffer; other ranks' receive buffers are
                # unused.
                comm.reduce(flat.data.ptr, flat.data.ptr, flat.size, dtype,
                            nccl.NCCL_SUM, 0,
                            cupy.cuda.get_current_stream().ptr)
        nccl.groupEnd()
        with cupy.cuda.Device(self.device_ids[0]):
            unpack_grads(flats[0], params[0])
