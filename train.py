"""Train Mask R-CNN on COCO or any COCO-format dataset.

    python train.py                      # quickstart: synthetic data, CPU
    python train.py --dataset coco2017 --coco-root data/coco --gpu 0 \\
        --batchsize 16 --subdivisions 8 --pretrained R-50.npz
    python train.py ... --gpus 0,1,2,3 --batchsize 16 --subdivisions 2
    mpiexec -n 8 python train.py ... --communicator pure_nccl --gpu 0 \\
        --batchsize 2                    # 8 processes x 2 = batch 16

With no arguments it generates a small synthetic COCO-format dataset, trains
the light 'fpn-tiny' model on the CPU, evaluates it with the COCO metric,
and writes loss/AP plots, the model and a demo image into --out.

This script holds every flag with its help text and turns them into
explicit values for the machinery in ``utils/training/`` (``build.py``:
model, data and trainer; ``results.py``: final model and ``--evaluate``).
"""
import argparse
import dataclasses
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils import compat  # noqa: F401,E402  (before chainer)
import chainer  # noqa: E402

from models.box_losses import BOX_LOSSES  # noqa: E402
from models.norm import NORMS  # noqa: E402
from models.presets import ARCHS, get_preset, preset_overrides  # noqa: E402
from utils.backend import DeviceError  # noqa: E402
from utils.data.color_jitter import ColorJitter  # noqa: E402
from utils.data.coco_json import DatasetError  # noqa: E402
from utils.ops.image import ImageError  # noqa: E402
from utils.threads import default_threads, set_threads  # noqa: E402
from utils.training.build import (  # noqa: E402
    build_augmentations, build_model, build_trainer, check_depth,
    check_roi_size, load_data, training_preset)
from utils.training.defaults import LR_RULES, default_settings  # noqa: E402
from utils.training.distributed import (  # noqa: E402
    COMMUNICATORS, abort_other_ranks, create_communicator, scatter_datasets,
    sync_batch_norm)
from utils.training.errors import SetupError  # noqa: E402
from utils.training.pretrained import (  # noqa: E402
    PretrainedError, starting_point)
from utils.training.results import (  # noqa: E402
    evaluate_model, load_evaluated_model, save_final)
from utils.training.setup import (  # noqa: E402
    check_devices, check_layout, dataset_paths, prepare_out)
from utils.training.snapshots import (  # noqa: E402
    EvaluationFailed, SnapshotError, TrainingDiverged, check_snapshot,
    latest_snapshot, load_snapshot)
