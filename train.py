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

This script holds every flag with its help text and the wiring between
them, which makes it longer than the project's ~300-line guide; the
machinery it wires is in ``utils/training/``.
"""
import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils import compat  # noqa: F401,E402  (before chainer)
import chainer  # noqa: E402
import numpy  # noqa: E402

from models.presets import (  # noqa: E402
    ARCHS, build_mask_rcnn, check_c4_roi_sizes, get_preset, preset_overrides)
from models.train_chain import MaskRCNNTrainChain  # noqa: E402
from utils.backend import DeviceError, require_gpus  # noqa: E402
from utils.data.batching import CarryReadErrors, TrainBatcher  # noqa: E402
from utils.data.coco_dataset import COCODataset  # noqa: E402
from utils.data.coco_eval import COCOEvaluator  # noqa: E402
from utils.data.coco_json import DatasetError  # noqa: E402
from utils.data.coco_names import COCO_CATEGORY_IDS  # noqa: E402
from utils.data.order_sampler import SeededShuffleOrderSampler  # noqa: E402
from utils.ops.image import ImageError  # noqa: E402
from utils.training.distributed import (  # noqa: E402
    COMMUNICATORS, abort_other_ranks, create_communicator, scatter_datasets)
from utils.training.errors import SetupError  # noqa: E402
from utils.training.pretrained import (  # noqa: E402
    PretrainedError, freeze, load_pretrained, pretrained_fields, resolve)
from utils.training.setup import (  # noqa: E402
    build_updater, check_layout, check_paths, coco2017_paths, prepare_out,
    synthetic_paths, write_demo)
from utils.training.snapshots import (  # noqa: E402
    EvaluationFailed, SnapshotError, TrainingDiverged, check_snapshot,
    latest_snapshot, load_snapshot)
from utils.training.trainer import (  # noqa: E402
    Schedule, extend_writers, make_trainer)
from utils.weights.model_io import (  # noqa: E402
    ModelFileError, load_model, save_model)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Train Mask R-CNN (Detectron semantics) on COCO-format '
                    'data.')
    _model_flags(p.add_argument_group('model').add_argument)
    _data_flags(p.add_argument_group('data').add_argument)
    _devices_flags(p.add_argument_group('devices and batch').add_argument)
    _schedule_flags(p.add_argument_group('optimisation').add_argument)
    _run_flags(p.add_argument_group('snapshots, evaluation and output').add_argument)
    return p.parse_args(argv)


def _model_flags(a):
    a('--arch', choices=ARCHS, default=None,
      help='model preset (default: fpn-tiny for synthetic data, else fpn)')
    a('--depth', type=int, choices=(50, 101), default=None,
      help="ResNet depth of c4 and fpn (default: --pretrained's, else 50)")
    a('--pretrained', default=None,
      help='npz to start from (a converted model or an ImageNet backbone '
           'from utils/detectron_parser.py), or "imagenet" for MSRA\'s '
           'caffemodel in ~/.chainer/dataset/pfnet/chainer/models/ '
           '(default: random initialisation)')
    a('--freeze-at', type=int, default=None, choices=range(6),
      metavar='{0..5}',
      help="Detectron's TRAIN.FREEZE_AT: 1 freezes the stem, k also "
           "res2..resk (default: 2 with --pretrained, else 0)")
    a('--roi-size', type=_positive, default=None,
      help="box head ROIAlign output size (default: the preset's, C4 14, "
           "FPN 7); for c4 a multiple of 7 that the mask head pools at too, "
           "as both run res5 (stride roi-size // 7)")
    a('--scales', type=_positive, nargs='+', default=None,
      help="training shorter sides, picked at random per image (default: "
           "the preset's)")
    a('--gamma', type=float, default=1.,
      help='weight of the mask loss (default: 1)')
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


def _schedule_flags(a):
    a('--lr', type=float, default=None,
      help='base learning rate (default: 0.02 x batch / 16; 0.01 for '
           'synthetic data)')
    a('--iteration', '-i', type=_positive, default=None,
      help='iterations (default: 90000 for COCO, 500 synthetic)')
    a('--lr-steps', type=int, nargs='*', default=None,
      help='iterations where lr is multiplied by 0.1 (default: 2/3 and '
           '8/9 of --iteration)')
    a('--warmup', type=int, default=None,
      help='linear warm-up iterations from lr/3 (default: 500 COCO, '
           '100 synthetic)')
    a('--weight-decay', type=float, default=1e-4,
      help='L2 weight decay (default: 1e-4)')
    a('--seed', type=int, default=0, help='random seed (default: 0)')


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


def _ids(text):
    try:
        return [int(i) for i in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('expected GPU ids like 0,1,2,3')


def resolve_defaults(args, n_processes=1):
    synthetic = args.dataset == 'synthetic'
    args.processes = n_processes
    args.effective_batchsize = args.batchsize * n_processes
    args.arch = args.arch or ('fpn-tiny' if synthetic else 'fpn')
    if args.iteration is None:
        args.iteration = 500 if synthetic else 90000
    if args.lr is None:
        # Detectron's linear scaling rule: 0.02 for 16 images. The light
        # synthetic-data model (GroupNorm, from scratch) diverged at 0.02
        # and learns well at 0.01 with batch 2.
        args.lr = 0.01 if synthetic else 0.02 * args.effective_batchsize / 16
        args.lr_rule = ('0.01 for the synthetic quickstart' if synthetic
                        else 'linear scaling: 0.02 x batch / 16')
    else:
        args.lr_rule = 'given by --lr'
    if args.lr_steps is None:
        args.lr_steps = [args.iteration * 2 // 3, args.iteration * 8 // 9]
    args.warmup = args.warmup if args.warmup is not None else (
        100 if synthetic else 500)
    if args.freeze_at is None:
        args.freeze_at = 2 if args.pretrained else 0
    if args.snapshot is None:
        args.snapshot = 250 if synthetic else 5000
    if args.validation is None:
        args.validation = 250 if synthetic else 10000
    return args


def starting_point(args, log=print):
    """(npz path or None, preset fields it fixes). Weights run with the
    semantics they were trained under: a converted detectron2 model keeps
    detectron2's conventions (models/conventions.py), which also decide how
    the data's boxes are read."""
    path = None
    if args.pretrained:
        path = resolve(args.pretrained, args.depth or 50, log=log)
    fields = pretrained_fields(path, args.arch) if path else {}
    if args.depth is not None:
        fields['depth'] = args.depth
    return path, fields


