"""A small synthetic COCO-format instance-segmentation dataset.

    python utils/data/synthetic_coco.py OUT_DIR --n-images 40

writes ``OUT_DIR/images/NNNNNN.png`` (NNNNNN is the COCO image id) and
``OUT_DIR/annotations.json``, a COCO instances file that
``utils/data/coco_dataset.py`` and pycocotools read like the real one.
``ensure_synthetic_coco`` also records the parameters in
``OUT_DIR/synthetic.json`` and regenerates when they change.

Each image is drawn by ``utils/data/synthetic_shapes.py`` (coloured shapes
whose polygons match the pixels exactly, occlusion, crowd regions; see its
docstring). This module decides which images are empty
(``round(empty_fraction * n_images)`` have no annotation at all) and which
start with a crowd, numbers images and annotations, and writes the files.

Category ids are NOT contiguous (``k * k - k + 1``: 1, 3, 7, 13, ...) and
are listed in descending order, so readers must sort and map them.
Everything is drawn from ``numpy.random.RandomState(seed)``.
"""
import inspect
import json
import os
import re
import shutil
import sys
import tempfile

if __name__ == '__main__':  # run as a script: the repo root, 2 folders up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

import cv2  # noqa: E402
import numpy  # noqa: E402

from utils.data.coco_json import DatasetError  # noqa: E402
from utils.data.synthetic_shapes import (  # noqa: E402
    default_class_names, draw_image)

#: Bump when the same parameters would draw different data (here or in
#: ``synthetic_shapes``), so that ``ensure_synthetic_coco`` replaces
#: folders that older code wrote.
GENERATOR_VERSION = 1
MANIFEST = 'synthetic.json'


def category_ids(n_classes):
    """COCO ids of labels 1..K: 1, 3, 7, 13, ... (``k * k - k + 1``)."""
    return [k * k - k + 1 for k in range(1, n_classes + 1)]


def make_synthetic_coco(root, n_images=40, height=192, width=256,
                        n_classes=3, seed=0, empty_fraction=0.1,
                        class_names=None, max_instances=4,
                        crowd_fraction=0.1):
    """Write a synthetic COCO-format dataset (see the module docstring).

    Args:
        root (str): output folder; ``images/`` and ``annotations.json`` are
            written inside it.
        n_images (int): number of images (ids 1..n_images).
        height, width (int): image size.
        n_classes (int): K, number of classes (colour families).
        seed (int): seed of everything random.
        empty_fraction (float): share of images without annotations.
        class_names (list of str): names of labels 1..K (default: the
            hue names, e.g. red, green, blue).
        max_instances (int): at most this many shapes per non-empty image.
        crowd_fraction (float): share of non-empty images with a crowd
            region (at least one when positive).

    Returns:
        str: path of ``annotations.json``.
    """
    class_names = list(class_names or default_class_names(n_classes))
    if len(class_names) != n_classes:
        raise ValueError('{} class names for {} classes'.format(
            len(class_names), n_classes))
    rng = numpy.random.RandomState(seed)
    order = rng.permutation(n_images)
    n_empty = int(round(empty_fraction * n_images))
    empty, nonempty = set(order[:n_empty]), order[n_empty:]
    n_crowd = max(1, int(round(crowd_fraction * len(nonempty)))) \
        if crowd_fraction > 0 and len(nonempty) else 0
    crowd = set(nonempty[:n_crowd])
    ids = category_ids(n_classes)
    image_dir = os.path.join(root, 'images')
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(n_images):
        n = 0 if i in empty else rng.randint(1, max_instances + 1)
        img, anns = draw_image(rng, (height, width), n_classes, n,
                               i in crowd)
        file_name = '{:06d}.png'.format(i + 1)
        cv2.imwrite(os.path.join(image_dir, file_name), img[:, :, ::-1])
        images.append({'id': i + 1, 'file_name': file_name,
                       'height': height, 'width': width})
        for ann in anns:
            label = ann.pop('category')
            ann.update(id=len(annotations) + 1, image_id=i + 1,
                       category_id=ids[label - 1])
            annotations.append(ann)
    categories = [{'id': c, 'name': name, 'supercategory': 'shape'}
                  for c, name in zip(ids, class_names)][::-1]
    data = {'info': {'description': 'synthetic shapes, seed {}'.format(seed)},
            'licenses': [], 'images': images, 'annotations': annotations,
            'categories': categories}
    json_path = os.path.join(root, 'annotations.json')
    with open(json_path, 'w') as f:
        json.dump(data, f)
    return json_path


