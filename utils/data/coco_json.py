"""Reading a COCO instances file: the checks and defaults that the dataset
and the evaluator share.

``load_coco`` refuses, with one ``DatasetError`` line naming the file and
the entry, what would otherwise fail later as a KeyError or TypeError (in a
loader process, where ``MultiprocessIterator`` turns it into an unrelated
one) or, for RLE run lengths that do not add up to the mask, silently
become a mask of whatever memory pycocotools' decoder reads:

* top level: an object with ``images``, ``annotations`` and ``categories``
  lists, at least one image and one category;
* image: ``id`` (integers, or strings, all of one type), ``file_name``
  (a relative path without ``..`` above the image folder: nothing is read
  from outside it), positive integer ``height`` and ``width`` of at most
  ``max_pixels`` pixels (``--max-image-pixels``); ids unique;
* category: integer ``id``; ids unique;
* annotation: a positive integer ``id`` (COCOeval stores matched ids in a
  float array where 0 means unmatched, so id 0 or a string id would score
  wrongly or fail); ids unique, as pycocotools keeps one annotation per id
  and silently drops the others (two files concatenated); ``image_id`` of
  the images' id type; ``category_id`` of a listed category, ``bbox`` of 4
  finite numbers, a number ``area`` if given, ``iscrowd`` and ``ignore``
  0 or 1 if given (``false`` and ``true`` read as 0 and 1; ``"1"`` or
  ``1.0`` is refused, as COCOeval and the training read them differently
  or by accident), and a
  ``segmentation`` that is a list of polygons (flat lists of an even number
  of finite numbers, each ``x`` in ``[-4 W, 5 W]`` and ``y`` in
  ``[-4 H, 5 H]``, within four image sides of the image, and all polygons
  of the annotation together no longer than ``64 (W + H)`` nor ``2**20``
  pixels, as the largest of the sums of ``max(|dx|, |dy|)`` over their
  edges) or an RLE dict whose ``size`` is the image's
  ``[height, width]`` and whose ``counts`` (a list of non-negative ints, or
  pycocotools' compressed string) add up to ``height * width``.

An annotation of an image the file does not list is checked without the
image size; nothing reads it (the dataset and COCOeval go by image).

The polygon bounds keep pycocotools' ``frPyObjects`` (which rasterises
every edge point at 5x, and segfaults on a vertex near 2e7, 788 MB at
1e7) and the training's mask targets in proportion to the image; an
annotation beyond them is refused, never clipped, so that what trains and
what COCOeval scores stay the file's.

Filled in on the in-memory dataset, never in the file: a missing
``iscrowd``, as 0 (COCOeval reads it from every annotation: a KeyError
at the first evaluation otherwise); a missing ``area``,
as the pixel count of the segmentation rasterised by pycocotools (the
union of the polygons with at least 3 points, or the RLE), which the
cleaning's ``zero_area`` test and COCOeval's area ranges read.
"""
import contextlib
import io
import json
import math
import os

from pycocotools.coco import COCO

from utils.data.coco_segm import (
    are_numbers, is_int, segmentation_area, segmentation_problem)
from utils.inside_folder import leaving_problem
from utils.ops.image import MAX_IMAGE_PIXELS


class DatasetError(ValueError):
    """A dataset file that is missing or not what it should be."""