def data_paths(args):
    """{'train': (json, images), 'val': (json, images)} of --dataset,
    checked to exist (synthetic data is generated first)."""
    if args.dataset == 'synthetic':
        paths = synthetic_paths(args.synthetic_root, *args.synthetic_images,
                                args.seed)
    elif args.dataset == 'coco2017':
        paths = coco2017_paths(args.coco_root)
    else:
        paths = {'train': (args.train_json, args.train_images),
                 'val': (args.val_json, args.val_images)}
    return check_paths(paths)


def check_roi_size(arch, roi_size):
    if arch == 'c4' and roi_size:
        try:
            check_c4_roi_sizes(roi_size, roi_size)
        except ValueError:
            raise SetupError('--roi-size {} with --arch c4: expected a '
                             'multiple of 7 (the box and mask heads share '
                             'res5, which pools to 7 x 7)'.format(
                                 roi_size)) from None


def build_model(args, n_fg_class, path, fields, log=print):
    preset = get_preset(args.arch, n_fg_class=n_fg_class, **fields)
    args.depth = preset.depth
    if args.roi_size:
        preset = dataclasses.replace(preset, box_roi_size=args.roi_size)
        if args.arch == 'c4':  # one res5 for both heads: both poolers
            preset = dataclasses.replace(preset, mask_roi_size=args.roi_size)
    if args.scales:
        preset = dataclasses.replace(preset, min_size=max(args.scales))
    numpy.random.seed(args.seed)  # chainer's initialisers draw from it
    model = build_mask_rcnn(preset)
    if path:
        log(load_pretrained(model, path))
    return model, preset


