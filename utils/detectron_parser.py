"""Convert Detectron and detectron2 weights to this project's npz.

    python utils/detectron_parser.py [FILE.pkl] [-o OUT.npz]
                                     [--arch auto|c4|fpn|backbone]

The format is recognised from the file:

* Detectron ``model_final.pkl`` (Mask R-CNN R-50/101-C4 or -FPN): a model
  npz with Detectron's semantics;
* Detectron ImageNet ``R-50.pkl`` / ``R-101.pkl`` (``--arch backbone``):
  a backbone npz for ``train.py --pretrained`` (C4 or FPN);
* detectron2 ``model_final_*.pkl`` of ``mask_rcnn_R_50_{C4,FPN}_*``: a
  model npz with detectron2's semantics (``utils/detectron2_converter.py``).

Pickles are read by a restricted unpickler that rebuilds NumPy arrays and
plain containers only (``utils/safe_pickle.py``): a file that tries to run
code is refused before anything runs. Detectron's ``cfg`` YAML is never
parsed.
"""
import argparse
import hashlib
import os
import re
import sys

if __name__ == '__main__':  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from utils import compat  # noqa: F401,E402  (before chainer)
import numpy  # noqa: E402

from utils.coco_names import COCO_CATEGORY_IDS, COCO_NAMES  # noqa: E402
from utils.detectron_names import blob_shapes, rename_table  # noqa: E402
from utils.model_io import DEFAULT_CONVENTIONS  # noqa: E402
from utils.detectron2_converter import convert_d2, is_detectron2  # noqa
from utils.safe_pickle import ConversionError, load_pickle  # noqa: E402

# Blobs Detectron saves beside the parameters that no model uses:
# momentum of every trainable parameter, and "preserved" leftovers of the
# ImageNet initialisation (conv1 bias, the classifier, conv biases).
MOMENTUM = re.compile(r'.*_momentum$')
PRESERVED = re.compile(r'^(conv1_b|fc1000_[wb]|res\d+_\d+_branch(1|2[abc])_b)$')


def load_blobs(path):
    """The parameter blobs of a Detectron pickle: {name: float32 ndarray}."""
    return blobs_of(load_pickle(path), path)


def blobs_of(data, path):
    """{name: float32 ndarray} of a loaded Detectron pickle."""
    if not isinstance(data, dict):
        raise ConversionError('{} holds a {}, expected a dict of blobs'.format(
            path, type(data).__name__))
    blobs = data.get('blobs', data)  # old files are a bare dict of blobs
    if not isinstance(blobs, dict):
        raise ConversionError("{}: 'blobs' is not a dict".format(path))
    out = {}
    for name, value in blobs.items():
        if not isinstance(value, numpy.ndarray):
            raise ConversionError('{}: blob {!r} is a {}, expected an '
                                  'ndarray'.format(path, name,
                                                   type(value).__name__))
        if name.startswith('__preserve__/'):
            name = name[len('__preserve__/'):]
        out[str(name)] = value.astype(numpy.float32)
    return out


def detect_arch(blobs):
    """('c4' | 'fpn' | 'backbone', depth) from the blob names."""
    if 'conv_rpn_fpn2_w' in blobs:
        arch = 'fpn'
    elif 'conv_rpn_w' in blobs:
        arch = 'c4'
    elif 'conv1_w' in blobs and 'cls_score_w' not in blobs:
        arch = 'backbone'  # an ImageNet R-50.pkl / R-101.pkl
    else:
        raise ConversionError('no RPN blobs (conv_rpn_w or conv_rpn_fpn2_w) '
                              'and no conv1_w: neither a Mask R-CNN '
                              'model_final.pkl nor an ImageNet R-*.pkl')
    n_res4 = len({m.group(1) for m in
                  (re.match(r'res4_(\d+)_', n) for n in blobs) if m})
    depth = {6: 50, 23: 101}.get(n_res4)
    if depth is None:
        raise ConversionError('res4 has {} blocks: neither ResNet-50 (6) '
                              'nor ResNet-101 (23)'.format(n_res4))
    return arch, depth


def split_blobs(blobs):
    """(parameters, dropped momentum names, dropped preserved names)."""
    momentum = sorted(n for n in blobs if MOMENTUM.match(n))
    preserved = sorted(n for n in blobs
                       if not MOMENTUM.match(n) and PRESERVED.match(n))
    params = {n: v for n, v in blobs.items()
              if not MOMENTUM.match(n) and not PRESERVED.match(n)}
    return params, momentum, preserved


def check_blobs(params, arch, depth, n_class):
    """Every expected blob present with its shape; nothing unexplained."""
    check_names_and_shapes(params, blob_shapes(arch, depth, n_class), arch,
                           'blob')


def check_names_and_shapes(params, expected, arch, noun):
    """``params`` holds exactly the names of ``expected`` ({name: shape})
    with those shapes; ``noun`` ('blob', 'tensor') words the errors."""
    missing = [n for n in expected if n not in params]
    extra = sorted(n for n in params if n not in expected)
    if missing:
        raise ConversionError('{} expected {} {}(s) missing: {}'.format(
            arch, len(missing), noun, ', '.join(missing[:8])))
    if extra:
        raise ConversionError('unexpected {}(s) for {}: {}'.format(
            noun, arch, ', '.join(extra[:8])))
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise ConversionError('{} {} has shape {}, expected {}'.format(
                noun, name, params[name].shape, shape))


