"""Convert a Detectron ``model_final.pkl`` (Mask R-CNN R-50/101-C4 or -FPN)
to this project's npz.

    python utils/detectron_parser.py [MODEL_FINAL.pkl] [-o OUT.npz]
                                     [--arch auto|c4|fpn]

The pickle is read by a restricted unpickler that rebuilds NumPy arrays and
plain containers only: a file that tries to run code is refused before
anything runs. The embedded ``cfg`` YAML is never parsed.
"""
import argparse
import hashlib
import os
import pickle
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

# Blobs Detectron saves beside the parameters that no model uses:
# momentum of every trainable parameter, and "preserved" leftovers of the
# ImageNet initialisation (conv1 bias, the classifier, conv biases).
MOMENTUM = re.compile(r'.*_momentum$')
PRESERVED = re.compile(r'^(conv1_b|fc1000_[wb]|res\d+_\d+_branch(1|2[abc])_b)$')

_SAFE_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('_codecs', 'encode'),
    ('collections', 'OrderedDict'),
}


class ConversionError(ValueError):
    """A pickle that is not a Detectron model of the expected kind."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise ConversionError(
                'refusing to load {}.{}: a Detectron weights pickle holds '
                'only NumPy arrays'.format(module, name))
        if module.startswith('numpy.core'):
            module = 'numpy._core' + module[len('numpy.core'):]
        return super().find_class(module, name)


def load_blobs(path):
    """The parameter blobs of a Detectron pickle: {name: float32 ndarray}."""
    if not os.path.isfile(path):
        raise ConversionError('file not found: {}'.format(path))
    try:
        with open(path, 'rb') as f:
            data = _SafeUnpickler(f, encoding='latin1').load()
    except ConversionError:
        raise
    except Exception as e:  # truncated, not a pickle, ...
        raise ConversionError('{} is not a readable pickle ({}: {})'.format(
            path, type(e).__name__, e)) from None
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
    """('c4' | 'fpn', depth) from the blob names."""
    if 'conv_rpn_fpn2_w' in blobs:
        arch = 'fpn'
    elif 'conv_rpn_w' in blobs:
        arch = 'c4'
    else:
        raise ConversionError('no RPN blobs (conv_rpn_w or conv_rpn_fpn2_w): '
                              'not a Mask R-CNN model_final.pkl')
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
    expected = blob_shapes(arch, depth, n_class)
    missing = [n for n in expected if n not in params]
    extra = sorted(n for n in params if n not in expected)
    if missing:
        raise ConversionError('{} expected {} blob(s) missing: {}'.format(
            arch, len(missing), ', '.join(missing[:8])))
    if extra:
        raise ConversionError('unexpected blob(s) for {}: {}'.format(
            arch, ', '.join(extra[:8])))
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise ConversionError('blob {} has shape {}, expected {}'.format(
                name, params[name].shape, shape))


def convert(blobs, arch='auto'):
    """Fill a model from Detectron blobs.

    Returns:
        (MaskRCNN, dict, list of str): the model, its metadata (without the
        source) and the report lines.
    """
    from models.presets import build_mask_rcnn, get_preset
    from utils.model_io import model_arrays
    params, momentum, preserved = split_blobs(blobs)
    found_arch, depth = detect_arch(params)
    if arch not in ('auto', found_arch):
        raise ConversionError('the pickle holds a {} model, not {}'.format(
            found_arch, arch))
    arch = found_arch
    if 'cls_score_w' not in params:
        raise ConversionError('cls_score_w missing: not a detection model')
    n_class = params['cls_score_w'].shape[0]
    check_blobs(params, arch, depth, n_class)
    model = build_mask_rcnn(get_preset(arch, depth=depth,
                                       n_fg_class=n_class - 1))
    arrays = model_arrays(model)
    table = rename_table(arch, depth)
    pairs = [p for group in table.values() for p in group]
    targets = [path for _, path in pairs]
    # One-to-one: every model array filled exactly once, every blob used.
    assert len(set(targets)) == len(targets) == len(arrays), \
        'rename table does not cover the model one-to-one'
    assert set(targets) == set(arrays), sorted(set(arrays) ^ set(targets))
    assert {b for b, _ in pairs} == set(params)
    for blob, path in pairs:
        dst = arrays[path]
        if dst.shape != params[blob].shape:
            raise ConversionError('blob {} {} does not fit {} {}'.format(
                blob, params[blob].shape, path, dst.shape))
        dst[...] = params[blob]
    report = ['architecture: {} (ResNet-{}), {} classes incl. background'
              .format(arch, depth, n_class)]
    for group, group_pairs in table.items():
        report.append('  {:<10s} {:4d} blobs mapped'.format(group,
                                                          len(group_pairs)))
    report.append('blobs mapped: {}'.format(len(pairs)))
    report.append('momentum blobs dropped: {}'.format(len(momentum)))
    report.append('preserved ImageNet leftovers dropped: {}{}'.format(
        len(preserved), ' ({}{})'.format(', '.join(preserved[:4]),
                                          ', ...' if len(preserved) > 4
                                          else '') if preserved else ''))
    report.append('tensor surgery: none (Detectron order (dx, dy, dw, dh), '
                  'BGR conv1, background class 0 kept as they are)')
    meta = {'arch': arch, 'depth': depth, 'n_fg_class': n_class - 1,
            'conventions': dict(DEFAULT_CONVENTIONS)}
    if n_class == 81:
        meta['class_ids'] = list(COCO_CATEGORY_IDS)
        meta['class_names'] = list(COCO_NAMES)
    return model, meta, report


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Convert a Detectron Mask R-CNN model_final.pkl to npz.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('pkl', nargs='?', default='modelfiles/model_final.pkl',
                   help='Detectron model_final.pkl')
    p.add_argument('-o', '--out', default=None,
                   help='output npz (default: beside the input, '
                        '<name>_<arch>.npz)')
    p.add_argument('--arch', choices=('auto', 'c4', 'fpn'), default='auto',
                   help='expected architecture; auto detects it from the '
                        'blob names')
    return p.parse_args(argv)


def main(argv=None):
    from utils.model_io import save_model
    args = parse_args(argv)
    blobs = load_blobs(args.pkl)
    model, meta, report = convert(blobs, args.arch)
    del blobs
    meta['source'] = {'file': os.path.basename(args.pkl),
                      'sha256': sha256(args.pkl), 'format': 'detectron'}
    out = args.out or '{}_{}.npz'.format(os.path.splitext(args.pkl)[0],
                                         meta['arch'])
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
