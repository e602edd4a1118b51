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
from chainer.training import extensions  # noqa: E402

from models.presets import (  # noqa: E402
    ARCHS, build_mask_rcnn, get_preset, preset_overrides)
from models.train_chain import MaskRCNNTrainChain  # noqa: E402
from utils.batching import CarryReadErrors, TrainBatcher  # noqa: E402
from utils.distributed import COMMUNICATORS  # noqa: E402
from utils.extensions import NonFiniteLossGuard, WarmupStepLR  # noqa: E402
from utils.order_sampler import SeededShuffleOrderSampler  # noqa: E402
from utils.pretrained import (  # noqa: E402
    PretrainedError, freeze, load_pretrained, pretrained_fields, resolve)
from utils.training_setup import (  # noqa: E402
    SetupError, build_updater, dataset_paths, setup_communicator, write_demo)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Train Mask R-CNN (Detectron semantics) on COCO-format '
                    'data.', formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a('--arch', choices=ARCHS, default=None,
      help='model preset (default: fpn-tiny for synthetic data, else fpn)')
    a('--depth', type=int, choices=(50, 101), default=None,
      help="ResNet depth of c4 and fpn (default: --pretrained's, else 50)")
    a('--dataset', choices=('synthetic', 'coco2017', 'coco-json'),
      default='synthetic', help='data source')
    a('--coco-root', default='data/coco',
      help='COCO 2017 folder (train2017/, val2017/, annotations/)')
    a('--train-json', help='COCO-format training annotations (coco-json)')
    a('--train-images', help='training image folder (coco-json)')
    a('--val-json', help='COCO-format validation annotations (coco-json)')
    a('--val-images', help='validation image folder (coco-json)')
    a('--synthetic-root', default='data/synthetic',
      help='where the synthetic dataset is generated')
    a('--synthetic-images', type=int, nargs=2, default=(240, 40),
      metavar=('TRAIN', 'VAL'), help='synthetic dataset sizes')
    a('--gpu', type=int, default=-1,
      help='GPU id, -1 for CPU; with --communicator, the first GPU of '
           'each node (process r of a node uses GPU --gpu + r)')
    a('--gpus', type=_ids, default=None, metavar='0,1,...',
      help='several GPUs of one process; the batch is split across them')
    a('--communicator', choices=COMMUNICATORS, default=None,
      help='ChainerMN: one process per GPU or CPU, started with mpiexec '
           '-n N; the batch per step is N x --batchsize')
    a('--batchsize', '-b', type=int, default=2,
      help='images per iteration (split across --gpus; per process '
           'with --communicator)')
    a('--subdivisions', type=int, default=1,
      help='split each batch into this many sequential pieces '
           '(gradient accumulation)')
    a('--lr', type=float, default=None,
      help='base learning rate (default: 0.02 * batchsize / 16)')
    a('--iteration', '-i', type=int, default=None,
      help='iterations (default: 90000 for COCO, 500 synthetic)')
    a('--lr-steps', type=int, nargs='*', default=None,
      help='iterations where lr is multiplied by 0.1 (default: 2/3 and '
           '8/9 of --iteration)')
    a('--warmup', type=int, default=None,
      help='linear warm-up iterations from lr/3 (default: 500 COCO, '
           '100 synthetic)')
    a('--weight-decay', type=float, default=1e-4, help='L2 weight decay')
    a('--freeze-at', type=int, default=None, choices=range(6),
      metavar='{0..5}',
      help="Detectron's TRAIN.FREEZE_AT: 1 freezes the stem, k also "
           "res2..resk (default: 2 with --pretrained, else 0)")
    a('--pretrained', default=None,
      help='npz to start from (a converted model or an ImageNet backbone '
           'from utils/detectron_parser.py), or "imagenet" for MSRA\'s '
           'caffemodel in ~/.chainer/dataset/pfnet/chainer/models/')
    a('--gamma', type=float, default=1., help='weight of the mask loss')
    a('--roi-size', type=int, default=None,
      help="box head ROIAlign output size (default: the preset's, C4 14 "
           "with res5 stride roi-size // 7, FPN 7)")
    a('--scales', type=int, nargs='+', default=None,
      help='training shorter sides, picked at random per image')
    a('--drop-empty', action='store_true',
      help='drop training images without annotations')
    a('--snapshot', type=int, default=None,
      help='trainer snapshot interval in iterations (default: 5000, '
           'synthetic 250)')
    a('--validation', type=int, default=None,
      help='COCO evaluation interval (default: 10000, synthetic 250)')
    a('--log-interval', type=int, default=20, help='log every N iterations')
    a('--loaders', type=int, default=2, help='image-loading processes')
    a('--out', '-o', default='result', help='output folder')
    a('--seed', type=int, default=0, help='random seed')
    a('--dtype', choices=('float32', 'mixed16'), default='float32',
      help='mixed16: float16 activations and weights with float32 master '
           'weights, dynamic loss scaling and float32 losses (for GPUs; '
           'NumPy has no fast float16)')
    a('--resume', default=None, help='trainer snapshot to resume from')
    a('--evaluate', action='store_true',
      help='evaluate --pretrained on the validation set and exit')
    return p.parse_args(argv)


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
    args.iteration = args.iteration or (500 if synthetic else 90000)
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
    args.snapshot = args.snapshot or (250 if synthetic else 5000)
    args.validation = args.validation or (250 if synthetic else 10000)
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
    args.box_offset = get_preset(args.arch, **fields).conventions.box_offset
    return path, fields


