"""Training throughput and peak memory of a Mask R-CNN training step.

    python bench/train.py [--arch fpn] [--batch 2 8] [--subdivisions 1 4]
                          [--size 800 1216] [--freeze-at K] [--gpu 0]
                          [--heap keep|default] [--json OUT]

Each batch size runs with the matching ``--subdivisions`` (gradient
accumulation, ``utils/training/subdivision_updater.py``), on synthetic
images with two boxes and their rectangular masks, the same problem
``bench/torchvision_ref.py train`` gives torchvision. Reported: images
per second (median step of ``--repeat`` after one warm-up) and peak
memory (CuPy's pool high-water mark on the GPU, the process's peak RSS on
the CPU). ``--freeze-at 2`` freezes the stem and res2 as
``train.py --pretrained`` does (Detectron's FREEZE_AT), graph cut
included (``utils/training/pretrained.py`` ``freeze``).
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from utils import compat  # noqa: F401,E402  (before chainer)
import chainer  # noqa: E402
import numpy  # noqa: E402

from models.presets import (  # noqa: E402
    build_mask_rcnn, get_preset, train_targets)
from models.train_chain import MaskRCNNTrainChain  # noqa: E402
from utils.data.batching import TrainBatcher  # noqa: E402
from utils.heap import keep_freed_memory  # noqa: E402
from utils.threads import default_threads, set_threads  # noqa: E402
from utils.training.pretrained import freeze  # noqa: E402
from utils.training.subdivision_updater import SubdivisionUpdater  # noqa: E402


def examples(n, size):
    """``n`` images with two boxes and their rectangle polygons."""
    h, w = size
    rng = numpy.random.RandomState(0)
    # torchvision_ref's boxes at 800 x 1216, scaled to ``size``.
    boxes = (numpy.array([[100, 120, 399, 499], [600, 200, 899, 699]],
                         numpy.float32) *
             numpy.array([w / 1216., h / 800.] * 2, numpy.float32))
    out = []
    for _ in range(n):
        img = rng.uniform(0, 255, (3, h, w)).astype(numpy.float32)
        segms = [[numpy.array([x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1,
                               y2 + 1], numpy.float64)]
                 for x1, y1, x2, y2 in boxes]
        out.append((img, boxes.copy(), numpy.array([1, 2], numpy.int32),
                    segms))
    return out


class Repeat(chainer.dataset.Iterator):
    """Always the same batch."""

    def __init__(self, batch):
        self.batch, self.batch_size = batch, len(batch)
        self.epoch, self.epoch_detail, self.is_new_epoch = 0, 0., False

    def next(self):
        return list(self.batch)


def bench(args, batch, subdivisions):
    numpy.random.seed(0)
    preset = get_preset(args.arch, min_size=min(args.size),
                        max_size=max(args.size))
    model = build_mask_rcnn(preset)
    chain = MaskRCNNTrainChain(model, train_targets(preset))
    device = None
    if args.gpu >= 0:
        chainer.backends.cuda.get_device_from_id(args.gpu).use()
        chain.to_gpu(args.gpu)
        device = args.gpu
    optimizer = chainer.optimizers.MomentumSGD(0., 0.9)
    optimizer.setup(chain)
    freeze(model, args.freeze_at)
    batcher = TrainBatcher((min(args.size),), max(args.size),
                           preset.pad_stride, flip=False,
                           normalization=model.normalization)
    updater = SubdivisionUpdater(Repeat(examples(batch, args.size)),
                                 optimizer, batcher, device, subdivisions)
    sync = (lambda: chainer.backends.cuda.Device().synchronize()) \
        if device is not None else (lambda: None)
    times = []
    reporter = chainer.Reporter()
    reporter.add_observer('main', chain)
    with chainer.using_config('train', True), reporter.scope({}):
        for i in range(args.repeat + 1):
            sync()
            t0 = time.perf_counter()
            updater.update()
            sync()
            if i:
                times.append(time.perf_counter() - t0)
    if device is not None:
        import cupy
        peak = cupy.get_default_memory_pool().total_bytes() / 2 ** 20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.
    sec = float(numpy.median(times))
    return {'arch': args.arch, 'backend': 'cupy' if device is not None
            else 'numpy', 'batch': batch, 'subdivisions': subdivisions,
            'freeze_at': args.freeze_at,
            'images_per_s': batch / sec, 'peak_mb': peak}


def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--arch', default='fpn', help='model preset')
    p.add_argument('--batch', type=int, nargs='+', default=(2, 8))
    p.add_argument('--subdivisions', type=int, nargs='+', default=(1, 4),
                   help='one per --batch')
    p.add_argument('--size', type=int, nargs=2, default=(800, 1216),
                   help='image height and width')
    p.add_argument('--repeat', type=int, default=2)
    p.add_argument('--freeze-at', type=int, default=0, choices=range(6),
                   help='frozen stem and res2..resK, as with --pretrained')
    p.add_argument('--gpu', type=int, default=-1)
    p.add_argument('--threads', type=int, default=default_threads(),
                   help='BLAS and OpenCV threads (utils/threads.py)')
    p.add_argument('--heap', choices=('keep', 'default'), default='keep',
                   help='keep freed memory as train.py does (utils/heap.py)'
                   ' or glibc\'s default')
    p.add_argument('--json', default=None)
    args = p.parse_args()
    blas = set_threads(args.threads)
    if args.heap == 'keep':
        keep_freed_memory()
    if len(args.subdivisions) != len(args.batch):
        p.error('give one --subdivisions per --batch')
    print('{:<6s} {:<6s} {:>5s} {:>5s} {:>9s} {:>9s}'.format(
        'arch', 'xp', 'batch', 'subdv', 'images/s', 'peak MB'))
    rows = []
    for batch, subdivisions in zip(args.batch, args.subdivisions):
        r = dict(bench(args, batch, subdivisions), threads=args.threads,
                 blas=blas, load_average=os.getloadavg())
        rows.append(r)
        print('{:<6s} {:<6s} {:>5d} {:>5d} {:>9.3f} {:>9.0f}'.format(
            r['arch'], r['backend'], batch, subdivisions, r['images_per_s'],
            r['peak_mb']), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
