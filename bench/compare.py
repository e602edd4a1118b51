"""Ratios of our benchmark JSON to torchvision's, as issue #8 states its
goals (ours / torchvision: below 1 is faster; images/s: above 1 is
faster).

    python bench/compare.py inference OURS.json TORCHVISION.json
    python bench/compare.py roi_align OURS.json TORCHVISION.json
    python bench/compare.py train OURS.json TORCHVISION.json

For inference it also prints each row's total latency in milliseconds next
to torchvision's: ours on NumPy (and CuPy) and the same weights exported
to ONNX on onnxruntime's CPU provider, timed by ``bench/inference.py`` in
the same run on the same image size.

OURS comes from ``bench/inference.py``, ``bench/roi_align.py`` or
``bench/train.py`` with ``--json``; TORCHVISION from
``bench/torchvision_ref.py <what> --json``, run on the same machine.
"""
import argparse
import json

STAGES = ('prepare', 'backbone', 'rpn', 'box head', 'mask head', 'paste',
          'total')


def _load(path):
    with open(path) as f:
        data = json.load(f)
    return data['rows'] if isinstance(data, dict) else data


def inference(ours, theirs):
    ref = theirs[0]
    print('latency ratio ours / torchvision ({} dets vs {})'.format(
        '/'.join(str(int(r['detections'])) for r in ours),
        int(ref['detections'])))
    print('{:<6s} {:<11s}'.format('arch', 'xp') +
          ''.join(' {:>9s}'.format(s) for s in STAGES))
    for row in ours:
        print('{:<6s} {:<11s}'.format(row['arch'], row['backend']) +
              ''.join(' {:>9.2f}'.format(row[s] / ref[s]) for s in STAGES))
    print('total latency, ms')
    for row in ours + [ref]:
        print('{:<6s} {:<11s} {:>9.1f}'.format(
            row['arch'].replace('torchvision-', 'tv-'), row['backend'],
            row['total'] * 1e3))


def roi_align(ours, theirs):
    ref = {r['case']: r for r in theirs}
    print('{:<42s} {:<7s} {:>10s}'.format('case', 'xp',
                                          'fwd+bwd ratio'))
    for row in ours:
        r = ref.get(row['case'])
        if r is None:
            continue
        ratio = ((row['forward_ms'] + row['backward_ms']) /
                 (r['forward_ms'] + r['backward_ms']))
        print('{:<42s} {:<7s} {:>10.2f}'.format(row['case'], row['backend'],
                                                ratio))


def train(ours, theirs):
    ref = {r['batch']: r for r in theirs}
    print('{:<6s} {:<6s} {:>5s} {:>16s} {:>16s}'.format(
        'arch', 'xp', 'batch', 'images/s ratio', 'peak mem ratio'))
    for row in ours:
        r = ref.get(row['batch'])
        if r is None:
            continue
        print('{:<6s} {:<6s} {:>5d} {:>16.2f} {:>16.2f}'.format(
            row['arch'], row['backend'], row['batch'],
            row['images_per_s'] / r['images_per_s'],
            row['peak_mb'] / r['peak_mb']))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('what', choices=('inference', 'roi_align', 'train'))
    p.add_argument('ours')
    p.add_argument('torchvision')
    args = p.parse_args()
    {'inference': inference, 'roi_align': roi_align, 'train': train}[
        args.what](_load(args.ours), _load(args.torchvision))


if __name__ == '__main__':
    main()
