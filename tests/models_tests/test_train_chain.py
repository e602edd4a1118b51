"""Training: subdivision equivalence, exact resume, and a short run that
learns, on tiny synthetic data built here."""

import chainer
import numpy
import pytest

from models.presets import build_mask_rcnn, get_preset
from models.train_chain import MaskRCNNTrainChain
from utils.batching import TrainBatcher
from utils.updater import SubdivisionUpdater


def _examples(n, seed=0, size=(64, 80)):
    """Images with one or two filled squares and their exact polygons."""
    rng = numpy.random.RandomState(seed)
    out = []
    for _ in range(n):
        img = rng.uniform(0, 60, (3,) + size).astype(numpy.float32)
        bbox, label, segms = [], [], []
        for _ in range(rng.randint(1, 3)):
            s = rng.randint(16, 30)
            x, y = rng.randint(0, size[1] - s), rng.randint(0, size[0] - s)
            k = rng.randint(1, 3)
            img[k - 1, y:y + s, x:x + s] = 250
            bbox.append([x, y, x + s - 1, y + s - 1])
            label.append(k)
            segms.append([numpy.array([x, y, x + s, y, x + s, y + s, x,
                                       y + s], numpy.float64)])
        out.append((img, numpy.array(bbox, numpy.float32),
                    numpy.array(label, numpy.int32), segms))
    return out


def _chain(seed=0, **kw):
    numpy.random.seed(seed)
    p = get_preset('fpn-tiny', n_fg_class=2, min_size=64, max_size=96)
    model = build_mask_rcnn(p)
    return MaskRCNNTrainChain(model, p.mask_resolution, seed=seed, **kw)


class _OneBatch(chainer.dataset.Iterator):
    """An iterator that always returns the same batch."""

    def __init__(self, batch):
        self.batch = batch
        self.batch_size = len(batch)
        self.epoch, self.epoch_detail, self.is_new_epoch = 0, 0., False

    def next(self):
        return list(self.batch)

    def serialize(self, serializer):
        pass

    def finalize(self):
        pass


def _step(chain, batch, subdivisions):
    opt = chainer.optimizers.MomentumSGD(0.01)
    opt.setup(chain)
    updater = SubdivisionUpdater(_OneBatch(batch), opt,
                                 TrainBatcher((64,), 96, 32, flip=False),
                                 subdivisions=subdivisions)
    reporter = chainer.reporter.Reporter()
    reporter.add_observer('main', chain)
    observation = {}
    with reporter.scope(observation):
        updater.update()
    chain.observation = observation
    return chain


def test_subdivisions_give_the_full_batch_gradient():
    batch = _examples(4)
    # Sample every anchor and ROI so that no random subsampling differs,
    # and compute in float64 so that the rounding of batched convolutions
    # cannot flip a proposal or a ReLU between the two runs.
    kw = dict(rpn_batch_size=10 ** 6, roi_batch_size=10 ** 6)
    with chainer.using_config('dtype', numpy.float64):
        full = _step(_chain(**kw), batch, 1)
        split = _step(_chain(**kw), batch, 4)
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
    chain = _chain()
    opt = chainer.optimizers.SGD()
    opt.setup(chain)
    with pytest.raises(ValueError, match='not divisible'):
        SubdivisionUpdater(_OneBatch(_examples(3)), opt, TrainBatcher(),
                           subdivisions=2)