from utils.training.trainer import Schedule  # noqa: E402
from utils.weights.model_io import ModelFileError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
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
           'from utils/detectron_parser.py or utils/mobilenet_parser.py), '
           'or "imagenet" for MSRA\'s ResNet caffemodel (mobilenetv1-fpn: '
           'shicai\'s mobilenet.caffemodel) in '
           '~/.chainer/dataset/pfnet/chainer/models/ (default: random '
           'initialisation)')
    a('--freeze-at', type=int, default=None, choices=range(6),
      metavar='{0..5}',
      help="Detectron's TRAIN.FREEZE_AT: 1 freezes the stem, k also "
           "res2..resk (MobileNetV1: the blocks up to stride 2^k) "
           "(default: 2 with --pretrained, else 0)")
    a('--roi-size', type=_positive, default=None,
      help="box head ROIAlign output size (default: the preset's, C4 14, "
           "FPN 7); for c4 a multiple of 7 that the mask head pools at too, "
           "as both run res5 (stride roi-size // 7)")
    a('--scales', type=_positive, nargs='+', default=None,
      help="training shorter sides, picked at random per image (default: "
           "--min-size)")
    a('--min-size', type=_positive, default=None,
      help="shorter image side at test time, and in training without "
           "--scales (default: the largest --scales, else the preset's: "
           "800, fpn-tiny 192)")
    a('--max-size', type=_positive, default=None,
      help="cap on the longer image side, training and test (default: the "
           "preset's: 1333, fpn-tiny 256)")
    a('--anchor-sizes', type=_positive, nargs='+', default=None,
      metavar='PX',
      help='anchor sizes in input pixels: 5 for the FPN archs, one per '
           'level P2-P6; any number for c4 (default: 32 64 128 256 512)')
    a('--gamma', type=float, default=None,
      help="weight of the mask loss (default: the preset's, 1 as "
           "Detectron's MRCNN.WEIGHT_LOSS_MASK)")
    a('--norm', choices=NORMS + ('syncbn',), default=None,
      help="backbone normalisation (default: the preset's, affine for c4 "
           "and fpn, gn for fpn-tiny and mobilenetv1-fpn): affine is frozen "
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
    a('--synthetic-images', type=_positive, nargs=2, default=(240, 40),
      metavar=('TRAIN', 'VAL'),
      help='synthetic training and validation images (default: 240 40)')
    a('--drop-empty', action='store_true',
      help='drop training images without annotations')
    a('--loaders', type=int, default=2,
      help='image-loading processes, 0 to load in this one (default: 2)')


def _devices_flags(a):
    a('--gpu', type=int, default=-1,
      help='GPU id (default: -1, the CPU); with --communicator, the first '
           'GPU of each node (process r of a node uses GPU --gpu + r)')
    a('--gpus', type=_ids, default=None, metavar='0,1,...',
      help='several GPUs of one process; the batch is split across them')
    a('--communicator', choices=COMMUNICATORS, default=None,
      help='ChainerMN: one process per GPU or CPU, started with mpiexec '
           '-n N; the batch per step is N x --batchsize (default: one '
           'process)')
    a('--batchsize', '-b', type=_positive, default=2,
      help='images per iteration, split across --gpus; per process with '
           '--communicator (default: 2)')
    a('--subdivisions', type=_positive, default=1,
      help='split each batch into this many sequential pieces (gradient '
           'accumulation; default: 1)')
    a('--threads', type=_positive, default=None,
      help='BLAS and OpenCV threads of each training process; loader '
           'processes use 1 (default: the cores this process may use, '
           'shared among the ChainerMN processes of its node)')


def _schedule_flags(a):
    a('--lr', type=float, default=None,
      help='base learning rate (default: 0.02 x batch / 16; 0.01 for '
           'synthetic data)')
    a('--iteration', '-i', type=_positive, default=None,
      help='iterations (default: 90000 for COCO, 500 synthetic)')
    a('--lr-schedule', choices=('step', 'cosine'), default='step',
      help="step: Detectron's, x0.1 at each --lr-steps; cosine: from lr "
           'down to 0 at --iteration (both after --warmup; default: step)')
    a('--lr-steps', type=int, nargs='*', default=None,
      help='iterations where lr is multiplied by 0.1 with --lr-schedule '
           'step (default: 2/3 and 8/9 of --iteration)')
    a('--warmup', type=int, default=None,
      help='linear warm-up iterations from lr/3 (default: 500 COCO, '
           '100 synthetic)')
    a('--weight-decay', type=float, default=1e-4,
      help='L2 weight decay (default: 1e-4)')
    a('--ema', type=_decay, default=None, metavar='DECAY',
      help='evaluate and save an exponential moving average of the '
           'weights, avg = DECAY * avg + (1 - DECAY) * weights after each '
           'step, from the starting weights; it forgets them in about 1 / '
           '(1 - DECAY) iterations, e.g. 0.999: 1000 (default: off, the '
           'last weights)')
    a('--seed', type=int, default=0, help='random seed (default: 0)')


def _augment_flags(a):
    a('--color-jitter', type=_color_jitter, default=None,
      metavar='B,C,S,H',
      help='random brightness, contrast and saturation factors in '
           '[max(0, 1-x), 1+x] for x = B, C, S >= 0 and a hue turn in '
           '[-H, H] (H <= 0.5 of a turn), in random order, as torchvision '
           'ColorJitter; e.g. 0.4,0.4,0.4,0.1 (default: off)')
    a('--random-crop', type=_crop_range, default=None, metavar='LO,HI',
      help='cut each training image to a random window of LO..HI times its '
           'sides (0 < LO <= HI) before the resize: below 1 a crop (zoom '
           'in), above 1 padding with the pixel mean (zoom out); e.g. '
           '0.5,1.5 (default: off)')
    a('--crop-min-visible', type=float, default=None, metavar='FRACTION',
      help='with --random-crop or --mosaic, drop an instance when less '
           'than this fraction of its mask area stays in the window or '
           'quadrant (default: 0.25)')
    a('--mosaic', type=_probability, default=0., metavar='P',
      help='with probability P put an image and the next three of the '
           'batch in the four quadrants of one, split at a random centre '
           '(default: 0, off)')
    a('--mixup', type=_probability, default=0., metavar='P',
      help='with probability P blend an image with another of the batch '
           '(weight ~ Beta(32, 32), about 0.5) and train on the instances of '
           'both (default: 0, off)')


def _run_flags(a):
    a('--snapshot', type=_positive, default=None,
      help='trainer snapshot interval in iterations (default: 5000, '
           'synthetic 250)')
    a('--validation', type=_positive, default=None,
      help='COCO evaluation interval (default: 10000, synthetic 250)')
    a('--log-interval', type=_positive, default=20,
      help='log every N iterations (default: 20)')
    a('--out', '-o', default='result',
      help='output folder (default: result)')
    a('--resume', default=None, help='trainer snapshot to resume from')
    a('--evaluate', action='store_true',
      help='evaluate --pretrained on the validation set and exit')


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            'expected a positive integer, got {!r}'.format(text))
    return value


