"""Detectron blob names of Mask R-CNN R-50/101-C4 and -FPN, grouped by
sub-network, and the model path each one fills.

This table is the whole conversion: Detectron and this project share the
box order (x1, y1, x2, y2), the delta order (dx, dy, dw, dh), BGR input,
background at class 0 and the Caffe2 weight layouts (conv
[out, in, kh, kw], FC [out, in], ConvTranspose [in, out, kh, kw]), so every
blob is copied as it is (see docs/conventions.md).
"""
from collections import OrderedDict

from models.resnet import DEPTHS
from utils.weights.resnet_blocks import bottleneck_convs


def _conv_norm(blob, path):
    return [(blob + '_w', path + '/conv/W'),
            (blob + '_bn_s', path + '/norm/scale'),
            (blob + '_bn_b', path + '/norm/bias')]


def _stage(depth, k, prefix):
    pairs = []
    for _, i, br, _ in bottleneck_convs(depth, (k,)):
        pairs += _conv_norm('res{}_{}_{}'.format(k, i, br),
                            '{}res{}/{}/{}'.format(prefix, k, i, br))
    return pairs


def _conv(blob, path):
    return [(blob + '_w', path + '/W'), (blob + '_b', path + '/b')]


def last_block(depth, k):
    """Detectron's name of stage k's output, e.g. ``res4_5_sum``."""
    return 'res{}_{}_sum'.format(k, DEPTHS[depth][k - 2] - 1)


def body_pairs(depth, prefix, stages):
    """(blob, path) of the stem and res``stages`` under ``prefix``."""
    pairs = (_conv_norm('conv1', prefix + 'conv1')[:1] +
             [('res_conv1_bn_s', prefix + 'conv1/norm/scale'),
              ('res_conv1_bn_b', prefix + 'conv1/norm/bias')])
    for k in stages:
        pairs += _stage(depth, k, prefix)
    return pairs


def rename_table(arch, depth=50):
    """OrderedDict group -> list of (detectron blob, model path).

    ``arch`` 'backbone' is an ImageNet ``R-50.pkl``: the stem and res2-res5
    under the body's own paths (``conv1/conv/W``).
    """
    table = OrderedDict()
    if arch == 'backbone':
        table['body'] = body_pairs(depth, '', (2, 3, 4, 5))
        return table
    body = 'extractor/body'
    table['body'] = body_pairs(depth, body + '/', (2, 3, 4))
    if arch == 'c4':
        table['rpn'] = (_conv('conv_rpn', 'rpn/conv') +
                        _conv('rpn_cls_logits', 'rpn/cls_logits') +
                        _conv('rpn_bbox_pred', 'rpn/bbox_pred'))
        table['box head'] = _stage(depth, 5, 'box_head/')
    elif arch == 'fpn':
        table['body'] += _stage(depth, 5, body + '/')
        table['fpn'] = []
        for i, k in enumerate((2, 3, 4, 5)):
            lateral = 'fpn_inner_' + last_block(depth, k)
            if k < 5:
                lateral += '_lateral'
            table['fpn'] += _conv(lateral, 'extractor/inner/{}'.format(i))
            table['fpn'] += _conv('fpn_' + last_block(depth, k),
                                  'extractor/outer/{}'.format(i))
        table['rpn'] = (_conv('conv_rpn_fpn2', 'rpn/conv') +
                        _conv('rpn_cls_logits_fpn2', 'rpn/cls_logits') +
                        _conv('rpn_bbox_pred_fpn2', 'rpn/bbox_pred'))
        table['box head'] = _conv('fc6', 'box_head/fc6') + _conv(
            'fc7', 'box_head/fc7')
    else:
        raise ValueError('arch must be c4 or fpn, got {!r}'.format(arch))
    table['box head'] += (
        _conv('cls_score', 'box_head/predictor/cls_score') +
        _conv('bbox_pred', 'box_head/predictor/bbox_pred'))
    table['mask head'] = []
    if arch == 'fpn':
        for i in range(4):
            table['mask head'] += _conv('_[mask]_fcn{}'.format(i + 1),
                                        'mask_head/convs/{}'.format(i))
    table['mask head'] += (
        _conv('conv5_mask', 'mask_head/predictor/deconv') +
        _conv('mask_fcn_logits', 'mask_head/predictor/logits'))
    return table


def blob_shapes(arch, depth=50, n_class=81):
    """The shape of every Detectron parameter blob, from the spec tables
    (independent of the model code, so each can check the other). The
    'backbone' of an ImageNet ``R-50.pkl`` is the stem and res2-res5."""
    shapes = OrderedDict()

    def conv_norm(name, cout, cin, k):
        shapes[name + '_w'] = (cout, cin, k, k)
        shapes[name + '_bn_s'] = (cout,)
        shapes[name + '_bn_b'] = (cout,)

    def conv(name, cout, cin, k=None):
        shapes[name + '_w'] = (cout, cin) if k is None else (cout, cin, k, k)
        shapes[name + '_b'] = (cout,)

    shapes['conv1_w'] = (64, 3, 7, 7)
    shapes['res_conv1_bn_s'] = shapes['res_conv1_bn_b'] = (64,)
    for k, i, br, shape in bottleneck_convs(depth):
        conv_norm('res{}_{}_{}'.format(k, i, br), *shape)
    if arch == 'backbone':
        return shapes
    if arch == 'c4':
        conv('conv_rpn', 1024, 1024, 3)
        conv('rpn_cls_logits', 15, 1024, 1)
        conv('rpn_bbox_pred', 60, 1024, 1)
        conv('cls_score', n_class, 2048)
        conv('bbox_pred', 4 * n_class, 2048)
        shapes['conv5_mask_w'] = (2048, 256, 2, 2)
    else:
        for k, c in zip((2, 3, 4, 5), (256, 512, 1024, 2048)):
            lateral = 'fpn_inner_' + last_block(depth, k)
            conv(lateral + ('_lateral' if k < 5 else ''), 256, c, 1)
            conv('fpn_' + last_block(depth, k), 256, 256, 3)
        conv('conv_rpn_fpn2', 256, 256, 3)
        conv('rpn_cls_logits_fpn2', 3, 256, 1)
        conv('rpn_bbox_pred_fpn2', 12, 256, 1)
        conv('fc6', 1024, 256 * 7 * 7)
        conv('fc7', 1024, 1024)
        conv('cls_score', n_class, 1024)
        conv('bbox_pred', 4 * n_class, 1024)
        for i in range(1, 5):
            conv('_[mask]_fcn{}'.format(i), 256, 256, 3)
        shapes['conv5_mask_w'] = (256, 256, 2, 2)
    shapes['conv5_mask_b'] = (256,)
    conv('mask_fcn_logits', n_class, 256, 1)
    return shapes
