"""The pieces of a ``train.py`` run, built from explicit values: the
model from its preset, the datasets with the model's classes, and the
trainer (train chain, optimizer, iterator, batcher, updater, extensions).
"""
import dataclasses

import chainer
import numpy

from models.presets import (
    build_mask_rcnn, check_c4_roi_sizes, get_preset, train_targets)
from models.train_chain import MaskRCNNTrainChain
from utils.data.batching import CarryReadErrors, TrainBatcher
from utils.data.color_jitter import ColorJitter
from utils.data.mixup import MixUp
from utils.data.mosaic import Mosaic
from utils.data.perspective import Perspective
from utils.data.random_crop import RandomCrop
from utils.data.coco_dataset import COCODataset
from utils.data.coco_eval import COCOEvaluator
from utils.data.order_sampler import SeededShuffleOrderSampler
from utils.ops.image import MAX_IMAGE_PIXELS
from utils.training.clipping import GlobalNormClipping
from utils.threads import OneThreadPerLoader
from utils.training.ema import WeightAverage
from utils.training.errors import SetupError
from utils.training.pretrained import freeze, load_pretrained
from utils.training.setup import build_updater
from utils.training.snapshots import restart_hint
from utils.training.trainer import extend_writers, make_trainer


def check_roi_size(arch, roi_size):
    """``--roi-size`` fits ``arch``: for c4, a multiple of 7."""
    if arch == 'c4' and roi_size:
        try:
            check_c4_roi_sizes(roi_size, roi_size)
        except ValueError:
            raise SetupError('--roi-size {} with --arch c4: expected a '
                             'multiple of 7 (the box and mask heads share '
                             'res5, which pools to 7 x 7)'.format(
                                 roi_size)) from None


def check_depth(arch, depth):
    """``--depth`` is a ResNet's: refused for mobilenetv1-fpn."""
    if arch == 'mobilenetv1-fpn' and depth is not None:
        raise SetupError('--depth {} with --arch mobilenetv1-fpn: the depth '
                         'is a ResNet\'s, MobileNetV1 has no other'.format(
                             depth))


def training_preset(arch, n_fg_class, fields, roi_size=None, scales=None,
                    min_size=None, max_size=None, anchor_sizes=None,
                    norm=None):
    """``arch``'s preset with ``fields`` (what the starting weights fix)
    and the sizes of the command line: the box ROIAlign size (both heads'
    for c4); the test shorter side ``min_size`` (default: the largest
    training scale, else the preset's); the longer-side cap ``max_size``;
    ``anchor_sizes`` in input pixels, one per RPN level for FPN (P2-P6),
    all at its one level for c4; the backbone's ``norm`` (a name of
    ``models.norm.NORMS``, or 'syncbn', whose model is a 'bn' one). The npz
    metadata keeps every changed field, so ``demo.py`` and ``--evaluate``
    use them too."""
    preset = get_preset(arch, n_fg_class=n_fg_class, **fields)
    changes = {}
    if roi_size:
        changes['box_roi_size'] = roi_size
        if arch == 'c4':  # one res5 for both heads: both poolers
            changes['mask_roi_size'] = roi_size
    if min_size or scales:
        changes['min_size'] = min_size or max(scales)
    if max_size:
        changes['max_size'] = max_size
    if anchor_sizes:
        changes['rpn_sizes'] = _anchor_levels(preset, anchor_sizes)
    if norm:
        changes['norm'] = 'bn' if norm == 'syncbn' else norm
    return dataclasses.replace(preset, **changes)


def _anchor_levels(preset, sizes):
    levels = len(preset.rpn_strides)
    if levels == 1:
        return (tuple(sizes),)
    if len(sizes) != levels:
        raise SetupError('--anchor-sizes: {} gives one size per RPN level, '
                         'expected {} sizes, got {}'.format(
                             preset.arch, levels, len(sizes)))
    return tuple((s,) for s in sizes)


def build_model(preset, seed=0, path=None, log=print, norm=None):
    """The model of ``preset``, weights drawn from ``seed``, then those of
    the npz ``path`` copied in; ``norm`` is ``build_mask_rcnn``'s (a
    synchronised batch norm)."""
    numpy.random.seed(seed)  # chainer's initialisers draw from it
    model = build_mask_rcnn(preset, norm=norm)
    if path:
        log(load_pretrained(model, path))
    return model


