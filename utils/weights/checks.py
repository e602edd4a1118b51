"""Checks and helpers every weight converter shares: array dtypes and
finiteness, exact name/shape tables, filling a link one-to-one and the
source file's SHA-256. (The class metadata of COCO models is
``utils.data.coco_names.coco_classes``.)"""
import hashlib

import numpy

from utils.weights.model_io import model_arrays
from utils.weights.safe_pickle import ConversionError, RefusedArray, short_repr


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


def fill(target, pairs):
    """Copy ``(model path, array)`` pairs into ``target``'s arrays: every
    array filled exactly once (asserted: the tables are code, a gap is a
    bug) and every shape equal (checked: a file can be wrong)."""
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


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()
