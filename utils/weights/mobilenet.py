"""The ImageNet MobileNetV1 caffemodel of shicai/MobileNet-Caffe
(``mobilenet.caffemodel``, width 1.0, 224 px, top-1 70.8 %) as a backbone
npz for ``train.py --arch mobilenetv1-fpn --pretrained``.

Caffe layers: ``conv1``, then ``conv2_1/dw``, ``conv2_1/sep``, ...,
``conv5_6/sep``, ``conv6/dw``, ``conv6/sep`` (``models/mobilenet.py``
``BLOCKS``), convolutions without bias, each followed by ``<name>/bn``
(``BatchNorm``: mean, variance, moving-average factor; eps 1e-5 unless the
file says otherwise) and ``<name>/scale`` (``Scale``: gamma, beta); then
the classifier ``fc7`` (1000 x 1024 x 1 x 1 and its bias), not used. The
pair folds into the frozen affine ``y = s * x + b`` of
``models/norm.py`` (``msra.fold_batchnorm``)::

    mean, var = blobs[0] / f, blobs[1] / f   (f = blobs[2], 0 -> 0)
    s = gamma / sqrt(var + eps),  b = beta - mean * s

Input normalisation. The Caffe model reads ``x_caffe = (BGR - m_caffe) *
0.017`` with ``m_caffe = (103.94, 116.78, 123.68)``; this project feeds
``x = BGR - m_detectron``, ``m_detectron = (102.9801, 115.9465,
122.7717)``, so ``x_caffe = 0.017 * x + 0.017 * (m_detectron - m_caffe)``.
Both terms go into conv1, which is linear:

* the factor: ``W1 = 0.017 * W_caffe`` (exact);
* the shift ``d = 0.017 * (m_detectron - m_caffe)`` (about -0.016 per
  channel): conv1 of a constant ``d`` is ``sum_{c,ky,kx} W1[o,c,ky,kx] *
  d[c] / 0.017``, added to conv1's affine bias as ``s * that``. It is exact
  where conv1 reads no padding; on the one-pixel border Caffe pads with
  ``x_caffe = 0`` where this network pads ``x = 0``, that is ``x_caffe =
  d``: a difference of 0.016 on an input whose standard deviation is
  about 1, on the border taps only.

Output npz (``kind: 'backbone'``, ``body: 'mobilenetv1'``), 81 arrays,
float32, the paths of ``models.mobilenet.MobileNetV1Body``:

==============================  ===================  ====================
path                            shape                from
==============================  ===================  ====================
``conv1/conv/W``                (32, 3, 3, 3)        conv1 * 0.017
``conv1/norm/{scale,bias}``     (32,)                conv1/bn, conv1/scale
                                                     (+ mean shift)
``<blk>/dw/conv/W``             (C, 1, 3, 3)         <blk>/dw
``<blk>/dw/norm/{scale,bias}``  (C,)                 <blk>/dw/bn, /scale
``<blk>/sep/conv/W``            (O, C, 1, 1)         <blk>/sep
``<blk>/sep/norm/{scale,bias}`` (O,)                 <blk>/sep/bn, /scale
==============================  ===================  ====================

for the 13 blocks ``<blk>`` = conv2_1 ... conv6 with C input and O output
channels. Every blob is used once and checked against its shape; a layer
that is missing, has another number of blobs or another shape, or a
leftover layer with weights other than ``fc7``, is refused in one line.
"""
import numpy

from models.mobilenet import BLOCKS, STEM_CHANNELS, MobileNetV1Body
from utils.ops.image import DETECTRON_PIXEL_MEANS
from utils.weights.caffemodel import read_caffemodel
from utils.weights.checks import fill, finite_float32, sha256
from utils.weights.model_io import save_model
from utils.weights.msra import fold_batchnorm
from utils.weights.safe_pickle import ConversionError

CAFFE_MEAN = (103.94, 116.78, 123.68)     # BGR, the Caffe model's
CAFFE_SCALE = 0.017
CLASSIFIER = 'fc7'                        # ImageNet classifier, not used


