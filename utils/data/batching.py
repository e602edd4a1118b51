"""From dataset examples to the training chain's batch.

Workers only decode images (``COCODataset``); the random choices (flip,
the optional crop, perspective and colour jitter, training scale) are made
here, in the main process, by one seeded and serialised generator, so a
run is reproducible and resumes exactly.
"""
import chainer
import numpy

from utils.data.coco_dataset import DatasetError, flip_example
from utils.ops.image import ImageError, batch_images, prepare
from utils.ops.rng import serialize_random_state


class ReadError:
    """A failed read, carried from a loader process as a value."""

    def __init__(self, message):
        self.message = message


class CarryReadErrors(chainer.dataset.DatasetMixin):
    """Wrap a dataset so that a missing or corrupt image reaches the main
    process, where ``TrainBatcher`` raises it as one ``DatasetError``.

    ``MultiprocessIterator`` prints an exception raised in a loader process
    from a thread and then fails with an unrelated ``TypeError``; a value
    travels back like any example.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def get_example(self, i):
        try:
            return self.dataset[i]
        except (DatasetError, ImageError) as e:
            return ReadError(str(e))


class TrainBatcher:
    """Converter for ``MaskRCNNTrainChain``.

    Args:
        scales (tuple of int): shorter-side sizes to pick from per image
            (Detectron ``TRAIN.SCALES``; several = multi-scale training).
        max_size (int): longer-side cap (``TRAIN.MAX_SIZE``).
        stride (int): pad to a multiple of this (FPN 32).
        flip (bool): random horizontal flip with probability 0.5.
        seed (int): seed of the generator.
        normalization (dict): ``pixel_mean``, ``pixel_std`` and
            ``channel_order`` for ``utils.ops.image.prepare`` (the model's
            ``normalization``; default Detectron's).
        box_offset (int): the model's ``conventions.box_offset`` (flips).
        crop (callable): ``crop(img, bbox, label, segms, rng)`` returning
            the four, e.g. ``utils.data.random_crop.RandomCrop``; None: off.
        perspective (callable): ``perspective(img, bbox, label, segms,
            rng)`` returning the four, e.g.
            ``utils.data.perspective.Perspective``; None: off.
        color_jitter (callable): ``color_jitter(img, rng)`` returning the
            image, e.g. ``utils.data.color_jitter.ColorJitter``; None: off.
        mosaic (``utils.data.mosaic.Mosaic``): None: off.
        mixup (``utils.data.mixup.MixUp``): None: off.

    Per example, in this order: flip, crop, perspective, colour jitter (on
    the RGB 0-255 image), mosaic, mixup, training scale, ``prepare``. A
    mosaic's other three examples, and a mixed example's partner, are the
    next examples of the batch, cyclically (the example itself in a batch
    of one), flipped, cropped, warped and jittered again with their own
    draws right after the mosaic or mixup draw. A transform that is off
    draws nothing, so the Detectron recipe draws what it drew before.

    ``batcher(batch, device)`` returns ``(x, scales, sizes, gt_bboxes,
    gt_labels, gt_segms)``; see ``models/train_chain.py``.
    """

    def __init__(self, scales=(800,), max_size=1333, stride=1, flip=True,
                 seed=0, normalization=None, box_offset=1, crop=None,
                 color_jitter=None, mosaic=None, mixup=None,
                 perspective=None):
        self.normalization = dict(normalization or {})
        self.box_offset = box_offset
        self.scales = tuple(scales)
        self.max_size = max_size
        self.stride = stride
        self.flip = flip
        self.crop = crop
        self.perspective = perspective
        self.color_jitter = color_jitter
        self.mosaic = mosaic
        self.mixup = mixup
        self.rng = numpy.random.RandomState(seed)

    def __call__(self, batch, device=None):
        xs, scales, sizes, bboxes, labels, segms = [], [], [], [], [], []
        for i, example in enumerate(batch):
            img, bbox, label, segm = self._augment(example)
            centre = self.mosaic.draw(img.shape[1:], self.rng) \
                if self.mosaic else None
            if centre is not None:
                img, bbox, label, segm = self.mosaic(
                    [(img, bbox, label, segm)] + [
                        self._augment(batch[(i + k) % len(batch)])
                        for k in (1, 2, 3)], centre)
            lam = self.mixup.draw(self.rng) if self.mixup else None
            if lam is not None:
                partner = self._augment(batch[(i + 1) % len(batch)])
                img, bbox, label, segm = self.mixup(
                    (img, bbox, label, segm), partner, lam)
            min_size = self.scales[self.rng.randint(len(self.scales))]
            x, scale, size = prepare(img, min_size, self.max_size,
                                     self.stride, **self.normalization)
            xs.append(x)
            scales.append(scale)
            sizes.append(size)
            bboxes.append((numpy.asarray(bbox, numpy.float32) * scale)
                          .reshape(-1, 4))
            labels.append(numpy.asarray(label, numpy.int32))
            segms.append(segm)
        # chainer.config.dtype: float64 in exactness tests, float32 else.
        x = batch_images(xs).astype(chainer.get_dtype(), copy=False)
        if device is not None:
            x = _device(device).send(x)
        return x, scales, sizes, bboxes, labels, segms

    def _augment(self, example):
        """Flip, crop, perspective and colour jitter of one example, as
        drawn."""
        if isinstance(example, ReadError):
            raise DatasetError(example.message)
        img, bbox, label, segm = example
        if self.flip and self.rng.rand() < 0.5:
            img, bbox, segm = flip_example(img, bbox, segm, self.box_offset)
        if self.crop is not None:
            img, bbox, label, segm = self.crop(img, bbox, label, segm,
                                               self.rng)
        if self.perspective is not None:
            img, bbox, label, segm = self.perspective(img, bbox, label, segm,
                                                      self.rng)
        if self.color_jitter is not None:
            img = self.color_jitter(img, self.rng)
        return img, bbox, label, segm

    def serialize(self, serializer):
        serialize_random_state(serializer, self.rng)


def _device(device):
    return chainer.get_device(device)
