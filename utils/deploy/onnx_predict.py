"""Mask R-CNN from an exported ``.onnx`` file, with onnxruntime, NumPy and
OpenCV only (no chainer).

The network runs in onnxruntime (``utils/deploy/onnx_export.py`` describes
the graph); everything between its parts is the project's own NumPy code,
the same functions the Chainer model calls (``utils/ops``): input
preparation, proposals (decode, clip, min size, per-level top-k, NMS with
Detectron's ``>=`` and "+1"), FPN level assignment, per-class NMS and the
detection cap, mask pasting. So both backends give the same detections::

    from utils.deploy.onnx_predict import OnnxMaskRCNN
    model = OnnxMaskRCNN('model.onnx', thresholds='visualize')
    bboxes, labels, scores, masks = model.predict([img])  # RGB CHW 0-255
"""
import json
import os

import numpy

from models.anchors import shifted_anchors
from models.conventions import Conventions
from utils.deploy.onnx_checks import (OnnxModelError,  # noqa: F401
                                      check_external_data, check_graph,
                                      check_runtime_types)
from utils.ops.detections import (box_detections, class_mask_probs,
                                  mask_rois, no_detections, sigmoid,
                                  thresholds_of)
from utils.ops.fpn_levels import group_by_level
from utils.ops.image import network_input
from utils.ops.masks import paste_by_rule
from utils.ops.proposals import ProposalGenerator
from utils.weights.meta_ranges import (
    MAX_SIDE, RPN_STRIDES, field_problem, number_problem)

#: The graph contract this reader understands (``onnx_export.FORMAT``).
FORMAT = 1
#: Side of the blank image fed to the backbone while a head runs: enough
#: for every stride (C4 16, FPN 64 for P6), a few milliseconds of work.
IDLE_SIDE = 64


def open_session(path, threads=None):
    """An onnxruntime CPU session of ``path``; any problem is one
    ``OnnxModelError`` naming the file."""
    try:
        import onnxruntime  # optional dependency: bash setup.sh --onnx
    except ImportError:
        raise OnnxModelError('the onnxruntime backend needs the onnxruntime '
                             'package (bash setup.sh --onnx)') from None
    if not os.path.isfile(path):
        raise OnnxModelError('ONNX model file not found: {}'.format(path))
    check_external_data(path)  # before onnxruntime reads any of it
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only, not graph warnings
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
    except Exception as e:  # onnxruntime's InvalidProtobuf, Fail, ...
        why = str(e).strip().splitlines()
        raise OnnxModelError('{} is not a readable ONNX model ({})'.format(
            path, why[0] if why else type(e).__name__)) from None


def read_props(session, path):
    """(meta, runtime) JSON dicts of the model's ``metadata_props``."""
    props = session.get_modelmeta().custom_metadata_map
    try:
        meta, runtime = (json.loads(props[k]) for k in ('meta', 'runtime'))
    except (KeyError, ValueError, RecursionError):
        raise OnnxModelError('{} has no Mask R-CNN metadata; expected a '
                             'file written by utils/export_onnx.py'.format(
                                 path)) from None
    if not isinstance(runtime, dict) or runtime.get('format') != FORMAT:
        raise OnnxModelError('{} has runtime format {!r}, expected {}'
                             .format(path, isinstance(runtime, dict) and
                                     runtime.get('format'), FORMAT))
    check_runtime_types(runtime, path)
    return meta, runtime


# runtime key -> the preset field whose range it has.
_RUNTIME_FIELDS = {'min_size': 'min_size', 'max_size': 'max_size',
                   'pad_stride': 'pad_stride', 'mask_thresh': 'mask_thresh',
                   'bbox_reg_weights': 'bbox_reg_weights'}
_PROPOSAL_FIELDS = {'pre_nms_top_n': 'rpn_pre_nms_top_n',
                    'post_nms_top_n': 'rpn_post_nms_top_n',
                    'collect_top_n': 'rpn_collect_top_n',
                    'nms_thresh': 'rpn_nms_thresh', 'min_size': 'rpn_min_size'}


