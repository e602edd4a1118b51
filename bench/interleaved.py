"""Ours against torchvision on the CPU, interleaved: A B A B ...

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python bench/interleaved.py --torch-python /path/to/python \\
        [--arch fpn] [--rounds 3] [--repeat 3] [--threads 2]

Each round runs ``bench/inference.py --arch ARCH`` (ours) and then
``bench/torchvision_ref.py inference --device cpu`` (R-50-FPN) in fresh
processes with the same number of threads, so that a change in the
machine's load touches both sides alike. Prints, per stage, the median of
the rounds and their range for each side, and the ratio of the medians
(ours / torchvision: below 1 is faster), with the load average before and
after. ``--torch-python`` is any Python with torch and torchvision (torch
is never a dependency of this project). Run it on an otherwise quiet
machine.
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


def run(cmd, out):
    """The JSON rows of one benchmark process, by backend ('numpy',
    'onnxruntime'; torchvision's: 'cpu')."""
    subprocess.run(cmd + ['--json', out], check=True,
                   stdout=subprocess.DEVNULL)
    with open(out) as f:
        return {r['backend']: r for r in json.load(f)}


def cell(values):
    """'median [min-max]' in ms."""
    ms = [v * 1e3 for v in values]
    return '{:.0f} [{:.0f}-{:.0f}]'.format(numpy.median(ms), min(ms),
                                           max(ms))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    p.add_argument('--json', default=None)
    args = p.parse_args()
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
            theirs.append(run(theirs_cmd, out)['cpu'])
            print('round {}: ours {:.0f} ms, {}torchvision {:.0f} ms'.format(
                i + 1, ours[-1]['total'] * 1e3, 'onnxruntime {:.0f} ms, '
                .format(ort[-1]['total'] * 1e3) if ort else '',
                theirs[-1]['total'] * 1e3), flush=True)
    after = os.getloadavg()
    blas = ', '.join('{internal_api} {version} {architecture}'.format(**b)
                     for b in ours[0]['blas'])
    print('{}\nload average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} '
          '{:.2f}; {} threads each; our BLAS: {}; SGEMM {:.0f} GFLOP/s'
          .format(ours[0]['cpu'], *before, *after, args.threads, blas,
                  numpy.median([r['sgemm_gflops'] for r in ours])))
    print('{:<10s} {:>20s} {:>20s} {:>7s}'.format(
        'stage (ms)', 'ours ' + args.arch, 'torchvision', 'ratio'))
    for s in STAGES:
        a = [r[s] for r in ours]
        b = [r[s] for r in theirs]
        print('{:<10s} {:>20s} {:>20s} {:>7.2f}'.format(
            s, cell(a), cell(b), numpy.median(a) / numpy.median(b)))
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
