"""The multi-device updater equals the single-device subdivision updater
on the whole batch; checked on the host with two '@numpy' devices (two
model copies), and with NCCL where there are two GPUs."""
import chainer
import numpy
import pytest

from tests.helpers import tiny_training as tiny
from utils.training.multi_device_updater import (MultiDeviceUpdater, addgrads_sum,
                                                 make_gradient_sum, pack_grads,
                                                 unpack_grads)
from utils.training.subdivision_updater import SubdivisionUpdater


def _optimizer(chain):
    opt = chainer.optimizers.MomentumSGD(0.01)
    opt.setup(chain)
    opt.add_hook(chainer.optimizer_hooks.WeightDecay(1e-4))
    return opt


def _single(batch):
    chain = tiny.chain(**tiny.ALL_SAMPLES)
    updater = SubdivisionUpdater(tiny.OneBatch(batch), _optimizer(chain),
                                 tiny.batcher())
    return chain, tiny.update_once(updater, chain)


def _multi(batch, devices, subdivisions):
    chain = tiny.chain(**tiny.ALL_SAMPLES)
    updater = MultiDeviceUpdater(tiny.OneBatch(batch), _optimizer(chain),
                                 tiny.batcher(), devices, subdivisions)
    return updater, tiny.update_once(updater, chain)


def _assert_same_step(ref, ref_obs, models, obs):
    grads, params = tiny.grads_and_params(ref)
    main_grads, main_params = tiny.grads_and_params(models[0])
    assert main_grads.keys() == grads.keys() and len(grads) > 20
    for name in grads:
        numpy.testing.assert_allclose(main_grads[name], grads[name],
                                      rtol=1e-10, atol=1e-13, err_msg=name)
        numpy.testing.assert_allclose(main_params[name], params[name],
                                      rtol=1e-10, atol=1e-13, err_msg=name)
    # The replicas hold the main model's new parameters.
    for replica in models[1:]:
        for (name, a), (_, b) in zip(sorted(models[0].namedparams()),
                                     sorted(replica.namedparams())):
            assert numpy.array_equal(chainer.backend.CpuDevice().send(a.array),
                                     chainer.backend.CpuDevice().send(b.array))
    for key in ('main/loss', 'main/rpn_loc', 'main/roi_cls', 'main/mask'):
        assert obs[key] == pytest.approx(ref_obs[key], rel=1e-10)


@pytest.mark.parametrize('subdivisions', [1, 2])
def test_two_host_devices_equal_one_device(subdivisions):
    batch = tiny.examples(4)
    with chainer.using_config('dtype', numpy.float64):
        ref, ref_obs = _single(batch)
        updater, obs = _multi(batch, ['@numpy', '@numpy'], subdivisions)
    assert ref.model.rpn.conv.W.dtype == numpy.float64
    assert updater.sum_gradients is addgrads_sum
    assert updater.models[0] is not updater.models[1]
    _assert_same_step(ref, ref_obs, updater.models, obs)


def test_replicas_take_resumed_parameters_before_the_first_step():
    # Updater B starts from other weights (seed 1), then loads the state
    # of a fresh seed-0 updater, as --resume does: its first step must be
    # the seed-0 step, replicas included.
    batch = tiny.examples(4)
    with chainer.using_config('dtype', numpy.float64):
        ref, ref_obs = _single(batch)
        state = {}
        fresh = tiny.chain(**tiny.ALL_SAMPLES)
        chainer.serializers.DictionarySerializer(state).save(
            SubdivisionUpdater(tiny.OneBatch(batch), _optimizer(fresh),
                               tiny.batcher()))
        other = tiny.chain(seed=1, **tiny.ALL_SAMPLES)
        updater = MultiDeviceUpdater(tiny.OneBatch(batch),
                                     _optimizer(other), tiny.batcher(),
                                     ['@numpy', '@numpy'], 1)
        # strict=False: a fresh optimizer has no momentum to save yet.
        chainer.serializers.NpzDeserializer(state, strict=False).load(
            updater)
        obs = tiny.update_once(updater, other)
    _assert_same_step(ref, ref_obs, updater.models, obs)


def test_replicas_share_the_sampling_generator():
    chain = tiny.chain()
    updater = MultiDeviceUpdater(tiny.OneBatch(tiny.examples(2)),
                                 _optimizer(chain), tiny.batcher(),
                                 ['@numpy', '@numpy'])
    main, replica = updater.models
    assert replica.rng is main.rng
    assert replica.model.rpn.conv.W is not main.model.rpn.conv.W


@pytest.mark.parametrize('batch_size,devices,subdivisions', [
    (3, 2, 1), (4, 2, 4), (6, 4, 1)])
def test_impossible_split_is_an_error(batch_size, devices, subdivisions):
    chain = tiny.chain()
    with pytest.raises(ValueError, match='batch size {} is not divisible by '
                       '{} device'.format(batch_size, devices)):
        MultiDeviceUpdater(tiny.OneBatch(tiny.examples(batch_size)),
                           _optimizer(chain), tiny.batcher(),
                           ['@numpy'] * devices, subdivisions)


def test_pack_and_unpack_grads():
    link = chainer.Sequential(chainer.links.Linear(3, 2),
                              chainer.links.Linear(2, 1))
    params = [p for _, p in sorted(link.namedparams())]
    for i, p in enumerate(params[:-1]):
        p.grad = numpy.full(p.shape, i + 1, numpy.float32)
    params[-1].grad = None
    flat = pack_grads(params, numpy)
    assert flat.shape == (sum(p.size for p in params),)
    unpack_grads(flat * 10, params)
    for i, p in enumerate(params[:-1]):
        numpy.testing.assert_array_equal(p.grad, 10 * (i + 1))
    numpy.testing.assert_array_equal(params[-1].grad, 0)


def test_host_devices_use_addgrads():
    assert make_gradient_sum([chainer.get_device('@numpy')] * 2) is \
        addgrads_sum


@pytest.mark.gpu
def test_two_gpus_equal_one_device():
    import cupy
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip('needs two GPUs')
    batch = tiny.examples(4)
    with chainer.using_config('dtype', numpy.float64):
        ref, ref_obs = _single(batch)
        updater, obs = _multi(batch, ['@cupy:0', '@cupy:1'], 2)
    _assert_same_step(ref, ref_obs, updater.models, obs)
