"""Convert a detectron2 model-zoo checkpoint (``model_final_*.pkl`` of
``mask_rcnn_R_50_{C4,FPN}_{1x,3x}``) to this project's npz.

The checkpoint is ``{'model': {name: ndarray}, '__author__': ...}``. The
tensors are renamed by ``utils/detectron2_names.py``; the result runs with
detectron2's semantics (``models/conventions.DETECTRON2``), stored in the
npz metadata together with the preset numbers detectron2's configs change
(``Base-RCNN-FPN.yaml``: ROIAlignV2 with ``POOLER_SAMPLING_RATIO`` 0,
``RPN.POST_NMS_TOPK_*`` 1000 over all levels after per-level NMS).
"""
import dataclasses
import re

import numpy

from models.conventions import DETECTRON2
from utils.detectron2_names import (BN_EPS, BN_FIELDS, d2_shapes,
                                    rename_table_d2)
from utils.safe_pickle import ConversionError

# Buffers a checkpoint may hold that are not weights of this model.
IGNORED = re.compile(r'.*\.num_batches_tracked$|'
                     r'^proposal_generator\.anchor_generator\.cell_anchors')
# detectron2's preset numbers where they differ from Detectron's.
D2_PRESET = {
    'c4': {},
    'fpn': {'box_sampling_ratio': 0, 'mask_sampling_ratio': 0,
            'rpn_collect_top_n': (1000, 1000)},
}


def is_detectron2(data):
    """Whether a loaded pickle is a detectron2 checkpoint."""
    return (isinstance(data, dict) and isinstance(data.get('model'), dict)
            and any('.' in str(k) for k in data['model']))


def detect(state):
    """('c4' | 'fpn', depth, n_fg_class) from the tensor names."""
    if 'backbone.fpn_lateral2.weight' in state:
        arch, body = 'fpn', 'backbone.bottom_up'
    elif 'backbone.stem.conv1.weight' in state:
        arch, body = 'c4', 'backbone'
    else:
        raise ConversionError('neither backbone.fpn_lateral2 nor '
                              'backbone.stem.conv1: not a detectron2 '
                              'Mask R-CNN R-50/101 C4 or FPN checkpoint')
    n_res4 = len({m.group(1) for m in (re.match(
        re.escape(body) + r'\.res4\.(\d+)\.', n) for n in state) if m})
    depth = {6: 50, 23: 101}.get(n_res4)
    if depth is None:
        raise ConversionError('res4 has {} blocks: neither ResNet-50 (6) '
                              'nor ResNet-101 (23)'.format(n_res4))
    key = 'roi_heads.box_predictor.cls_score.weight'
    if key not in state:
        raise ConversionError('{} missing: not a detection model'.format(key))
    return arch, depth, state[key].shape[0] - 1


def convert_d2(data, arch='auto'):
    """Fill a model from a detectron2 checkpoint.

    Returns:
        (MaskRCNN, dict, list of str): the model, its metadata (without the
        source) and the report lines.
    """
    from models.presets import build_mask_rcnn, get_preset
    from utils.detectron_parser import (check_names_and_shapes,
                                        coco_classes, fill)
    state = _arrays(data['model'])
    found, depth, n_fg_class = detect(state)
    if arch not in ('auto', found):
        raise ConversionError('the checkpoint holds a {} model, not {}'
                              .format(found, arch))
    arch = found
    conventions = DETECTRON2
    if 'pixel_mean' in state and 'pixel_std' in state:
        conventions = dataclasses.replace(
            conventions, pixel_mean=tuple(state['pixel_mean'].ravel()),
            pixel_std=tuple(state['pixel_std'].ravel()))
    ignored = sorted(n for n in state if IGNORED.match(n) or
                     n in ('pixel_mean', 'pixel_std'))
    params = {n: v for n, v in state.items() if n not in ignored}
    check_names_and_shapes(params, d2_shapes(arch, depth, n_fg_class), arch,
                           'tensor')
    overrides = D2_PRESET[arch]
    model = build_mask_rcnn(get_preset(
        arch, depth=depth, n_fg_class=n_fg_class, conventions=conventions,
        **overrides))
    table = rename_table_d2(arch, depth)
    rows_used = {n for rows in table.values() for _, names, _ in rows
                 for n in names}
    assert rows_used == set(params), 'tensor left unused'
    pairs, counts = [], {'fold': 0, 'pad': 0}
    for rows in table.values():
        for kind, names, path in rows:
            values = [params[n] for n in names]
            if kind == 'fold':
                scale, bias = fold_frozen_bn(*values)
                pairs += [(path + '/scale', scale), (path + '/bias', bias)]
                counts['fold'] += 1
            elif kind.startswith('pad_bg'):
                pairs.append((path, pad_background(values[0],
                                                   int(kind[-1]))))
                counts['pad'] += 1
            else:
                pairs.append((path, values[0]))
    fill(model, pairs)
    report = ['architecture: {} (ResNet-{}), {} classes + background '
              '(detectron2 checkpoint)'.format(arch, depth, n_fg_class)]
    for group, rows in table.items():
        report.append('  {:<10s} {:4d} tensors mapped'.format(
            group, sum(len(names) for _, names, _ in rows)))
    report.append('tensors mapped: {}'.format(len(params)))
    report.append('ignored buffers: {}{}'.format(
        len(ignored), ' ({})'.format(', '.join(ignored[:4])) if ignored
        else ''))
    report.append('tensor surgery: {} FrozenBN folded into affine scale/'
                  'bias (eps {}); {} predictor(s) given an all-zero '
                  'background row group in front (bbox_pred, mask '
                  'logits); cls_score kept with background last'.format(
                      counts['fold'], BN_EPS, counts['pad'] // 2))
    report.append('semantics: detectron2 ({})'.format(', '.join(
        '{}={}'.format(k, v) for k, v in conventions.to_dict().items())))
    meta = {'arch': arch, 'depth': depth, 'n_fg_class': n_fg_class,
            'conventions': conventions.to_dict(), 'preset': overrides}
    meta.update(coco_classes(n_fg_class))
    return model, meta, report


def fold_frozen_bn(weight, bias, running_mean, running_var, eps=BN_EPS):
    """detectron2's ``FrozenBatchNorm2d`` as ``y = scale * x + shift``."""
    scale = weight / numpy.sqrt(running_var + eps)
    return (scale.astype(numpy.float32),
            (bias - running_mean * scale).astype(numpy.float32))


def pad_background(w, group):
    """(K*G, ...) class rows -> ((K+1)*G, ...) with ``group`` zero
    background rows in front: G = 4 for box deltas, 1 for mask logits."""
    return numpy.concatenate([numpy.zeros((group,) + w.shape[1:], w.dtype),
                              w])


def _arrays(state):
    out = {}
    for name, value in state.items():
        if not isinstance(value, numpy.ndarray):
            raise ConversionError('tensor {!r} is a {}, expected an ndarray '
                                  '(a detectron2 model-zoo .pkl)'.format(
                                      name, type(value).__name__))
        out[str(name)] = value.astype(numpy.float32)
    return out

