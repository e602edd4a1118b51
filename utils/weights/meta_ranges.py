"""The range of every number a model file's metadata may set.

An npz's ``_meta`` (``model_io``) and an ONNX file's ``metadata_props``
(``utils/deploy/onnx_predict.py``) are checked for type elsewhere; here
for range, before anything is built from them: hand-edited files asked
for 3 to 160 GB (``n_fg_class``, ``min_size``, ``mask_roi_size``), raised
``ZeroDivisionError`` (a stride or size of 0) or silently changed the
detections (strides, box weights, aspect ratios). Each field of
``models.presets.Preset`` that metadata may set has a range below: wide
enough for every Detectron and detectron2 configuration, narrow enough
that no field alone asks for more memory than the arrays of the file
(whose sizes ``npz_members`` bounds). Where the arrays also fix a number
(classes, widths), ``array_problem`` says when the two disagree.

No chainer here: the ONNX predictor imports this module.
"""
import math

from utils.arg_types import MAX_ROI_SIZE as MAX_ROI, MAX_SIDE

#: Most foreground classes (COCO 80, LVIS 1203, Objects365 365).
MAX_CLASSES = 10000
# MAX_SIDE (image sides, anchor sizes) and MAX_ROI (ROIAlign output side)
# are the flags' bounds, so a file never asks for more than a flag may.
MAX_TOP_N = 100000          # proposals kept (Detectron: 12000 at most)
MAX_STRIDE = 128            # feature strides (FPN: 4..64)
MAX_CHANNELS = 16384

_INT, _FLOAT = 'an integer', 'a number'

# field -> (kind, low, high, entries): entries None for a number, else the
# allowed tuple lengths ('any' for any length from 1 to 16).
PRESET_RANGES = {
    'min_size': (_INT, 1, MAX_SIDE, None),
    'max_size': (_INT, 1, MAX_SIDE, None),
    'pad_stride': (_INT, 1, MAX_STRIDE, None),
    'rpn_strides': (_INT, 1, MAX_STRIDE, 'any'),
    'aspect_ratios': (_FLOAT, 1. / 64, 64., 'any'),
    'rpn_pre_nms_top_n': (_INT, 1, MAX_TOP_N, (2,)),
    'rpn_post_nms_top_n': (_INT, 1, MAX_TOP_N, (2,)),
    'rpn_collect_top_n': (_INT, 1, MAX_TOP_N, (2,)),
    'rpn_nms_thresh': (_FLOAT, 0., 1., None),
    'rpn_min_size': (_FLOAT, 0., MAX_SIDE, None),
    'box_roi_size': (_INT, 1, MAX_ROI, None),
    'box_sampling_ratio': (_INT, 0, 16, None),
    'mask_roi_size': (_INT, 1, MAX_ROI, None),
    'mask_sampling_ratio': (_INT, 0, 16, None),
    'mask_resolution': (_INT, 1, 2 * MAX_ROI, None),
    'bbox_reg_weights': (_FLOAT, 1e-3, 1e3, (4,)),
    'mask_thresh': (_FLOAT, 0., 1., None),
    'width': (_INT, 1, 1024, None),
    'blocks': (_INT, 1, 64, (4,)),
    'fpn_channels': (_INT, 1, MAX_CHANNELS, None),
    'fc_channels': (_INT, 1, MAX_CHANNELS, None),
    'mask_channels': (_INT, 1, MAX_CHANNELS, None),
    'rpn_batch_size': (_INT, 1, 10 ** 6, None),
    'rpn_fg_fraction': (_FLOAT, 0., 1., None),
    'rpn_positive_iou': (_FLOAT, 0., 1., None),
    'rpn_negative_iou': (_FLOAT, 0., 1., None),
    'rpn_straddle': (_FLOAT, -1., MAX_SIDE, None),
    'roi_batch_size': (_INT, 1, 10 ** 6, None),
    'roi_fg_fraction': (_FLOAT, 0., 1., None),
    'roi_fg_iou': (_FLOAT, 0., 1., None),
    'roi_bg_iou': (_FLOAT, 0., 1., (2,)),
    'mask_loss_weight': (_FLOAT, 0., 1000., None),
}


