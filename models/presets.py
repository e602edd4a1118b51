"""One preset per architecture, every number spelled out with the Detectron
config key it mirrors (``configs/12_2017_baselines/e2e_mask_rcnn_R-50-
{C4,FPN}_1x.yaml`` over ``detectron/core/config.py``). Numbers that differ
between training and testing are ``(train, test)`` pairs.

Only ``train.py``, ``demo.py`` and the converter read presets; models take
constructor arguments.
"""
import dataclasses

import chainer

from models.anchors import generate_anchors, generate_anchors_d2
from models.box_head import ResNetC5Head, TwoFCHead
from models.conventions import DETECTRON, Conventions
from models.fpn import FPN
from models.mask_head import FourConvMaskHead, ResNetC5MaskHead
from models.mask_rcnn import MaskRCNN
from models.mobilenet import MobileNetV1Body
from models.poolers import ROIPooler
from utils.ops.proposals import ProposalGenerator
from models.resnet import ResNetBody, res_stage
from models.rpn import RPNHead
from models.train_chain import TrainTargets

ARCHS = ('c4', 'fpn', 'fpn-tiny', 'mobilenetv1-fpn')


@dataclasses.dataclass(frozen=True)
class Preset:
    arch: str
    depth: int = 50                          # MODEL.CONV_BODY ResNet50
    n_fg_class: int = 80                     # MODEL.NUM_CLASSES - 1
    norm: str = 'affine'                     # AffineChannel (frozen BN)
    min_size: int = 800                      # TRAIN.SCALES / TEST.SCALE
    max_size: int = 1333                     # TRAIN/TEST.MAX_SIZE
    pad_stride: int = 1                      # FPN.COARSEST_STRIDE if FPN
    rpn_strides: tuple = (16,)               # RPN.STRIDE / 2**level
    rpn_sizes: tuple = ((32, 64, 128, 256, 512),)  # RPN.SIZES per level
    aspect_ratios: tuple = (0.5, 1., 2.)     # RPN.ASPECT_RATIOS
    rpn_pre_nms_top_n: tuple = (12000, 6000)  # TRAIN/TEST.RPN_PRE_NMS_TOP_N
    rpn_post_nms_top_n: tuple = (2000, 1000)  # TRAIN/TEST.RPN_POST_NMS_TOP_N
    rpn_collect_top_n: tuple = None          # FPN: RPN_POST_NMS_TOP_N overall
    rpn_nms_thresh: float = 0.7              # TRAIN/TEST.RPN_NMS_THRESH
    rpn_min_size: float = 0.                 # TRAIN/TEST.RPN_MIN_SIZE
    box_roi_size: int = 14                   # FAST_RCNN.ROI_XFORM_RESOLUTION
    box_sampling_ratio: int = 0    # FAST_RCNN.ROI_XFORM_SAMPLING_RATIO
    mask_roi_size: int = 14                  # MRCNN.ROI_XFORM_RESOLUTION
    mask_sampling_ratio: int = 0             # MRCNN.ROI_XFORM_SAMPLING_RATIO
    mask_resolution: int = 14                # MRCNN.RESOLUTION
    bbox_reg_weights: tuple = (10., 10., 5., 5.)  # MODEL.BBOX_REG_WEIGHTS
    mask_thresh: float = 0.5                 # MRCNN.THRESH_BINARIZE
    # Detectron's semantics, or detectron2's (models/conventions.py).
    conventions: Conventions = DETECTRON
    # Network widths; the defaults are Detectron's. Smaller values give the
    # light FPN of the quickstart ('fpn-tiny'), which is not Detectron's.
    width: int = 64                          # ResNet stem channels
    blocks: tuple = None                     # blocks of res2..res5
    fpn_channels: int = 256                  # FPN.DIM
    fc_channels: int = 1024                  # FAST_RCNN.MLP_HEAD_DIM
    mask_channels: int = 256                 # MRCNN.DIM_REDUCED
    # Training targets and loss (Detectron TRAIN.*, MRCNN.*); ignored at
    # test time. The test thresholds are
    # utils.ops.detections.THRESHOLDS['evaluate'].
    rpn_batch_size: int = 256                # TRAIN.RPN_BATCH_SIZE_PER_IM
    rpn_fg_fraction: float = 0.5             # TRAIN.RPN_FG_FRACTION
    rpn_positive_iou: float = 0.7            # TRAIN.RPN_POSITIVE_OVERLAP
    rpn_negative_iou: float = 0.3            # TRAIN.RPN_NEGATIVE_OVERLAP
    rpn_straddle: float = 0.                 # TRAIN.RPN_STRADDLE_THRESH
    roi_batch_size: int = 512                # TRAIN.BATCH_SIZE_PER_IM
    roi_fg_fraction: float = 0.25            # TRAIN.FG_FRACTION
    roi_fg_iou: float = 0.5                  # TRAIN.FG_THRESH
    roi_bg_iou: tuple = (0., 0.5)            # TRAIN.BG_THRESH_LO, _HI
    mask_loss_weight: float = 1.             # MRCNN.WEIGHT_LOSS_MASK


