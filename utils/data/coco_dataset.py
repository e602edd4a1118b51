"""A COCO-format instance dataset with Detectron's cleaning, and the
horizontal flip of one example.

Labels are contiguous ``1..K``, ``0`` is the background
(docs/conventions.md); ``class_ids[k - 1]`` is the COCO id of label ``k``:
the sorted ids of the file's categories, or the model's ``class_ids`` when
given, so that a validation file with more, fewer or other categories
still maps each category id to the label the model was trained with.
The file is read and checked by ``utils.data.coco_json.load_coco``. Cleaning
follows Detectron's ``JsonDataset._add_gt_annotations`` except that crowd
regions are dropped instead of kept as ignored ground truth, and an
instance whose polygons are all dropped goes too. An annotation is
skipped, first reason counted, when it is:

``crowd``          ``iscrowd == 1``
``ignore``         ``ignore == 1``
``zero_area``      ``area <= 0`` (a missing area is the segmentation's)
``outside``        its box misses the image (``x1 > W - 1``, ``x2 < 0``, ...)
``degenerate``     after clipping to the image ``x2 <= x1`` or ``y2 <= y1``
``no_polygon``     none of its polygons has 3 points (6 coordinates)
``unknown_class``  its category is not one of the given ``class_ids``

Boxes are Detectron's: ``xywh_to_xyxy`` with ``x2 = x + max(0, w - 1)``,
then clipped to ``[0, W - 1] x [0, H - 1]`` with ``W, H`` from the JSON.
"""
import os

import chainer
import numpy
import pycocotools.mask as mask_util

from utils.ops.boxes import clip_bbox, xywh_to_xyxy
from utils.data.coco_json import DatasetError, load_coco
from utils.ops.image import (
    MAX_IMAGE_PIXELS, ImageError, check_image_header, read_image)

SKIP_REASONS = ('crowd', 'ignore', 'zero_area', 'outside', 'degenerate',
                'no_polygon', 'unknown_class')


def clean_annotations(anns, height, width, box_offset=1):
    """Detectron's filter of one image's annotations (module docstring),
    as ``load_coco`` checked them; ``box_offset`` 0 reads boxes as detectron2
    does (``x2 = x + w``, clipped to ``[0, W]``).

    Returns:
        list of (str or None, numpy.ndarray, list or dict): per annotation
        the skip reason (None if kept); the box (4,) float64 ``(x1, y1,
        x2, y2)`` clipped to the image; the segmentation (a list of (2P,)
        float64 polygons, or the RLE dict as stored).
    """
    # One array call per image: COCO train2017 has 860k annotations.
    raw = xywh_to_xyxy(numpy.array([a['bbox'] for a in anns],
                                   numpy.float64).reshape(-1, 4), box_offset)
    boxes = clip_bbox(raw, (height, width), box_offset)
    out = []
    for ann, (x1, y1, x2, y2), box in zip(anns, raw, boxes):
        if ann.get('iscrowd', 0) == 1:
            reason = 'crowd'
        elif ann.get('ignore', 0) == 1:
            reason = 'ignore'
        elif not ann.get('area', 0) > 0:
            reason = 'zero_area'
        elif (x1 > width - box_offset or y1 > height - box_offset or x2 < 0 or
              y2 < 0):
            reason = 'outside'
        elif not (box[2] > box[0] and box[3] > box[1]):
            reason = 'degenerate'
        else:
            segm = clean_segmentation(ann['segmentation'])
            reason = None if segm else 'no_polygon'
        out.append((reason, box, segm if reason is None else None))
    return out


def clean_segmentation(segm):
    """Polygons with at least 3 points as (2P,) float64 arrays (possibly
    none), or the RLE dict as it is (``load_coco`` checked its size)."""
    if isinstance(segm, list):
        return [numpy.array(p, numpy.float64) for p in segm if len(p) >= 6]
    return segm


def rle_to_mask(rle, height, width):
    """(H, W) bool of a COCO RLE (compressed, or uncompressed counts)."""
    if isinstance(rle['counts'], list):
        rle = mask_util.frPyObjects(rle, height, width)
    return mask_util.decode(rle).astype(bool)


