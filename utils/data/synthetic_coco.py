"""A small synthetic COCO-format instance-segmentation dataset.

    python utils/data/synthetic_coco.py OUT_DIR --n-images 40

writes ``OUT_DIR/images/NNNNNN.png`` (NNNNNN is the COCO image id) and
``OUT_DIR/annotations.json``, a COCO instances file that
``utils/data/coco_dataset.py`` and pycocotools read like the real one.
``ensure_synthetic_coco`` also records the parameters in
``OUT_DIR/synthetic.json`` and regenerates when they change.

What is drawn:

* **Background**: a smooth random grey field with luminance noise and a
  faint tint, saturation below about 0.2 everywhere.
* **Shapes**: rectangles (axis-aligned with integer corners, or rotated),
  triangles, regular polygons and circles (24-gons). Class ``k`` (1..K)
  is a colour family: hue ``360 (k - 1) / K`` degrees, jittered by a sixth
  of the spacing, saturation 0.65-0.9, value 0.65-0.95, plus luminance noise
  (equal on the three channels, so it leaves the hue alone). Colour alone
  identifies the class; a small network learns it quickly.
* **Exact polygons**: each shape's pixels are exactly pycocotools'
  rasterisation of the polygon stored in the annotation (``frPyObjects`` +
  ``decode``), so annotation and image agree to the pixel.
* **Occlusion**: shapes are painted in annotation-id order and later ones
  hide earlier ones. Annotations keep the *full* polygon of what was drawn
  (amodal, not subtracted), so an occluded instance's polygon covers some
  pixels of the shape in front; a new shape is rejected if it would hide
  more than ``MAX_HIDDEN`` of an earlier one.
* **Crowds**: a few images start with a cluster of small shapes of one class
  annotated as a single ``iscrowd=1`` region, an uncompressed RLE of their
  union (``counts`` a list, as in COCO's own files).
* **Empty images**: ``round(empty_fraction * n_images)`` images have no
  annotation at all.

COCO fields: ``bbox`` is the polygon's vertex extent ``[x, y, w, h]`` (as
COCO computes it; the RLE's extent for crowds), ``area`` the pixel count of
the rasterised region. Category ids are NOT contiguous (``k * k - k + 1``:
1, 3, 7, 13, ...) and are listed in descending order, so readers must sort
and map them. Everything is drawn from ``numpy.random.RandomState(seed)``.
"""
import colorsys
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
import pycocotools.mask as mask_util  # noqa: E402

from utils.data.coco_json import DatasetError  # noqa: E402

#: Bump when the same parameters would draw different data, so that
#: ``ensure_synthetic_coco`` replaces folders that older code wrote.
GENERATOR_VERSION = 1
MANIFEST = 'synthetic.json'
#: An earlier instance may lose at most this fraction of its pixels.
MAX_HIDDEN = 0.3
SHAPE_KINDS = ('rectangle', 'triangle', 'polygon', 'circle')
HUE_NAMES = ('red', 'orange', 'yellow', 'chartreuse', 'green', 'spring',
             'cyan', 'azure', 'blue', 'violet', 'magenta', 'rose')


def category_ids(n_classes):
    """COCO ids of labels 1..K: 1, 3, 7, 13, ... (``k * k - k + 1``)."""
    return [k * k - k + 1 for k in range(1, n_classes + 1)]


def class_hues(n_classes):
    """Centre hue in degrees [0, 360) of each class family, label order."""
    return [360. * k / n_classes for k in range(n_classes)]


def default_class_names(n_classes):
    names = [HUE_NAMES[int(round(h / 30.)) % 12]
             for h in class_hues(n_classes)]
    if len(set(names)) < n_classes:
        names = ['class{}'.format(k) for k in range(1, n_classes + 1)]
    return names


def shape_polygon(rng, kind, cx, cy, r):
    """Vertices (P, 2) float64 ``(x, y)`` of a shape inside the circle of
    radius ``r`` about ``(cx, cy)``."""
    if kind == 'rectangle':
        phi = rng.uniform(0.35, 1.22)
        a, b = r * numpy.cos(phi), r * numpy.sin(phi)
        if rng.rand() < 0.5:  # axis-aligned, integer corners
            x1, y1 = numpy.ceil(cx - a), numpy.ceil(cy - b)
            x2, y2 = numpy.floor(cx + a), numpy.floor(cy + b)
            return numpy.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        corners = numpy.array([[-a, -b], [a, -b], [a, b], [-a, b]])
        t = rng.uniform(0, numpy.pi)
        rot = numpy.array([[numpy.cos(t), -numpy.sin(t)],
                           [numpy.sin(t), numpy.cos(t)]])
        return corners.dot(rot.T) + (cx, cy)
    if kind == 'triangle':
        angles = (rng.uniform(0, 2 * numpy.pi) + numpy.arange(3) * 2 *
                  numpy.pi / 3 + rng.uniform(-0.4, 0.4, 3))
    else:
        n = rng.choice([5, 6, 8]) if kind == 'polygon' else 24
        angles = rng.uniform(0, 2 * numpy.pi) + numpy.arange(n) * 2 * \
            numpy.pi / n
    return numpy.stack([cx + r * numpy.cos(angles),
                        cy + r * numpy.sin(angles)], axis=1)


def polygon_mask(poly, height, width):
    """pycocotools' rasterisation of one flat polygon: (H, W) bool."""
    rle = mask_util.frPyObjects([list(poly)], height, width)
    return mask_util.decode(rle)[:, :, 0].astype(bool)