C4 = Preset(arch='c4')

FPN_PRESET = Preset(
    arch='fpn',
    pad_stride=32,                           # FPN.COARSEST_STRIDE
    rpn_strides=(4, 8, 16, 32, 64),          # levels 2..6
    rpn_sizes=((32,), (64,), (128,), (256,), (512,)),  # RPN_ANCHOR_START_SIZE
    rpn_pre_nms_top_n=(2000, 1000),          # per level
    rpn_post_nms_top_n=(2000, 1000),         # per level
    rpn_collect_top_n=(2000, 1000),          # after collecting all levels
    box_roi_size=7,
    box_sampling_ratio=2,
    mask_roi_size=14,
    mask_sampling_ratio=2,
    mask_resolution=28,
)

# Quickstart: a light FPN trained from scratch on CPU (GroupNorm, 1 block
# per stage, narrow layers, small images). Not a Detectron configuration.
FPN_TINY = dataclasses.replace(
    FPN_PRESET, arch='fpn', norm='gn', width=16, blocks=(1, 1, 1, 1),
    fpn_channels=64, fc_channels=256, mask_channels=64, min_size=192,
    max_size=256, rpn_pre_nms_top_n=(1000, 500),
    rpn_post_nms_top_n=(500, 300), rpn_collect_top_n=(500, 300),
    roi_batch_size=128)

# MobileNetV1 (width 1.0) body under the fpn preset's pyramid and heads:
# FPN.DIM 256 on C2..C5 at strides 4..32 (128, 256, 512, 1024 channels),
# P6 by max pool, RPN one anchor size per level, 2fc box head (1024),
# 4-conv mask head (256). GroupNorm, so that it trains from scratch; a
# converted ImageNet backbone (utils/mobilenet_parser.py) switches it to
# the frozen affine its folded BatchNorm needs (training/pretrained.py).
# Not a Detectron configuration; ``depth`` is unused.
MOBILENETV1_FPN = dataclasses.replace(
    FPN_PRESET, arch='mobilenetv1-fpn', norm='gn', fpn_channels=256,
    fc_channels=1024, mask_channels=256, min_size=800, max_size=1333)

PRESETS = {'c4': C4, 'fpn': FPN_PRESET, 'fpn-tiny': FPN_TINY,
           'mobilenetv1-fpn': MOBILENETV1_FPN}


def get_preset(arch, **overrides):
    """The preset of ``arch`` (one of ``ARCHS``) with some fields
    replaced."""
    if arch not in PRESETS:
        raise ValueError('arch must be one of {}, got {!r}'.format(ARCHS,
                                                                   arch))
    return dataclasses.replace(PRESETS[arch], **overrides)


def preset_overrides(p):
    """JSON-ready dict of the fields where ``p`` differs from its arch's
    preset, other than those the metadata keeps elsewhere (depth, classes,
    conventions)."""
    base = PRESETS[p.arch]
    skip = ('arch', 'depth', 'n_fg_class', 'conventions')
    return {f.name: getattr(p, f.name) for f in dataclasses.fields(p)
            if f.name not in skip and getattr(p, f.name) !=
            getattr(base, f.name)}


def train_targets(p):
    """The training-target numbers of preset ``p``."""
    return TrainTargets(
        p.mask_resolution, p.rpn_batch_size, p.rpn_fg_fraction,
        p.rpn_positive_iou, p.rpn_negative_iou, p.rpn_straddle,
        p.roi_batch_size, p.roi_fg_fraction, p.roi_fg_iou, p.roi_bg_iou,
        p.mask_loss_weight)


def _proposals(p):
    return ProposalGenerator(p.rpn_pre_nms_top_n, p.rpn_post_nms_top_n,
                             p.rpn_collect_top_n, p.rpn_nms_thresh,
                             p.rpn_min_size, p.conventions.box_offset)


