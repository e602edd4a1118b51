"""Training chain: runs the Mask R-CNN model on a batch, builds Detectron's
targets and combines the head losses, reporting each by name.

Batch layout (what ``utils.data.batching.TrainBatcher`` gives):

==========  =============================  ================================
name        shape                          meaning
==========  =============================  ================================
x           (N, 3, H, W) float32, device   BGR - means, resized, padded
scales      list of N float                resized / original
sizes       list of N (int, int)           resized (H_i, W_i) before padding
gt_bboxes   list of N (G_i, 4) float32     (x1, y1, x2, y2), resized pixels
gt_labels   list of N (G_i,) int32         1..K
gt_segms    list of N lists of G_i         polygons or (H, W) bool bitmaps,
                                           in *original* pixels (flipped)
==========  =============================  ================================

Targets are computed on the host (``utils/ops/targets.py``); proposals and
ROIs cross to the host once per image for sampling and come back.
"""
import dataclasses

import chainer
import chainer.functions as F
import numpy

from models.box_head import box_head_loss
from models.box_losses import BOX_LOSSES
from models.mask_head import mask_head_loss
from models.mask_rcnn import as_float32
from models.rpn import rpn_loss
from utils.ops.rng import serialize_random_state
from utils.ops.targets import anchor_targets, mask_targets, sample_rois


@dataclasses.dataclass(frozen=True)
class TrainTargets:
    """How targets are drawn and losses weighed; ``models.presets.
    train_targets`` fills it from the preset, which names each number's
    Detectron key.

    Attributes:
        mask_resolution (int): M of the (M, M) mask targets.
        rpn_batch_size (int): anchors sampled per image.
        rpn_fg_fraction (float): at most this share of them positive.
        rpn_positive_iou, rpn_negative_iou (float): anchor IoU above
            which (>=) it is positive, below which (<) negative.
        rpn_straddle (float): anchors crossing the border by more pixels
            are ignored.
        roi_batch_size (int): ROIs sampled per image.
        roi_fg_fraction (float): at most this share of them foreground.
        roi_fg_iou (float): foreground at IoU >= this.
        roi_bg_iou ((float, float)): background at IoU in [lo, hi).
        mask_loss_weight (float): weight of the mask loss.
    """
    mask_resolution: int
    rpn_batch_size: int
    rpn_fg_fraction: float
    rpn_positive_iou: float
    rpn_negative_iou: float
    rpn_straddle: float
    roi_batch_size: int
    roi_fg_fraction: float
    roi_fg_iou: float
    roi_bg_iou: tuple
    mask_loss_weight: float


