"""3x3 stride-1 convolutions of R-50-FPN at 800 x 1216: the direct GEMM
path against Winograd F(2x2, 3x3), interleaved, median [min-max] ms.

    python bench/winograd.py [--rounds 3] [--threads 2] [--model]

The rows are the shapes the rule in ``functions/winograd.py``
(``worthwhile``) was set from; the last column says what the rule picks.
``--model`` also times the whole R-50-FPN inference of
``bench/inference.py`` per stage, with Winograd off and on in turn.
Unset the OpenBLAS pin of our CI machines in this command only:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/winograd.py``.
"""
import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils import compat  # noqa: F401,E402
import numpy  # noqa: E402

from functions import winograd  # noqa: E402
from functions.convolution_2d import convolution_2d  # noqa: E402
from inference import STAGES, bench_model, stage_times  # noqa: E402
from utils.threads import set_threads  # noqa: E402

# (name, (N, C, H, W), O)
SHAPES = [
    ('res2 3x3', (1, 64, 200, 304), 64),
    ('res3 3x3', (1, 128, 100, 152), 128),
    ('res4 3x3', (1, 256, 50, 76), 256),
    ('res5 3x3', (1, 512, 25, 38), 512),
    ('FPN/RPN P2', (1, 256, 200, 304), 256),
    ('FPN/RPN P3', (1, 256, 100, 152), 256),
    ('FPN/RPN P5', (1, 256, 25, 38), 256),
    ('RPN P6', (1, 256, 13, 19), 256),
    ('mask head, 100 ROIs', (100, 256, 14, 14), 256),
    ('mask head, 10 ROIs', (10, 256, 14, 14), 256),
]


@contextlib.contextmanager
def winograd_off(off=True):
    """``convolution_2d`` without (or, ``off=False``, with) Winograd."""
    rule = winograd.MIN_CHANNELS
    winograd.MIN_CHANNELS = 1 << 30 if off else rule
    try:
        yield
    finally:
        winograd.MIN_CHANNELS = rule


def direct(x, W):
    """The GEMM path ``convolution_2d`` takes without Winograd."""
    with winograd_off():
        return convolution_2d(x, W, pad=1).array


def seconds(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def model_table(rounds):
    """R-50-FPN inference per stage, direct then Winograd, A B A B."""
    model = bench_model('fpn')
    img = numpy.random.RandomState(0).uniform(
        0, 255, (3, 800, 1216)).astype(numpy.float32)
    stage_times(model, img)                                # warm up
    runs = {'direct': [], 'Winograd': []}
    for _ in range(rounds):
        for name in runs:
            with winograd_off(name == 'direct'):
                runs[name].append(stage_times(model, img))
    print('\n| stage | direct ms | Winograd ms | ratio |')
    print('|---|---|---|---|')
    for stage in STAGES[1:] + ('total',):
        d, w = (1e3 * numpy.array([r[stage] for r in runs[k]])
                for k in ('direct', 'Winograd'))
        print('| {} | {:.0f} [{:.0f}-{:.0f}] | {:.0f} [{:.0f}-{:.0f}] | '
              '{:.2f} |'.format(stage, numpy.median(d), d.min(), d.max(),
                                numpy.median(w), w.min(), w.max(),
                                numpy.median(w) / numpy.median(d)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--model', action='store_true',
                   help='also time R-50-FPN inference per stage')
    args = p.parse_args()
    set_threads(args.threads)
    print('load average before: {:.2f}'.format(os.getloadavg()[0]))
    print('| layer | x | direct ms | Winograd ms | ratio | rule |')
    print('|---|---|---|---|---|---|')
    rng = numpy.random.RandomState(0)
    for name, shape, o in SHAPES:
        x = rng.randn(*shape).astype(numpy.float32)
        W = (rng.randn(o, shape[1], 3, 3) * 0.05).astype(numpy.float32)
        direct(x, W), winograd.conv3x3(x, W, 1, 1)          # warm up
        times = {'d': [], 'w': []}
        for _ in range(args.rounds):                        # A B A B
            times['d'].append(seconds(lambda: direct(x, W)))
            times['w'].append(seconds(lambda: winograd.conv3x3(x, W, 1, 1)))
        d, w = (1e3 * numpy.array(times[k]) for k in 'dw')
        rule = winograd.worthwhile(numpy, x.dtype, x.shape, W.shape, (1, 1),
                                   (1, 1))
        print('| {} | {} | {:.1f} [{:.1f}-{:.1f}] | {:.1f} [{:.1f}-{:.1f}] '
              '| {:.2f} | {} |'.format(
                  name, 'x'.join(map(str, shape)), numpy.median(d), d.min(),
                  d.max(), numpy.median(w), w.min(), w.max(),
                  numpy.median(w) / numpy.median(d),
                  'Winograd' if rule else 'direct'), flush=True)
    if args.model:
        model_table(args.rounds)
    print('load average after: {:.2f}'.format(os.getloadavg()[0]))


if __name__ == '__main__':
    main()
