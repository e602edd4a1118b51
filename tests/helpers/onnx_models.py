"""Small crafted model npz files for the ONNX deploy tests.

Random weights with changes that make the comparison meaningful. A
random ResNet-50 with unit affine scales grows its activations through
depth, giving RPN deltas of tens (every box clipped to the image) and
class logits of hundreds (every score 1.0), so the RPN's delta layer is
scaled to outputs within +-0.5, the box head's class layer to logits
within +-4 and the mask logits to +-8 (not all near 0, where any rounding
flips a pixel at the 0.5 threshold) on a test image, as a trained model's
would be. Images are
96-160 px with few proposals so that each test takes seconds.
"""
import chainer
import numpy

from models.conventions import DETECTRON
from models.presets import build_mask_rcnn, get_preset, preset_overrides
from utils.ops.image import prepare
from utils.weights.model_io import save_model

ARCHS = ('c4', 'fpn', 'fpn-tiny')
N_FG_CLASS = 3


def small_preset(arch, conventions=DETECTRON):
    """``arch``'s preset at 128 px with 30 proposals; 'fpn' keeps its
    affine norm but narrow layers (Detectron's widths are the same code)."""
    kw = dict(n_fg_class=N_FG_CLASS, min_size=128, max_size=160,
              conventions=conventions,
              rpn_pre_nms_top_n=(2000, 300), rpn_post_nms_top_n=(2000, 30))
    if arch != 'c4':
        kw['rpn_collect_top_n'] = (2000, 30)
    if arch == 'fpn':
        kw.update(width=16, blocks=(1, 1, 1, 1), fpn_channels=64,
                  fc_channels=256, mask_channels=64)
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


def _calibrate(model, img):
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


def write_npz(arch, path, conventions=DETECTRON):
    """A crafted model npz of ``arch`` with its metadata at ``path``."""
    p = small_preset(arch, conventions)
    numpy.random.seed(0)
    model = build_mask_rcnn(p)
    _calibrate(model, images()[0])
    meta = {'arch': arch, 'depth': p.depth, 'n_fg_class': N_FG_CLASS,
            'class_names': ['a', 'b', 'c'], 'class_ids': [1, 2, 3],
            'conventions': p.conventions.to_dict(),
            'preset': preset_overrides(p)}
    save_model(str(path), model, meta)
    return path