def number_problem(value, kind, low, high):
    """Why ``value`` is not ``kind`` in ``[low, high]``, or None."""
    ok_type = (type(value) is int if kind == _INT else
               isinstance(value, (int, float)) and
               not isinstance(value, bool))
    if not ok_type or not math.isfinite(value) or not low <= value <= high:
        return 'expected {} in [{}, {}]'.format(kind, low, high)
    return None


def field_problem(key, value):
    """Why preset field ``key`` may not be ``value`` (a JSON value, lists
    as tuples or lists), or None; fields without a range pass."""
    if key == 'rpn_sizes':  # one tuple of anchor sizes per level
        if not (_is_seq(value) and 1 <= len(value) <= 16 and
                all(_is_seq(v) and 1 <= len(v) <= 16 for v in value)):
            return 'expected 1 to 16 levels of 1 to 16 anchor sizes'
        return next(filter(None, (number_problem(v, _FLOAT, 1, MAX_SIDE)
                                  for level in value for v in level)), None)
    if key not in PRESET_RANGES:
        return None
    kind, low, high, entries = PRESET_RANGES[key]
    if key == 'rpn_collect_top_n' and value is None:
        return None
    if entries is None:
        return number_problem(value, kind, low, high)
    lengths = range(1, 17) if entries == 'any' else entries
    if not (_is_seq(value) and len(value) in lengths):
        return 'expected {} entries'.format(
            '1 to 16' if entries == 'any' else entries[0])
    return next(filter(None, (number_problem(v, kind, low, high)
                              for v in value)), None)


def _is_seq(value):
    return isinstance(value, (list, tuple))


#: The strides of the RPN levels, fixed by each architecture's network
#: (C4: res4; the FPNs: P2..P6); other strides would place the anchors
#: wrongly without an error.
RPN_STRIDES = {'c4': (16,), 'fpn': (4, 8, 16, 32, 64)}


def levels_problem(rpn_strides, rpn_sizes, arch):
    """The pyramid levels the strides and anchor sizes describe must be
    the architecture's: C4's one at stride 16, the FPNs' five."""
    strides = RPN_STRIDES['c4' if arch == 'c4' else 'fpn']
    if tuple(rpn_strides) != strides or len(rpn_sizes) != len(strides):
        return ('{} has RPN strides {}; the metadata gives strides {} and '
                '{} anchor-size level(s)'.format(
                    arch, list(strides), list(rpn_strides), len(rpn_sizes)))
    return None


# (array path, axis, what fixes it) of the arrays whose shapes fix a
# number of the preset; ``expected(preset)`` gives that number.
ARRAY_FIELDS = (
    ('box_head/predictor/cls_score/W', 0, 'n_fg_class + 1',
     lambda p: p.n_fg_class + 1),
    ('box_head/fc6/W', 0, 'fc_channels', lambda p: p.fc_channels),
    ('box_head/fc6/W', 1, 'fpn_channels * box_roi_size ** 2',
     lambda p: p.fpn_channels * p.box_roi_size ** 2),
    ('extractor/inner/0/W', 0, 'fpn_channels', lambda p: p.fpn_channels),
    ('mask_head/convs/0/W', 0, 'mask_channels', lambda p: p.mask_channels),
    ('extractor/body/conv1/conv/W', 0, 'width',  # ResNet bodies only
     lambda p: None if p.arch == 'mobilenetv1-fpn' else p.width),
)


def array_problem(preset, shapes):
    """Why the arrays the file declares (``{path: shape}``) disagree with
    the numbers ``preset`` (``models.presets.Preset``) would build, or
    None: checked before the model is built, so that metadata cannot ask
    for a model much larger than its file."""
    for name, axis, what, expected in ARRAY_FIELDS:
        shape = shapes.get(name)
        if shape is None or len(shape) <= axis or expected(preset) is None:
            continue
        if shape[axis] != expected(preset):
            return ('its metadata gives {} = {}, but its array {} has {} '
                    '(shape {})'.format(what, expected(preset), name,
                                        shape[axis], tuple(shape)))
    return None