def runtime_problem(rt):
    """What is out of range in the runtime metadata (the ranges of the npz
    metadata, ``utils.weights.meta_ranges``), or None."""
    proposals = rt.get('proposals')
    if not isinstance(proposals, dict):
        return "runtime metadata 'proposals' is not an object"
    checks = [(k, rt.get(k), f) for k, f in _RUNTIME_FIELDS.items()] + [
        ('proposals.' + k, proposals.get(k), f)
        for k, f in _PROPOSAL_FIELDS.items()]
    for key, value, field in checks:
        problem = field_problem(field, _tuple(value))
        if problem:
            return 'runtime metadata {!r} is {!r}, {}'.format(key, value,
                                                            problem)
    strides = _tuple(rt.get('rpn_strides'))
    if strides not in RPN_STRIDES.values():
        return ('runtime metadata \'rpn_strides\' is {!r}, expected one of '
                '{}'.format(rt.get('rpn_strides'),
                            [list(v) for v in RPN_STRIDES.values()]))
    anchors = rt.get('cell_anchors')
    if not (isinstance(anchors, list) and len(anchors) == len(strides) and
            all(_anchors_ok(a) for a in anchors)):
        return ('runtime metadata \'cell_anchors\' is not one list of 1 to '
                '256 boxes of 4 numbers within +-{} per level'.format(
                    MAX_SIDE))
    k_min = rt.get('k_min')
    if number_problem(k_min, 'an integer', 0, 8):
        return "runtime metadata 'k_min' is {!r}, {}".format(
            k_min, number_problem(k_min, 'an integer', 0, 8))
    return None


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


def _anchors_ok(boxes):
    return (isinstance(boxes, list) and 1 <= len(boxes) <= 256 and all(
        isinstance(b, list) and len(b) == 4 and not any(
            number_problem(v, 'a number', -MAX_SIDE, MAX_SIDE) for v in b)
        for b in boxes))


def graph_problem(session, meta, rt):
    """The graph's class count (``cls_score``'s second axis) must be the
    metadata's ``n_fg_class`` + 1 (default 80, COCO's), or the names and
    ids of another model would label the detections; and each RPN level
    scores as many anchors as ``cell_anchors`` has (checked)."""
    shapes = {o.name: o.shape for o in session.get_outputs()}
    for j, boxes in enumerate(rt['cell_anchors']):
        shape = shapes.get('rpn_logits_{}'.format(j)) or [None]
        if isinstance(shape[-1], int) and shape[-1] != len(boxes):
            return ('its graph scores {} anchors at RPN level {}, its '
                    'runtime metadata has {}'.format(shape[-1], j,
                                                    len(boxes)))
    n_fg = meta.get('n_fg_class', 80) if isinstance(meta, dict) else 80
    if type(n_fg) is not int:
        return None                 # check_meta refuses it
    for out in session.get_outputs():
        if out.name != 'cls_score' or len(out.shape) != 2:
            continue
        n_class = out.shape[1]
        if isinstance(n_class, int) and n_class != n_fg + 1:
            return ('its graph scores {} classes (background included), '
                    'its metadata n_fg_class is {}'.format(n_class, n_fg))
    return None


