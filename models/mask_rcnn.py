"""The Mask R-CNN inference model: extractor -> RPN -> box head -> mask head.

Shape letters: R proposals, D detections, K foreground classes (labels
1..K, background 0), M mask resolution. Boxes are (x1, y1, x2, y2) with
Detectron's inclusive "+1" widths (docs/conventions.md).

``predict`` follows Detectron's ``core/test.py`` for one image at a time:

====================  ==========================================  ========
step                  what                                        where
====================  ==========================================  ========
prepare               BGR - means, resize, pad                    host
extractor             backbone (+ FPN)                            device
propose               RPN, top-N, decode, clip, NMS               device
detect_boxes          box head on proposals / scale, per-class    device
                      decode (10, 10, 5, 5), clip, NMS, cap
detect_masks          mask head on the final boxes * scale        device
paste                 Detectron's paste rule (or detectron2's)    host
====================  ==========================================  ========
"""
import chainer
import chainer.functions as F
import numpy

from functions.conv_columns import release_unless_kept
from models.anchors import shifted_anchors
from models.conventions import DETECTRON
from utils.ops.detections import (box_detections, mask_rois,
                                  no_detections, sigmoid, thresholds_of)
from utils.ops.image import network_input
from utils.ops.masks import paste_by_rule


class MaskRCNN(chainer.Chain):
    """Mask R-CNN for inference; see ``models/presets.py`` for builders.

    Args:
        extractor (chainer.Link): image -> list of feature maps.
        rpn (models.rpn.RPNHead): shared RPN head.
        box_head, mask_head (chainer.Link): ``(features, rois,
            roi_indices)`` -> outputs.
        proposal_generator (utils.ops.proposals.ProposalGenerator).
        cell_anchors (list of ndarray): (A, 4) anchors of each RPN level.
        rpn_strides (tuple of int): stride of each RPN level.
        rpn_levels (slice): features the RPN sees.
        head_levels (slice): features the heads pool from.
        min_size, max_size (int): test-time resize (800, 1333).
        pad_stride (int): pad the input to a multiple of this (FPN 32).
        bbox_reg_weights (tuple): head delta weights (10, 10, 5, 5).
        mask_thresh (float): binarisation threshold (strict ``>``).
        thresholds (str or dict): 'evaluate', 'visualize' (a key of
            ``utils.ops.detections.THRESHOLDS``) or a dict of
            ``score_thresh``, ``nms_thresh``, ``limit``.
        conventions (models.conventions.Conventions): Detectron's
            semantics (default) or detectron2's; the model's pieces were
            built with the same object.
    """

    def __init__(self, extractor, rpn, box_head, mask_head,
                 proposal_generator, cell_anchors, rpn_strides, rpn_levels,
                 head_levels, min_size=800, max_size=1333, pad_stride=1,
                 bbox_reg_weights=(10., 10., 5., 5.), mask_thresh=0.5,
                 thresholds='evaluate', conventions=DETECTRON):
        super().__init__()
        with self.init_scope():
            self.extractor = extractor
            self.rpn = rpn
            self.box_head = box_head
            self.mask_head = mask_head
        self.proposal_generator = proposal_generator
        self.cell_anchors = [numpy.asarray(a) for a in cell_anchors]
        self.rpn_strides = tuple(rpn_strides)
        self.rpn_levels = rpn_levels
        self.head_levels = head_levels
        self.min_size = min_size
        self.max_size = max_size
        self.pad_stride = pad_stride
        self.bbox_reg_weights = tuple(bbox_reg_weights)
        self.mask_thresh = mask_thresh
        self.conventions = conventions
        self.use_thresholds(thresholds)

    @property
    def normalization(self):
        """Keyword arguments of ``utils.ops.image.prepare`` for this model."""
        c = self.conventions
        return {'pixel_mean': c.pixel_mean, 'pixel_std': c.pixel_std,
                'channel_order': c.channel_order}

    def use_thresholds(self, thresholds):
        """Set ``score_thresh``, ``nms_thresh`` and ``limit`` from a key of
        ``utils.ops.detections.THRESHOLDS`` or a dict with those three
        keys."""
        self.score_thresh, self.nms_thresh, self.limit = thresholds_of(
            thresholds)

    def host_anchors(self, features):
        """Anchors of each RPN level, (H_l*W_l*A, 4) NumPy arrays."""
        return [shifted_anchors(a, s, *f.shape[2:])
                for a, s, f in zip(self.cell_anchors, self.rpn_strides,
                                   features)]

    def rpn_outputs(self, features):
        """The RPN on a batch's features.

        Returns:
            (list, list, list): per RPN level, logits (N, H_l*W_l*A) and
            deltas (N, H_l*W_l*A, 4) as float32 Variables (float16 is 1 px
            apart above 1024 and its sigmoid scores would tie), and the
            anchors (H_l*W_l*A, 4) as NumPy arrays.
        """
        rpn_features = features[self.rpn_levels]
        logits, deltas = self.rpn(rpn_features)
        return ([as_float32(v) for v in logits],
                [as_float32(v) for v in deltas],
                self.host_anchors(rpn_features))

    def proposals_of(self, i, logits, deltas, anchors, size, scale,
                     train=False):
        """Proposals of image ``i`` of ``rpn_outputs``: (R, 4) float32
        rois in its resized pixels, best first. ``anchors`` are on the
        model's device; ``train`` picks the proposal numbers."""
        return self.proposal_generator(
            [sigmoid(v.array[i]) for v in logits],
            [v.array[i] for v in deltas], anchors, size, scale,
            train=train)[0]

    def propose(self, features, size, scale):
        """RPN proposals of image 0 (inference): (R, 4) rois in resized
        pixels."""
        logits, deltas, anchors = self.rpn_outputs(features)
        anchors = [self.xp.asarray(a) for a in anchors]
        return self.proposals_of(0, logits, deltas, anchors, size, scale,
                                 chainer.config.train)

    def detect_boxes(self, features, rois, scale, orig_size):
        """Final detections of image 0 in original-image pixels.

        Returns:
            (array, array, array): bbox (D, 4), label (D,) in 1..K,
            score (D,).
        """
        roi_indices = self.xp.zeros(len(rois), numpy.int32)
        cls_score, bbox_pred = self.box_head(features[self.head_levels],
                                             rois, roi_indices)
        return box_detections(
            rois, as_float32(cls_score).array, as_float32(bbox_pred).array,
            scale, orig_size, self.bbox_reg_weights, self.score_thresh,
            self.nms_thresh, self.limit, self.conventions.box_offset)

    def detect_masks(self, features, bbox, label, scale):
        """(D, M, M) mask probabilities of each detection's class."""
        rois = mask_rois(bbox, scale)
        roi_indices = self.xp.zeros(len(rois), numpy.int32)
        # (D, M, M): only the channel of each detection's label.
        logits = as_float32(self.mask_head(features[self.head_levels],
                                           rois, roi_indices, label))
        return sigmoid(logits.array)

    def predict(self, imgs):
        """Detect objects and their masks.

        ========  ==========================  ==============================
        in/out    shape, dtype                meaning
        ========  ==========================  ==============================
        imgs      list of (3, H, W) float32   RGB, 0-255
        bboxes    list of (D, 4) float32      (x1, y1, x2, y2), orig. pixels
        labels    list of (D,) int32          1..K (0 is background)
        scores    list of (D,) float32        class probability
        masks     list of (D, H, W) bool      pasted at ``mask_thresh``
        ========  ==========================  ==============================

        Outputs are NumPy arrays whatever the model's device. An image
        without proposals or detections gives D = 0 (bbox (0, 4), mask
        (0, H, W)).

        The NumPy convolutions' scratch buffers
        (``functions.conv_columns.workspace``: about 0.64 GB after one
        R-50-FPN image) are released when the call ends, unless it runs
        inside ``functions.conv_columns.kept_workspaces()``, which a loop
        calling ``predict`` image by image wants (it saves their page
        faults on every call).

        Raises:
            utils.ops.image.ImageError: an image too thin to resize (its short
                side would scale to 0 pixels).
        """
        bboxes, labels, scores, masks = [], [], [], []
        try:
            for img in imgs:
                bbox, label, score, mask = self._predict_one(img)
                bboxes.append(bbox)
                labels.append(label)
                scores.append(score)
                masks.append(mask)
        finally:
            release_unless_kept()
        return bboxes, labels, scores, masks

    def _predict_one(self, img):
        orig_size = img.shape[1:]
        c = self.conventions
        x, scale, size = network_input(
            img, self.min_size, self.max_size, self.pad_stride, c.resize,
            c.proposal_bounds, **self.normalization)
        # The model's device, whichever is current (--gpu N, N != 0).
        with chainer.using_device(self.device), \
                chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            x = self.xp.asarray(x[None]).astype(self.dtype, copy=False)
            features = self.extractor(x)
            rois = self.propose(features, size, scale)
            if len(rois):
                bbox, label, score = self.detect_boxes(features, rois, scale,
                                                       orig_size)
            else:
                # The heads cannot take 0 rois (non-finite weights or an
                # RPN that keeps nothing): no proposal is no detection.
                bbox, label, score = no_detections(self.xp)
            if len(bbox):
                probs = self.detect_masks(features, bbox, label, scale)
            else:
                probs = self.xp.zeros((0, 1, 1), numpy.float32)
        # Model boundary: results go to the host for pasting and the user.
        bbox, label, score, probs = (chainer.backend.CpuDevice().send(a)
                                     for a in (bbox, label, score, probs))
        mask = paste_by_rule(c.paste, probs, bbox, orig_size,
                             self.mask_thresh)
        return bbox, label, score, mask

    @property
    def dtype(self):
        """The weights' dtype: float16 under ``--dtype mixed16``."""
        return next(self.params()).dtype


def as_float32(v):
    """A head output as float32 for boxes, scores and losses (a no-op
    unless the model runs float16 under ``--dtype mixed16``)."""
    return F.cast(v, numpy.float32) if v.dtype == numpy.float16 else v