def ensure_synthetic_coco(root, n_images, height, width, seed, **options):
    """Make ``root`` hold the synthetic dataset of these parameters,
    generating it unless its ``synthetic.json`` records exactly them and
    this ``GENERATOR_VERSION``.

    Other data in ``root`` is replaced whole: the new dataset is written
    beside it and renamed into place, so an interrupted run leaves the old
    data or the new, never a mix. Only a folder that carries the manifest
    ``synthetic.json`` this function writes (and nothing else but the
    dataset) is ever replaced: any other non-empty ``root``, even one
    shaped like a synthetic dataset, is refused (``DatasetError``), not
    deleted.

    Args:
        root (str): the dataset folder: ``images/``, ``annotations.json``
            and ``synthetic.json`` inside.
        n_images, height, width, seed, **options: ``make_synthetic_coco``'s
            parameters.

    Returns:
        dict: the manifest: every ``make_synthetic_coco`` parameter, with
        its default where not given, and ``generator``, the version.
    """
    manifest = synthetic_manifest(n_images=n_images, height=height,
                                  width=width, seed=seed, **options)
    if (_read_manifest(root) == manifest and
            os.path.isfile(os.path.join(root, 'annotations.json'))):
        return manifest
    _check_replaceable(root)
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    new = tempfile.mkdtemp(prefix='.synthetic-', dir=parent)
    try:
        make_synthetic_coco(new, **{k: v for k, v in manifest.items()
                                    if k != 'generator'})
        with open(os.path.join(new, MANIFEST), 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        _replace_dir(new, root)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    print('generated synthetic dataset {}: {} images {}x{}, seed {}'.format(
        root, n_images, height, width, seed))
    return manifest


def synthetic_manifest(**params):
    """Every ``make_synthetic_coco`` parameter but ``root`` (defaults
    filled in) and ``generator``, as read back from JSON (lists, not
    tuples) so that it compares equal to a stored one."""
    bound = inspect.signature(make_synthetic_coco).bind(None, **params)
    bound.apply_defaults()
    manifest = dict(bound.arguments, generator=GENERATOR_VERSION)
    del manifest['root']
    return json.loads(json.dumps(manifest))


def _read_manifest(root):
    try:
        with open(os.path.join(root, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError):  # not ours: refused
        return None


def _check_replaceable(root):
    """Refuse to delete a folder this module did not write, say a
    dataset root passed as the synthetic one by mistake: one without the
    manifest, or holding more than synthetic data."""
    if not os.path.exists(root):
        return
    if not os.path.isdir(root):
        raise DatasetError('{} is not a folder'.format(root))
    if not os.listdir(root):
        return
    manifest = _read_manifest(root)
    if not (isinstance(manifest, dict) and 'generator' in manifest):
        raise DatasetError(
            '{} is not empty and has no {} (the manifest of a generated '
            'synthetic dataset): not replacing data this program did not '
            'write; expected a new or empty folder'.format(root, MANIFEST))
    stray = sorted(set(os.listdir(root)) - {'images', 'annotations.json',
                                            MANIFEST})
    images = os.path.join(root, 'images')
    if os.path.isdir(images):
        stray += sorted(os.path.join('images', n) for n in os.listdir(images)
                        if not re.fullmatch(r'\d{6}\.png', n))
    if stray:
        raise DatasetError('{} holds {} besides synthetic data; not '
                           'replacing it'.format(root, stray[0]))


def _replace_dir(new, root):
    """Rename ``new`` to ``root``. A folder cannot be renamed over a
    non-empty one: the old ``root`` is moved aside first, deleted after."""
    old = new + '.old'
    if os.path.exists(root):
        os.rename(root, old)
    os.rename(new, root)
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(
        description='Write a synthetic COCO-format dataset of coloured '
                    'shapes.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('out_dir')
    p.add_argument('--n-images', type=int, default=40)
    p.add_argument('--height', type=int, default=192)
    p.add_argument('--width', type=int, default=256)
    p.add_argument('--n-classes', type=int, default=3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--empty-fraction', type=float, default=0.1)
    args = p.parse_args(argv)
    try:
        ensure_synthetic_coco(args.out_dir, args.n_images, args.height,
                              args.width, args.seed,
                              n_classes=args.n_classes,
                              empty_fraction=args.empty_fraction)
    except DatasetError as e:
        sys.exit('synthetic_coco.py: error: {}'.format(e))
    path = os.path.join(args.out_dir, 'annotations.json')
    with open(path) as f:
        n_anns = len(json.load(f)['annotations'])
    print('wrote {} images and {} annotations: {}'.format(
        args.n_images, n_anns, path))


if __name__ == '__main__':
    main()