def convert(blobs, arch='auto'):
    """Fill a model (or, for an ImageNet pickle, a ResNet body) from
    Detectron blobs.

    Returns:
        (chainer.Link, dict, list of str): the filled link, its metadata
        (without the source) and the report lines.
    """
    params, momentum, preserved = split_blobs(blobs)
    found_arch, depth = detect_arch(params)
    if arch not in ('auto', found_arch):
        raise ConversionError('the pickle holds a {} model, not {}'.format(
            found_arch, arch))
    arch = found_arch
    n_class = params['cls_score_w'].shape[0] if arch != 'backbone' else 0
    check_blobs(params, arch, depth, n_class)
    target = _target(arch, depth, n_class)
    table = rename_table(arch, depth)
    pairs = [p for group in table.values() for p in group]
    assert {blob for blob, _ in pairs} == set(params), 'blob left unused'
    fill(target, [(path, params[blob]) for blob, path in pairs])
    report = ['architecture: {} (ResNet-{}){}'.format(
        arch, depth, ', {} classes incl. background'.format(n_class)
        if n_class else '')]
    for group, group_pairs in table.items():
        report.append('  {:<10s} {:4d} blobs mapped'.format(group,
                                                          len(group_pairs)))
    report.append('blobs mapped: {}'.format(sum(map(len, table.values()))))
    report.append('momentum blobs dropped: {}'.format(len(momentum)))
    report.append('{} dropped: {}{}'.format(
        'unused ImageNet blobs (conv1 bias, fc1000, conv biases)'
        if arch == 'backbone' else 'preserved ImageNet leftovers',
        len(preserved), ' ({}{})'.format(', '.join(preserved[:4]),
                                          ', ...' if len(preserved) > 4
                                          else '') if preserved else ''))
    report.append('tensor surgery: none ({})'.format(
        'BGR conv1 kept as it is' if arch == 'backbone' else
        'Detectron order (dx, dy, dw, dh), BGR conv1, background class 0 '
        'kept as they are'))
    meta = {'depth': depth, 'conventions': dict(DEFAULT_CONVENTIONS)}
    if arch == 'backbone':
        meta['kind'] = 'backbone'
    else:
        meta.update(arch=arch, n_fg_class=n_class - 1)
        meta.update(coco_classes(n_class - 1))
    return target, meta, report


def _target(arch, depth, n_class):
    from models.presets import build_mask_rcnn, get_preset
    from models.resnet import ResNetBody
    if arch == 'backbone':
        return ResNetBody(depth, 5, 'affine')
    return build_mask_rcnn(get_preset(arch, depth=depth,
                                      n_fg_class=n_class - 1))


def fill(target, pairs):
    """Copy ``(model path, array)`` pairs into ``target``'s arrays: every
    array filled exactly once (asserted: the tables are code, a gap is a
    bug) and every shape equal (checked: a file can be wrong)."""
    from utils.model_io import model_arrays
    arrays = model_arrays(target)
    paths = [path for path, _ in pairs]
    assert len(set(paths)) == len(paths) == len(arrays), \
        'rename table does not cover the model one-to-one'
    assert set(paths) == set(arrays), sorted(set(arrays) ^ set(paths))
    for path, value in pairs:
        dst = arrays[path]
        if dst.shape != value.shape:
            raise ConversionError('{} does not fit {}: {} vs {}'.format(
                path, type(target).__name__, value.shape, dst.shape))
        dst[...] = value


def coco_classes(n_fg_class):
    """Class metadata of a COCO model (80 classes), else nothing."""
    if n_fg_class != 80:
        return {}
    return {'class_ids': list(COCO_CATEGORY_IDS),
            'class_names': list(COCO_NAMES)}


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Convert Detectron / detectron2 Mask R-CNN weights or a '
                    'Detectron ImageNet R-50/R-101.pkl to npz.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('pkl', nargs='?', default='modelfiles/model_final.pkl',
                   help='Detectron model_final.pkl or R-50.pkl / R-101.pkl, '
                        'or detectron2 model_final_*.pkl')
    p.add_argument('-o', '--out', default=None,
                   help='output npz (default: beside the input, '
                        '<name>_<arch>.npz)')
    p.add_argument('--arch', choices=('auto', 'c4', 'fpn', 'backbone'),
                   default='auto',
                   help='expected architecture (backbone: an ImageNet '
                        'R-*.pkl); auto detects it from the names')
    return p.parse_args(argv)


def main(argv=None):
    from utils.model_io import save_model
    args = parse_args(argv)
    data = load_pickle(args.pkl)
    if is_detectron2(data):
        if args.arch == 'backbone':
            raise ConversionError('{} is a detectron2 detection checkpoint, '
                                  'not an ImageNet backbone'.format(args.pkl))
        model, meta, report = convert_d2(data, args.arch)
        fmt = 'detectron2'
    else:
        model, meta, report = convert(blobs_of(data, args.pkl), args.arch)
        fmt = 'detectron'
    del data
    meta['source'] = {'file': os.path.basename(args.pkl),
                      'sha256': sha256(args.pkl), 'format': fmt}
    out = args.out or '{}_{}.npz'.format(os.path.splitext(args.pkl)[0],
                                         meta.get('arch', 'backbone'))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_model(out, model, meta)
    print('\n'.join(report))
    print('wrote {}'.format(out))
    return out


if __name__ == '__main__':
    try:
        main()
    except ConversionError as e:
        sys.exit('detectron_parser.py: error: {}'.format(e))