def build_trainer(args, model, preset, train, val, val_json, meta,
                  comm=None):
    # Each process draws its own flips, scales, samples and data order.
    seed = args.seed + (comm.rank if comm is not None else 0)
    chain = MaskRCNNTrainChain(
        model, preset.mask_resolution, preset.rpn_batch_size,
        roi_batch_size=preset.roi_batch_size, mask_loss_weight=args.gamma,
        seed=seed)
    optimizer = chainer.optimizers.MomentumSGD(args.lr, 0.9)
    optimizer.setup(chain)
    frozen = freeze(model, args.freeze_at)
    if comm is None or comm.rank == 0:
        print('frozen: {}'.format(', '.join(frozen) or 'nothing'))
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(args.weight_decay))
    if args.dtype == 'mixed16':
        optimizer.use_fp32_update()   # float32 master copy of each weight
        optimizer.loss_scaling()      # dynamic: halves on overflow
    sampler = SeededShuffleOrderSampler(seed)
    train = CarryReadErrors(train)
    if args.loaders > 0:
        it = chainer.iterators.MultiprocessIterator(
            train, args.batchsize, n_processes=args.loaders,
            order_sampler=sampler)
    else:
        it = chainer.iterators.SerialIterator(train, args.batchsize,
                                              order_sampler=sampler)
    batcher = TrainBatcher(args.scales or (preset.min_size,),
                           preset.max_size, preset.pad_stride, True, seed,
                           model.normalization,
                           model.conventions.box_offset)
    updater = build_updater(chain, optimizer, it, batcher, args.subdivisions,
                            args.gpu, args.gpus, comm)
    schedule = Schedule(args.iteration, args.lr, tuple(args.lr_steps),
                        args.warmup, args.snapshot, args.validation,
                        args.log_interval)
    trainer = make_trainer(updater, schedule, args.out, comm, {
        'iterator': it, 'batcher': batcher, 'sampling': chain.rng})
    if comm is None or comm.rank == 0:
        extend_writers(trainer, schedule, model, COCOEvaluator(
            val, model, val_json, args.out, class_ids=meta['class_ids']))
    return trainer


def load_data(args, paths, box_offset):
    """(train, val, val json path, model metadata). The training set's
    categories are the model's classes; the validation set is read in
    them, matched by category id. ``box_offset`` is the model's: it
    decides how COCO boxes are read."""
    train = COCODataset(*paths['train'], keep_empty=not args.drop_empty,
                        box_offset=box_offset)
    if train.n_instances == 0:
        skipped = ', '.join('{} {}'.format(n, reason) for reason, n in
                            train.skipped.items() if n)
        raise SetupError('{} has no usable instance to train on ({})'.format(
            paths['train'][0], 'skipped: ' + skipped if skipped else
            'no annotations'))
    val = COCODataset(*paths['val'], box_offset=box_offset,
                      class_ids=train.class_ids)
    meta = {'arch': args.arch, 'depth': args.depth,
            'n_fg_class': len(train.class_ids),
            'class_ids': [int(c) for c in train.class_ids],
            'class_names': list(train.class_names)}
    return train, val, paths['val'][0], meta


def check_devices(args):
    """One line, before any work, when a GPU is asked for that CuPy or
    this machine cannot give."""
    if args.gpus:
        require_gpus(args.gpus, '--gpus {}'.format(
            ','.join(map(str, args.gpus))))
    elif args.gpu >= 0:
        require_gpus([args.gpu], '--gpu {}'.format(args.gpu))


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


