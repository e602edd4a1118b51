"""Time ``functions.roi_align_2d`` forward and backward at Mask R-CNN sizes.

Cases (image 800 x 1344, 512 ROIs, float32):

* ``C4``: one (1, 1024, 50, 84) map, stride 16, 14 x 14 bins,
  ``sampling_ratio=0`` (adaptive).
* ``FPN``: levels P2..P5 with 256 channels and strides 4, 8, 16, 32, 7 x 7
  bins, ``sampling_ratio=2``; ROIs go to levels by FPN equation 1
  (``utils.ops.fpn_levels.assign_levels``, Detectron's rule) and each level is
  pooled with its own call, as ``ROIPooler`` does. Times are summed over
  the levels.

ROIs are random boxes with sides uniform in 16..600 pixels, clipped to the
image. Backward time is one ``ROIAlign2DGrad`` pass (gx from a random gy).
Each time is the median of ``--repeat`` runs after one warm-up run.

Usage, from the repository root::

    .venv/bin/python bench/roi_align.py [--repeat 3] [--json out.json]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from utils import compat  # noqa: F401,E402  (before chainer)
import numpy  # noqa: E402
import chainer  # noqa: E402

from functions.roi_align_2d import roi_align_2d  # noqa: E402
from utils.ops.fpn_levels import assign_levels  # noqa: E402
from utils.backend import gpu_available  # noqa: E402

IMAGE_H, IMAGE_W = 800, 1344
N_ROIS = 512


def random_rois(rng, n):
    """(n, 4) float32 (x1, y1, x2, y2), sides 16..600 px, in the image."""
    size = rng.uniform(16, 600, (n, 2))
    x1 = rng.uniform(0, IMAGE_W - size[:, 0])
    y1 = rng.uniform(0, IMAGE_H - size[:, 1])
    rois = numpy.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], axis=1)
    return rois.astype(numpy.float32)


def cases(rng):
    """Yield (name, [(x, rois, roi_indices, outsize, scale, ratio), ...])."""
    rois = random_rois(rng, N_ROIS)
    zeros = numpy.zeros(N_ROIS, numpy.int32)
    x = rng.standard_normal((1, 1024, 50, 84)).astype(numpy.float32)
    yield 'C4 512x(1024,14,14) s0', [(x, rois, zeros, 14, 1 / 16, 0)]
    levels = assign_levels(rois, 2, 5)
    calls = []
    for level in range(2, 6):
        stride = 2 ** level
        x = rng.standard_normal(
            (1, 256, IMAGE_H // stride, IMAGE_W // stride)).astype(
                numpy.float32)
        idx = numpy.flatnonzero(levels == level)
        calls.append((x, rois[idx], zeros[idx], 7, 1 / stride, 2))
    counts = '/'.join(str(len(c[1])) for c in calls)
    yield 'FPN 512x(256,7,7) s2 P2-P5 {}'.format(counts), calls


def save_cases(path, all_cases):
    """Every call's inputs as ``c{i}_{j}_{x,rois,meta}`` arrays."""
    arrays, names = {}, []
    for i, (name, calls) in enumerate(all_cases):
        names.append(name)
        for j, (x, rois, _, outsize, scale, ratio) in enumerate(calls):
            arrays['c{}_{}_x'.format(i, j)] = x
            arrays['c{}_{}_rois'.format(i, j)] = rois
            arrays['c{}_{}_meta'.format(i, j)] = numpy.array(
                [outsize, scale, ratio], numpy.float64)
    numpy.savez(path, names=numpy.array(names), **arrays)


def time_calls(calls, xp, repeat):
    """Median forward and backward seconds, summed over ``calls``."""
    calls = [(chainer.Variable(xp.asarray(x)), xp.asarray(r), xp.asarray(i),
              o, s, ratio) for x, r, i, o, s, ratio in calls]
    sync = (lambda: xp.cuda.Device().synchronize()) if xp is not numpy \
        else (lambda: None)
    fwd, bwd = [], []
    for run in range(repeat + 1):
        tf = tb = 0.
        for x, rois, idx, outsize, scale, ratio in calls:
            x.cleargrad()
            sync()
            t0 = time.perf_counter()
            y = roi_align_2d(x, rois, idx, outsize, scale, ratio)
            sync()
            t1 = time.perf_counter()
            y.grad = xp.ones_like(y.array)
            y.backward()
            sync()
            tf, tb = tf + t1 - t0, tb + time.perf_counter() - t1
        if run:  # run 0 warms up (CUDA compilation, allocator)
            fwd.append(tf)
            bwd.append(tb)
    return float(numpy.median(fwd)), float(numpy.median(bwd))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed runs per case (median reported)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--save-cases', metavar='NPZ',
                        help='write the inputs for bench/torchvision_ref.py '
                             'roi_align --cases NPZ (same arrays, same ROIs)')
    args = parser.parse_args()
    if args.save_cases:
        save_cases(args.save_cases, cases(numpy.random.default_rng(0)))
    backends = [('numpy', numpy)]
    if gpu_available():
        import cupy
        backends.append(('cupy', cupy))
    rng = numpy.random.default_rng(0)
    rows = []
    print('{:<42} {:<7} {:>11} {:>12}'.format(
        'case', 'backend', 'forward ms', 'backward ms'))
    for name, calls in cases(rng):
        for backend, xp in backends:
            fwd, bwd = time_calls(calls, xp, args.repeat)
            rows.append({'case': name, 'backend': backend,
                         'forward_ms': fwd * 1e3, 'backward_ms': bwd * 1e3})
            print('{:<42} {:<7} {:>11.1f} {:>12.1f}'.format(
                name, backend, fwd * 1e3, bwd * 1e3), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'repeat': args.repeat, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
