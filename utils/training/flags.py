"""``train.py``'s command line: every flag with its help text and the
type checks that turn a bad value into argparse's one-line error. It only
parses; ``train.py`` turns the flags into the explicit values that the rest
of ``utils/training/`` takes.
"""
import argparse

from models.box_losses import BOX_LOSSES
from models.norm import NORMS
from models.presets import ARCHS
from utils.arg_types import (
    MAX_ITERATIONS, MAX_ROI_SIZE, MAX_WORKERS, bounded_float, bounded_int,
    floats, gpu_id, image_pixels, positive, probability, seed, side,
    workers)
from utils.data.color_jitter import ColorJitter
from utils.data.perspective import MAX_SHIFT
from utils.ops.image import MAX_IMAGE_PIXELS
from utils.training.distributed import COMMUNICATORS
from utils.weights.zoo import CATALOGUE


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='train.py',  # also when run in process (tests)
        description='Train Mask R-CNN (Detectron semantics) on COCO-format '
                    'data.')
    _model_flags(p.add_argument_group('model').add_argument)
    _data_flags(p.add_argument_group('data').add_argument)
    _devices_flags(p.add_argument_group('devices and batch').add_argument)
    _schedule_flags(p.add_argument_group('optimisation').add_argument)
    _augment_flags(p.add_argument_group(
        'augmentation (all off by default: Detectron\'s flip and scales '
        'only)').add_argument)
    _run_flags(p.add_argument_group(
        'snapshots, evaluation and output').add_argument)
    return p.parse_args(argv)


def _model_flags(a):
    a('--arch', choices=ARCHS, default=None,
      help='model preset; mobilenetv1-fpn: a MobileNetV1 body under the '
           'fpn heads, GroupNorm from scratch or frozen BatchNorm with '
           'a converted ImageNet backbone (default: fpn-tiny for synthetic '
           'data, else fpn)')
    a('--depth', type=int, choices=(50, 101), default=None,
      help="ResNet depth of c4 and fpn; not for mobilenetv1-fpn (default: "
           "--pretrained's, else 50)")
    a('--pretrained', default=None,
      help='npz to start from (a converted model or an ImageNet backbone '
           'from utils/detectron_parser.py or utils/mobilenet_parser.py); '
           'or a model-zoo name, downloaded and converted once into '
           '~/.cache/mask-rcnn-chainer/ ($MASK_RCNN_CHAINER_CACHE): {}; '
           'or "imagenet" for MSRA\'s ResNet caffemodel (mobilenetv1-fpn: '
           'shicai\'s mobilenet.caffemodel) in '
           '~/.chainer/dataset/pfnet/chainer/models/ (default: random '
           'initialisation)'.format(', '.join(CATALOGUE)))
    a('--freeze-at', type=int, default=None, choices=range(6),
      metavar='{0..5}',
      help="Detectron's TRAIN.FREEZE_AT: 1 freezes the stem, k also "
           "res2..resk (MobileNetV1: the blocks up to stride 2^k) "
           "(default: 2 with --pretrained, else 0)")
    a('--roi-size', type=_roi_size, default=None,
      help="box head ROIAlign output size, 1..32 (default: the preset's, C4 "
           '14, FPN 7); for c4 a multiple of 7 that the mask head pools at '
           'too, as both run res5 (stride roi-size // 7)')
    a('--scales', type=side, nargs='+', default=None,
      help="training shorter sides, 1..4096, picked at random per image "
           "(default: --min-size)")
    a('--min-size', type=side, default=None,
      help='shorter image side (1..4096) at test time, and in training '
           'without --scales (default: the largest --scales, else the '
           "preset's: 800, fpn-tiny 192)")
    a('--max-size', type=side, default=None,
      help='cap (1..4096) on the longer image side, training and test '
           "(default: the preset's: 1333, fpn-tiny 256)")
    a('--anchor-sizes', type=side, nargs='+', default=None,
      metavar='PX',
      help='anchor sizes in input pixels, 1..4096: 5 for the FPN archs, one '
           'per level P2-P6; any number for c4 (default: 32 64 128 256 512)')
    a('--auto-size', action='store_true',
      help='pick --min-size, --max-size and --anchor-sizes (those not '
           'given) from the training set: the images at their own size, '
           'enlarged when the smallest objects would be under 8 px, and '
           'anchors from the power of two at or below the smallest objects '
           '(10th percentile, 8 to 32 px) doubling per level; recorded in '
           'config.json and the model file (default: off)')
    a('--gamma', type=_loss_weight, default=None,
      help="weight of the mask loss, in [0, 1000] (default: the preset's, 1 "
           "as Detectron's MRCNN.WEIGHT_LOSS_MASK)")
    a('--norm', choices=NORMS + ('syncbn',), default=None,
      help="backbone normalisation (default: gn from scratch; with "
           "--pretrained the preset's or the weights', affine for c4 and "
           "fpn): affine is frozen "
           "(converted weights), gn and bn train; syncbn is bn with "
           "statistics over the batches of all ChainerMN processes (needs "
           "--communicator); bn and syncbn models are saved as bn")
    a('--box-loss', choices=BOX_LOSSES, default='smooth_l1',
      help="box head regression loss: smooth_l1, Detectron's, on the "
           'deltas; giou, diou or ciou: 1 - GIoU / DIoU / CIoU of the '
           'decoded boxes, weight 1 (training only; default: smooth_l1)')
    a('--dtype', choices=('float32', 'mixed16'), default='float32',
      help='float32 (default), or mixed16: float16 activations and weights '
           'with float32 master weights, dynamic loss scaling and float32 '
           'losses (for GPUs; NumPy has no fast float16)')


