"""Convert a detectron2 model-zoo checkpoint (``model_final_*.pkl`` of
``mask_rcnn_R_50_{C4,FPN}_{1x,3x}``) to this project's npz.

The checkpoint is ``{'model': {name: ndarray}, '__author__': ...}``. The
tensors are renamed by ``utils/weights/detectron2_names.py``; the result
runs with detectron2's semantics (``models/conventions.DETECTRON2``),
stored in the npz metadata together with the preset numbers detectron2's
configs change
(``Base-RCNN-FPN.yaml``: ROIAlignV2 with ``POOLER_SAMPLING_RATIO`` 0,
``RPN.POST_NMS_TOPK_*`` 1000 over all levels after per-level NMS).
"""
import dataclasses
import re

import numpy

from models.conventions import DETECTRON2
from models.presets import build_mask_rcnn, get_preset
from utils.data.coco_names import coco_classes
from utils.weights.checks import (check_array, check_names_and_shapes,
                                  count_classes, fill, finite_float32)
from utils.weights.detectron2_names import (BN_EPS, d2_shapes,
                                            rename_table_d2)
from utils.weights.safe_pickle import ConversionError

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
    return arch, depth, count_classes(state, key) - 1


def convert_d2(data, arch='auto'):
    """Fill a model from a detectron2 checkpoint.

    Returns:
        (MaskRCNN, dict, list of str): the model, its metadata (without the
        source) and the report lines.
    """
    state = _arrays(data['model'])
    found, depth, n_fg_class = detect(state)
    if arch not in ('auto', found):
        raise ConversionError('the checkpoint holds a {} model, not {}'
                              .format(found, arch))
    arch = found
    conventions = dataclasses.replace(DETECTRON2, **pixel_statistics(state))
    ignored = sorted(n for n in state if IGNORED.match(n) or
                     n in ('pixel_mean', 'pixel_std'))
    params = {n: v for n, v in state.items() if n not in ignored}
    check_names_and_shapes(params, d2_shapes(arch, depth, n_fg_class), arch,
                           'tensor')
    params = finite_float32(params, 'tensor')
    check_variances(params)
    overrides = D2_PRESET[arch]
    model = build_mask_rcnn(get_preset(
        arch, depth=depth, n_fg_class=n_fg_class, conventions=conventions,
        **overrides))
    table = rename_table_d2(arch, depth)
    rows_used = {n for rows in table.values() for _, names, _ in rows
                 for n in names}
    assert rows_used == set(params), 'tensor left unused'
    pairs, counts = surgery(table, params)
    fill(model, pairs)
    check_cell_anchors(state, model.cell_anchors)
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


def check_cell_anchors(state, cell_anchors):
    """The checkpoint's stored cell anchors (``anchor_generator.
    cell_anchors.{level}``, when it has them) must be the ones this model
    regenerates: other anchor sizes or ratios would silently shift every
    proposal."""
    prefix = 'proposal_generator.anchor_generator.cell_anchors.'
    for name in sorted(n for n in state if n.startswith(prefix)):
        level = name[len(prefix):]
        stored = numpy.asarray(state[name], numpy.float64)
        if not level.isdigit() or int(level) >= len(cell_anchors):
            raise ConversionError('{}: no anchor level {} in this model'
                                  .format(name, level))
        ours = numpy.asarray(cell_anchors[int(level)], numpy.float64)
        if stored.shape != ours.shape or not numpy.allclose(
                stored, ours, rtol=0, atol=1e-3):
            raise ConversionError(
                '{} differs from the anchors of RPN sizes and aspect ratios '
                'this converter assumes (stored {}, expected {})'.format(
                    name, _few(stored.ravel()), _few(ours.ravel())))


def pixel_statistics(state):
    """{'pixel_mean': 3 floats, 'pixel_std': 3 positive floats} from the
    checkpoint's buffers, for those it has."""
    out = {}
    for name in ('pixel_mean', 'pixel_std'):
        if name not in state:
            continue
        value = state[name].astype(numpy.float64).ravel()
        if value.size != 3 or not numpy.isfinite(value).all() or (
                name == 'pixel_std' and (value <= 0).any()):
            raise ConversionError('tensor {} is {}, expected 3 finite{} '
                                  'values (B, G, R)'.format(
                                      name, _few(value),
                                      ' positive' if name == 'pixel_std'
                                      else ''))
        out[name] = tuple(float(v) for v in value)
    return out


def _few(value):
    text = numpy.array2string(value[:6], precision=4, separator=', ')
    return text[:-1] + ', ...]' if value.size > 6 else text


def surgery(table, params):
    """(model path, array) pairs of ``table``'s rows (FrozenBN folded,
    background rows added) and the count of each surgery."""
    pairs, counts = [], {'fold': 0, 'pad': 0}
    for rows in table.values():
        for kind, names, path in rows:
            values = [params[n] for n in names]
            if kind == 'fold':
                pairs += zip((path + '/scale', path + '/bias'),
                             fold_checked(names, values))
                counts['fold'] += 1
            elif kind.startswith('pad_bg'):
                pairs.append((path, pad_background(values[0],
                                                   int(kind[-1]))))
                counts['pad'] += 1
            else:
                pairs.append((path, values[0]))
    return pairs, counts


def check_variances(params):
    """FrozenBN variances are >= 0: folding takes their square root."""
    for name, value in params.items():
        if name.endswith('.running_var') and (value < 0).any():
            raise ConversionError('tensor {} has negative values (min {:g}),'
                                  ' expected variances >= 0'.format(
                                      name, float(value.min())))


def fold_checked(names, values):
    """``fold_frozen_bn`` of the tensors ``names``, refusing a result that
    overflows float32 (a variance near 0 under a large weight)."""
    with numpy.errstate(over='ignore'):
        folded = fold_frozen_bn(*values)
    if not all(numpy.isfinite(v).all() for v in folded):
        raise ConversionError('folding FrozenBN {} gives infinite values'
                              .format(names[0].rsplit('.', 1)[0]))
    return folded


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
    """The checkpoint's tensors, each a named array of numbers (dtypes as
    stored: cast once the names and shapes are checked)."""
    for name, value in state.items():
        check_array(name, value, 'tensor')
    return dict(state)