class COCODataset(chainer.dataset.DatasetMixin):
    """COCO-format instance segmentation, cleaned as Detectron does.

    Args:
        json_path (str): COCO instances JSON.
        image_dir (str): folder holding each image's ``file_name``.
        keep_empty (bool): keep images without (valid) annotations.
        box_offset (int): 1 (Detectron, inclusive boxes) or 0 (detectron2,
            ``x2 = x + w``): the model's ``conventions.box_offset``.
        class_ids (sequence of int): the model's COCO category ids of
            labels 1..K; annotations of other categories are skipped as
            ``unknown_class``. Default: the file's category ids, sorted.
        max_pixels (int): the most pixels an image may declare, in the
            JSON and in its file's header (``--max-image-pixels``); every
            header is read at construction, before any image is decoded,
            and must give the declared size (either way round).

    ``get_example(i)`` returns ``(img, bbox, label, segms)``:

    ======== ============== ======= =======================================
    name     shape          dtype   meaning
    ======== ============== ======= =======================================
    img      (3, H, W)      float32 RGB, 0-255
    bbox     (R, 4)         float32 ``(x1, y1, x2, y2)`` inclusive, original
                                    pixels, inside ``[0, W-1] x [0, H-1]``
                                    (``box_offset`` 0: ``x2 = x + w``,
                                    inside ``[0, W] x [0, H]``)
    label    (R,)           int32   1..K
    segms    list of R              per instance a list of (2P,) float64
                                    polygons ``x, y, ...`` in original
                                    pixels, or an (H, W) bool mask (RLE)
    ======== ============== ======= =======================================

    Attributes: ``class_ids`` and ``class_names`` (COCO id and name of
    labels 1..K; the id as name where the file lacks the category),
    ``image_ids`` (COCO image id of each index), ``coco`` (the pycocotools
    index), ``skipped`` (annotations skipped per reason), ``n_instances``
    (annotations kept: 0 means nothing to train on).
    """

    def __init__(self, json_path, image_dir, keep_empty=True, box_offset=1,
                 class_ids=None, max_pixels=MAX_IMAGE_PIXELS):
        self.box_offset = box_offset
        self.max_pixels = max_pixels
        self.coco = load_coco(json_path, image_dir, max_pixels)
        self.class_ids, self.class_names = _classes(
            self.coco.dataset['categories'], class_ids)
        self._label_of = {c: k + 1 for k, c in enumerate(self.class_ids)}
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)
        self.image_ids, self._entries = [], []
        n_empty = 0
        for img_info in sorted(self.coco.dataset['images'],
                               key=lambda im: im['id']):
            entry = self._entry(img_info, image_dir)
            if len(entry['label']) == 0:
                n_empty += 1
                if not keep_empty:
                    continue
            self.image_ids.append(img_info['id'])
            self._entries.append(entry)
        self.n_instances = sum(len(e['label']) for e in self._entries)
        self._check_files(image_dir, json_path)
        print('COCODataset {}: {} images ({} without annotations, {}), {} '
              'classes, {} instances; skipped {}'.format(
                  json_path, len(self), n_empty,
                  'kept' if keep_empty else 'dropped', len(self.class_ids),
                  self.n_instances,
                  ', '.join('{} {}'.format(n, reason) for reason, n
                            in self.skipped.items())))

    def _entry(self, img_info, image_dir):
        height, width = img_info['height'], img_info['width']
        bbox, label, segms = [], [], []
        anns = self.coco.imgToAnns.get(img_info['id'], [])
        for ann, (reason, box, segm) in zip(
                anns, clean_annotations(anns, height, width,
                                        self.box_offset)):
            if reason is None and ann['category_id'] not in self._label_of:
                reason = 'unknown_class'
            if reason is not None:
                self.skipped[reason] += 1
                continue
            bbox.append(box)
            label.append(self._label_of[ann['category_id']])
            segms.append(segm)
        return {'path': os.path.join(image_dir, img_info['file_name']),
                'size': (height, width),
                'bbox': numpy.array(bbox, numpy.float32).reshape(-1, 4),
                'label': numpy.array(label, numpy.int32), 'segms': segms}

    def _check_files(self, image_dir, json_path):
        missing = [e['path'] for e in self._entries
                   if not os.path.isfile(e['path'])]
        if missing:
            raise DatasetError('{} of {} image files not found under {}, '
                               'e.g. {}'.format(len(missing), len(self),
                                                image_dir, missing[0]))
        for image_id, entry in zip(self.image_ids, self._entries):
            try:  # a header only: cheap, and one line before training
                size = check_image_header(entry['path'], self.max_pixels)
            except ImageError as e:
                raise DatasetError('image id {}: {}'.format(image_id, e))
            # The declared size sizes the loaders' shared memory before any
            # image is decoded, so it must be the file's; either way round,
            # as OpenCV turns a JPEG by its EXIF orientation when decoding.
            if size is not None and entry['size'] not in (size[::-1], size):
                raise DatasetError('{}: {}'.format(json_path, _size_mismatch(
                    image_id, entry['path'], size[::-1], entry['size'])))

    def __len__(self):
        return len(self._entries)

    def example_boxes(self, i):
        """((H, W), bbox) of example ``i`` from the annotations alone (no
        image read): the bbox as ``get_example``'s."""
        entry = self._entries[i]
        return entry['size'], entry['bbox'].copy()

    def get_example(self, i):
        entry = self._entries[i]
        try:
            img = read_image(entry['path'], self.max_pixels)
        except ImageError as e:
            raise DatasetError('image id {}: {}'.format(self.image_ids[i], e))
        height, width = entry['size']
        if img.shape[1:] != (height, width):
            raise DatasetError(_size_mismatch(
                self.image_ids[i], entry['path'], img.shape[1:],
                entry['size']))
        segms = [rle_to_mask(s, height, width) if isinstance(s, dict)
                 else [p.copy() for p in s] for s in entry['segms']]
        return img, entry['bbox'].copy(), entry['label'].copy(), segms


