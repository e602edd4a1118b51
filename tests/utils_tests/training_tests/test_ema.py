"""The weight average of ``--ema`` against the recurrence written out by
hand, through a snapshot round trip, under mixed16, and the same with
subdivisions and two devices as on one device."""
import chainer
import chainer.links as L
import numpy
import pytest

from tests.helpers import tiny_training as tiny
from utils.training.ema import WeightAverage
from utils.training.multi_device_updater import MultiDeviceUpdater
from utils.training.subdivision_updater import SubdivisionUpdater


class _Tiny(chainer.Chain):
    """One Linear (W (1, 2), b (1,)) and a persistent, as the model's
    frozen affine constants."""

    def __init__(self, dtype=numpy.float32):
        super().__init__()
        with self.init_scope(), chainer.using_config('dtype', dtype):
            self.fc = L.Linear(2, 1, initialW=0, initial_bias=0)
        self.fc.add_persistent('scale', numpy.ones(1, numpy.float32))


def _set(link, value):
    link.fc.W.array[...] = value
    link.fc.b.array[...] = -value


def test_three_updates_follow_the_recurrence_by_hand(xp):
    device = chainer.get_device('@numpy' if xp is numpy else '@cupy:0')
    link = _Tiny()
    link.to_device(device)
    ema = WeightAverage(link, 0.5)
    # Weights 0 (start), then 4, 8, 2 after three updates:
    # a1 = 0.5 * 0 + 0.5 * 4 = 2, a2 = 0.5 * 2 + 0.5 * 8 = 5,
    # a3 = 0.5 * 5 + 0.5 * 2 = 3.5.
    for value, expected in ((4, 2.), (8, 5.), (2, 3.5)):
        _set(link, value)
        link.fc.scale[...] = value
        ema(None)
        avg = ema.averaged.fc
        assert chainer.backend.get_device_from_array(avg.W.array) == device
        numpy.testing.assert_array_equal(chainer.backend.CpuDevice().send(
            avg.W.array), [[expected, expected]])
        assert float(avg.b.array[0]) == -expected
        # Persistents are copied, not averaged.
        assert float(avg.scale[0]) == value
    # The trained weights are untouched.
    assert float(link.fc.W.array[0, 0]) == 2


def test_decay_0_9_over_three_updates():
    # a_t = 0.9 a_{t-1} + 0.1 p_t from a_0 = 1 with p = 3, -1, 10:
    # 1.2, 0.98, 1.882.
    link = _Tiny(numpy.float64)
    _set(link, 1)
    ema = WeightAverage(link, 0.9)
    for value in (3, -1, 10):
        _set(link, value)
        ema(None)
    assert ema.averaged.fc.W.array[0, 0] == pytest.approx(1.882, abs=1e-12)


def test_snapshot_round_trip_continues_exactly():
    link = _Tiny()
    ema = WeightAverage(link, 0.75)
    for value in (4, 8):
        _set(link, value)
        ema(None)
    state = {}
    chainer.serializers.DictionarySerializer(state).save(ema)
    # A fresh average of other weights takes the saved state.
    other_link = _Tiny()
    _set(other_link, 8)
    other_link.fc.scale[...] = 3
    resumed = WeightAverage(other_link, 0.75)
    chainer.serializers.NpzDeserializer(state).load(resumed)
    assert float(resumed.averaged.fc.scale[0]) == 3  # from its own link
    for value in (1, 5):
        for target in (link, other_link):
            _set(target, value)
        ema(None)
        resumed(None)
    for a, b in zip(ema.averaged.params(), resumed.averaged.params()):
        numpy.testing.assert_array_equal(a.array, b.array)
    with pytest.raises(ValueError, match='decay 0.75, this run --ema 0.5'):
        chainer.serializers.NpzDeserializer(state).load(
            WeightAverage(_Tiny(), 0.5))


def test_mixed16_averages_the_float32_master_copy():
    # Each step moves the master weight by 1e-3, under float16's
    # resolution at 1 (2 ** -10); the float32 average follows it.
    link = _Tiny(numpy.float16)
    _set(link, 1)
    opt = chainer.optimizers.SGD(1.)
    opt.setup(link)
    opt.use_fp32_update()
    ema = WeightAverage(link, 0.5)
    expected = 1.
    for t in range(1, 4):
        link.fc.W.grad = numpy.full((1, 2), -1e-3, numpy.float16)
        link.fc.b.grad = numpy.zeros(1, numpy.float16)
        opt.update()
        ema(None)
        expected = 0.5 * expected + 0.5 * (1 + t * numpy.float32(
            numpy.float16(1e-3)))
    average = ema.averages['/fc/W']
    assert average.dtype == numpy.float32
    assert average[0, 0] == pytest.approx(expected, rel=1e-6)
    assert ema.averaged.fc.W.dtype == numpy.float16
    assert ema.averaged.fc.W.array[0, 0] == numpy.float16(average[0, 0])


def _averaged_params(make_updater, batch, steps=2):
    chain = tiny.chain(**tiny.ALL_SAMPLES)
    opt = chainer.optimizers.MomentumSGD(0.01)
    opt.setup(chain)
    updater = make_updater(tiny.OneBatch(batch), opt)
    ema = WeightAverage(chain.model, 0.5)
    start = {n: p.array.copy() for n, p in chain.model.namedparams()}
    for _ in range(steps):
        tiny.update_once(updater, chain)
        ema(None)
    return start, {n: p.array for n, p in chain.model.namedparams()}, {
        n: p.array for n, p in ema.averaged.namedparams()}


def test_once_per_step_with_subdivisions_and_devices():
    # Two steps of one device, of 2 subdivisions and of two host devices
    # x 2 subdivisions give one average; it is the recurrence of the
    # trained weights.
    batch = tiny.examples(4)
    with chainer.using_config('dtype', numpy.float64):
        start, last, ref = _averaged_params(
            lambda it, opt: SubdivisionUpdater(it, opt, tiny.batcher()),
            batch, steps=1)
        _, _, one = _averaged_params(
            lambda it, opt: SubdivisionUpdater(it, opt, tiny.batcher()),
            batch)
        _, _, sub = _averaged_params(
            lambda it, opt: SubdivisionUpdater(it, opt, tiny.batcher(),
                                               subdivisions=2), batch)
        _, _, multi = _averaged_params(
            lambda it, opt: MultiDeviceUpdater(
                it, opt, tiny.batcher(), ['@numpy', '@numpy'], 2), batch)
    changed = 0
    for name, value in ref.items():
        numpy.testing.assert_allclose(
            value, 0.5 * start[name] + 0.5 * last[name], rtol=1e-12,
            err_msg=name)
        changed += not numpy.array_equal(one[name], ref[name])
        numpy.testing.assert_allclose(sub[name], one[name], rtol=1e-10,
                                      atol=1e-13, err_msg=name)
        numpy.testing.assert_allclose(multi[name], one[name], rtol=1e-10,
                                      atol=1e-13, err_msg=name)
    assert changed > 20
