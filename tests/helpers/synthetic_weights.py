"""Write weight files with the real names and shapes and random values:
what tests use in place of the model zoos.

* ``write_detectron_pickle``: like Detectron's
  ``save_model_to_weights_file``, a protocol-2 pickle of
  ``{'blobs': {...}, 'cfg': <yaml str>}`` holding every parameter, a
  ``_momentum`` twin of each trainable one, and the preserved leftovers of
  the ImageNet initialisation.
* ``write_imagenet_pickle``: Detectron's ``R-50.pkl`` / ``R-101.pkl``, a
  bare dict of the ResNet's blobs with ``conv1_b``, ``fc1000_*`` and the
  (unused) conv biases.
* ``write_msra_caffemodel``: MSRA's ``ResNet-<depth>-model.caffemodel``
  (conv, BatchNorm, Scale layers; conv1 with a bias; fc1000).
* ``write_detectron2_pickle``: a detectron2 model-zoo
  ``model_final_*.pkl``, ``{'model': {name: array}, '__author__': ...}``
  with FrozenBN statistics (positive variances).
"""
import pickle

import numpy

from models.resnet import DEPTHS
from utils.weights.detectron2_names import d2_shapes
from utils.weights.detectron_names import blob_shapes

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


def write_imagenet_pickle(path, depth=50, seed=0):
    """Write a synthetic Detectron ImageNet ``R-<depth>.pkl``; returns its
    blobs."""
    rng = numpy.random.RandomState(seed)
    blobs = {name: (rng.randn(*shape) * 0.1).astype(numpy.float32)
             for name, shape in blob_shapes('backbone', depth).items()}
    blobs.update({n: v.astype(numpy.float32)
                  for n, v in preserved_blobs(depth, rng).items()})
    with open(path, 'wb') as f:
        pickle.dump(blobs, f, protocol=2)
    return blobs


def detectron2_state(arch, depth=50, n_fg_class=80, seed=0):
    """{name: float32 array} as a detectron2 checkpoint's ``model``."""
    rng = numpy.random.RandomState(seed)
    state = {}
    for name, shape in d2_shapes(arch, depth, n_fg_class).items():
        value = rng.randn(*shape) * 0.1
        if name.endswith('running_var'):
            value = rng.uniform(0.5, 2., shape)
        state[name] = value.astype(numpy.float32)
    return state


def write_detectron2_pickle(path, arch, depth=50, n_fg_class=80, seed=0,
                            state=None):
    """Write a synthetic detectron2 ``model_final_*.pkl``; returns its
    ``model`` dict."""
    if state is None:
        state = detectron2_state(arch, depth, n_fg_class, seed)
    with open(path, 'wb') as f:
        pickle.dump({'model': state, '__author__': 'Detectron2 Model Zoo'},
                    f, protocol=2)
    return state


def write_msra_caffemodel(path, depth=50, seed=0):
    """Write a synthetic MSRA ResNet caffemodel; returns its layers as
    ``[(name, type, [arrays])]``."""
    from utils.weights.msra import msra_convs
    from utils.weights.caffemodel import write_caffemodel
    rng = numpy.random.RandomState(seed)
    shapes = blob_shapes('backbone', depth)
    layers = []

    def conv_bn(conv, bn, scale, blob, bias=False):
        w_shape = shapes[blob + '_w']
        c = w_shape[0]
        conv_blobs = [rng.randn(*w_shape) * 0.1]
        if bias:
            conv_blobs.append(rng.randn(c))
        factor = rng.uniform(0.5, 2.)  # Caffe's moving-average factor
        layers.append((conv, 'Convolution', conv_blobs))
        layers.append((bn, 'BatchNorm', [rng.randn(c) * factor,
                                         rng.uniform(0.5, 2., c) * factor,
                                         numpy.array([factor])]))
        layers.append((scale, 'Scale', [rng.uniform(0.5, 2., c),
                                        rng.randn(c)]))

    conv_bn('conv1', 'bn_conv1', 'scale_conv1', 'conv1', bias=True)
    for names in msra_convs(depth):
        conv_bn(*names)
    layers.append(('fc1000', 'InnerProduct', [rng.randn(1000, 2048) * 0.01,
                                              rng.randn(1000)]))
    layers = [(n, t, [numpy.asarray(b, numpy.float32) for b in blobs])
              for n, t, blobs in layers]
    write_caffemodel(path, layers)
    return layers


def write_mobilenet_caffemodel(path, seed=0, drop=None, extra=None):
    """Write a synthetic shicai/MobileNet-Caffe ``mobilenet.caffemodel``
    (conv, ``/bn``, ``/scale`` layers with the real shapes; ``fc7``);
    without layer ``drop``, with ``extra`` [(name, type, [arrays])] added.
    Returns ``{name: [arrays]}``."""
    from models.mobilenet import BLOCKS
    from utils.weights.caffemodel import write_caffemodel
    rng = numpy.random.RandomState(seed)
    convs = [('conv1', (32, 3, 3, 3))]
    c = 32
    for name, o, _ in BLOCKS:
        convs += [(name + '/dw', (c, 1, 3, 3)), (name + '/sep', (o, c, 1, 1))]
        c = o
    layers = []
    for name, shape in convs:
        o = shape[0]
        factor = rng.uniform(0.5, 2.)  # Caffe's moving-average factor
        layers += [
            (name, 'Convolution', [rng.randn(*shape) * 0.1]),
            (name + '/bn', 'BatchNorm', [rng.randn(o) * factor,
                                         rng.uniform(0.5, 2., o) * factor,
                                         numpy.array([factor])]),
            (name + '/scale', 'Scale', [rng.uniform(0.5, 2., o),
                                        rng.randn(o)]),
            (name + '/relu', 'ReLU', [])]
    layers.append(('fc7', 'Convolution', [rng.randn(1000, 1024, 1, 1) * 0.01,
                                          rng.randn(1000)]))
    layers = [layer for layer in layers if layer[0] != drop]
    layers = [(n, t, [numpy.asarray(b, numpy.float32) for b in blobs])
              for n, t, blobs in layers + list(extra or [])]
    write_caffemodel(path, layers)
    return {n: blobs for n, _, blobs in layers}
