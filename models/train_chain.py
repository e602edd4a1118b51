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
import chainer
import chainer.functions as F
import numpy

from models.box_head import box_head_loss
from models.mask_head import mask_head_loss
from models.rpn import rpn_loss
from utils.ops.rng import serialize_random_state
from utils.ops.targets import anchor_targets, mask_targets, sample_rois


class MaskRCNNTrainChain(chainer.Chain):
    """Losses of ``model`` on a batch.

    Args:
        model (models.mask_rcnn.MaskRCNN): the model to train.
        mask_resolution (int): M of the mask targets (14 C4, 28 FPN).
        rpn_batch_size (int): anchors sampled per image (256).
        rpn_fg_fraction (float): 0.5.
        roi_batch_size (int): ROIs sampled per image (512).
        roi_fg_fraction (float): 0.25.
        mask_loss_weight (float): gamma, weight of the mask loss.
        seed (int): seed of the sampling generator.
    """

    def __init__(self, model, mask_resolution, rpn_batch_size=256,
                 rpn_fg_fraction=0.5, roi_batch_size=512,
                 roi_fg_fraction=0.25, mask_loss_weight=1., seed=0):
        super().__init__()
        with self.init_scope():
            self.model = model
        self.mask_resolution = mask_resolution
        self.rpn_batch_size = rpn_batch_size
        self.rpn_fg_fraction = rpn_fg_fraction
        self.roi_batch_size = roi_batch_size
        self.roi_fg_fraction = roi_fg_fraction
        self.mask_loss_weight = mask_loss_weight
        self.rng = numpy.random.RandomState(seed)

    def serialize(self, serializer):
        super().serialize(serializer)
        serialize_random_state(serializer['rng'], self.rng)

    def forward(self, x, scales, sizes, gt_bboxes, gt_labels, gt_segms):
        model = self.model
        n = len(scales)
        features = model.extractor(x)
        rpn_features = features[model.rpn_levels]
        logits, deltas = (_loss_dtype(o) for o in model.rpn(rpn_features))
        # Built on the host for the targets, sent once to the device for
        # the proposals (not sent there and brought back).
        host_anchors = model.host_anchors(rpn_features)
        anchors = [model.xp.asarray(a) for a in host_anchors]
        anchors_host = numpy.concatenate(host_anchors)

        rpn_label, rpn_loc, samples = [], [], []
        for i in range(n):
            label, loc = anchor_targets(
                anchors_host, gt_bboxes[i], sizes[i], self.rng,
                self.rpn_batch_size, self.rpn_fg_fraction,
                offset=model.conventions.box_offset)
            rpn_label.append(label)
            rpn_loc.append(loc)
            rois = model.proposal_generator(
                [F.sigmoid(l[i]).array for l in logits],
                [d.array[i] for d in deltas], anchors, sizes[i], scales[i],
                train=True)[0]
            samples.append(sample_rois(
                _host(rois), gt_bboxes[i], gt_labels[i], self.rng,
                self.roi_batch_size, self.roi_fg_fraction,
                weights=model.bbox_reg_weights,
                offset=model.conventions.box_offset))
        xp = model.xp
        rpn_loc_loss, rpn_cls_loss = rpn_loss(
            F.concat(logits, axis=1), F.concat(deltas, axis=1),
            xp.asarray(numpy.stack(rpn_label)),
            xp.asarray(numpy.stack(rpn_loc)))

        head_features = features[model.head_levels]
        rois = numpy.concatenate([s['rois'] for s in samples])
        roi_indices = numpy.concatenate(
            [numpy.full(len(s['rois']), i, numpy.int32)
             for i, s in enumerate(samples)])
        label = numpy.concatenate([s['label'] for s in samples])
        cls_score, bbox_pred = _loss_dtype(model.box_head(
            head_features, xp.asarray(rois), xp.asarray(roi_indices)))
        roi_loc_loss, roi_cls_loss = box_head_loss(
            cls_score, bbox_pred, xp.asarray(label),
            xp.asarray(numpy.concatenate([s['loc'] for s in samples])),
            xp.asarray(roi_indices), n)

        fg = numpy.where(label > 0)[0]
        targets = numpy.concatenate(
            [mask_targets(gt_segms[i], s['rois'][s['label'] > 0] / scales[i],
                          s['gt_index'][s['label'] > 0],
                          self.mask_resolution)
             for i, s in enumerate(samples)])
        mask_logits, = _loss_dtype([model.mask_head(
            head_features, xp.asarray(rois[fg]), xp.asarray(roi_indices[fg]))])
        mask_loss = mask_head_loss(mask_logits, xp.asarray(label[fg]),
                                   xp.asarray(targets),
                                   xp.asarray(roi_indices[fg]), n)

        loss = (rpn_loc_loss + rpn_cls_loss + roi_loc_loss + roi_cls_loss +
                self.mask_loss_weight * mask_loss)
        chainer.report({'loss': loss, 'rpn_loc': rpn_loc_loss,
                        'rpn_cls': rpn_cls_loss, 'roi_loc': roi_loc_loss,
                        'roi_cls': roi_cls_loss, 'mask': mask_loss}, self)
        return loss


def _host(a):
    # Sampling runs on the host: proposals and anchors cross here.
    return chainer.backend.CpuDevice().send(a)


def _loss_dtype(outputs):
    """Head outputs for the losses and proposals: float16 (mixed16
    training) is cast to float32, where sums of thousands of terms and
    exp/log stay accurate; other dtypes pass unchanged."""
    return [F.cast(o, numpy.float32) if o.dtype == numpy.float16 else o
            for o in outputs]