class MaskRCNNTrainChain(chainer.Chain):
    """Losses of ``model`` on a batch.

    Args:
        model (models.mask_rcnn.MaskRCNN): the model to train.
        targets (TrainTargets): sampling and loss numbers.
        seed (int): seed of the sampling generator.
        box_loss (str): the box head's regression loss, one of
            ``BOX_LOSSES``: 'smooth_l1' (Detectron's) or an IoU-type loss
            of ``models/box_losses.py``. Training only: the model file does
            not keep it.
    """

    def __init__(self, model, targets, seed=0, box_loss='smooth_l1'):
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError('box_loss must be one of {}, got {!r}'.format(
                BOX_LOSSES, box_loss))
        with self.init_scope():
            self.model = model
        self.targets = targets
        self.box_loss = box_loss
        self.rng = numpy.random.RandomState(seed)

    def serialize(self, serializer):
        super().serialize(serializer)
        serialize_random_state(serializer['rng'], self.rng)

    def forward(self, x, scales, sizes, gt_bboxes, gt_labels, gt_segms):
        features = self.model.extractor(x)
        (rpn_loc_loss, rpn_cls_loss), samples = self._rpn_losses(
            features, scales, sizes, gt_bboxes, gt_labels)
        rois = _batch(samples, gt_bboxes)
        head_features = features[self.model.head_levels]
        roi_loc_loss, roi_cls_loss = self._box_losses(head_features, rois,
                                                      len(scales))
        mask_loss = self._mask_loss(head_features, rois, samples, scales,
                                    gt_segms)
        loss = (rpn_loc_loss + rpn_cls_loss + roi_loc_loss + roi_cls_loss +
                self.targets.mask_loss_weight * mask_loss)
        chainer.report({'loss': loss, 'rpn_loc': rpn_loc_loss,
                        'rpn_cls': rpn_cls_loss, 'roi_loc': roi_loc_loss,
                        'roi_cls': roi_cls_loss, 'mask': mask_loss}, self)
        return loss

    def _rpn_losses(self, features, scales, sizes, gt_bboxes, gt_labels):
        """RPN losses, and per image the ROIs sampled from its proposals
        (``SampledROIs`` of host arrays)."""
        model, t = self.model, self.targets
        box_offset = model.conventions.box_offset
        logits, deltas, host_anchors = model.rpn_outputs(features)
        # Built on the host for the targets, sent once to the device for
        # the proposals (not sent there and brought back).
        anchors = [model.xp.asarray(a) for a in host_anchors]
        anchors_host = numpy.concatenate(host_anchors)
        rpn_label, rpn_loc, samples = [], [], []
        for i in range(len(scales)):
            label, loc = anchor_targets(
                anchors_host, gt_bboxes[i], sizes[i], self.rng,
                n_sample=t.rpn_batch_size, fg_fraction=t.rpn_fg_fraction,
                pos_iou=t.rpn_positive_iou, neg_iou=t.rpn_negative_iou,
                straddle=t.rpn_straddle, box_offset=box_offset)
            rpn_label.append(label)
            rpn_loc.append(loc)
            rois = model.proposals_of(i, logits, deltas, anchors, sizes[i],
                                      scales[i], train=True)
            samples.append(sample_rois(
                _host(rois), gt_bboxes[i], gt_labels[i], self.rng,
                n_sample=t.roi_batch_size, fg_fraction=t.roi_fg_fraction,
                fg_iou=t.roi_fg_iou, bg_iou=t.roi_bg_iou,
                weights=model.bbox_reg_weights, box_offset=box_offset))
        xp = model.xp
        losses = rpn_loss(F.concat(logits, axis=1), F.concat(deltas, axis=1),
                          xp.asarray(numpy.stack(rpn_label)),
                          xp.asarray(numpy.stack(rpn_loc)))
        return losses, samples

    def _box_losses(self, head_features, rois, n):
        """(loc, cls) losses of the box head on the sampled ROIs."""
        model = self.model
        xp = model.xp
        cls_score, bbox_pred = (as_float32(v) for v in model.box_head(
            head_features, xp.asarray(rois.rois),
            xp.asarray(rois.roi_indices)))
        return box_head_loss(
            cls_score, bbox_pred, xp.asarray(rois.label),
            xp.asarray(rois.loc), xp.asarray(rois.roi_indices), n,
            box_loss=self.box_loss, rois=xp.asarray(rois.rois),
            gt_bbox=xp.asarray(rois.gt_bbox),
            weights=model.bbox_reg_weights,
            box_offset=model.conventions.box_offset)

    def _mask_loss(self, head_features, rois, samples, scales, gt_segms):
        """Mask loss on the foreground ROIs, against targets rasterised
        from each image's polygons in original pixels."""
        xp = self.model.xp
        fg = numpy.where(rois.label > 0)[0]
        M = self.targets.mask_resolution
        targets = numpy.concatenate(
            [mask_targets(gt_segms[i], s.rois[s.label > 0] / scales[i],
                          s.gt_index[s.label > 0], M)
             for i, s in enumerate(samples)])
        logits = as_float32(self.model.mask_head(
            head_features, xp.asarray(rois.rois[fg]),
            xp.asarray(rois.roi_indices[fg])))
        return mask_head_loss(logits, xp.asarray(rois.label[fg]),
                              xp.asarray(targets),
                              xp.asarray(rois.roi_indices[fg]), len(scales))


class _ROIBatch:
    """The batch's sampled ROIs, flat: ``rois`` (R', 4), ``roi_indices``
    (R',) int32, ``label`` (R',) int32, ``loc`` (R', 4) targets,
    ``gt_bbox`` (R', 4) float32 matched ground truth (zeros for
    background)."""

    def __init__(self, rois, roi_indices, label, loc, gt_bbox):
        self.rois, self.roi_indices = rois, roi_indices
        self.label, self.loc, self.gt_bbox = label, loc, gt_bbox


def _batch(samples, gt_bboxes):
    """Per-image ``SampledROIs`` and ground truth -> one flat
    ``_ROIBatch``."""
    return _ROIBatch(
        numpy.concatenate([s.rois for s in samples]),
        numpy.concatenate([numpy.full(len(s.rois), i, numpy.int32)
                           for i, s in enumerate(samples)]),
        numpy.concatenate([s.label for s in samples]),
        numpy.concatenate([s.loc for s in samples]),
        numpy.concatenate([_matched(g, s.gt_index)
                           for s, g in zip(samples, gt_bboxes)]))


def _matched(gt_bbox, gt_index):
    """(S, 4) float32 ``gt_bbox[gt_index]``, zeros where the index is -1
    (background)."""
    out = numpy.zeros((len(gt_index), 4), numpy.float32)
    fg = gt_index >= 0
    out[fg] = gt_bbox[gt_index[fg]]
    return out


def _host(a):
    # Sampling runs on the host: proposals and anchors cross here.
    return chainer.backend.CpuDevice().send(a)
