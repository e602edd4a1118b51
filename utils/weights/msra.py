"""MSRA's ImageNet ResNet caffemodels (``ResNet-50-model.caffemodel``,
``ResNet-101-model.caffemodel``, He et al. 2015) as a backbone npz.

Each conv ``res2a_branch2a`` is followed by ``bn2a_branch2a`` (Caffe
``BatchNorm``: mean, variance, moving-average factor) and
``scale2a_branch2a`` (``Scale``: gamma, beta). They fold into Detectron's
frozen affine ``y = s * x + b``::

    mean, var = blobs[0] / f, blobs[1] / f   (f = blobs[2], 0 -> 0)
    s = gamma / sqrt(var + eps),  b = beta - mean * s   (eps 1e-5)

which is what Detectron's ``R-50.pkl`` holds as ``_bn_s`` / ``_bn_b``. The
stem conv ``conv1`` has a bias in the caffemodel while Detectron's stem
has none; it is folded into the affine bias (``b += s * conv1_b``), so the
network computes exactly what MSRA's does. ``fc1000`` is not used.

Block names: ResNet-50 counts blocks with letters (``res4f``); ResNet-101
names res3/res4 blocks after the first ``b1``, ``b2``, ... (``res4b22``).
"""
import numpy

from utils.weights.caffemodel import read_caffemodel
from utils.weights.checks import sha256
from utils.weights.detectron import convert
from utils.weights.model_io import save_model
from utils.weights.resnet_blocks import bottleneck_convs
from utils.weights.safe_pickle import ConversionError


def block_name(depth, stage, i):
    """MSRA's name of block ``i`` of stage ``stage``: '4f', '4b22'."""
    if depth >= 101 and stage in (3, 4) and i > 0:
        return '{}b{}'.format(stage, i)
    return '{}{}'.format(stage, 'abcdefghijklmnopqrstuvwxyz'[i])


def msra_convs(depth):
    """Yield (conv, BatchNorm, Scale layer names, Detectron blob prefix) of
    every bottleneck conv of res2-res5, e.g. ('res4c_branch2b',
    'bn4c_branch2b', 'scale4c_branch2b', 'res4_2_branch2b')."""
    for stage, i, br, _ in bottleneck_convs(depth):
        blk = block_name(depth, stage, i)
        yield ('res{}_{}'.format(blk, br), 'bn{}_{}'.format(blk, br),
               'scale{}_{}'.format(blk, br),
               'res{}_{}_{}'.format(stage, i, br))


def msra_to_detectron(layers, depth):
    """{Detectron blob name: array} from caffemodel layers.

    Returns:
        (dict, list of str): the blobs and the names of unused layers.
    """
    blobs, used = {}, set()

    def take(name, n_blobs):
        if name not in layers or len(layers[name]['blobs']) < n_blobs:
            raise ConversionError('caffemodel layer {} with {} blob(s) '
                                  'missing: not MSRA\'s ResNet-{}'.format(
                                      name, n_blobs, depth))
        used.add(name)
        return layers[name]

    def conv_bn(conv, bn, scale, out):
        blobs[out + '_w'] = take(conv, 1)['blobs'][0]
        s, b = fold_batchnorm(take(bn, 3), take(scale, 2)['blobs'])
        blobs[out + '_bn_s'] = s
        blobs[out + '_bn_b'] = b
        return s

    s = conv_bn('conv1', 'bn_conv1', 'scale_conv1', 'res_conv1')
    blobs['conv1_w'] = blobs.pop('res_conv1_w')
    if len(layers['conv1']['blobs']) > 1:  # MSRA's conv1 has a bias
        blobs['res_conv1_bn_b'] = (blobs['res_conv1_bn_b'] +
                                   s * layers['conv1']['blobs'][1])
    for names in msra_convs(depth):
        conv_bn(*names)
    unused = [n for n, layer in layers.items()
              if layer['blobs'] and n not in used]
    return blobs, unused


def fold_batchnorm(bn, scale_blobs):
    """(s, b) of Caffe BatchNorm + Scale with global statistics."""
    mean, var, factor = bn['blobs'][:3]
    f = float(factor.ravel()[0])
    f = 0. if f == 0 else 1. / f
    eps = bn['eps'] if bn['eps'] is not None else 1e-5
    gamma, beta = scale_blobs[:2]
    # A crafted file's negative variance or eps gives NaN, refused with the
    # other non-finite values by ``checks.finite_float32``, not a warning.
    with numpy.errstate(all='ignore'):
        s = gamma.astype(numpy.float64) / numpy.sqrt(var * f + eps)
        b = beta - mean * f * s
        return s.astype(numpy.float32), b.astype(numpy.float32)


def convert_caffemodel(caffemodel, out, depth):
    """Convert ``caffemodel`` to a backbone npz at ``out``; returns the
    report lines."""
    blobs, unused = msra_to_detectron(read_caffemodel(caffemodel), depth)
    body, meta, report = convert(blobs, 'backbone')
    meta['source'] = {'file': caffemodel, 'sha256': sha256(caffemodel),
                      'format': 'msra-caffemodel'}
    save_model(out, body, meta)
    report = [line for line in report
              if not line.startswith(('tensor surgery', 'momentum'))]
    return report + ['BatchNorm + Scale folded into affine; conv1 bias '
                     'folded into its affine bias',
                     'unused caffemodel layers: {}'.format(
                         ', '.join(unused) or 'none')]
