"""detectron2 model-zoo names of Mask R-CNN R-50/101-C4 and -FPN
(``mask_rcnn_R_50_{C4,FPN}_{1x,3x}``), grouped by sub-network, and the
model path each one fills.

A detectron2 checkpoint differs from a Detectron pickle in four ways the
converter handles here, each logged:

* ``FrozenBatchNorm2d`` keeps ``weight``, ``bias``, ``running_mean`` and
  ``running_var``; they fold into the affine norm as
  ``scale = weight / sqrt(running_var + 1e-5)``,
  ``bias = bias - running_mean * scale`` (detectron2's ``eps``).
* ``box_predictor.bbox_pred`` has 4K rows and ``mask_head.predictor`` K
  channels, none for background: an all-zero background group is put in
  front, so rows stay label-indexed (``models/conventions.py``).
* ``cls_score`` keeps background last: copied as it is, the model reads it
  with ``background_index = -1``.
* Everything else (conv ``[out, in, kh, kw]``, FC ``[out, in]``,
  ConvTranspose ``[in, out, kh, kw]``, deltas (dx, dy, dw, dh), BGR conv1)
  is copied as it is.

Each row of ``rename_table_d2`` is ``(kind, source names, model path)``
with kind ``'copy'``, ``'fold'`` (a FrozenBN) or ``'pad_bgG'`` (G zero
background rows in front: 4 for box deltas, 1 for mask logits).
"""
from collections import OrderedDict

from utils.weights.resnet_blocks import bottleneck_convs

BN_EPS = 1e-5  # detectron2 FrozenBatchNorm2d
BN_FIELDS = ('weight', 'bias', 'running_mean', 'running_var')
# this project's Detectron-named branches -> detectron2's block convs
D2_NAME = {'branch2a': 'conv1', 'branch2b': 'conv2', 'branch2c': 'conv3',
           'branch1': 'shortcut'}


def _conv_norm(name, path):
    return [('copy', (name + '.weight',), path + '/conv/W'),
            ('fold', tuple('{}.norm.{}'.format(name, f) for f in BN_FIELDS),
             path + '/norm')]


def _conv(name, path, kind='copy'):
    return [(kind, (name + '.weight',), path + '/W'),
            (kind, (name + '.bias',), path + '/b')]


def _stage(depth, k, src, dst):
    rows = []
    for _, i, ours, _ in bottleneck_convs(depth, (k,)):
        rows += _conv_norm('{}.res{}.{}.{}'.format(src, k, i, D2_NAME[ours]),
                           '{}/res{}/{}/{}'.format(dst, k, i, ours))
    return rows


def rename_table_d2(arch, depth=50):
    """OrderedDict group -> list of (kind, source names, model path)."""
    table = OrderedDict()
    body = 'extractor/body'
    src = 'backbone' if arch == 'c4' else 'backbone.bottom_up'
    table['body'] = _conv_norm(src + '.stem.conv1', body + '/conv1')
    for k in (2, 3, 4) if arch == 'c4' else (2, 3, 4, 5):
        table['body'] += _stage(depth, k, src, body)
    if arch == 'fpn':
        table['fpn'] = []
        for i, k in enumerate((2, 3, 4, 5)):
            table['fpn'] += _conv('backbone.fpn_lateral{}'.format(k),
                                  'extractor/inner/{}'.format(i))
            table['fpn'] += _conv('backbone.fpn_output{}'.format(k),
                                  'extractor/outer/{}'.format(i))
    rpn = 'proposal_generator.rpn_head.'
    table['rpn'] = (_conv(rpn + 'conv', 'rpn/conv') +
                    _conv(rpn + 'objectness_logits', 'rpn/cls_logits') +
                    _conv(rpn + 'anchor_deltas', 'rpn/bbox_pred'))
    if arch == 'c4':
        table['box head'] = _stage(depth, 5, 'roi_heads', 'box_head')
    else:
        table['box head'] = (
            _conv('roi_heads.box_head.fc1', 'box_head/fc6') +
            _conv('roi_heads.box_head.fc2', 'box_head/fc7'))
    predictor = 'box_head/predictor/'
    table['box head'] += (
        _conv('roi_heads.box_predictor.cls_score', predictor + 'cls_score') +
        _conv('roi_heads.box_predictor.bbox_pred', predictor + 'bbox_pred',
              'pad_bg4'))
    table['mask head'] = []
    if arch == 'fpn':
        for i in range(4):
            table['mask head'] += _conv(
                'roi_heads.mask_head.mask_fcn{}'.format(i + 1),
                'mask_head/convs/{}'.format(i))
    table['mask head'] += (
        _conv('roi_heads.mask_head.deconv', 'mask_head/predictor/deconv') +
        _conv('roi_heads.mask_head.predictor', 'mask_head/predictor/logits',
              'pad_bg1'))
    return table


def d2_shapes(arch, depth=50, n_fg_class=80):
    """Shape of every tensor of a detectron2 Mask R-CNN checkpoint, written
    from detectron2's module definitions (independent of the table above,
    so each checks the other)."""
    shapes = OrderedDict()
    src = 'backbone' if arch == 'c4' else 'backbone.bottom_up'

    def conv_norm(name, cout, cin, k):
        shapes[name + '.weight'] = (cout, cin, k, k)
        for f in BN_FIELDS:
            shapes['{}.norm.{}'.format(name, f)] = (cout,)

    def conv(name, cout, cin, k=None):
        shapes[name + '.weight'] = (cout, cin) if k is None else (
            cout, cin, k, k)
        shapes[name + '.bias'] = (cout,)

    conv_norm(src + '.stem.conv1', 64, 3, 7)
    for k, i, br, shape in bottleneck_convs(depth):
        prefix = 'roi_heads' if (arch == 'c4' and k == 5) else src
        conv_norm('{}.res{}.{}.{}'.format(prefix, k, i, D2_NAME[br]), *shape)
    c = 1024 if arch == 'c4' else 256
    a = 15 if arch == 'c4' else 3
    if arch == 'fpn':
        for k, cin in zip((2, 3, 4, 5), (256, 512, 1024, 2048)):
            conv('backbone.fpn_lateral{}'.format(k), 256, cin, 1)
            conv('backbone.fpn_output{}'.format(k), 256, 256, 3)
    conv('proposal_generator.rpn_head.conv', c, c, 3)
    conv('proposal_generator.rpn_head.objectness_logits', a, c, 1)
    conv('proposal_generator.rpn_head.anchor_deltas', 4 * a, c, 1)
    head = 2048 if arch == 'c4' else 1024
    if arch == 'fpn':
        conv('roi_heads.box_head.fc1', 1024, 256 * 7 * 7)
        conv('roi_heads.box_head.fc2', 1024, 1024)
    conv('roi_heads.box_predictor.cls_score', n_fg_class + 1, head)
    conv('roi_heads.box_predictor.bbox_pred', 4 * n_fg_class, head)
    if arch == 'fpn':
        for i in range(1, 5):
            conv('roi_heads.mask_head.mask_fcn{}'.format(i), 256, 256, 3)
    shapes['roi_heads.mask_head.deconv.weight'] = (
        2048 if arch == 'c4' else 256, 256, 2, 2)
    shapes['roi_heads.mask_head.deconv.bias'] = (256,)
    conv('roi_heads.mask_head.predictor', n_fg_class, 256, 1)
    return shapes