def build_model(args, n_fg_class, path, fields, log=print):
    preset = get_preset(args.arch, n_fg_class=n_fg_class, **fields)
    args.depth = preset.depth
    if args.roi_size:
        preset = dataclasses.replace(preset, box_roi_size=args.roi_size)
    if args.scales:
        preset = dataclasses.replace(preset, min_size=max(args.scales))
    numpy.random.seed(args.seed)  # chainer's initialisers draw from it
    model = build_mask_rcnn(preset)
    if path:
        log(load_pretrained(model, path))
    return model, preset


def build_trainer(args, model, preset, train, val, val_json, comm=None):
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
    updater = build_updater(args, chain, optimizer, it, batcher, comm)
    trainer = chainer.training.Trainer(updater, (args.iteration,
                                                 'iteration'), args.out)
    trainer.extend(NonFiniteLossGuard())
    trainer.extend(WarmupStepLR(args.lr, args.lr_steps,
                                warmup_iters=args.warmup))
    keys = ['main/loss', 'main/rpn_loc', 'main/rpn_cls', 'main/roi_loc',
            'main/roi_cls', 'main/mask']
    if comm is not None:
        from utils.distributed import (RankStates, SerializableRandomState,
                                       average_observations)
        average_observations(trainer, comm, keys)
        trainer.extend(RankStates(comm, {
            'iterator': it, 'batcher': batcher,
            'sampling': SerializableRandomState(chain.rng)}),
            trigger=(args.snapshot, 'iteration'))
    if comm is None or comm.rank == 0:
        extend_writers(trainer, args, keys, model, val, val_json)
    return trainer


def extend_writers(trainer, args, keys, model, val, val_json):
    """Logs, plots, progress, snapshots and the COCO evaluation."""
    from utils.coco_eval import COCOEvaluator
    log = (args.log_interval, 'iteration')
    trainer.extend(extensions.LogReport(trigger=log))
    trainer.extend(extensions.observe_lr(), trigger=log)
    trainer.extend(extensions.PrintReport(
        ['iteration', 'lr'] + keys + ['validation/main/bbox/AP',
                                      'validation/main/segm/AP',
                                      'elapsed_time']), trigger=log)
    trainer.extend(extensions.PlotReport(keys, 'iteration', log,
                                         filename='loss.png'))
    trainer.extend(extensions.PlotReport(
        ['validation/main/bbox/AP', 'validation/main/segm/AP'], 'iteration',
        (args.validation, 'iteration'), filename='ap.png'))
    trainer.extend(extensions.ProgressBar(update_interval=10))
    trainer.extend(extensions.snapshot(
        filename='snapshot_iter_{.updater.iteration}'),
        trigger=(args.snapshot, 'iteration'))
    evaluator = COCOEvaluator(val, model, val_json, args.out)
    trainer.extend(evaluator, trigger=chainer.training.triggers
                   .ManualScheduleTrigger(
                       sorted(set(list(range(args.validation, args.iteration,
                                             args.validation)) +
                                  [args.iteration])), 'iteration'))