def _data_flags(a):
    a('--dataset', choices=('synthetic', 'coco2017', 'coco-json'),
      default='synthetic', help='data source (default: synthetic, a '
      'generated dataset of coloured shapes)')
    a('--coco-root', default='data/coco',
      help='COCO 2017 folder with train2017/, val2017/ and annotations/ '
           '(default: data/coco)')
    a('--train-json', help='COCO-format training annotations (coco-json)')
    a('--train-images', help='training image folder (coco-json)')
    a('--val-json', help='COCO-format validation annotations (coco-json)')
    a('--val-images', help='validation image folder (coco-json)')
    a('--synthetic-root', default='data/synthetic',
      help='where the synthetic dataset is generated (default: '
           'data/synthetic; regenerated when its size or seed changes)')
    a('--synthetic-images', type=_image_count, nargs=2,
      default=(240, 40), metavar=('TRAIN', 'VAL'),
      help='synthetic training and validation images, 1..100000 each '
           '(default: 240 40)')
    a('--drop-empty', action='store_true',
      help='drop training images without annotations')
    a('--loaders', type=_loaders, default=2,
      help='image-loading processes, 0..64, 0 to load in this one '
           '(default: 2)')
    a('--max-image-pixels', type=image_pixels, default=MAX_IMAGE_PIXELS,
      metavar='N',
      help='refuse an image whose header declares more pixels (width x '
           'height), before it is decoded (default: {}, Pillow\'s '
           'decompression-bomb limit)'.format(MAX_IMAGE_PIXELS))


def _devices_flags(a):
    a('--gpu', type=gpu_id, default=-1,
      help='GPU id, -1..1023 (default: -1, the CPU); with --communicator, '
           'the first GPU of each node (process r of a node uses GPU --gpu + '
           'r)')
    a('--gpus', type=_ids, default=None, metavar='0,1,...',
      help='several GPUs of one process; the batch is split across them')
    a('--communicator', choices=COMMUNICATORS, default=None,
      help='ChainerMN: one process per GPU or CPU, started with mpiexec '
           '-n N; the batch per step is N x --batchsize (default: one '
           'process)')
    a('--batchsize', '-b', type=workers, default=2,
      help='images per iteration, 1..1024, split across --gpus; per process '
           'with --communicator (default: 2)')
    a('--subdivisions', type=workers, default=1,
      help='1..1024: split each batch into this many sequential pieces '
           '(gradient accumulation; default: 1)')
    a('--threads', type=workers, default=None,
      help='BLAS and OpenCV threads, 1..1024, of each training process; '
           'loader processes use 1 (default: the cores this process may use, '
           'shared among the ChainerMN processes of its node)')


def _schedule_flags(a):
    a('--lr', type=_lr, default=None,
      help='base learning rate, in (0, 10] (default: 0.02 x batch / 16; 0.01 '
           'for synthetic data)')
    a('--iteration', '-i', type=positive, default=None,
      help='iterations, 1..1e9 (default: 90000 for COCO, 500 synthetic)')
    a('--lr-schedule', choices=('step', 'cosine'), default='step',
      help="step: Detectron's, x0.1 at each --lr-steps; cosine: from lr "
           'down to 0 at --iteration (both after --warmup; default: step)')
    a('--lr-steps', type=_iteration, nargs='*', default=None,
      help='iterations (0..1e9) where lr is multiplied by 0.1 with '
           '--lr-schedule step (default: 2/3 and 8/9 of --iteration)')
    a('--warmup', type=_iteration, default=None,
      help='linear warm-up iterations from lr/3, 0..1e9 (default: 500 '
           'with --pretrained, 1000 from scratch, 100 synthetic; at '
           'most --iteration / 5)')
    a('--clip-grad', type=_max_norm, default=None, metavar='MAXNORM',
      help='clip the gradients to this global L2 norm, 0..1e6, 0 for off '
           "(detectron2's SOLVER.CLIP_GRADIENTS, full_model; default: 20 "
           'from scratch, off with --pretrained)')
    a('--weight-decay', type=_weight_decay, default=1e-4,
      help='L2 weight decay, in [0, 1) (default: 1e-4)')
    a('--ema', type=_decay, default=None, metavar='DECAY',
      help='evaluate and save an exponential moving average of the '
           'weights, avg = DECAY * avg + (1 - DECAY) * weights after each '
           'step, from the starting weights; it forgets them in about 1 / '
           '(1 - DECAY) iterations, e.g. 0.999: 1000 (default: off, the '
           'last weights)')
    a('--seed', type=seed, default=0,
      help='random seed, 0..2^32-1 (default: 0)')