def _anchors(p):
    if p.conventions.anchors == 'detectron2':
        return [generate_anchors_d2(sizes, p.aspect_ratios)
                for sizes in p.rpn_sizes]
    return [generate_anchors(s, sizes, p.aspect_ratios)
            for s, sizes in zip(p.rpn_strides, p.rpn_sizes)]


def _pooler(p, outsize, scales, sampling_ratio):
    return ROIPooler(outsize, scales, sampling_ratio,
                     aligned=p.conventions.aligned,
                     box_offset=p.conventions.box_offset)


class C4Extractor(chainer.Chain):
    """ResNet res2-res4; returns [res4] (stride 16)."""

    def __init__(self, body):
        super().__init__()
        with self.init_scope():
            self.body = body

    def forward(self, x):
        return self.body(x)[-1:]


def check_c4_roi_sizes(box_roi_size, mask_roi_size):
    """C4's box and mask heads run the same res5 (stride ``size // 7`` to
    7 x 7, which the mask head upsamples to its 14 x 14 resolution), so
    both pool at one size, a multiple of 7 (Detectron asserts the same)."""
    if box_roi_size != mask_roi_size or box_roi_size % 7:
        raise ValueError(
            'c4 pools boxes and masks for one shared res5: their ROIAlign '
            'sizes must be equal multiples of 7, got {} and {}'.format(
                box_roi_size, mask_roi_size))


def build_mask_rcnn(p, thresholds='evaluate', norm=None):
    """Build the inference model described by preset ``p``, with the
    test-time ``thresholds`` of ``MaskRCNN.use_thresholds``; ``norm``, a
    callable ``channels -> link``, replaces the layers of ``p.norm`` (a
    synchronised batch norm in training, ``models.norm.make_norm``)."""
    n_class = p.n_fg_class + 1
    norm = norm or p.norm
    bg = p.conventions.background_index
    n_anchors = len(p.aspect_ratios) * len(p.rpn_sizes[0])
    if p.arch == 'c4':
        check_c4_roi_sizes(p.box_roi_size, p.mask_roi_size)
        extractor = C4Extractor(ResNetBody(p.depth, 4, norm))
        rpn = RPNHead(1024, 1024, n_anchors)
        box_pooler = _pooler(p, p.box_roi_size, (1. / 16,),
                             p.box_sampling_ratio)
        mask_pooler = _pooler(p, p.mask_roi_size, (1. / 16,),
                              p.mask_sampling_ratio)
        # res5 on 14x14 features: stride int(14 / 7) = 2 gives 7x7.
        res5 = res_stage(p.depth, 5, p.box_roi_size // 7, norm)
        box_head = ResNetC5Head(res5, n_class, box_pooler, bg)
        mask_head = ResNetC5MaskHead(box_head, n_class, mask_pooler)
        rpn_levels = head_levels = slice(0, 1)
    elif p.arch in ('fpn', 'mobilenetv1-fpn'):
        body = MobileNetV1Body(norm) if p.arch == 'mobilenetv1-fpn' else \
            ResNetBody(p.depth, 5, norm, width=p.width, blocks=p.blocks)
        extractor = FPN(body, body.out_channels, p.fpn_channels)
        rpn = RPNHead(p.fpn_channels, p.fpn_channels, n_anchors)
        scales = FPN.scales[:4]
        box_pooler = _pooler(p, p.box_roi_size, scales, p.box_sampling_ratio)
        mask_pooler = _pooler(p, p.mask_roi_size, scales,
                              p.mask_sampling_ratio)
        box_head = TwoFCHead(p.fpn_channels * p.box_roi_size ** 2, n_class,
                             box_pooler, p.fc_channels, bg)
        mask_head = FourConvMaskHead(n_class, mask_pooler, p.mask_channels,
                                     in_channels=p.fpn_channels)
        rpn_levels, head_levels = slice(0, 5), slice(0, 4)
    else:
        raise ValueError('arch must be one of {}, got {!r}'.format(
            ARCHS, p.arch))
    return MaskRCNN(extractor, rpn, box_head, mask_head, _proposals(p),
                    _anchors(p), p.rpn_strides, rpn_levels, head_levels,
                    p.min_size, p.max_size, p.pad_stride, p.bbox_reg_weights,
                    p.mask_thresh, thresholds, p.conventions)