def uncompressed_rle(mask):
    """COCO's uncompressed RLE of an (H, W) bool mask: column-major run
    lengths starting with a run of zeros."""
    flat = numpy.asarray(mask, numpy.uint8).ravel(order='F')
    change = numpy.flatnonzero(numpy.diff(flat)) + 1
    bounds = numpy.concatenate(([0], change, [flat.size]))
    counts = numpy.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {'counts': counts, 'size': [int(mask.shape[0]),
                                       int(mask.shape[1])]}


def background(rng, height, width):
    """(H, W, 3) float64 RGB: smooth grey field, luminance noise, tint."""
    coarse = rng.uniform(70, 200, (4, 5)).astype(numpy.float32)
    grey = cv2.resize(coarse, (width, height),
                      interpolation=cv2.INTER_LINEAR).astype(numpy.float64)
    grey += rng.normal(0, 4, (height, width))
    img = grey[:, :, None] + rng.uniform(-5, 5, 3)
    return numpy.clip(img, 0, 255)


def class_colour(rng, label, n_classes):
    """RGB 0-255 float of one instance of ``label`` (1..K)."""
    spacing = 360. / n_classes
    hue = class_hues(n_classes)[label - 1] + rng.uniform(-1, 1) * \
        spacing / 6
    rgb = colorsys.hsv_to_rgb((hue % 360.) / 360., rng.uniform(0.65, 0.9),
                              rng.uniform(0.65, 0.95))
    return numpy.array(rgb) * 255.


def paint(rng, img, mask, colour):
    noise = rng.uniform(-6, 6, int(mask.sum()))
    img[mask] = colour + noise[:, None]


def place_shape(rng, size, visible, scale=(0.1, 0.3)):
    """A shape that hides at most ``MAX_HIDDEN`` of each visible instance.

    Returns ``(flat polygon list, (H, W) bool mask)`` or None after 30
    rejected tries. ``visible`` lists the earlier instances' visible masks
    and full areas.
    """
    height, width = size
    for _ in range(30):
        r = rng.uniform(*scale) * min(height, width)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        kind = SHAPE_KINDS[rng.randint(len(SHAPE_KINDS))]
        xy = shape_polygon(rng, kind, cx, cy, r)
        xy = numpy.round(numpy.clip(xy, 0, (width, height)), 2)
        poly = xy.ravel().tolist()
        mask = polygon_mask(poly, height, width)
        if mask.sum() < 12:
            continue
        if all((vis & ~mask).sum() >= (1 - MAX_HIDDEN) * area
               for vis, area in visible):
            return poly, mask
    return None


def polygon_bbox(poly):
    xs, ys = poly[0::2], poly[1::2]
    return [min(xs), min(ys), round(max(xs) - min(xs), 2),
            round(max(ys) - min(ys), 2)]


def draw_crowd(rng, img, n_classes):
    """A cluster of small shapes of one class: (label, (H, W) bool)."""
    height, width = img.shape[:2]
    label = rng.randint(1, n_classes + 1)
    colour = class_colour(rng, label, n_classes)
    side = min(height, width)
    cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
    union = numpy.zeros((height, width), bool)
    for _ in range(rng.randint(4, 8)):
        r = rng.uniform(0.03, 0.06) * side
        x = numpy.clip(cx + rng.uniform(-0.15, 0.15) * side, r, width - r)
        y = numpy.clip(cy + rng.uniform(-0.15, 0.15) * side, r, height - r)
        xy = shape_polygon(rng, 'circle', x, y, r)
        union |= polygon_mask(numpy.round(xy, 2).ravel().tolist(), height,
                              width)
    paint(rng, img, union, colour)
    return label, union


def draw_image(rng, size, n_classes, n_instances, crowd):
    """One image and its annotations (without ids).

    Returns:
        (numpy.ndarray, list of dict): (H, W, 3) uint8 RGB; annotations with
        ``category`` (label 1..K), ``segmentation``, ``bbox``, ``area``,
        ``iscrowd``, in painting order.
    """
    img = background(rng, *size)
    anns, visible = [], []
    if crowd:
        label, union = draw_crowd(rng, img, n_classes)
        rle = uncompressed_rle(union)
        compressed = mask_util.frPyObjects(rle, *size)
        anns.append({'category': label, 'segmentation': rle, 'iscrowd': 1,
                     'bbox': mask_util.toBbox(compressed).tolist(),
                     'area': float(mask_util.area(compressed))})
        visible.append((union.copy(), float(union.sum())))
    for _ in range(n_instances):
        placed = place_shape(rng, size, visible)
        if placed is None:
            continue
        poly, mask = placed
        label = rng.randint(1, n_classes + 1)
        paint(rng, img, mask, class_colour(rng, label, n_classes))
        for vis, _ in visible:
            vis &= ~mask
        visible.append((mask.copy(), float(mask.sum())))
        anns.append({'category': label, 'segmentation': [poly],
                     'iscrowd': 0, 'bbox': polygon_bbox(poly),
                     'area': float(mask.sum())})
    return numpy.round(img).astype(numpy.uint8), anns


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
    data or the new, never a mix. A ``root`` holding anything but a
    synthetic dataset is refused (``DatasetError``), not deleted.

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
    except (OSError, ValueError):
        return None


def _check_replaceable(root):
    """Refuse to delete a folder holding more than synthetic data, say a
    dataset root passed as the synthetic one by mistake."""
    if not os.path.exists(root):
        return
    if not os.path.isdir(root):
        raise DatasetError('{} is not a folder'.format(root))
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
    path = make_synthetic_coco(args.out_dir, args.n_images, args.height,
                               args.width, args.n_classes, args.seed,
                               args.empty_fraction)
    with open(path) as f:
        n_anns = len(json.load(f)['annotations'])
    print('wrote {} images and {} annotations: {}'.format(
        args.n_images, n_anns, path))


if __name__ == '__main__':
    main()