def _augment_flags(a):
    a('--color-jitter', type=_color_jitter, default=None,
      metavar='B,C,S,H',
      help='random brightness, contrast and saturation factors in '
           '[max(0, 1-x), 1+x] for finite x = B, C, S >= 0 and a hue turn in '
           '[-H, H] (H <= 0.5 of a turn), in random order, as torchvision '
           'ColorJitter; e.g. 0.4,0.4,0.4,0.1 (default: off)')
    a('--random-crop', type=_crop_range, default=None, metavar='LO,HI',
      help='cut each training image to a random window of LO..HI times its '
           'sides (0.05 <= LO <= HI <= 4) before the resize: below 1 a crop '
           '(zoom in), above 1 padding with the pixel mean (zoom out); e.g. '
           '0.5,1.5 (default: off)')
    a('--perspective', type=_corner_move, default=0., metavar='D',
      help='warp each training image, after --random-crop, by a random '
           'homography that moves each corner by up to D times the '
           "image's sides (0 <= D < 0.25), pixel-mean border; masks warped "
           'with it, boxes recomputed from them; e.g. 0.05 (default: 0, '
           'off)')
    a('--crop-min-visible', type=float, default=None, metavar='FRACTION',
      help='in [0, 1]: with --random-crop, --mosaic or --perspective, drop an '
           'instance when less than this fraction of its mask area stays '
           'in the window, quadrant or warped image (default: 0.25)')
    a('--mosaic', type=probability, default=0., metavar='P',
      help='with probability P put an image and the next three of the '
           'batch in the four quadrants of one, split at a random centre '
           '(default: 0, off)')
    a('--mixup', type=probability, default=0., metavar='P',
      help='with probability P blend an image with another of the batch '
           '(weight ~ Beta(32, 32), about 0.5) and train on the instances of '
           'both (default: 0, off)')


def _run_flags(a):
    a('--snapshot', type=positive, default=None,
      help='trainer snapshot interval in iterations, 1..1e9 (default: 5000, '
           'synthetic 250)')
    a('--validation', type=positive, default=None,
      help='COCO evaluation interval, 1..1e9 (default: 10000, synthetic 250)')
    a('--log-interval', type=positive, default=20,
      help='log every N iterations, 1..1e9 (default: 20)')
    a('--out', '-o', default='result',
      help='output folder (default: result)')
    a('--resume', default=None, help='trainer snapshot to resume from')
    a('--evaluate', action='store_true',
      help='evaluate --pretrained on the validation set and exit')


def _color_jitter(text):
    values = floats(text, (4,))
    try:
        ColorJitter(*values)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return values


def _crop_range(text):
    # HI = 4 pads an image to 16 times its pixels; 1000 asked for 281 GiB.
    values = floats(text, (2,))
    if not MIN_CROP <= values[0] <= values[1] <= MAX_CROP:
        raise argparse.ArgumentTypeError(
            'expected 0 < LO <= HI with LO >= {} and HI <= {}, got {!r}'
            .format(MIN_CROP, MAX_CROP, text))
    return values


MIN_CROP, MAX_CROP = 0.05, 4.
_roi_size = bounded_int('a ROI size', 1, MAX_ROI_SIZE)
_image_count = bounded_int('an image count', 1, 100000)
_loaders = bounded_int('a number of loader processes', 0, 64)
_iteration = bounded_int('an iteration', 0, MAX_ITERATIONS)
_loss_weight = bounded_float('a loss weight', 0, 1000)
_lr = bounded_float('a learning rate', 0, 10, closed=(False, True))
_weight_decay = bounded_float('a weight decay', 0, 1, closed=(True, False))
_decay = bounded_float('a decay', 0, 1, closed=(False, False))
_corner_move = bounded_float('a corner move', 0, MAX_SHIFT,
                             closed=(True, False), unit=' of the image sides')
_max_norm = bounded_float('a gradient norm', 0, 1e6)


def _ids(text):
    try:
        ids = [int(i) for i in text.split(',')]
    except ValueError:
        ids = [-1]
    if not all(0 <= i < MAX_WORKERS for i in ids):
        raise argparse.ArgumentTypeError(
            'expected GPU ids 0..{} like 0,1,2,3, got {!r}'.format(
                MAX_WORKERS - 1, text))
    return ids