def _decay(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            'expected a decay between 0 and 1 (both excluded), got '
            '{!r}'.format(text))
    return value


def _floats(text, n):
    try:
        values = tuple(float(v) for v in text.split(','))
    except ValueError:
        values = ()
    if len(values) not in n:
        raise argparse.ArgumentTypeError(
            'expected {} comma-separated numbers, got {!r}'.format(
                ' or '.join(str(k) for k in n), text))
    return values


def _color_jitter(text):
    values = _floats(text, (4,))
    try:
        ColorJitter(*values)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return values


def _crop_range(text):
    values = _floats(text, (2,))
    if not 0 < values[0] <= values[1]:
        raise argparse.ArgumentTypeError(
            'expected 0 < LO <= HI, got {!r}'.format(text))
    return values


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            'expected a probability in [0, 1], got {!r}'.format(text))
    return value


def _ids(text):
    try:
        return [int(i) for i in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('expected GPU ids like 0,1,2,3')


def resolve_defaults(args, n_processes=1):
    """Fill in the flags left unset (``utils/training/defaults.py``) and
    record the batch over all processes and the learning-rate rule."""
    synthetic = args.dataset == 'synthetic'
    args.processes = n_processes
    args.effective_batchsize = args.batchsize * n_processes
    args.lr_rule = 'given by --lr' if args.lr is not None else LR_RULES[
        'synthetic' if synthetic else 'coco']
    for key, value in default_settings(
            synthetic, args.effective_batchsize, args.iteration,
            bool(args.pretrained)).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def data_paths(args):
    """{'train': (json, images), 'val': (json, images)} of --dataset,
    checked to exist (synthetic data is generated first)."""
    return dataset_paths(
        args.dataset, args.coco_root, args.synthetic_root,
        args.synthetic_images, args.seed,
        (args.train_json, args.train_images), (args.val_json, args.val_images))


def write_config(args, preset):
    config = dict(vars(args), preset=str(preset))
    print('configuration:\n' + json.dumps(config, indent=1, sort_keys=True))
    with open(os.path.join(args.out, 'config.json'), 'w') as f:
        json.dump(config, f, indent=1, sort_keys=True)
    print('learning rate {} for batch {} ({})'.format(
        args.lr, args.effective_batchsize if args.processes == 1 else
        '{} = {} processes x {}'.format(args.effective_batchsize,
                                        args.processes, args.batchsize),
        args.lr_rule))
    if args.ema and args.ema ** args.iteration > 0.05:
        print('warning: with --ema {} the starting weights still weigh {:.2g} '
              'in the average after --iteration {} (DECAY ** iterations); '
              'a smaller DECAY forgets them sooner'.format(
                  args.ema, args.ema ** args.iteration, args.iteration))


def _check_crop_min_visible(random_crop, mosaic, fraction):
    if fraction is None:
        return
    if not random_crop and not mosaic:
        raise SetupError('--crop-min-visible applies to --random-crop and '
                         '--mosaic')
    if not 0 <= fraction <= 1:
        raise SetupError('--crop-min-visible: expected a fraction in [0, 1], '
                         'got {}'.format(fraction))


def main(argv=None):
    args = parse_args(argv)
    if args.dtype == 'mixed16':
        chainer.global_config.dtype = chainer.mixed16
    check_layout(args.batchsize, args.subdivisions, args.gpu, args.gpus,
                 args.communicator, args.evaluate)
    if args.lr_schedule == 'cosine' and args.lr_steps is not None:
        raise SetupError('--lr-steps applies to --lr-schedule step; cosine '
                         'decays over the whole --iteration')
    if args.norm == 'syncbn' and not args.communicator:
        raise SetupError('--norm syncbn shares batch statistics between '
                         'ChainerMN processes: start train.py with mpiexec '
                         'and --communicator (or use --norm bn)')
    _check_crop_min_visible(args.random_crop, args.mosaic,
                            args.crop_min_visible)
    comm = create_communicator(args.communicator) if args.communicator \
        else None
    check_devices(args.gpu, args.gpus)
    args.threads = args.threads or default_threads(
        comm.intra_size if comm else 1)
    set_threads(args.threads)
    if args.evaluate:  # the npz alone decides the model and its classes
        model, class_ids = load_evaluated_model(args.pretrained, args.arch,
                                                args.depth)
        return evaluate_model(model, class_ids, data_paths(args)['val'],
                              args.out, args.gpu)
    args = resolve_defaults(args, comm.size if comm else 1)
    check_roi_size(args.arch, args.roi_size)
    check_depth(args.arch, args.depth)
    run(args, comm)


def run(args, comm=None):
    """Train as the resolved flags say (one process of ``comm``, if any)
    and write the final model."""
    root = comm is None or comm.rank == 0
    log = print if root else (lambda line: None)
    if args.resume:
        check_snapshot(args.resume)
    if root:
        prepare_out(args.out)
    path, fields = starting_point(args.pretrained, args.arch, args.depth, log)
    paths = data_paths(args) if root else None
    box_offset = get_preset(args.arch, **fields).conventions.box_offset
    load = functools.partial(load_data, paths, box_offset,
                             not args.drop_empty)
    train, val, val_json, meta = load() if comm is None else \
        scatter_datasets(comm, load, args.seed)
    preset = training_preset(args.arch, meta['n_fg_class'], fields,
                             args.roi_size, args.scales, args.min_size,
                             args.max_size, args.anchor_sizes, args.norm)
    model = build_model(preset, args.seed, path, log, norm=sync_batch_norm(
        comm) if args.norm == 'syncbn' else None)
    if args.gamma is not None:
        preset = dataclasses.replace(preset, mask_loss_weight=args.gamma)
    args.depth = preset.depth
    meta.update(arch=args.arch, depth=preset.depth,
                conventions=preset.conventions.to_dict(),
                preset=preset_overrides(preset))
    if args.ema:  # the saved weights are the average
        meta['ema'] = args.ema
    if root:
        write_config(args, preset)
    trainer, result = build_trainer(
        model, preset, (train, val, val_json, meta['class_ids']),
        Schedule(args.iteration, args.lr, tuple(args.lr_steps), args.warmup,
                 args.snapshot, args.validation, args.log_interval,
                 args.lr_schedule),
        args.out, seed=args.seed,
        weight_decay=args.weight_decay, freeze_at=args.freeze_at,
        mixed16=args.dtype == 'mixed16', batchsize=args.batchsize,
        loaders=args.loaders, scales=args.scales,
        subdivisions=args.subdivisions, gpu=args.gpu, gpus=args.gpus,
        comm=comm, box_loss=args.box_loss, ema_decay=args.ema,
        augmentations=build_augmentations(
            model, args.color_jitter, args.random_crop,
            args.crop_min_visible, args.mosaic, args.mixup))
    if args.resume:
        load_snapshot(args.resume, trainer, len(train))
    try:
        trainer.run(show_loop_exception_msg=False)
    except EvaluationFailed as e:
        kept = [latest_snapshot(args.out, e.iteration)]
        if root and e.iteration == args.iteration:
            kept.append(save_final(result, meta, val, args.out))
        kept = ', '.join(k for k in kept if k) or 'no snapshot yet'
        raise EvaluationFailed(e.iteration, e.error, kept) from None
    if root:
        save_final(result, meta, val, args.out)


if __name__ == '__main__':
    try:
        main()
    except (SetupError, DatasetError, ImageError, ModelFileError,
            PretrainedError, TrainingDiverged, SnapshotError, DeviceError,
            EvaluationFailed) as e:
        print('train.py: error: {}'.format(e), file=sys.stderr)
        abort_other_ranks()
        sys.exit(1)