def load_data(paths, box_offset, keep_empty=True,
              max_pixels=MAX_IMAGE_PIXELS):
    """(train, val, val json path, class metadata). The training set's
    categories are the model's classes (``n_fg_class``, ``class_ids``,
    ``class_names``); the validation set is read in them, matched by
    category id. ``box_offset`` is the model's: it decides how COCO boxes
    are read; ``max_pixels`` is ``COCODataset``'s."""
    train = COCODataset(*paths['train'], keep_empty=keep_empty,
                        box_offset=box_offset, max_pixels=max_pixels)
    if train.n_instances == 0:
        skipped = ', '.join('{} {}'.format(n, reason) for reason, n in
                            train.skipped.items() if n)
        raise SetupError('{} has no usable instance to train on ({})'.format(
            paths['train'][0], 'skipped: ' + skipped if skipped else
            'no annotations'))
    val = COCODataset(*paths['val'], box_offset=box_offset,
                      class_ids=train.class_ids, max_pixels=max_pixels)
    meta = {'n_fg_class': len(train.class_ids),
            'class_ids': [int(c) for c in train.class_ids],
            'class_names': list(train.class_names)}
    return train, val, paths['val'][0], meta


def build_optimizer(chain, lr, weight_decay, freeze_at=0, mixed16=False,
                    clip_grad=0.):
    """(optimizer, names of the frozen stages): momentum SGD (0.9) of
    ``chain.model`` with L2 ``weight_decay`` and Detectron's
    TRAIN.FREEZE_AT; with ``mixed16``, a float32 master copy of each
    weight and dynamic loss scaling; ``clip_grad`` > 0 clips the
    gradients to that global L2 norm (``clipping.GlobalNormClipping``)."""
    optimizer = chainer.optimizers.MomentumSGD(lr, 0.9)
    optimizer.setup(chain)
    frozen = freeze(chain.model, freeze_at)
    if clip_grad:
        optimizer.add_hook(GlobalNormClipping(clip_grad))
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(weight_decay))
    if mixed16:
        optimizer.use_fp32_update()   # float32 master copy of each weight
        optimizer.loss_scaling()      # dynamic: halves on overflow
    return optimizer, frozen


# Bytes per example for the boxes and labels: thousands of instances.
SHARED_MEM = 1 << 20


def loader_shared_mem(dataset):
    """Shared memory per example for the loader processes: ``SHARED_MEM``
    plus the largest image the annotations declare (each checked against
    its file's header by ``COCODataset``), as ``read_image`` returns it
    ((3, H, W) float32). chainer sizes its buffers from the
    first batch and warns (four lines, for each example) whenever a later
    one is larger, as an example with more instances is, and a 512 x 512
    image (3 MB) is beyond any fixed 1 MiB. A dataset without declared
    sizes (not a ``COCODataset``, or a ChainerMN shard of one) gets
    ``SHARED_MEM`` and chainer's warning for larger examples."""
    base = getattr(dataset, '_dataset', dataset)    # a chainer SubDataset
    boxes = getattr(base, 'example_boxes', None)
    if boxes is None:
        return SHARED_MEM
    largest = max((h * w for (h, w), _ in map(boxes, range(len(base)))),
                  default=0)
    return SHARED_MEM + 3 * 4 * largest


def build_iterator(dataset, batchsize, loaders, seed):
    """Batches of ``dataset`` in a seeded order, loaded by ``loaders``
    processes (0: this one); read errors are carried to the batcher."""
    sampler = SeededShuffleOrderSampler(seed)
    if loaders > 0:
        return chainer.iterators.MultiprocessIterator(
            OneThreadPerLoader(CarryReadErrors(dataset)), batchsize,
            n_processes=loaders, order_sampler=sampler,
            shared_mem=loader_shared_mem(dataset))
    return chainer.iterators.SerialIterator(CarryReadErrors(dataset),
                                            batchsize, order_sampler=sampler)