def load_coco(json_path, image_dir=None, max_pixels=MAX_IMAGE_PIXELS):
    """pycocotools ``COCO`` of a checked instances file (module docstring),
    without its prints. Raises ``DatasetError`` naming the file and the
    problem (and ``image_dir``, the image folder, if given, for a
    ``file_name`` that leaves it)."""
    data = _read_json(json_path)
    try:
        sizes, names = _check_images(data['images'], image_dir,
                                     max_pixels)
        _check_categories(data['categories'])
        cat_ids = {c['id'] for c in data['categories']}
        id_type = type(data['images'][0]['id'])
        ann_ids = set()
        for i, ann in enumerate(data['annotations']):
            _check_annotation(ann, i, sizes, cat_ids, id_type, names)
            if ann['id'] in ann_ids:
                raise DatasetError(
                    'duplicate annotation id {} (pycocotools would keep '
                    'one of them and drop the others; renumber the '
                    'annotations)'.format(ann['id']))
            ann_ids.add(ann['id'])
    except DatasetError as e:
        raise DatasetError('{}: {}'.format(json_path, e))
    for ann in data['annotations']:
        ann.setdefault('iscrowd', 0)  # COCOeval reads it from every one
        size = sizes.get(ann['image_id'])
        if 'area' not in ann and size is not None:
            ann['area'] = segmentation_area(ann['segmentation'], *size)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _read_json(json_path):
    if not os.path.isfile(json_path):
        raise DatasetError('annotation file not found: {}'.format(json_path))
    try:
        with open(json_path) as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError('annotation file is not valid JSON: {} ({})'
                           .format(json_path, e))
    except RecursionError:
        raise DatasetError('annotation file is not a COCO instances file: '
                           '{} (JSON nested too deep)'.format(json_path)) \
            from None
    if not isinstance(data, dict):
        raise DatasetError('not a COCO instances file (top level is not an '
                           'object): {}'.format(json_path))
    missing = [k for k in ('images', 'annotations', 'categories')
               if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError('not a COCO instances file (no {} list): {}'
                           .format(', '.join(repr(k) for k in missing),
                                   json_path))
    for key in ('images', 'categories'):
        if not data[key]:
            raise DatasetError('no {} in {}'.format(key, json_path))
    return data


def _is_id(v):
    """Image and annotation ids are ints in COCO; strings work as well in
    pycocotools, a list or null is a KeyError or TypeError later."""
    return isinstance(v, str) or is_int(v)


def _is_number(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and
            math.isfinite(v))


_SINGULAR = {'images': 'image', 'categories': 'category',
             'annotations': 'annotation'}


def _name(key, entry, index):
    """How a message names an entry of the list ``key``: by id, or by
    position without one."""
    if isinstance(entry, dict) and _is_id(entry.get('id')):
        return '{} id {}'.format(_SINGULAR[key], entry['id'])
    return '{}[{}]'.format(key, index)


def _check_images(images, image_dir=None, max_pixels=MAX_IMAGE_PIXELS):
    """(image id -> (height, width), image id -> file_name)."""
    sizes, names = {}, {}
    for i, im in enumerate(images):
        name = _name('images', im, i)
        if not (isinstance(im, dict) and _is_id(im.get('id'))):
            raise DatasetError('{} has no integer id'.format(name))
        if type(im['id']) is not type(images[0]['id']):
            raise DatasetError(
                '{}: ids of mixed types ({!r} and {!r}); expected all '
                'integers or all strings'.format(name, images[0]['id'],
                                                 im['id']))
        if not isinstance(im.get('file_name'), str):
            raise DatasetError('{} has no file_name'.format(name))
        problem = leaving_problem(im['file_name'], 'the image folder')
        if problem:
            raise DatasetError('{}: file_name {!r} {}{}'.format(
                name, im['file_name'], problem, '' if image_dir is None
                else ' ({})'.format(image_dir)))
        size = im.get('height'), im.get('width')
        if not all(is_int(v) and v > 0 for v in size):
            raise DatasetError('{} has no positive integer height and width '
                               '(got {} x {})'.format(name, *size))
        if size[0] * size[1] > max_pixels:
            raise DatasetError('{} ({}) declares {} x {} pixels, more than '
                               'the limit of {} (--max-image-pixels)'.format(
                                   name, im['file_name'], size[1], size[0],
                                   max_pixels))
        if im['id'] in sizes:
            raise DatasetError('duplicate {}'.format(name))
        sizes[im['id']] = size
        names[im['id']] = im['file_name']
    return sizes, names


def _check_categories(categories):
    seen = set()
    for i, cat in enumerate(categories):
        name = _name('categories', cat, i)
        if not is_int(cat.get('id') if isinstance(cat, dict) else None):
            raise DatasetError('{} has no integer id'.format(name))
        if cat['id'] in seen:
            raise DatasetError('duplicate {}'.format(name))
        seen.add(cat['id'])


def _check_annotation(ann, index, sizes, cat_ids, id_type=int, names=None):
    name = _name('annotations', ann, index)
    if not (isinstance(ann, dict) and is_int(ann.get('id')) and
            ann['id'] > 0):
        raise DatasetError('{} has no integer id (expected a positive '
                           'integer, got {!r})'.format(
                               name, ann.get('id') if isinstance(ann, dict)
                               else ann))
    for key in ('image_id', 'category_id', 'bbox', 'segmentation'):
        if key not in ann:
            raise DatasetError('{} has no {}'.format(name, key))
    if not _is_id(ann['image_id']):
        raise DatasetError('{}: image_id {!r} is not an integer'.format(
            name, ann['image_id']))
    if type(ann['image_id']) is not id_type:
        raise DatasetError('{}: image_id {!r} is not of the images\' id '
                           'type ({})'.format(name, ann['image_id'],
                                              id_type.__name__))
    for key in ('iscrowd', 'ignore'):
        if key in ann and not (isinstance(ann[key], int) and
                               ann[key] in (0, 1)):
            raise DatasetError('{}: {} {!r} is not 0 or 1'.format(
                name, key, ann[key]))
    if not is_int(ann['category_id']) or ann['category_id'] not in cat_ids:
        raise DatasetError('{} has category_id {}, not a listed category'
                           .format(name, ann['category_id']))
    bbox = ann['bbox']
    if not (isinstance(bbox, list) and len(bbox) == 4 and
            are_numbers(bbox)):
        raise DatasetError('{}: bbox {!r} is not [x, y, w, h]'.format(
            name, bbox))
    if 'area' in ann and not _is_number(ann['area']):
        raise DatasetError('{}: area {!r} is not a number'.format(
            name, ann['area']))
    problem = segmentation_problem(ann['segmentation'],
                                   sizes.get(ann['image_id']))
    if problem:
        image = (names or {}).get(ann['image_id'])
        raise DatasetError('{}: {}{}'.format(
            name, problem, ' (image {})'.format(image) if image else ''))
