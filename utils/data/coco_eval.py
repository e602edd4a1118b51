"""COCO evaluation as Detectron's ``json_dataset_evaluator`` does it.

``coco_results`` turns one image's detections into COCO result dicts,
``evaluate_coco`` runs pycocotools' ``COCOeval`` per IoU type, and
``COCOEvaluator`` is the trainer extension (also usable alone) that
predicts over a ``COCODataset``, evaluates, reports and saves.

Detections carry the model's category ids (``class_ids``), whatever the
validation file lists; COCOeval scores the categories that the model and
the file share.

The 12 numbers of each IoU type are ``STAT_NAMES``, in ``COCOeval.stats``
order. pycocotools writes -1 for a metric with no ground truth in its area
range; with no detection at all every metric with ground truth is 0 (what
Detectron gets, it evaluates against an empty ``COCO()``).
"""
import contextlib
import io
import json
import os

import chainer
import numpy
import pycocotools.mask as mask_util
from chainer import training
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from functions.conv_columns import kept_workspaces
from utils.atomic_write import atomic_write
from utils.data.coco_json import DatasetError, load_coco
from utils.ops.image import MAX_IMAGE_PIXELS

STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl',
              'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')


def coco_results(image_id, bbox, label, score, mask, class_ids, box_offset=1):
    """COCO result dicts of one image's detections.

    Args:
        image_id (int): COCO image id.
        bbox (numpy.ndarray): (D, 4) ``(x1, y1, x2, y2)`` inclusive, original
            pixels.
        label (numpy.ndarray): (D,) int 1..K.
        score (numpy.ndarray): (D,) float.
        mask (numpy.ndarray or None): (D, H, W) bool; None for boxes only.
        class_ids (sequence of int): COCO category id of labels 1..K.
        box_offset (int): the model's ``box_offset``: 1 for Detectron's
            inclusive boxes, 0 for detectron2's.

    Returns:
        list of dict: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w,
        h]`` with ``w = x2 - x1 + box_offset``, ``score`` and, with
        masks, ``segmentation`` (RLE, ``counts`` an ASCII string).
    """
    results = []
    for i, (b, lb, s) in enumerate(zip(bbox, label, score)):
        result = {
            'image_id': image_id, 'category_id': int(class_ids[lb - 1]),
            # Detectron's xyxy_to_xywh: inclusive boxes, w = x2 - x1 + 1.
            'bbox': [float(b[0]), float(b[1]), float(b[2] - b[0] + box_offset),
                     float(b[3] - b[1] + box_offset)],
            'score': float(s)}
        if mask is not None:
            rle = mask_util.encode(
                numpy.asfortranarray(mask[i].astype(numpy.uint8)))
            rle['counts'] = rle['counts'].decode('ascii')
            result['segmentation'] = rle
        results.append(result)
    return results


def _results_for(results, iou_type):
    """Detectron evaluates each type on its own results: a ``bbox`` entry
    would make ``loadRes`` take the box area for ``segm``."""
    drop = 'segmentation' if iou_type == 'bbox' else 'bbox'
    return [{k: v for k, v in r.items() if k != drop} for r in results]


def evaluate_coco(coco_gt, results, iou_types=('bbox', 'segm'),
                  image_ids=None, cat_ids=None):
    """pycocotools ``COCOeval`` of ``results`` per IoU type.

    Args:
        coco_gt (pycocotools.coco.COCO): the ground truth (``segm``
            evaluation turns its polygons into RLE in place, as usual).
        results (list of dict): as ``coco_results`` makes them; may be empty.
        iou_types (tuple of str): ``'bbox'`` and/or ``'segm'``.
        image_ids (list of int): evaluate these images only (default all).
        cat_ids (list of int): evaluate these categories only (default
            all of ``coco_gt``).

    Returns:
        (dict, dict): iou type -> the 12 stats (list of float, order
        ``STAT_NAMES``), and iou type -> the summary table pycocotools
        prints.
    """
    # loadRes copies the ground truth's 'info' (older pycocotools also
    # 'licenses'), which a user's file need not have.
    coco_gt.dataset.setdefault('info', {})
    coco_gt.dataset.setdefault('licenses', [])
    stats, summaries = {}, {}
    for iou_type in iou_types:
        dt = _results_for(results, iou_type)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(dt) if dt else COCO()
            coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
            if image_ids is not None:
                coco_eval.params.imgIds = sorted(image_ids)
            if cat_ids is not None:
                coco_eval.params.catIds = sorted(cat_ids)
            coco_eval.evaluate()
            coco_eval.accumulate()
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            coco_eval.summarize()
        stats[iou_type] = [float(v) for v in coco_eval.stats]
        summaries[iou_type] = text.getvalue()
    return stats, summaries


def _shared_categories(class_ids, coco_gt, source, verbose):
    """The model's category ids that the ground truth lists; says which
    differ, refuses when none is shared."""
    gt_ids = set(coco_gt.getCatIds())
    shared = [c for c in class_ids if c in gt_ids]
    if not shared:
        raise DatasetError('none of the model\'s category ids {} is a '
                           'category of {}'.format(list(class_ids), source))
    absent = [c for c in class_ids if c not in gt_ids]
    extra = sorted(gt_ids - set(class_ids))
    if verbose and (absent or extra):
        print('COCO evaluation: the model\'s categories {} are not in {} '
              'and its categories {} are not the model\'s; none of them '
              'is scored'.format(absent, source, extra))
    return shared