def evaluate(args):
    """``--evaluate``: the npz alone decides the model and its classes
    (every array must load); the validation set is read in them."""
    if not args.pretrained:
        raise SetupError('--evaluate needs --pretrained MODEL.npz')
    path = resolve(args.pretrained, args.depth or 50)
    model, meta = load_model(path, args.arch)
    class_ids = meta.get('class_ids') or (
        list(COCO_CATEGORY_IDS) if meta.get('n_fg_class', 80) == 80 else None)
    if class_ids is None:
        raise SetupError('{} has no class_ids metadata: which dataset '
                         'categories its {} classes are is unknown'.format(
                             path, meta['n_fg_class']))
    val_json, val_images = data_paths(args)['val']
    val = COCODataset(val_json, val_images,
                      box_offset=model.conventions.box_offset,
                      class_ids=class_ids)
    prepare_out(args.out)
    if args.gpu >= 0:
        chainer.backends.cuda.get_device_from_id(args.gpu).use()
        model.to_gpu(args.gpu)
    COCOEvaluator(val, model, val_json, args.out,
                  class_ids=class_ids).evaluate()


def main(argv=None):
    args = parse_args(argv)
    if args.dtype == 'mixed16':
        chainer.global_config.dtype = chainer.mixed16
    check_layout(args.batchsize, args.subdivisions, args.gpu, args.gpus,
                 args.communicator, args.evaluate)
    comm = create_communicator(args.communicator) if args.communicator \
        else None
    check_devices(args)
    if args.evaluate:
        return evaluate(args)
    args = resolve_defaults(args, comm.size if comm else 1)
    check_roi_size(args.arch, args.roi_size)
    root = comm is None or comm.rank == 0
    log = print if root else (lambda line: None)
    if args.resume:
        check_snapshot(args.resume)
    if root:
        prepare_out(args.out)
    path, fields = starting_point(args, log)
    paths = data_paths(args) if root else None
    box_offset = get_preset(args.arch, **fields).conventions.box_offset
    if comm is None:
        train, val, val_json, meta = load_data(args, paths, box_offset)
    else:
        train, val, val_json, meta = scatter_datasets(
            comm, lambda: load_data(args, paths, box_offset), args.seed)
    model, preset = build_model(args, meta['n_fg_class'], path, fields, log)
    meta.update(depth=preset.depth,
                conventions=preset.conventions.to_dict(),
                preset=preset_overrides(preset))
    if root:
        write_config(args, preset)
    trainer = build_trainer(args, model, preset, train, val, val_json, meta,
                            comm)
    if args.resume:
        load_snapshot(args.resume, trainer, len(train))
    try:
        trainer.run(show_loop_exception_msg=False)
    except EvaluationFailed as e:
        kept = [latest_snapshot(args.out, e.iteration)]
        if root and e.iteration == args.iteration:
            kept.append(finish(model, meta, val, args.out))
        kept = ', '.join(k for k in kept if k) or 'no snapshot yet'
        raise EvaluationFailed(e.iteration, e.error, kept) from None
    if root:
        finish(model, meta, val, args.out)


def finish(model, meta, val, out):
    """Write ``model_final.npz`` and the demo image."""
    path = os.path.join(out, 'model_final.npz')
    save_model(path, model, meta)
    print('model: {}'.format(path))
    try:
        print('demo: {}'.format(write_demo(model, val, out,
                                           meta['class_names'])))
    except (ImageError, DatasetError) as e:  # the model is safe already
        print('demo image not written: {}'.format(e), file=sys.stderr)
    return path


if __name__ == '__main__':
    try:
        main()
    except (SetupError, DatasetError, ImageError, ModelFileError,
            PretrainedError, TrainingDiverged, SnapshotError, DeviceError,
            EvaluationFailed) as e:
        print('train.py: error: {}'.format(e), file=sys.stderr)
        abort_other_ranks()
        sys.exit(1)
