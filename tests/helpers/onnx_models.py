"""Small crafted model npz files for the ONNX deploy tests.

Random weights with changes that make the comparison meaningful. A
random ResNet-50 with unit affine scales grows its activations through
depth, giving RPN deltas of tens (every box clipped to the image) and
class logits of hundreds (every score 1.0), so the RPN's delta layer is
scaled to outputs within +-0.5, the box head's class layer to logits
within +-4 and the mask logits to +-8 (not all near 0, where any rounding
flips a pixel at the 0.5 threshold) on a test image, as a trained model's
would be. Norm layers get non-trivial values, so that a wrong fold or a
missed affine changes the detections: batch norms the statistics of the
test image, perturbed, with random gamma and beta; frozen affines the
per-channel affine of such a batch norm (a twin model with norm 'bn');
GroupNorms a random gamma and beta. Images are 96-160 px with few
proposals so that each test takes seconds.
"""
import dataclasses

import chainer
import chainer.links as L
import numpy

from models.conventions import DETECTRON
from models.norm import AffineChannel2D
from models.presets import build_mask_rcnn, get_preset, preset_overrides
from utils.ops.image import prepare
from utils.weights.model_io import save_model

#: (arch, norm) of every exported test model; None: the arch's own norm
#: (c4 and fpn affine, fpn-tiny and mobilenetv1-fpn gn).
CASES = (('c4', None), ('fpn', None), ('fpn-tiny', None), ('fpn-tiny', 'bn'),
         ('mobilenetv1-fpn', None), ('mobilenetv1-fpn', 'affine'),
         ('mobilenetv1-fpn', 'bn'))
N_FG_CLASS = 3


def case_id(arch, norm):
    return arch if norm is None else '{}-{}'.format(arch, norm)


def small_preset(arch, conventions=DETECTRON, norm=None):
    """``arch``'s preset at 128 px with 30 proposals; 'fpn' and
    'mobilenetv1-fpn' keep their bodies but narrow FPN and heads
    (Detectron's widths are the same code)."""
    kw = dict(n_fg_class=N_FG_CLASS, min_size=128, max_size=160,
              conventions=conventions,
              rpn_pre_nms_top_n=(2000, 300), rpn_post_nms_top_n=(2000, 30))
    if norm is not None:
        kw['norm'] = norm
    if arch != 'c4':
        kw['rpn_collect_top_n'] = (2000, 30)
    if arch in ('fpn', 'mobilenetv1-fpn'):
        kw.update(fpn_channels=64, fc_channels=256, mask_channels=64)
    if arch == 'fpn':
        kw.update(width=16, blocks=(1, 1, 1, 1))
    return get_preset(arch, **kw)


def images():
    """Three RGB CHW float32 images, 96-160 px, of smooth random blobs."""
    rng = numpy.random.RandomState(0)
    out = []
    for h, w in ((120, 150), (100, 100), (140, 96)):
        small = rng.uniform(0, 255, (3, h // 8 + 1, w // 8 + 1))
        big = numpy.kron(small, numpy.ones((8, 8)))[:, :h, :w]
        out.append((big + rng.uniform(-20, 20, big.shape)).astype(
            numpy.float32))
    return out


def _scale(layer, outputs, peak):
    """Scale ``layer``'s W and b so that ``outputs`` peak at ``peak``."""
    factor = peak / max(float(abs(v.array).max()) for v in outputs)
    layer.W.array *= factor
    layer.b.array *= factor


def calibrate(model, img):
    """RPN deltas within +-0.5, class logits within +-4 and mask logits
    within +-8 on ``img``."""
    x, scale, size = prepare(img, model.min_size, model.max_size,
                             model.pad_stride)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        features = model.extractor(x[None])
        _, deltas, _ = model.rpn_outputs(features)
        _scale(model.rpn.bbox_pred, deltas, 0.5)
        rois = model.propose(features, x.shape[1:], scale)
        heads = features[model.head_levels]
        cls_score, _ = model.box_head(heads, rois,
                                      numpy.zeros(len(rois), numpy.int32))
        _scale(model.box_head.predictor.cls_score, [cls_score], 4.)
        logits = model.mask_head(heads, rois,
                                 numpy.zeros(len(rois), numpy.int32))
        _scale(model.mask_head.predictor.logits, [logits], 8.)


def _bn_statistics(model, img, rng):
    """Every batch norm of the extractor: running averages of ``img``'s
    batch statistics (train mode, decay 0), then the mean moved by up to
    half a deviation, the variance scaled by 0.5-2, gamma in 0.5-1.5 and
    beta in +-0.5."""
    bns = [link for link in model.extractor.links()
           if isinstance(link, L.BatchNormalization)]
    x, _, _ = prepare(img, model.min_size, model.max_size, model.pad_stride)
    for bn in bns:
        bn.decay = 0.
    with chainer.using_config('train', True), chainer.no_backprop_mode():
        model.extractor(x[None])
    for bn in bns:
        bn.decay = 0.9
        c = bn.avg_mean.shape[0]
        bn.avg_mean += 0.5 * numpy.sqrt(bn.avg_var) * rng.uniform(-1, 1, c)
        bn.avg_var *= rng.uniform(0.5, 2., c).astype(numpy.float32)
        bn.gamma.array[...] = rng.uniform(0.5, 1.5, c)
        bn.beta.array[...] = rng.uniform(-0.5, 0.5, c)


def _affines_from(model, twin):
    """Set each frozen affine of ``model`` to the test-time affine of the
    batch norm at the same path in ``twin``: scale = gamma / sqrt(var +
    eps), bias = beta - mean * scale."""
    bns = dict(twin.namedlinks())
    for name, link in model.namedlinks():
        if isinstance(link, AffineChannel2D):
            bn = bns[name]
            scale = bn.gamma.array / numpy.sqrt(bn.avg_var + bn.eps)
            link.scale[...] = scale
            link.bias[...] = bn.beta.array - bn.avg_mean * scale


def _random_norms(model, p, img):
    """Non-trivial values for the norms of the extractor (module
    docstring); c4's and fpn's affines stay at 1 and 0."""
    rng = numpy.random.RandomState(1)
    if p.norm == 'bn':
        _bn_statistics(model, img, rng)
    elif p.norm == 'affine' and p.arch == 'mobilenetv1-fpn':
        numpy.random.seed(0)  # the twin gets the same conv weights
        twin = build_mask_rcnn(dataclasses.replace(p, norm='bn'))
        _bn_statistics(twin, img, rng)
        _affines_from(model, twin)
    for link in model.extractor.links():
        if isinstance(link, L.GroupNormalization):
            c = link.gamma.shape[0]
            link.gamma.array[...] = rng.uniform(0.5, 1.5, c)
            link.beta.array[...] = rng.uniform(-0.5, 0.5, c)


def write_npz(arch, path, conventions=DETECTRON, norm=None):
    """A crafted model npz of ``arch`` (with ``norm`` instead of its
    preset's, if given) and its metadata at ``path``."""
    p = small_preset(arch, conventions, norm)
    numpy.random.seed(0)
    model = build_mask_rcnn(p)
    _random_norms(model, p, images()[0])
    calibrate(model, images()[0])
    meta = {'arch': arch, 'depth': p.depth, 'n_fg_class': N_FG_CLASS,
            'class_names': ['a', 'b', 'c'], 'class_ids': [1, 2, 3],
            'conventions': p.conventions.to_dict(),
            'preset': preset_overrides(p)}
    save_model(str(path), model, meta)
    return path