def build_augmentations(model, color_jitter=None, random_crop=None,
                        crop_min_visible=0.25, mosaic=0., mixup=0.,
                        perspective=0.):
    """``TrainBatcher``'s keyword arguments ``crop``, ``color_jitter``,
    ``mosaic``, ``mixup`` and ``perspective``, None where off.

    Args:
        model: the model (its pixel mean fills the window outside the
            image; its ``box_offset`` clips boxes).
        color_jitter ((float, float, float, float)): brightness, contrast,
            saturation and hue ranges of ``ColorJitter``.
        random_crop ((float, float)): ``RandomCrop``'s window side range.
        crop_min_visible (float): ``min_visible`` of ``RandomCrop``,
            ``Mosaic`` and ``Perspective``.
        mosaic (float): ``Mosaic``'s probability; 0: off.
        mixup (float): ``MixUp``'s probability; 0: off.
        perspective (float): ``Perspective``'s largest corner move over
            the image's sides; 0: off.
    """
    norm = model.normalization
    mean = tuple(norm['pixel_mean'])
    rgb_mean = mean[::-1] if norm['channel_order'] == 'BGR' else mean
    return {
        'crop': RandomCrop(random_crop, crop_min_visible, rgb_mean,
                           model.conventions.box_offset)
        if random_crop else None,
        'color_jitter': ColorJitter(*color_jitter) if color_jitter else None,
        'mosaic': Mosaic(mosaic, crop_min_visible, rgb_mean,
                         model.conventions.box_offset) if mosaic else None,
        'mixup': MixUp(mixup, rgb_mean) if mixup else None,
        'perspective': Perspective(perspective, crop_min_visible, rgb_mean,
                                   model.conventions.box_offset)
        if perspective else None}


def build_trainer(model, preset, data, schedule, out, seed=0,
                  weight_decay=1e-4, freeze_at=0, mixed16=False,
                  batchsize=2, loaders=2, scales=None, subdivisions=1,
                  gpu=-1, gpus=None, comm=None, box_loss='smooth_l1',
                  ema_decay=None, augmentations=None, clip_grad=0.,
                  advice=restart_hint):
    """(trainer, the model to save) of ``model`` on ``data`` (train, val,
    val json path, class ids), on ``schedule`` (``trainer.Schedule``),
    writing to ``out``. With ``ema_decay`` the model evaluated and saved
    is the exponential moving average of ``model``'s weights
    (``ema.WeightAverage``, kept on every process), else ``model``.

    The preset gives the targets and the mask loss weight; ``box_loss``
    is the box head's regression loss (``MaskRCNNTrainChain``'s);
    ``freeze_at`` is Detectron's TRAIN.FREEZE_AT, ``scales`` the training
    shorter sides (default: the preset's ``min_size``); ``gpu``,
    ``gpus``, ``comm`` and ``subdivisions`` are ``setup.build_updater``'s;
    ``augmentations`` is ``build_augmentations``'s (default: none);
    ``clip_grad`` is ``build_optimizer``'s (0: off); ``advice`` ends the
    error of a diverged run (``trainer.make_trainer``'s). Each
    ChainerMN process draws its own flips, crops, colours, scales, samples
    and data order (``seed`` plus its rank); rank 0 writes the log, plots,
    snapshots and evaluations.
    """
    train, val, val_json, class_ids = data
    root = comm is None or comm.rank == 0
    seed = seed + (comm.rank if comm is not None else 0)
    chain = MaskRCNNTrainChain(model, train_targets(preset), seed=seed,
                               box_loss=box_loss)
    optimizer, frozen = build_optimizer(chain, schedule.lr, weight_decay,
                                        freeze_at, mixed16, clip_grad)
    if root:
        print('frozen: {}'.format(', '.join(frozen) or 'nothing'))
    it = build_iterator(train, batchsize, loaders, seed)
    batcher = TrainBatcher(scales or (preset.min_size,),
                           preset.max_size, preset.pad_stride, True, seed,
                           model.normalization,
                           model.conventions.box_offset,
                           **(augmentations or {}))
    updater = build_updater(chain, optimizer, it, batcher, subdivisions,
                            gpu, gpus, comm)
    # Made after the updater moved the model to its (main) device.
    average = WeightAverage(model, ema_decay) if ema_decay else None
    result = average.averaged if average else model
    trainer = make_trainer(updater, schedule, out, comm, {
        'iterator': it, 'batcher': batcher, 'sampling': chain.rng}, average,
        advice)
    if root:
        extend_writers(trainer, schedule, model, COCOEvaluator(
            val, result, val_json, out, class_ids=class_ids,
            max_pixels=val.max_pixels), advice)
    return trainer, result