class OnnxMaskRCNN:
    """``models.mask_rcnn.MaskRCNN.predict`` on onnxruntime.

    Args:
        path (str): ``.onnx`` written by ``utils/export_onnx.py``.
        thresholds (str or dict): as ``MaskRCNN.use_thresholds``.
        threads (int or None): onnxruntime's threads (None: its default).

    Attributes:
        meta (dict): the npz metadata (classes, conventions, preset).
        conventions (models.conventions.Conventions).
    """

    def __init__(self, path, thresholds='evaluate', threads=None):
        self.path = path
        self.session = open_session(path, threads)
        self.meta, rt = read_props(self.session, path)
        problem = runtime_problem(rt) or graph_problem(self.session,
                                                       self.meta, rt)
        if problem:
            raise OnnxModelError('{}: {}'.format(path, problem))
        try:
            self.conventions = Conventions.from_dict(rt['conventions'])
            self.proposal_generator = ProposalGenerator(**rt['proposals'])
            self.cell_anchors = [numpy.array(a, numpy.float64)
                                 for a in rt['cell_anchors']]
            self.rpn_strides = tuple(rt['rpn_strides'])
            self.min_size, self.max_size = rt['min_size'], rt['max_size']
            self.pad_stride, self.k_min = rt['pad_stride'], rt['k_min']
            self.bbox_reg_weights = tuple(rt['bbox_reg_weights'])
            self.mask_thresh = rt['mask_thresh']
        except (KeyError, TypeError, ValueError) as e:
            raise OnnxModelError('{}: bad runtime metadata ({})'.format(
                path, e)) from None
        self.n_levels = sum(i.name.startswith('features_')
                            for i in self.session.get_inputs())
        check_graph(self.session, path, len(self.rpn_strides), self.n_levels)
        self._idle = self._idle_feeds()
        self.use_thresholds(thresholds)

    def use_thresholds(self, thresholds):
        """Set ``score_thresh``, ``nms_thresh`` and ``limit``
        (``utils.ops.detections.thresholds_of``)."""
        self.score_thresh, self.nms_thresh, self.limit = thresholds_of(
            thresholds)

    def _idle_feeds(self):
        """Inputs of the parts not being run: minimal, valid, cheap."""
        feeds = {}
        for i in self.session.get_inputs():
            if i.name == 'image':
                shape = (1, 3, IDLE_SIDE, IDLE_SIDE)
            elif i.name.startswith('features_'):
                shape = (1, i.shape[1], 1, 1)
            else:
                shape = (0, 4)
            feeds[i.name] = numpy.zeros(shape, numpy.float32)
        return feeds

    def _run(self, outputs, **feeds):
        try:
            return self.session.run(outputs, dict(self._idle, **feeds))
        except Exception as e:  # onnxruntime's Fail, InvalidArgument, ...
            why = str(e).strip().splitlines()
            raise OnnxModelError('{}: the graph fails to run ({})'.format(
                self.path, why[0][:200] if why else type(e).__name__)) \
                from None

    def predict(self, imgs):
        """Detect objects and their masks, as ``MaskRCNN.predict``.

        ========  ==========================  ==============================
        in/out    shape, dtype                meaning
        ========  ==========================  ==============================
        imgs      list of (3, H, W) float32   RGB, 0-255
        bboxes    list of (D, 4) float32      (x1, y1, x2, y2), orig. pixels
        labels    list of (D,) int32          1..K (0 is background)
        scores    list of (D,) float32        class probability
        masks     list of (D, H, W) bool      pasted at ``mask_thresh``
        ========  ==========================  ==============================
        """
        outs = [self._predict_one(img) for img in imgs]
        return tuple(list(o) for o in zip(*outs)) if outs else ([],) * 4

    def _predict_one(self, img):
        orig_size = img.shape[1:]
        c = self.conventions
        x, scale, size = network_input(
            img, self.min_size, self.max_size, self.pad_stride, c.resize,
            c.proposal_bounds, pixel_mean=c.pixel_mean,
            pixel_std=c.pixel_std, channel_order=c.channel_order)
        features, rois = self.propose(x, size, scale)
        if len(rois):
            cls_score, bbox_pred = self.run_head(
                'box', features, rois, ['cls_score', 'bbox_pred'])
            bbox, label, score = box_detections(
                rois, cls_score, bbox_pred, scale, orig_size,
                self.bbox_reg_weights, self.score_thresh, self.nms_thresh,
                self.limit, c.box_offset)
        else:  # no proposal is no detection, as in MaskRCNN
            bbox, label, score = no_detections()
        probs = numpy.zeros((0, 1, 1), numpy.float32)
        if len(bbox):
            logits, = self.run_head('mask', features,
                                    mask_rois(bbox, scale), ['mask_logits'])
            probs = class_mask_probs(logits, label)
        mask = paste_by_rule(c.paste, probs, bbox, orig_size,
                             self.mask_thresh)
        return bbox, label, score, mask

    def propose(self, x, size, scale):
        """Head features {name: array} and the (R, 4) proposals of the
        (3, H, W) input ``x``."""
        return self.proposals_of(self.run_backbone(x), size, scale)

    def run_backbone(self, x):
        """{output name: array} of the backbone and RPN graph part."""
        names = [o.name for o in self.session.get_outputs()
                 if o.name.startswith(('rpn_', 'head_features_'))]
        return dict(zip(names, self._run(names, image=x[None])))

    def proposals_of(self, out, size, scale):
        """``propose`` given the outputs of ``run_backbone``."""
        n_rpn = len(self.rpn_strides)
        # (1, H, W, A) -> (H*W*A,); (1, H, W, 4A) -> (H*W*A, 4): the (H, W,
        # A) order of the anchors.
        logits = [out['rpn_logits_{}'.format(j)] for j in range(n_rpn)]
        scores = [sigmoid(v[0].reshape(-1)) for v in logits]
        deltas = [out['rpn_deltas_{}'.format(j)][0].reshape(-1, 4)
                  for j in range(n_rpn)]
        anchors = [shifted_anchors(a, s, *v.shape[1:3]) for a, s, v in
                   zip(self.cell_anchors, self.rpn_strides, logits)]
        rois = self.proposal_generator(scores, deltas, anchors, size,
                                       scale)[0]
        features = {'features_{}'.format(k): out['head_features_{}'.format(k)]
                    for k in range(self.n_levels)}
        return features, rois

    def run_head(self, kind, features, rois, outputs):
        """Run the box or mask head on ``rois`` grouped by FPN level (one
        group for C4); rows come back in the order of ``rois``."""
        idx, restore = group_by_level(rois, self.k_min, self.n_levels,
                                      self.conventions.box_offset)
        feeds = {'{}_rois_{}'.format(kind, k): rois[i]
                 for k, i in enumerate(idx)}
        return [v[restore] for v in self._run(outputs, **features, **feeds)]
