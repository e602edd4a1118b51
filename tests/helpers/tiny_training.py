"""A tiny training problem shared by the updater tests and the MPI script
(``tests/helpers/mpi_one_step.py``): deterministic images with filled
squares, the 'fpn-tiny' chain at 64 px and an iterator that always returns
one batch."""
import chainer
import numpy

from models.presets import build_mask_rcnn, get_preset, train_targets
from models.train_chain import MaskRCNNTrainChain
from utils.data.batching import TrainBatcher

# Sample every anchor and ROI, so no random subsampling differs between
# two runs that split the batch differently.
ALL_SAMPLES = dict(rpn_batch_size=10 ** 6, roi_batch_size=10 ** 6)


def examples(n, seed=0, size=(64, 80)):
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


def chain(seed=0, box_loss='smooth_l1', **preset_fields):
    """The training chain of 'fpn-tiny' (2 classes, 64 px), seeded, with
    ``box_loss``; preset fields (e.g. ``ALL_SAMPLES``) replaced."""
    numpy.random.seed(seed)
    p = get_preset('fpn-tiny', n_fg_class=2, min_size=64, max_size=96,
                   **preset_fields)
    model = build_mask_rcnn(p)
    return MaskRCNNTrainChain(model, train_targets(p), seed=seed,
                              box_loss=box_loss)


def batcher():
    """The converter at 64 px, without flips."""
    return TrainBatcher((64,), 96, 32, flip=False)


class OneBatch(chainer.dataset.Iterator):
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


def update_once(updater, chain):
    """One ``updater.update()``; returns what it reported as 'main/...'."""
    reporter = chainer.reporter.Reporter()
    reporter.add_observer('main', chain)
    observation = {}
    with reporter.scope(observation):
        updater.update()
    return observation


def grads_and_params(chain):
    """{name: gradient} and {name: parameter} of every parameter with a
    gradient, as host arrays."""
    grads, params = {}, {}
    for name, p in sorted(chain.namedparams()):
        if p.grad is not None:
            grads[name] = chainer.backend.CpuDevice().send(p.grad)
            params[name] = chainer.backend.CpuDevice().send(p.array)
    return grads, params
