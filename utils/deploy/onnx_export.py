"""A ``MaskRCNN`` as one ONNX model for onnxruntime.

ONNX holds one graph per file and onnxruntime runs every node of it on
each call, with every graph input fed. The network has three parts that
the NumPy post-processing separates (proposals between the backbone and
the box head, final boxes between the box head and the mask head), so the
graph holds the three as disconnected parts with their own inputs and
outputs, and ``utils/deploy/onnx_predict.py`` feeds the parts it is not
running with minimal idle inputs (a 64 x 64 blank image, 1 x 1 features,
zero ROIs). One file keeps one set of metadata and stores C4's res5, which
the box and mask heads share, once.

==================  =====================================================
graph input         shape (float32)
==================  =====================================================
image               (1, 3, H, W) ``utils.ops.image.network_input``
features_{k}        (1, C, H_k, W_k), head level k (C4: res4; FPN: P2-P5)
box_rois_{k}        (R_k, 4) (x1, y1, x2, y2) input pixels, level k's
mask_rois_{k}       (R'_k, 4) likewise, for the mask head
==================  =====================================================

==================  =====================================================
graph output        shape (float32)
==================  =====================================================
rpn_logits_{j}      (1, H_j, W_j, A) objectness logits, RPN level j
rpn_deltas_{j}      (1, H_j, W_j, 4A) (dx, dy, dw, dh) per anchor
head_features_{k}   (1, C, H_k, W_k), to feed back as features_{k}
cls_score           (R, K+1) logits, background first; rows level by level
bbox_pred           (R, 4(K+1)) deltas for weights (10, 10, 5, 5)
mask_logits         (R', K+1, M, M); rows level by level
==================  =====================================================

Metadata (``metadata_props``): ``meta``, the npz metadata as JSON
(classes, conventions, preset; ``utils/weights/model_io.py``), and
``runtime``, the JSON settings the predictor needs (``runtime_config``).
"""
import json

import onnx
from onnx import helper

from models.fpn import FPN
from models.presets import C4Extractor
from utils.atomic_write import atomic_write
from utils.deploy import onnx_backbones as ob
from utils.deploy import onnx_graph as og

#: Version of the graph's input/output contract and of ``runtime``.
FORMAT = 1


def _backbone(g, model):
    """image -> features of every level, as the extractor returns them."""
    x = g.add_input('image', [1, 3, 'height', 'width'])
    extractor = model.extractor
    if isinstance(extractor, FPN):
        return ob.fpn(g, extractor, x)
    if isinstance(extractor, C4Extractor):
        return ob.body_outputs(g, extractor.body, x)[-1:]
    raise og.UnsupportedModel('feature extractor {} has no ONNX export; '
                              'expected FPN or C4Extractor'.format(
                                  type(extractor).__name__))


def _heads(g, model, n_levels):
    """Box and mask heads on fed features and per-level ROIs."""
    channels = [model.rpn.conv.W.shape[1]] * n_levels
    feats = [g.add_input('features_{}'.format(k), [1, c, 'h{}'.format(k),
                                                   'w{}'.format(k)])
             for k, c in enumerate(channels)]

    def rois(kind):
        return [g.add_input('{}_rois_{}'.format(kind, k),
                            ['{}_r{}'.format(kind, k), 4])
                for k in range(n_levels)]

    box, mask = model.box_head, model.mask_head
    h = og.pool(g, box.pooler, feats, rois('box'))
    if hasattr(box, 'res5'):
        h = ob.res_stage(g, box.res5, h)
        h = g.op('GlobalAveragePool', [h])  # the 7x7 average pool
    else:
        h = og.linear(g, box.fc7, og.linear(g, box.fc6, h, True), True)
    cls_score, bbox_pred = og.box_predictor(g, box.predictor, h)
    g.add_output(cls_score, 'cls_score', ['box_r', 'classes'])
    g.add_output(bbox_pred, 'bbox_pred', ['box_r', 'deltas'])
    h = og.pool(g, mask.pooler, feats, rois('mask'))
    if hasattr(mask, 'convs'):
        for c in mask.convs:
            h = og.conv(g, c, h, relu=True)
    else:
        h = ob.res_stage(g, mask._res5_owner.res5, h)
    g.add_output(og.mask_predictor(g, mask.predictor, h), 'mask_logits',
                 ['mask_r', 'classes', 'm', 'm'])


def build_graph(model):
    """The three parts of ``model`` (module docstring) as one graph."""
    g = og.Graph()
    features = _backbone(g, model)
    logits, deltas = og.rpn(g, model.rpn, features[model.rpn_levels])
    for j, (lg, dl) in enumerate(zip(logits, deltas)):
        g.add_output(lg, 'rpn_logits_{}'.format(j), [1, 'rh{}'.format(j),
                                                     'rw{}'.format(j), 'a'])
        g.add_output(dl, 'rpn_deltas_{}'.format(j), [1, 'rh{}'.format(j),
                                                     'rw{}'.format(j), 'a4'])
    heads = features[model.head_levels]
    for k, f in enumerate(heads):
        g.add_output(f, 'head_features_{}'.format(k),
                     [1, model.rpn.conv.W.shape[1], 'fh{}'.format(k),
                      'fw{}'.format(k)])
    _heads(g, model, len(heads))
    return g.make()


def runtime_config(model, arch):
    """What ``predict`` needs besides the network, JSON-ready."""
    p = model.proposal_generator
    return {
        'format': FORMAT, 'arch': arch, 'min_size': model.min_size,
        'max_size': model.max_size, 'pad_stride': model.pad_stride,
        'rpn_strides': list(model.rpn_strides),
        'cell_anchors': [a.tolist() for a in model.cell_anchors],
        'proposals': {
            'pre_nms_top_n': list(p.pre_nms_top_n),
            'post_nms_top_n': list(p.post_nms_top_n),
            'collect_top_n': (None if p.collect_top_n is None
                              else list(p.collect_top_n)),
            'nms_thresh': p.nms_thresh, 'min_size': p.min_size,
            'box_offset': p.box_offset},
        'k_min': model.box_head.pooler.k_min,
        'bbox_reg_weights': list(model.bbox_reg_weights),
        'mask_thresh': model.mask_thresh,
        'conventions': model.conventions.to_dict(),
    }


def export_onnx(model, meta, arch):
    """``onnx.ModelProto`` of a float32 ``model`` built by
    ``models.presets.build_mask_rcnn`` (any arch of ``ARCHS``, norms
    'affine', 'gn' and 'bn'), checked by ``onnx.checker``; a link without
    ONNX nodes raises ``onnx_graph.UnsupportedModel``."""
    proto = helper.make_model(
        build_graph(model), producer_name='chainer-mask-rcnn',
        opset_imports=[helper.make_opsetid('', og.OPSET)])
    helper.set_model_props(proto, {
        'meta': json.dumps(meta, sort_keys=True),
        'runtime': json.dumps(runtime_config(model, arch), sort_keys=True)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(proto, path):
    """Write ``proto`` to ``path`` atomically (no half-written file;
    ``OutputError`` on a full disk)."""
    with atomic_write(path, 'wb', 'ONNX file') as f:
        f.write(proto.SerializeToString())
