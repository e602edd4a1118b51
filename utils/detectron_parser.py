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
from utils.model_io import DEFAULT_CONVENTIONS, ModelFileError  # noqa: E402
from utils.detectron2_converter import convert_d2, is_detectron2  # noqa
from utils.safe_pickle import (ConversionError, RefusedArray,  # noqa: E402
                               load_pickle, short_repr)

# Blobs Detectron saves beside the parameters that no model uses:
# momentum of every trainable parameter, and "preserved" leftovers of the
# ImageNet initialisation (conv1 bias, the classifier, conv biases).
MOMENTUM = re.compile(r'.*_momentum$')
PRESERVED = re.compile(r'^(conv1_b|fc1000_[wb]|res\d+_\d+_branch(1|2[abc])_b)$')


def load_blobs(path):
    """The parameter blobs of a Detectron pickle: {name: ndarray}."""
    data = load_pickle(path)
    try:
        return blobs_of(data)
    except ConversionError as e:
        raise ConversionError('{}: {}'.format(path, e)) from None


def blobs_of(data):
    """{name: ndarray} of a loaded Detectron pickle, dtypes as stored: they
    are cast only after their names and shapes are checked."""
    if not isinstance(data, dict):
        raise ConversionError('holds a {}, expected a dict of blobs'.format(
            type(data).__name__))
    blobs = data.get('blobs', data)  # old files are a bare dict of blobs
    if not isinstance(blobs, dict):
        raise ConversionError("'blobs' is not a dict")
    out = {}
    for name, value in blobs.items():
        check_array(name, value, 'blob')
        if name.startswith('__preserve__/'):
            name = name[len('__preserve__/'):]
        if name in out:
            raise ConversionError('blob {} appears twice (with and without '
                                  '__preserve__/)'.format(name))
        out[name] = value
    return out


def check_array(name, value, noun):
    """A named array of a file: a str name and an array of numbers."""
    if not isinstance(name, str):
        raise ConversionError('{} name {} is not a str but a {}'.format(
            noun, short_repr(name), type(name).__name__))
    dtype = getattr(value, 'dtype', None)
    if isinstance(value, RefusedArray) or (
            isinstance(value, numpy.ndarray) and dtype.kind not in 'biuf'):
        raise ConversionError(
            '{} {} has dtype {}, expected numbers (bool, int, uint or '
            'float)'.format(noun, name, dtype))
    if not isinstance(value, numpy.ndarray):
        raise ConversionError('{} {!r} is a {}, expected an ndarray'.format(
            noun, name, type(value).__name__))


def finite_float32(params, noun):
    """``params`` as float32, each value finite (a NaN or Inf weight, or a
    float64 beyond float32's range, would silently poison every output).
    Called after the shape checks so that only expected arrays are cast."""
    out = {}
    with numpy.errstate(over='ignore', invalid='ignore'):
        for name, value in params.items():
            value = value.astype(numpy.float32)
            bad = value.size - numpy.count_nonzero(numpy.isfinite(value))
            if bad:
                raise ConversionError(
                    '{} {} holds {} NaN or infinite value(s) (as float32)'
                    .format(noun, name, bad))
            out[name] = value
    return out


def count_classes(params, name):
    """Rows of the classifier weight ``name``: the classes, background
    included, that the model is built for."""
    w = params.get(name)
    if w is None:
        raise ConversionError('{} missing: cannot tell the number of '
                              'classes (not a detection model?)'.format(name))
    if w.ndim != 2 or w.shape[0] < 2:
        raise ConversionError('{} has shape {}, expected (classes incl. '
                              'background >= 2, channels)'.format(name,
                                                                  w.shape))
    return w.shape[0]


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
    n_class = count_classes(params, 'cls_score_w') if arch != 'backbone' \
        else 0
    check_blobs(params, arch, depth, n_class)
    params = finite_float32(params, 'blob')
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
                    'Detectron ImageNet R-50/R-101.pkl to npz.')
    p.add_argument('pkl', nargs='?', default='modelfiles/model_final.pkl',
                   help='Detectron model_final.pkl or R-50.pkl / R-101.pkl, '
                        'or detectron2 model_final_*.pkl (default: '
                        'modelfiles/model_final.pkl)')
    p.add_argument('-o', '--out', default=None,
                   help='output npz (default: beside the input, named '
                        '<name>_<arch>.npz)')
    p.add_argument('--arch', choices=('auto', 'c4', 'fpn', 'backbone'),
                   default='auto',
                   help='expected architecture, backbone for an ImageNet '
                        'R-*.pkl (default: auto, detected from the names)')
    return p.parse_args(argv)


def check_output(pkl, out):
    """Refuse an output that would replace the input or cannot be written
    (``out`` None: the default, beside the input) before any work."""
    where = 'output {}'.format(out) if out else 'output beside {}'.format(pkl)
    if out is not None and os.path.isdir(out):
        raise ConversionError('{} is a directory, expected the path of the '
                              '.npz to write'.format(where))
    if (out is not None and os.path.exists(out) and os.path.exists(pkl)
            and os.path.samefile(out, pkl)):
        raise ConversionError('{} is the input file {}; refusing to '
                              'overwrite it'.format(where, pkl))
    # The output's folder, or the nearest ancestor it will be made in.
    existing = os.path.dirname(os.path.abspath(out or pkl))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConversionError('{}: {} is not a folder'.format(where,
                                                              existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConversionError('{}: folder {} is not writable (pass -o)'
                              .format(where, existing))


def convert_file(data, arch, path):
    """(model, meta, report) of a loaded pickle; errors name ``path``."""
    try:
        if not is_detectron2(data):
            model, meta, report = convert(blobs_of(data), arch)
            meta['source'] = {'format': 'detectron'}
        elif arch == 'backbone':
            raise ConversionError('a detectron2 detection checkpoint, not '
                                  'an ImageNet backbone')
        else:
            model, meta, report = convert_d2(data, arch)
            meta['source'] = {'format': 'detectron2'}
    except ConversionError as e:
        raise ConversionError('{}: {}'.format(path, e)) from None
    return model, meta, report


def main(argv=None):
    from utils.model_io import save_model
    args = parse_args(argv)
    check_output(args.pkl, args.out)
    model, meta, report = convert_file(load_pickle(args.pkl), args.arch,
                                       args.pkl)
    meta['source'].update(file=os.path.basename(args.pkl),
                          sha256=sha256(args.pkl))
    out = args.out or '{}_{}.npz'.format(os.path.splitext(args.pkl)[0],
                                         meta.get('arch', 'backbone'))
    check_output(args.pkl, out)  # the default name is known only now
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        save_model(out, model, meta)
    except ModelFileError as e:  # it names ``out``
        raise ConversionError(str(e)) from None
    except OSError as e:
        raise ConversionError('cannot write {}: {}'.format(
            out, e.strerror or e)) from None
    print('\n'.join(report))
    print('wrote {}'.format(out))
    return out


def one_line(text):
    """``text`` as one printable line: names from a file may hold line
    breaks or terminal escapes."""
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


if __name__ == '__main__':
    try:
        main()
    except ConversionError as e:
        sys.exit('detectron_parser.py: error: {}'.format(one_line(str(e))))
