"""Two training jobs on the same cores: how much each slows down.

    python bench/shared_cores.py [--threads 0 1] [--rounds 2] [--repeat 20]

For each ``--threads`` value (0: the default of ``utils/threads.py``, the
usable cores), runs ``bench/train.py`` (fpn-tiny, 192 x 256, batch 2)
alone, then two copies at once, alternating (alone, pair, alone, pair, ...)
``--rounds`` times. Prints the median images/s of one job alone and of
each job of a pair, their spread, and the slowdown alone / pair; issue #15
asks for at most 2.5x. Run it on an otherwise quiet machine; the load
average is printed first.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_jobs(n_jobs, threads, repeat, folder):
    """Start ``n_jobs`` copies of bench/train.py together; images/s each."""
    procs, outs = [], []
    for j in range(n_jobs):
        out = os.path.join(folder, 'job{}.json'.format(j))
        cmd = [sys.executable, os.path.join(ROOT, 'bench', 'train.py'),
               '--arch', 'fpn-tiny', '--size', '192', '256', '--batch', '2',
               '--subdivisions', '1', '--repeat', str(repeat), '--json', out]
        if threads:
            cmd += ['--threads', str(threads)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        outs.append(out)
    for p in procs:
        if p.wait():
            raise SystemExit('bench/train.py failed: {}'.format(p.args))
    rows = []
    for out in outs:
        with open(out) as f:
            rows.append(json.load(f)[0])
    return rows


def spread(values):
    return '{:.3f} [{:.3f}-{:.3f}]'.format(numpy.median(values),
                                           min(values), max(values))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, nargs='+', default=(0, 1),
                   help='BLAS/OpenCV threads per job; 0 = the default')
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--repeat', type=int, default=20,
                   help='timed training steps per job')
    p.add_argument('--json', default=None)
    args = p.parse_args()
    print('load average before: {:.2f} {:.2f} {:.2f}'.format(
        *os.getloadavg()))
    print('{:>8s} {:>22s} {:>22s} {:>9s}'.format(
        'threads', 'alone images/s', 'pair images/s (each)', 'slowdown'))
    table = []
    with tempfile.TemporaryDirectory() as folder:
        for threads in args.threads:
            alone, pair, used = [], [], None
            for _ in range(args.rounds):
                rows = run_jobs(1, threads, args.repeat, folder)
                alone.append(rows[0]['images_per_s'])
                used = rows[0]['threads']
                pair += [r['images_per_s'] for r in
                         run_jobs(2, threads, args.repeat, folder)]
            slowdown = numpy.median(alone) / numpy.median(pair)
            print('{:>8s} {:>22s} {:>22s} {:>8.2f}x'.format(
                '{}{}'.format(used, ' (default)' if not threads else ''),
                spread(alone), spread(pair), slowdown), flush=True)
            table.append({'threads': used, 'default': not threads,
                          'alone': alone, 'pair': pair,
                          'slowdown': slowdown})
    print('load average after: {:.2f} {:.2f} {:.2f}'.format(
        *os.getloadavg()))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(table, f, indent=1)


if __name__ == '__main__':
    main()
