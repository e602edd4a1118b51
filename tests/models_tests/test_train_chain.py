"""Training: subdivision equivalence, on the tiny problem of
``tests/helpers/tiny_training.py``."""

import chainer
import numpy
import pytest

from tests.helpers import tiny_training as tiny
from utils.training.subdivision_updater import SubdivisionUpdater


def _step(chain, batch, subdivisions):
    opt = chainer.optimizers.MomentumSGD(0.01)
    opt.setup(chain)
    updater = SubdivisionUpdater(tiny.OneBatch(batch), opt, tiny.batcher(),
                                 subdivisions=subdivisions)
    chain.observation = tiny.update_once(updater, chain)
    return chain


def test_subdivisions_give_the_full_batch_gradient():
    batch = tiny.examples(4)
    # Sample every anchor and ROI so that no random subsampling differs,
    # and compute in float64 so that the rounding of batched convolutions
    # cannot flip a proposal or a ReLU between the two runs.
    with chainer.using_config('dtype', numpy.float64):
        full = _step(tiny.chain(**tiny.ALL_SAMPLES), batch, 1)
        split = _step(tiny.chain(**tiny.ALL_SAMPLES), batch, 4)
    assert full.model.rpn.conv.W.dtype == numpy.float64
    n = 0
    for (name, a), (_, b) in zip(sorted(full.namedparams()),
                                 sorted(split.namedparams())):
        if a.grad is None:
            continue
        numpy.testing.assert_allclose(a.grad, b.grad, rtol=1e-5, atol=1e-8,
                                      err_msg=name)
        numpy.testing.assert_allclose(a.array, b.array, rtol=1e-7, atol=1e-9,
                                      err_msg=name)
        n += 1
    assert n > 20
    # Reported losses are the image-weighted means of the pieces.
    for key in ('main/loss', 'main/rpn_cls', 'main/mask'):
        assert split.observation[key] == pytest.approx(
            full.observation[key], rel=1e-9)


def test_batch_must_divide():
    chain = tiny.chain()
    opt = chainer.optimizers.SGD()
    opt.setup(chain)
    with pytest.raises(ValueError, match='not divisible'):
        SubdivisionUpdater(tiny.OneBatch(tiny.examples(3)), opt,
                           tiny.batcher(), subdivisions=2)
