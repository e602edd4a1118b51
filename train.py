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

The flags and their help text are in ``utils/training/flags.py``; this
script turns them into explicit values for the machinery in
``utils/training/`` (``build.py``: model, data and trainer; ``results.py``:
final model and ``--evaluate``).
"""
import dataclasses
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils import compat  # noqa: F401,E402  (before chainer)
import chainer  # noqa: E402

from models.presets import get_preset, preset_overrides  # noqa: E402
from utils.atomic_write import OutputError, atomic_write  # noqa: E402
from utils.backend import DeviceError  # noqa: E402
from utils.printable import printable  # noqa: E402
from utils.data.coco_json import DatasetError  # noqa: E402
from utils.data.object_sizes import (  # noqa: E402
    auto_sizes, data_sizes, summary_lines)
from utils.ops.image import ImageError  # noqa: E402
from utils.heap import keep_freed_memory  # noqa: E402
from utils.threads import default_threads, set_threads  # noqa: E402
from utils.training.build import (  # noqa: E402
    build_augmentations, build_model, build_trainer, check_depth,
    check_roi_size, load_data, training_preset)
from utils.training.defaults import LR_RULES, default_settings  # noqa: E402
from utils.training.distributed import (  # noqa: E402
    abort_other_ranks, create_communicator, root_first, scatter_datasets,
    sync_batch_norm)
from utils.training.divergence import DivergenceAdvice  # noqa: E402
from utils.training.errors import SetupError  # noqa: E402
from utils.training.flags import parse_args  # noqa: E402
from utils.training.pretrained import (  # noqa: E402
    PretrainedError, starting_point)
from utils.training.results import (  # noqa: E402
    evaluate_model, load_evaluated_model, save_final)
from utils.training.setup import (  # noqa: E402
    check_devices, check_layout, dataset_paths, prepare_out)
from utils.training.snapshots import (  # noqa: E402
    EvaluationFailed, SnapshotError, TrainingDiverged, check_snapshot,
    latest_snapshot, load_snapshot, write_failure)
from utils.training.summary import (  # noqa: E402
    effective_sizes, schedule_lines, sizes_line)
from utils.training.trainer import Schedule  # noqa: E402
from utils.weights.model_io import ModelFileError  # noqa: E402


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


def data_paths(args, splits=('train', 'val')):
    """{split: (json, images)} of --dataset for ``splits``, checked to
    exist (synthetic data is generated first)."""
    return dataset_paths(
        args.dataset, args.coco_root, args.synthetic_root,
        args.synthetic_images, args.seed,
        (args.train_json, args.train_images), (args.val_json, args.val_images),
        splits)


def write_config(args, preset):
    config = dict(vars(args), preset=str(preset))
    print('configuration:\n' + json.dumps(config, indent=1, sort_keys=True))
    with atomic_write(os.path.join(args.out, 'config.json'), 'w') as f:
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


def _check_crop_min_visible(random_crop, mosaic, perspective, fraction):
    if fraction is None:
        return
    if not random_crop and not mosaic and not perspective:
        raise SetupError('--crop-min-visible applies to --random-crop, '
                         '--mosaic and --perspective')
    if not 0 <= fraction <= 1:
        raise SetupError('--crop-min-visible: expected a fraction in [0, 1], '
                         'got {}'.format(fraction))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
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
    _check_crop_min_visible(args.random_crop, args.mosaic, args.perspective,
                            args.crop_min_visible)
    if args.auto_size and args.communicator:
        raise SetupError('--auto-size reads the whole training set in one '
                         'process: run it once without --communicator and '
                         'pass the sizes it prints')
    comm = create_communicator(args.communicator) if args.communicator \
        else None
    check_devices(args.gpu, args.gpus)
    args.threads = args.threads or default_threads(
        comm.intra_size if comm else 1)
    set_threads(args.threads)
    # Each step frees and allocates the same large arrays again: reuse
    # their pages instead of mapping them afresh (utils/heap.py).
    keep_freed_memory()
    if args.evaluate:  # the npz alone decides the model and its classes
        model, class_ids = load_evaluated_model(args.pretrained, args.arch,
                                                args.depth)
        return evaluate_model(model, class_ids,
                              data_paths(args, ('val',))['val'],
                              args.out, args.gpu, args.max_image_pixels)
    args = resolve_defaults(args, comm.size if comm else 1)
    check_roi_size(args.arch, args.roi_size)
    check_depth(args.arch, args.depth)
    run(args, comm, argv)


def run(args, comm=None, argv=()):
    """Train as the resolved flags say (one process of ``comm``, if any)
    and write the final model; ``argv``, the flags as given, goes into
    the advice of a diverged run."""
    root = comm is None or comm.rank == 0
    log = print if root else (lambda line: None)
    schedule = Schedule(args.iteration, args.lr, tuple(args.lr_steps),
                        args.warmup, args.snapshot, args.validation,
                        args.log_interval, args.lr_schedule)
    log('\n'.join(schedule_lines(schedule)))
    if args.resume:
        check_snapshot(args.resume)
    if root:
        prepare_out(args.out)
    # A model-zoo name is downloaded and converted by rank 0 alone.
    path, fields = root_first(comm, functools.partial(
        starting_point, args.pretrained, args.arch, args.depth, log))
    paths = data_paths(args) if root else None
    box_offset = get_preset(args.arch, **fields).conventions.box_offset
    load = functools.partial(load_data, paths, box_offset,
                             not args.drop_empty, args.max_image_pixels)
    train, val, val_json, meta = load() if comm is None else \
        scatter_datasets(comm, load, args.seed)
    # Rank 0 alone prints, and its shard is a chainer SubDataset without
    # the annotations' boxes: the summary is for one-process runs.
    sizes = data_sizes(train) if comm is None else None
    if args.auto_size:  # the sizes not given on the command line
        args.auto_size = meta['auto_size'] = auto_sizes(sizes)
        for key, value in args.auto_size.items():
            setattr(args, key, getattr(args, key) or value)
    preset = training_preset(args.arch, meta['n_fg_class'], fields,
                             args.roi_size, args.scales, args.min_size,
                             args.max_size, args.anchor_sizes, args.norm)
    model = build_model(preset, args.seed, path, log, norm=sync_batch_norm(
        comm) if args.norm == 'syncbn' else None)
    if args.gamma is not None:
        preset = dataclasses.replace(preset, mask_loss_weight=args.gamma)
    args.depth = preset.depth
    for key, value in effective_sizes(preset).items():  # for config.json
        setattr(args, key, getattr(args, key) or value)
    log('\n'.join([sizes_line(preset, args.scales)] + (summary_lines(
        sizes, preset.min_size, preset.max_size, args.anchor_sizes)
        if sizes is not None else [])))
    meta.update(arch=args.arch, depth=preset.depth,
                conventions=preset.conventions.to_dict(),
                preset=preset_overrides(preset))
    if args.ema:  # the saved weights are the average
        meta['ema'] = args.ema
    if root:
        write_config(args, preset)
    trainer, result = build_trainer(
        model, preset, (train, val, val_json, meta['class_ids']), schedule,
        args.out, seed=args.seed,
        weight_decay=args.weight_decay, freeze_at=args.freeze_at,
        mixed16=args.dtype == 'mixed16', batchsize=args.batchsize,
        loaders=args.loaders, scales=args.scales,
        subdivisions=args.subdivisions, gpu=args.gpu, gpus=args.gpus,
        comm=comm, box_loss=args.box_loss, ema_decay=args.ema,
        clip_grad=args.clip_grad, advice=DivergenceAdvice(
            tuple(argv), args.lr, preset.norm, bool(args.pretrained),
            args.clip_grad, args.warmup),
        augmentations=build_augmentations(
            model, args.color_jitter, args.random_crop,
            args.crop_min_visible, args.mosaic, args.mixup,
            args.perspective))
    if args.resume:
        load_snapshot(args.resume, trainer, len(train))
    try:
        trainer.run(show_loop_exception_msg=False)
    except OSError as e:  # a log or plot on a full disk (snapshots: theirs)
        raise OutputError(write_failure(
            trainer, 'file {}'.format(e.filename) if e.filename else
            'log or plots', e)) from None
    except EvaluationFailed as e:
        kept = [latest_snapshot(args.out, e.iteration)]
        if root and e.iteration == args.iteration:
            kept.append(save_final(result, meta, val, args.out))
        kept = ', '.join(k for k in kept if k) or 'no snapshot yet'
        raise EvaluationFailed(e.iteration, e.error, kept) from None
    if root:
        save_final(result, meta, val, args.out)


def cli(argv=None):
    """``main`` as the command line runs it: an expected error (bad flag,
    file or data) is one line on stderr and exit status 1."""
    try:
        main(argv)
    except (SetupError, DatasetError, ImageError, ModelFileError,
            PretrainedError, TrainingDiverged, SnapshotError, DeviceError,
            EvaluationFailed, OutputError) as e:
        print('train.py: error: {}'.format(printable(e)), file=sys.stderr)
        abort_other_ranks()
        sys.exit(1)


if __name__ == '__main__':
    cli()
