"""The sizes of a training set's images and objects against the model's
resize and anchors: the summary ``train.py`` prints before training, its
warnings, and ``--auto-size``'s choice of ``--min-size``, ``--max-size``
and ``--anchor-sizes``.

An object's size is the square root of its box area, ``sqrt(w * h)`` with
the dataset's "+1" widths (``box_offset``), in pixels of the image the
model sees: the original times Detectron's resize scale (``target_scale``
of ``min_size`` and ``max_size``). Anchors are compared by the same
measure: an anchor of size ``a`` has area ``a * a``. An object below the
smallest anchor overlaps it at IoU at most ``(s / a) ** 2``, under the
RPN's 0.7 for ``s < 0.84 a``, so it gets only its one best anchor.
"""
import dataclasses
import math

import numpy

from utils.ops.image import target_scale

# --auto-size: the smallest object (10th percentile) is drawn at least
# this large, by enlarging the images up to MAX_UPSCALE times ...
MIN_OBJECT = 8.
MAX_UPSCALE = 4.
# ... and the smallest anchor is the power of two at or below it, within
# these bounds (P2's stride is 4: 8 px is two cells).
ANCHOR_BOUNDS = (8, 32)


@dataclasses.dataclass(frozen=True)
class DataSizes:
    """``image_sizes`` (N, 2) int (H, W); ``instances`` (N,) int per image;
    ``object_sizes`` (M,) float64 sqrt box areas in original pixels;
    ``object_image`` (M,) int, the image of each object."""
    image_sizes: numpy.ndarray
    instances: numpy.ndarray
    object_sizes: numpy.ndarray
    object_image: numpy.ndarray

    def resized(self, min_size, max_size):
        """(M,) object sizes after each image's resize."""
        scales = numpy.array([target_scale(h, w, min_size, max_size)
                              for h, w in self.image_sizes])
        return self.object_sizes * scales[self.object_image]

    def scales(self, min_size, max_size):
        """(N,) resize scale of each image."""
        return numpy.array([target_scale(h, w, min_size, max_size)
                            for h, w in self.image_sizes])


def data_sizes(dataset):
    """``DataSizes`` of a ``COCODataset`` from its annotations alone."""
    offset = dataset.box_offset
    sizes, counts, objects, owner = [], [], [], []
    for i in range(len(dataset)):
        size, bbox = dataset.example_boxes(i)
        sizes.append(size)
        counts.append(len(bbox))
        w = bbox[:, 2].astype(numpy.float64) - bbox[:, 0] + offset
        h = bbox[:, 3].astype(numpy.float64) - bbox[:, 1] + offset
        objects.append(numpy.sqrt(numpy.maximum(w * h, 0)))
        owner.append(numpy.full(len(bbox), i))
    return DataSizes(numpy.array(sizes, int).reshape(-1, 2),
                     numpy.array(counts, int),
                     numpy.concatenate(objects) if objects else
                     numpy.zeros(0), numpy.concatenate(owner).astype(int)
                     if owner else numpy.zeros(0, int))


def _image_line(sizes):
    shapes, counts = numpy.unique(sizes.image_sizes, axis=0,
                                  return_counts=True)
    order = numpy.argsort(-counts)[:3]
    listed = ', '.join('{}x{} ({})'.format(shapes[k][1], shapes[k][0],
                                           counts[k]) for k in order)
    more = ' and {} other sizes'.format(len(shapes) - 3) \
        if len(shapes) > 3 else ''
    n = sizes.instances
    return ('data: {} training images, W x H {}{}; instances per image '
            'mean {:.1f}, min {}, max {}'.format(
                len(n), listed, more, n.mean(), n.min(), n.max()))


def summary_lines(sizes, min_size, max_size, anchor_sizes):
    """The summary and its warnings, for the resize to ``min_size`` /
    ``max_size`` and ``anchor_sizes`` (all levels' sizes, px)."""
    lines = [_image_line(sizes)]
    if not len(sizes.object_sizes):
        return lines
    scales = sizes.scales(min_size, max_size)
    resized = sizes.resized(min_size, max_size)
    low = min(anchor_sizes)
    p = numpy.percentile(resized, [5, 50, 95])
    lines.append(
        'objects (sqrt box area) at --min-size {} --max-size {} (scale {}): '
        '5% / 50% / 95% = {:.0f} / {:.0f} / {:.0f} px; anchors {} px'.format(
            min_size, max_size, _range(scales), *p,
            ' '.join(str(a) for a in anchor_sizes)))
    below = float(numpy.mean(resized < low))
    before = float(numpy.mean(sizes.object_sizes < low))
    if below > 0.5:
        lines.append('warning: {:.0%} of the objects are below the smallest '
                     'anchor ({} px): use --auto-size, or larger images '
                     '(--min-size, --max-size) and smaller --anchor-sizes'
                     .format(below, low))
    if scales.min() < 1 and below > before:
        h, w = numpy.median(sizes.image_sizes, axis=0).astype(int)
        lines.append('warning: the resize shrinks the images (scale {}) and '
                     'puts {:.0%} of the objects below the smallest anchor, '
                     'against {:.0%} at their own size: --min-size {} '
                     '--max-size {} keeps them'.format(
                         _range(scales), below, before, min(h, w),
                         max(h, w)))
    return lines


def _range(values):
    lo, hi = float(values.min()), float(values.max())
    return '{:.3g}'.format(lo) if hi - lo < 1e-3 else '{:.3g}-{:.3g}'.format(
        lo, hi)


def auto_sizes(sizes, levels=5):
    """``--auto-size``: {'min_size', 'max_size', 'anchor_sizes'}.

    The images keep their own size (the median shorter side; the longer
    side capped at the widest aspect), enlarged when the smallest objects
    (10th percentile) would be under ``MIN_OBJECT`` px, by at most
    ``MAX_UPSCALE``. The smallest anchor is the power of two at or below
    the resized 10th percentile, within ``ANCHOR_BOUNDS``; each of the
    ``levels`` anchors doubles the one before (FPN: one per P2-P6).
    """
    short = float(numpy.median(sizes.image_sizes.min(axis=1)))
    aspect = float((sizes.image_sizes.max(axis=1) /
                    sizes.image_sizes.min(axis=1)).max())
    scale = 1.
    if len(sizes.object_sizes):
        p10 = float(numpy.percentile(sizes.object_sizes, 10))
        if p10 < MIN_OBJECT:
            scale = min(MAX_UPSCALE, MIN_OBJECT / max(p10, 1e-6))
    min_size = int(round(short * scale))
    max_size = int(math.ceil(min_size * aspect))
    low = ANCHOR_BOUNDS[1]
    if len(sizes.object_sizes):
        p10 = float(numpy.percentile(sizes.resized(min_size, max_size), 10))
        low = 2 ** int(math.floor(math.log2(max(p10, 1.))))
        low = int(min(max(low, ANCHOR_BOUNDS[0]), ANCHOR_BOUNDS[1]))
    return {'min_size': min_size, 'max_size': max_size,
            'anchor_sizes': [low * 2 ** k for k in range(levels)]}