class COCOEvaluator(training.Extension):
    """Predict over a COCO dataset, evaluate, report and save.

    Args:
        iterator_or_dataset: a ``COCODataset``, or a chainer iterator over
            one (``.dataset``) with ``repeat=False`` that yields it in
            order (``shuffle=False``), e.g. a ``MultiprocessIterator`` to
            decode images in parallel.
        target_model: anything with ``predict(imgs)``: a list of (3, H, W)
            float32 RGB 0-255 images in, lists ``bboxes`` (D, 4) xyxy in
            original pixels, ``labels`` (D,) int 1..K, ``scores`` (D,) and
            ``masks`` (D, H, W) bool out.
        coco_gt_json (str or COCO): the dataset's annotation file.
        out_dir (str): where ``detections_iter_N.json`` and
            ``coco_eval_iter_N.json`` go.
        iou_types (tuple of str): ``'bbox'`` and/or ``'segm'``.
        class_ids (sequence of int): the model's COCO category id of labels
            1..K, written as each detection's ``category_id`` (default: the
            dataset's ``class_ids``). COCOeval counts only those of them
            that ``coco_gt_json`` lists: a category the model cannot
            predict is left out, not scored 0.
        prefix (str): reported keys are ``prefix + 'bbox/AP'`` etc.
        verbose (bool): print the tables.

    The trigger is the caller's (``trainer.extend(ev, trigger=...)``).
    ``evaluate()`` runs without a trainer and returns the reported dict.
    """

    trigger = 1, 'epoch'
    default_name = 'validation'
    priority = training.PRIORITY_WRITER

    def __init__(self, iterator_or_dataset, target_model, coco_gt_json,
                 out_dir, iou_types=('bbox', 'segm'), class_ids=None,
                 prefix='validation/main/', verbose=True,
                 max_pixels=MAX_IMAGE_PIXELS):
        if isinstance(iterator_or_dataset, chainer.dataset.Iterator):
            if getattr(iterator_or_dataset, 'repeat', False):
                raise ValueError('COCOEvaluator needs an iterator with '
                                 'repeat=False')
            self.iterator = iterator_or_dataset
            self.dataset = iterator_or_dataset.dataset
        else:
            self.iterator, self.dataset = None, iterator_or_dataset
        self.model = target_model
        if isinstance(coco_gt_json, COCO):
            self.coco_gt = coco_gt_json
        else:
            self.coco_gt = load_coco(coco_gt_json, max_pixels=max_pixels)
        self.out_dir = out_dir
        self.iou_types = tuple(iou_types)
        self.class_ids = tuple(int(c) for c in (
            self.dataset.class_ids if class_ids is None else class_ids))
        self.cat_ids = _shared_categories(
            self.class_ids, self.coco_gt, coco_gt_json if isinstance(
                coco_gt_json, str) else 'the ground truth', verbose)
        self.prefix = prefix
        self.verbose = verbose

    def __call__(self, trainer):
        result = self.evaluate(trainer.updater.iteration)
        chainer.reporter.report(result)
        return result

    def _images(self):
        """(COCO image id, (3, H, W) image) in dataset order."""
        if self.iterator is None:
            for i in range(len(self.dataset)):
                yield self.dataset.image_ids[i], self.dataset[i][0]
            return
        self.iterator.reset()
        i = 0
        for batch in self.iterator:
            for example in batch:
                yield self.dataset.image_ids[i], example[0]
                i += 1
        if i != len(self.dataset):
            raise ValueError('the iterator gave {} of {} images'.format(
                i, len(self.dataset)))

    def predict(self):
        """COCO result dicts of the model's detections on every image."""
        results = []
        K = len(self.class_ids)
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode(), kept_workspaces():
            for image_id, img in self._images():
                bboxes, labels, scores, masks = self.model.predict([img])
                label = numpy.asarray(labels[0])
                if len(label) and (label.min() < 1 or label.max() > K):
                    raise ValueError('predicted labels must be in 1..{}, '
                                     'got {}'.format(K, label))
                mask = masks[0] if 'segm' in self.iou_types else None
                conventions = getattr(self.model, 'conventions', None)
                box_offset = (conventions.box_offset if conventions
                              is not None else 1)
                results += coco_results(image_id, bboxes[0], label,
                                        scores[0], mask, self.class_ids,
                                        box_offset)
        return results

    def evaluate(self, iteration=None):
        """Predict, evaluate and save; returns ``{prefix + 'bbox/AP':
        value, ...}``. Files are tagged ``iter_N``, or nothing when
        ``iteration`` is None."""
        results = self.predict()
        stats, summaries = evaluate_coco(self.coco_gt, results,
                                         self.iou_types,
                                         self.dataset.image_ids,
                                         self.cat_ids)
        tag = '' if iteration is None else '_iter_{}'.format(iteration)
        os.makedirs(self.out_dir, exist_ok=True)
        with atomic_write(os.path.join(
                self.out_dir, 'detections{}.json'.format(tag))) as f:
            json.dump(results, f)
        metrics = {t: dict(zip(STAT_NAMES, s)) for t, s in stats.items()}
        with atomic_write(os.path.join(
                self.out_dir, 'coco_eval{}.json'.format(tag))) as f:
            json.dump(dict(metrics, iteration=iteration,
                           n_images=len(self.dataset),
                           n_detections=len(results)), f, indent=1)
        if self.verbose:
            print('COCO evaluation{}: {} images, {} detections'.format(
                '' if iteration is None else ' at iteration {}'.format(
                    iteration), len(self.dataset), len(results)))
            for t in self.iou_types:
                print('IoU type {}:\n{}'.format(t, summaries[t]), end='')
        return {'{}{}/{}'.format(self.prefix, t, name): value
                for t, m in metrics.items() for name, value in m.items()}