def _size_mismatch(image_id, path, actual, declared):
    """The line for an image file of (H, W) ``actual`` whose annotations
    say (H, W) ``declared``."""
    return 'image id {}: {} is {}x{} (HxW) but the annotations say ' \
        '{}x{}'.format(image_id, path, *actual, *declared)


def _classes(categories, class_ids=None):
    """(class_ids, class_names) of labels 1..K: the given ids, or the
    file's sorted; names from the file, the id where it lacks one."""
    names = {c['id']: str(c.get('name', c['id'])) for c in categories}
    if class_ids is None:
        class_ids = sorted(names)
    class_ids = tuple(int(c) for c in class_ids)
    if len(set(class_ids)) != len(class_ids):
        raise ValueError('duplicate class ids: {}'.format(class_ids))
    return class_ids, tuple(names.get(c, str(c)) for c in class_ids)


def flip_example(img, bbox, segms, box_offset=1):
    """Detectron's horizontal flip (``flip_boxes``, ``flip_segms``);
    ``box_offset`` 0 is detectron2's mirror ``x' = W - x``.

    Args:
        img (numpy.ndarray): (3, H, W) image.
        bbox (numpy.ndarray): (R, 4) ``(x1, y1, x2, y2)`` inclusive.
        segms (list): per instance a list of (2P,) polygons or an (H, W)
            bool mask.

    Returns:
        The flipped ``(img, bbox, segms)``, new arrays:
        ``x1' = W - x2 - box_offset``, ``x2' = W - x1 - box_offset``, polygon
        ``x' = W - x - box_offset`` (Detectron's rule, for polygons too), masks
        and image reversed along x.
    """
    W = img.shape[2]
    img = img[:, :, ::-1].copy()
    bbox = numpy.array(bbox, copy=True)
    bbox[:, 0], bbox[:, 2] = (W - bbox[:, 2] - box_offset,
                              W - bbox[:, 0] - box_offset)
    out = []
    for segm in segms:
        if isinstance(segm, numpy.ndarray) and segm.ndim == 2:
            out.append(segm[:, ::-1].copy())
            continue
        polys = []
        for poly in segm:
            poly = numpy.array(poly, numpy.float64)
            poly[0::2] = W - poly[0::2] - box_offset
            polys.append(poly)
        out.append(polys)
    return img, bbox, out
