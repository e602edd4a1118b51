"""Ours against torchvision on the CPU, interleaved: A B A B ...

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python bench/interleaved.py [inference] --torch-python /path/to/python \\
        [--arch fpn] [--rounds 3] [--repeat 3] [--threads 2]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python bench/interleaved.py train --torch-python /path/to/python \\
        [--batch 2 8] [--subdivisions 1 4] [--freeze-at 2] [--rounds 3] \\
        [--torch-heap default|keep]

Each round runs ``bench/inference.py --arch ARCH`` (ours) and then
``bench/torchvision_ref.py inference --device cpu`` (R-50-FPN) in fresh
processes with the same number of threads, so that a change in the
machine's load touches both sides alike. Prints, per stage, the median of
the rounds and their range for each side, and the ratio of the medians
(ours / torchvision: below 1 is faster), with the load average before and
after. ``--torch-python`` is any Python with torch and torchvision (torch
is never a dependency of this project). Run it on an otherwise quiet
machine.

``train`` does the same with ``bench/train.py`` and ``bench/torchvision_ref.py
train``, one process per side, batch and round (so that each peak RSS is
that batch's alone): images/s and peak RSS, median [range] over the rounds,
and the ratios ours / torchvision (images/s above 1 is faster; memory below
1 is smaller). Our ``--batch B --subdivisions S`` runs B images as S
passes of B / S; torchvision runs the B images in one pass. Ours keeps
freed memory in its heap, as ``train.py`` does (``utils/heap.py``);
torchvision runs with glibc's default unless ``--torch-heap keep``
(inference too: ours keeps it as ``demo.py`` does).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ('backbone', 'rpn', 'box head', 'mask head', 'paste', 'total')


def run(cmd, out, env=None):
    """The JSON rows of one benchmark process (environment ``env``, None:
    ours), by backend ('numpy', 'onnxruntime'; torchvision's: 'cpu')."""
    subprocess.run(cmd + ['--json', out], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    with open(out) as f:
        return {r['backend']: r for r in json.load(f)}


def heap_env(heap):
    """The environment of torchvision's process: ``keep`` gives it, through
    glibc's variables, what ``utils/heap.py`` gives ours (its allocations
    go through glibc's malloc too); ``default``: None, ours unchanged."""
    if heap == 'default':
        return None
    return dict(os.environ, MALLOC_MMAP_MAX_='0', MALLOC_TRIM_THRESHOLD_='-1')


def cell(values):
    """'median [min-max]' in ms."""
    ms = [v * 1e3 for v in values]
    return '{:.0f} [{:.0f}-{:.0f}]'.format(numpy.median(ms), min(ms),
                                           max(ms))


def cells(values, fmt):
    """'median [min-max]' of ``values``."""
    return '{} [{}-{}]'.format(*(fmt.format(v) for v in (
        numpy.median(values), min(values), max(values))))


def train(args):
    """Interleaved training rounds; prints the table, returns the rows."""
    common = ['--repeat', str(args.repeat), '--threads', str(args.threads),
              '--freeze-at', str(args.freeze_at)]
    ours, theirs = {}, {}
    torch_env = heap_env(args.torch_heap)
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, 'row.json')
        for i in range(args.rounds):
            for b, sub in zip(args.batch, args.subdivisions):
                a = run([sys.executable, os.path.join(ROOT, 'bench',
                                                      'train.py'),
                         '--arch', args.arch, '--batch', str(b),
                         '--subdivisions', str(sub)] + common, out)['numpy']
                t = run([args.torch_python, os.path.join(
                    ROOT, 'bench', 'torchvision_ref.py'), 'train',
                    '--device', 'cpu', '--batch', str(b)] + common,
                    out, torch_env)['cpu']
                ours.setdefault(b, []).append(a)
                theirs.setdefault(b, []).append(t)
                print('round {} batch {}: ours {:.3f} images/s {:.0f} MB, '
                      'torchvision {:.3f} images/s {:.0f} MB'.format(
                          i + 1, b, a['images_per_s'], a['peak_mb'],
                          t['images_per_s'], t['peak_mb']), flush=True)
    after = os.getloadavg()
    print('load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} '
          '{:.2f}; {} threads each; --freeze-at {}; torchvision heap {}'
          .format(*before, *after, args.threads, args.freeze_at,
                  args.torch_heap))
    print('{:<11s} {:>22s} {:>22s} {:>6s} {:>6s}'.format(
        'batch/subdv', 'ours', 'torchvision', 'median', 'best'))
    for b, sub in zip(args.batch, args.subdivisions):
        for key, fmt, best in (('images_per_s', '{:.3f}', max),
                               ('peak_mb', '{:.0f}', min)):
            a = [r[key] for r in ours[b]]
            t = [r[key] for r in theirs[b]]
            print('{:<11s} {:>22s} {:>22s} {:>6.2f} {:>6.2f}  {}'.format(
                '{}/{}'.format(b, sub), cells(a, fmt), cells(t, fmt),
                numpy.median(a) / numpy.median(t), best(a) / best(t),
                'images/s' if key == 'images_per_s' else 'peak RSS MB'))
    return {'ours': ours, 'torchvision': theirs,
            'load_average': [before, after]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('what', nargs='?', default='inference',
                   choices=('inference', 'train'))
    p.add_argument('--torch-python', required=True,
                   help='a Python with torch and torchvision')
    p.add_argument('--arch', default='fpn')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--repeat', type=int, default=3,
                   help='timed runs per process (median), after a warm-up')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--onnxruntime', action='store_true',
                   help='also time the same weights exported to ONNX on '
                        "onnxruntime's CPU provider (in our process, after "
                        'ours; needs bash setup.sh --onnx)')
    p.add_argument('--batch', type=int, nargs='+', default=(2, 8),
                   help='train: images per step')
    p.add_argument('--subdivisions', type=int, nargs='+', default=(1, 4),
                   help='train: ours, one per --batch')
    p.add_argument('--freeze-at', type=int, default=2,
                   help="train: both sides' frozen stem and res2..resK")
    p.add_argument('--torch-heap', choices=('default', 'keep'),
                   default='default',
                   help="torchvision with glibc's default heap or keeping "
                        'freed memory, as train.py and demo.py do')
    p.add_argument('--json', default=None)
    args = p.parse_args()
    if args.what == 'train':
        if len(args.subdivisions) != len(args.batch):
            p.error('give one --subdivisions per --batch')
        rows = train(args)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(rows, f, indent=1)
        return
    ours_cmd = [sys.executable, os.path.join(ROOT, 'bench', 'inference.py'),
                '--arch', args.arch, '--repeat', str(args.repeat),
                '--threads', str(args.threads)] + (
                    [] if args.onnxruntime else ['--no-onnxruntime'])
    theirs_cmd = [args.torch_python,
                  os.path.join(ROOT, 'bench', 'torchvision_ref.py'),
                  'inference', '--device', 'cpu', '--threads',
                  str(args.threads), '--repeat', str(args.repeat)]
    before = os.getloadavg()
    ours, ort, theirs = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, 'row.json')
        for i in range(args.rounds):
            rows = run(ours_cmd, out)
            ours.append(rows['numpy'])
            ort += [rows['onnxruntime']] if args.onnxruntime else []
            theirs.append(run(theirs_cmd, out, heap_env(args.torch_heap))[
                'cpu'])
            print('round {}: ours {:.0f} ms, {}torchvision {:.0f} ms'.format(
                i + 1, ours[-1]['total'] * 1e3, 'onnxruntime {:.0f} ms, '
                .format(ort[-1]['total'] * 1e3) if ort else '',
                theirs[-1]['total'] * 1e3), flush=True)
    after = os.getloadavg()
    blas = ', '.join('{internal_api} {version} {architecture}'.format(**b)
                     for b in ours[0]['blas'])
    print('{}\nload average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} '
          '{:.2f}; {} threads each; our BLAS: {}; SGEMM {:.0f} GFLOP/s; '
          'torchvision heap {}'.format(
              ours[0]['cpu'], *before, *after, args.threads, blas,
              numpy.median([r['sgemm_gflops'] for r in ours]),
              args.torch_heap))
    print('{:<10s} {:>20s} {:>20s} {:>7s} {:>6s}'.format(
        'stage (ms)', 'ours ' + args.arch, 'torchvision', 'median', 'best'))
    for s in STAGES:
        a = [r[s] for r in ours]
        b = [r[s] for r in theirs]
        print('{:<10s} {:>20s} {:>20s} {:>7.2f} {:>6.2f}'.format(
            s, cell(a), cell(b), numpy.median(a) / numpy.median(b),
            min(a) / min(b)))
    a, b = ([r['peak_mb'] for r in rows] for rows in (ours, theirs))
    print('{:<10s} {:>20s} {:>20s} {:>7.2f} {:>6.2f}{}'.format(
        'peak MB', cells(a, '{:.0f}'), cells(b, '{:.0f}'),
        numpy.median(a) / numpy.median(b), min(a) / min(b),
        '  (ours includes the onnxruntime session)' if ort else ''))
    if ort:
        print('{:<10s} {:>20s} {:>20s} {:>7.2f}'.format(
            'onnxruntime', cell([r['total'] for r in ort]), 'total',
            numpy.median([r['total'] for r in ort]) /
            numpy.median([r['total'] for r in theirs])))
    rate = [r['backbone_gflop'] / r['backbone'] for r in ours]
    print('backbone: {:.1f} GFLOP at {:.0f} GFLOP/s, {:.2f} of SGEMM'.format(
        ours[0]['backbone_gflop'], numpy.median(rate), numpy.median(
            [g / r['sgemm_gflops'] for g, r in zip(rate, ours)])))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'ours': ours, 'onnxruntime': ort,
                       'torchvision': theirs,
                       'load_average': [before, after]}, f, indent=1)


if __name__ == '__main__':
    main()
