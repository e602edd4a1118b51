"""Mixed-precision training (``train.py --dtype mixed16``): float16
weights and activations with float32 master weights, dynamic loss scaling
and float32 losses give the float32 run's losses on a short run."""
import chainer
import numpy
import pytest

from tests.helpers import tiny_training as tt
from utils.weights.model_io import model_arrays, save_model
from utils.training.subdivision_updater import SubdivisionUpdater


def _losses(dtype, iterations):
    with chainer.using_config('dtype', dtype):
        chain = tt.chain(seed=0)
        optimizer = chainer.optimizers.MomentumSGD(0.01, 0.9)
        optimizer.setup(chain)
        if dtype == chainer.mixed16:   # as train.py --dtype mixed16
            optimizer.use_fp32_update()
            optimizer.loss_scaling()
        updater = SubdivisionUpdater(tt.OneBatch(tt.examples(2)), optimizer,
                                     tt.batcher(), None, 1)
        reporter = chainer.Reporter()
        reporter.add_observer('main', chain)
        losses = []
        for _ in range(iterations):
            observation = {}
            with reporter.scope(observation):
                updater.update()
            losses.append({k: float(v) for k, v in observation.items()})
    return chain, losses


@pytest.mark.slow
def test_mixed16_matches_float32_losses(tmp_path):
    chain16, mixed = _losses(chainer.mixed16, 2)
    _, single = _losses(numpy.float32, 2)
    conv = chain16.model.extractor.body.res3[0].branch2b.conv
    assert conv.W.dtype == numpy.float16
    assert conv.W.update_rule._fp32_param.dtype == numpy.float32
    for m, s in zip(mixed, single):
        for key in s:
            assert m[key] == pytest.approx(s[key], rel=5e-3, abs=2e-3), key
    # Saved as float32, the dtype models are built with.
    path = str(tmp_path / 'm.npz')
    save_model(path, chain16.model, {})
    with numpy.load(path) as npz:
        assert {npz[k].dtype for k in model_arrays(chain16.model)} == {
            numpy.dtype(numpy.float32)}
