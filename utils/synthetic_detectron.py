"""Write Detectron-format ``model_final.pkl`` files with the real blob names
and shapes and random values: what tests use in place of the model zoo.

Like Detectron's ``save_model_to_weights_file`` the file is a protocol-2
pickle of ``{'blobs': {...}, 'cfg': <yaml str>}`` holding every parameter,
a ``_momentum`` twin of each trainable one, and the preserved leftovers of
the ImageNet initialisation.
"""
import pickle

import numpy

from models.resnet import DEPTHS
from utils.detectron_names import blob_shapes

# What a real cfg string looks like: a yaml dump with python tags that a
# safe loader must not execute.
CFG = """!!python/object/new:detectron.utils.collections.AttrDict
dictitems:
  MODEL: !!python/object/new:detectron.utils.collections.AttrDict
    dictitems:
      NUM_CLASSES: 81
      BBOX_REG_WEIGHTS: !!python/tuple [10.0, 10.0, 5.0, 5.0]
"""


def frozen(name):
    """Blobs without gradient in Detectron (FREEZE_AT=2, AffineChannel)."""
    return (name.startswith(('conv1_', 'res_conv1_', 'res2_')) or
            '_bn_' in name)


def preserved_blobs(depth, rng):
    out = {'conv1_b': rng.randn(64), 'fc1000_w': rng.randn(1000, 2048),
           'fc1000_b': rng.randn(1000)}
    for k in (2, 3, 4, 5):
        out['res{}_2_branch2c_b'.format(k)] = rng.randn(256 * 2 ** (k - 2))
    return out


def detectron_blobs(arch, depth=50, n_class=81, seed=0, momentum=True,
                    preserved=True):
    """{name: float32 array} as a model_final.pkl holds them."""
    rng = numpy.random.RandomState(seed)
    blobs = {}
    for name, shape in blob_shapes(arch, depth, n_class).items():
        blobs[name] = (rng.randn(*shape) * 0.1).astype(numpy.float32)
        if momentum and not frozen(name):
            blobs[name + '_momentum'] = numpy.zeros(shape, numpy.float32)
    if preserved:
        blobs.update({n: v.astype(numpy.float32)
                      for n, v in preserved_blobs(depth, rng).items()})
    assert depth in DEPTHS
    return blobs


def write_detectron_pickle(path, arch, depth=50, n_class=81, seed=0,
                           momentum=True, preserved=True, blobs=None):
    """Write a synthetic model_final.pkl; returns its blobs."""
    if blobs is None:
        blobs = detectron_blobs(arch, depth, n_class, seed, momentum,
                                preserved)
    with open(path, 'wb') as f:
        pickle.dump({'blobs': blobs, 'cfg': CFG}, f, protocol=2)
    return blobs
