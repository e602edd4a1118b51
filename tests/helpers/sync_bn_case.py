"""The case both sides of the synchronised batch-norm test compute: a
two-block ResNet stage with trainable batch norms on a float64 batch."""
import numpy

from models.resnet import ResStage

BATCH = 4


def batch():
    """(x, gy): a (4, 8, 6, 6) input and the gradient of a (4, 16, 3, 3)
    output, different images so that per-shard statistics would differ."""
    rng = numpy.random.RandomState(0)
    x = rng.normal(0, 1, (BATCH, 8, 6, 6)) * \
        numpy.arange(1, BATCH + 1)[:, None, None, None]
    return x, rng.normal(0, 1, (BATCH, 16, 3, 3))


def stage(norm):
    """Two bottlenecks 8 -> 4 -> 16, stride 2, with ``norm`` (a name of
    ``models.norm.NORMS`` or a factory), weights from a fixed seed."""
    numpy.random.seed(1)  # chainer's initialisers draw from it
    return ResStage(2, 8, 4, 16, 2, norm)


def running_averages(link):
    """{'<path>/avg_mean' or '/avg_var': array} of every batch norm."""
    return {name + '/' + key: getattr(child, key)
            for name, child in link.namedlinks() if hasattr(child, 'avg_mean')
            for key in ('avg_mean', 'avg_var')}
