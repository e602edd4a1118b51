"""A small COCO-format dataset shaped like fluorescence nuclei, for
measuring the README's own-data recipes on the CPU.

    python bench/nuclei_like.py OUT_DIR [--train 24] [--val 8] [--seed 0]

writes ``OUT_DIR/{train,val}/images/NNNNNN.png`` and
``OUT_DIR/{train,val}/annotations.json``: 512 x 512 images, one class,
15 to 50 bright ellipses (radii 5 to 15 px, so 10 to 30 px objects, none
overlapping another) of varied brightness on a dark, unevenly lit, noisy
background, slightly blurred. Each mask is the filled polygon of its
ellipse (16 vertices), drawn with the same polygon, so masks and pixels
agree. It stands in for the small real datasets users bring (a few
hundred small instances); it is not a benchmark of any real data.
"""
import argparse
import json
import os

import cv2
import numpy

SIZE = 512


def draw(rng):
    """One image (SIZE, SIZE, 3) uint8 and its polygons (flat lists)."""
    yy, xx = numpy.mgrid[:SIZE, :SIZE] / SIZE
    light = 20 + 25 * (rng.uniform() * xx + rng.uniform() * yy)
    img = light + rng.normal(0, 6, (SIZE, SIZE))
    taken = numpy.zeros((SIZE, SIZE), numpy.uint8)
    polygons, target = [], rng.randint(15, 51)
    for _ in range(400):  # tries; a crowded image may hold fewer
        if len(polygons) == target:
            break
        a, b = rng.uniform(5, 15, 2)
        centre = tuple(int(v) for v in rng.uniform(20, SIZE - 20, 2))
        poly = cv2.ellipse2Poly(centre, (int(a), int(b)),
                                int(rng.uniform(0, 180)), 0, 360, 23)
        mask = numpy.zeros_like(taken)
        cv2.fillPoly(mask, [poly], 1)
        if (mask & taken).any():
            continue
        taken |= mask
        img[mask > 0] += rng.uniform(60, 180)
        polygons.append(poly.astype(float).ravel().tolist())
    img = cv2.GaussianBlur(numpy.clip(img, 0, 255), (3, 3), 0.8)
    return numpy.repeat(img.astype(numpy.uint8)[:, :, None], 3, 2), polygons


def write_split(root, n, rng):
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
    images, anns = [], []
    for i in range(1, n + 1):
        img, polygons = draw(rng)
        name = '{:06d}.png'.format(i)
        cv2.imwrite(os.path.join(root, 'images', name), img)
        images.append({'id': i, 'file_name': name, 'height': SIZE,
                       'width': SIZE})
        for poly in polygons:
            xy = numpy.array(poly).reshape(-1, 2)
            x1, y1 = xy.min(0)
            x2, y2 = xy.max(0)
            anns.append({'id': len(anns) + 1, 'image_id': i,
                         'category_id': 1, 'iscrowd': 0,
                         'segmentation': [poly],
                         'bbox': [x1, y1, x2 - x1 + 1, y2 - y1 + 1]})
    with open(os.path.join(root, 'annotations.json'), 'w') as f:
        json.dump({'images': images, 'annotations': anns,
                   'categories': [{'id': 1, 'name': 'nucleus'}]}, f)
    return len(anns)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out')
    p.add_argument('--train', type=int, default=24)
    p.add_argument('--val', type=int, default=8)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    rng = numpy.random.RandomState(args.seed)
    for split, n in (('train', args.train), ('val', args.val)):
        count = write_split(os.path.join(args.out, split), n, rng)
        print('{}: {} images, {} instances'.format(split, n, count))


if __name__ == '__main__':
    main()