def layer_shapes():
    """[(Caffe conv layer, npz prefix, W shape)] of the whole body."""
    out = [('conv1', 'conv1', (STEM_CHANNELS, 3, 3, 3))]
    c = STEM_CHANNELS
    for name, o, _ in BLOCKS:
        out.append((name + '/dw', name + '/dw', (c, 1, 3, 3)))
        out.append((name + '/sep', name + '/sep', (o, c, 1, 1)))
        c = o
    return out


def _take(layers, name, shapes, used):
    """The blobs of layer ``name``, which must be exactly ``shapes``."""
    if name not in layers:
        raise ConversionError('caffemodel layer {} missing: not '
                              'shicai/MobileNet-Caffe\'s mobilenet'.format(
                                  name))
    blobs = layers[name]['blobs']
    got = [tuple(b.shape) for b in blobs]
    if got != [tuple(s) for s in shapes]:
        raise ConversionError('caffemodel layer {} has blobs of shapes {}, '
                              'expected {}'.format(name, got, list(shapes)))
    used.add(name)
    return layers[name]


def mobilenet_arrays(layers):
    """{npz path: float32 array} from caffemodel layers (module
    docstring), and the report lines of the surgery."""
    arrays, used = {}, set()
    for conv, prefix, shape in layer_shapes():
        o = shape[0]
        w = _take(layers, conv, [shape], used)['blobs'][0]
        bn = _take(layers, conv + '/bn', [(o,), (o,), (1,)], used)
        scale = _take(layers, conv + '/scale', [(o,), (o,)], used)
        s, b = fold_batchnorm(bn, scale['blobs'])
        arrays[prefix + '/conv/W'] = w
        arrays[prefix + '/norm/scale'] = s
        arrays[prefix + '/norm/bias'] = b
    _fold_input_normalisation(arrays)
    leftovers = [n for n, layer in layers.items()
                 if layer['blobs'] and n not in used and n != CLASSIFIER]
    if leftovers:
        raise ConversionError('unexpected caffemodel layer(s) with weights: '
                              '{} (not shicai/MobileNet-Caffe\'s '
                              'mobilenet)'.format(', '.join(leftovers[:8])))
    report = ['BatchNorm + Scale folded into affine (27 convolutions)',
              'conv1 weights x {} (Caffe input scale); mean difference '
              'Detectron - Caffe folded into conv1 bias'.format(CAFFE_SCALE),
              'unused caffemodel layers: {}'.format(
                  CLASSIFIER if CLASSIFIER in layers else 'none')]
    return finite_float32(arrays, 'blob'), report


def _fold_input_normalisation(arrays):
    """conv1 for ``x = BGR - m_detectron`` (module docstring)."""
    w = arrays['conv1/conv/W'].astype(numpy.float64) * CAFFE_SCALE
    d = numpy.subtract(DETECTRON_PIXEL_MEANS, CAFFE_MEAN)  # (3,) BGR
    with numpy.errstate(all='ignore'):  # inf, NaN: finite_float32 refuses
        shift = (w * d[None, :, None, None]).sum(axis=(1, 2, 3))  # (32,)
        arrays['conv1/conv/W'] = w.astype(numpy.float32)
        arrays['conv1/norm/bias'] = (
            arrays['conv1/norm/bias'] + arrays['conv1/norm/scale'] * shift
        ).astype(numpy.float32)


def convert_mobilenet(caffemodel, out):
    """Convert ``caffemodel`` to a backbone npz at ``out``; returns the
    report lines."""
    arrays, report = mobilenet_arrays(read_caffemodel(caffemodel))
    body = MobileNetV1Body(norm='affine')
    fill(body, sorted(arrays.items()))
    meta = {'kind': 'backbone', 'body': 'mobilenetv1',
            'source': {'file': caffemodel, 'sha256': sha256(caffemodel),
                       'format': 'shicai-mobilenet-caffemodel'}}
    save_model(out, body, meta)
    return ['MobileNetV1 backbone, {} arrays'.format(len(arrays))] + report