def load_data(args):
    """(train, val, val json path, model metadata)."""
    train, val, val_json = dataset_paths(args)
    meta = {'arch': args.arch, 'depth': args.depth,
            'n_fg_class': len(train.class_ids),
            'class_ids': [int(c) for c in train.class_ids],
            'class_names': list(train.class_names)}
    return train, val, val_json, meta


def main(argv=None):
    from utils.model_io import save_model
    args = parse_args(argv)
    if args.dtype == 'mixed16':
        chainer.global_config.dtype = chainer.mixed16
    comm = setup_communicator(args)
    args = resolve_defaults(args, comm.size if comm else 1)
    root = comm is None or comm.rank == 0
    if args.evaluate and not args.pretrained:
        raise SetupError('--evaluate needs --pretrained MODEL.npz')
    log = print if root else (lambda line: None)
    path, fields = starting_point(args, log)
    if comm is None:
        train, val, val_json, meta = load_data(args)
    else:
        from utils.distributed import scatter_datasets
        train, val, val_json, meta = scatter_datasets(
            comm, lambda: load_data(args), args.seed)
    model, preset = build_model(args, meta['n_fg_class'], path, fields, log)
    meta.update(depth=preset.depth,
                conventions=preset.conventions.to_dict(),
                preset=preset_overrides(preset))
    if root:
        os.makedirs(args.out, exist_ok=True)
        config = dict(vars(args), preset=str(preset))
        print('configuration:\n' + json.dumps(config, indent=1,
                                              sort_keys=True))
        with open(os.path.join(args.out, 'config.json'), 'w') as f:
            json.dump(config, f, indent=1, sort_keys=True)
        print('learning rate {} for batch {} ({})'.format(
            args.lr, args.effective_batchsize if args.processes == 1 else
            '{} = {} processes x {}'.format(args.effective_batchsize,
                                            args.processes, args.batchsize),
            args.lr_rule))
    if args.evaluate:
        from utils.coco_eval import COCOEvaluator
        if args.gpu >= 0:
            model.to_gpu(args.gpu)
        COCOEvaluator(val, model, val_json, args.out).evaluate()
        return
    trainer = build_trainer(args, model, preset, train, val, val_json, comm)
    if args.resume:
        try:
            chainer.serializers.load_npz(args.resume, trainer)
        except KeyError as e:
            raise SetupError('cannot resume from {}: {} is missing (was it '
                             'written with the same --communicator and '
                             'number of processes?)'.format(args.resume, e))
    trainer.run(show_loop_exception_msg=False)
    if root:
        path = os.path.join(args.out, 'model_final.npz')
        save_model(path, model, meta)
        print('model: {}'.format(path))
        print('demo: {}'.format(write_demo(model, val, args.out, meta)))


if __name__ == '__main__':
    from utils.coco_dataset import DatasetError
    from utils.extensions import TrainingDiverged
    from utils.image import ImageError
    from utils.model_io import ModelFileError
    try:
        main()
    except (SetupError, DatasetError, ImageError, ModelFileError,
            PretrainedError, TrainingDiverged) as e:
        from utils.distributed import abort_other_ranks
        print('train.py: error: {}'.format(e), file=sys.stderr)
        abort_other_ranks()
        sys.exit(1)
