"""Saving and loading model npz files with their metadata.

An npz written here holds the model's arrays under chainer's serializer
paths plus one extra entry, ``_meta``: a JSON string with

=============  ==========================================================
key            meaning
=============  ==========================================================
kind           'model' (default) or 'backbone' (ImageNet body only)
body           of a backbone: 'resnet' (default) or 'mobilenetv1'
arch           one of ``models.presets.ARCHS`` (models)
depth          50 or 101 (the ResNet's; 50 for mobilenetv1-fpn, unused)
n_fg_class     K (labels 1..K, background 0); default 80
class_ids      dataset category id of labels 1..K (default: COCO's for
               K = 80, see ``model_classes``)
class_names    names of labels 1..K (default: as class_ids)
conventions    ``models.conventions.Conventions`` as a dict: Detectron's
               or detectron2's semantics (channel order, pixel mean and
               std, ROIAlign ``aligned``, ``box_offset``,
               ``background_index``, ``anchors``)
preset         ``models.presets.Preset`` fields that differ from the
               arch's preset (e.g. detectron2's ROIAlign sampling ratio)
source         where the weights came from: {'file', 'sha256', ...}
ema            the weights are ``train.py --ema``'s moving average with
               this decay (absent: the last weights of the training)
=============  ==========================================================
"""
import contextlib
import dataclasses
import json
import os
import zipfile
import zlib

import chainer
import numpy

from models.conventions import DETECTRON, Conventions
from models.norm import NORMS
from models.presets import ARCHS, Preset, build_mask_rcnn, get_preset
from utils.data.coco_names import coco_classes
from utils.weights.meta_ranges import (
    MAX_CLASSES, array_problem, field_problem, levels_problem)
from utils.weights.npz_members import (
    ObjectArray, ShapeMismatch, check_shapes, member_headers)

META_KEY = '_meta'
DEFAULT_CONVENTIONS = DETECTRON.to_dict()
#: Classes of a model whose metadata has no ``n_fg_class`` (Detectron's
#: COCO models).
DEFAULT_N_FG_CLASS = 80


class ModelFileError(ValueError):
    """A model file that is missing, unreadable or does not fit."""


def model_arrays(model):
    """Every array the npz of ``model`` holds, keyed by serializer path."""
    target = {}
    chainer.serializers.DictionarySerializer(target).save(model)
    return {k: v for k, v in target.items() if v is not None}


def save_model(path, model, meta):
    """Write ``model``'s arrays and ``meta`` atomically to ``path``.

    float16 parameters (mixed-precision training) are written as float32,
    the dtype every model is built with. A failed write (a full disk, a
    read-only folder) leaves neither ``path`` half-written nor the temporary
    file behind, and raises ``ModelFileError``.
    """
    arrays = {k: chainer.backend.CpuDevice().send(v)
              for k, v in model_arrays(model).items()}
    arrays = {k: v.astype(numpy.float32) if v.dtype == numpy.float16 else v
              for k, v in arrays.items()}
    arrays[META_KEY] = numpy.array(json.dumps(meta, sort_keys=True))
    tmp = '{}.tmp{}.npz'.format(path, os.getpid())  # one per process
    try:
        numpy.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ModelFileError('cannot write {}: {}'.format(
            path, e.strerror or e)) from None


@contextlib.contextmanager
def open_npz(path, what='npz model file', error=None, expected=None):
    """``numpy.load(path, allow_pickle=False)`` of an npz archive, so no
    code in the file can run; any problem reading it (missing, empty, an
    ``.npy``, a pickle, a corrupt or truncated zip, an object array) is
    raised as ``error`` (default ``ModelFileError``) naming ``path``.

    Before anything is read, every member's declared size is checked
    (``utils.weights.npz_members``: zip bombs, huge headers, other zip
    methods), and so are the shapes of the members named in ``expected``
    (name -> shape)."""
    error = error or ModelFileError
    if not os.path.isfile(path):
        raise error('{} not found: {}'.format(what, path))
    try:
        npz = numpy.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        why = ('it is a pickle, which is never loaded' if 'pickled' in
               str(e) else _first_line(e))
        raise error('{} is not a readable {} ({})'.format(
            path, what, why)) from None
    if not isinstance(npz, numpy.lib.npyio.NpzFile):
        raise error('{} is a single .npy array, not the npz archive of '
                    'a {}'.format(path, what))
    with npz:
        _check_members(npz, path, what, error, expected)
        try:
            yield npz
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            # Members are read lazily: a bad CRC shows up here.
            raise error('{} is a corrupt {} ({})'.format(
                path, what, _first_line(e))) from None
        except ValueError as e:
            if 'allow_pickle' not in str(e):
                raise
            raise error('{} holds an object array (pickled Python '
                        'objects), which is never loaded; expected '
                        'numeric arrays only'.format(path)) from None


def _check_members(npz, path, what, error, expected):
    try:
        check_shapes(member_headers(npz.zip, path), expected or {})
    except ShapeMismatch as e:
        raise error('{} does not fit the model: {}'.format(path, e)) \
            from None
    except ObjectArray:
        raise error('{} holds an object array (pickled Python objects), '
                    'which is never loaded; expected numeric arrays '
                    'only'.format(path)) from None
    except ValueError as e:
        raise error('{} is not a readable {}: {}'.format(
            path, what, _first_line(e))) from None


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_meta(path):
    """The checked metadata dict of an npz (``{}`` when it has none)."""
    with open_npz(path) as npz:
        if META_KEY not in npz.files:
            return {}
        raw = npz[META_KEY]
    if raw.dtype.kind != 'U' or raw.shape != ():
        raise ModelFileError('{}: {} is not a JSON string'.format(
            path, META_KEY))
    try:
        meta = json.loads(str(raw))
    except ValueError as e:
        raise ModelFileError('{}: {} is not valid JSON ({})'.format(
            path, META_KEY, e)) from None
    check_meta(meta, path)
    return meta


# key -> (check, what is expected); absent keys are allowed.
_META_CHECKS = {
    'kind': (lambda v: v in ('model', 'backbone'), "'model' or 'backbone'"),
    'body': (lambda v: v in ('resnet', 'mobilenetv1'),
             "'resnet' or 'mobilenetv1'"),
    'arch': (lambda v: isinstance(v, str), 'an architecture name'),
    'depth': (lambda v: v in (50, 101), '50 or 101'),
    'n_fg_class': (lambda v: type(v) is int and 0 < v <= MAX_CLASSES,
                   'an integer in [1, {}]'.format(MAX_CLASSES)),
    'class_ids': (lambda v: isinstance(v, list) and all(
        type(i) is int for i in v), 'a list of integers'),
    'class_names': (lambda v: isinstance(v, list) and all(
        isinstance(n, str) for n in v), 'a list of strings'),
    'conventions': (lambda v: isinstance(v, dict), 'an object'),
    'preset': (lambda v: isinstance(v, dict), 'an object'),
    'source': (lambda v: isinstance(v, dict), 'an object'),
    'ema': (lambda v: isinstance(v, float) and 0 < v < 1,
            'a decay between 0 and 1'),
}


def check_meta(meta, path='the model file'):
    """Raise ``ModelFileError`` unless ``meta`` has the types of the
    module docstring's table and its class lists have one entry per class
    (``n_fg_class``, or ``DEFAULT_N_FG_CLASS`` when absent: what
    ``load_model`` builds)."""
    if not isinstance(meta, dict):
        raise ModelFileError('{}: metadata is a {}, expected a JSON '
                             'object'.format(path, type(meta).__name__))
    for key, (ok, expected) in _META_CHECKS.items():
        if key in meta and not ok(meta[key]):
            raise ModelFileError('{}: metadata {!r} is {!r}, expected {}'
                                 .format(path, key, meta[key], expected))
    n_fg_class = meta.get('n_fg_class', DEFAULT_N_FG_CLASS)
    for key in ('class_ids', 'class_names'):
        if key in meta and len(meta[key]) != n_fg_class:
            raise ModelFileError('{}: metadata {!r} has {} entries for {} '
                                 'classes'.format(path, key, len(meta[key]),
                                                  n_fg_class))


def model_classes(meta):
    """``class_ids`` and ``class_names`` of labels 1..K of a model's
    checked metadata: its own, else COCO's for an 80-class model
    (``utils.data.coco_names.coco_classes``). A key that neither gives is
    absent: which classes the model has is then unknown."""
    classes = coco_classes(meta.get('n_fg_class', DEFAULT_N_FG_CLASS))
    classes.update((key, meta[key]) for key in ('class_ids', 'class_names')
                   if key in meta)
    return classes


def load_weights(path, model):
    """Load the arrays of ``path`` into ``model``; every array must fit,
    in its declared shape before it is read."""
    expected = {k: v.shape for k, v in model_arrays(model).items()}
    with open_npz(path, expected=expected) as npz:
        try:
            chainer.serializers.NpzDeserializer(npz, strict=True).load(model)
        except (KeyError, TypeError) as e:
            raise ModelFileError('{} does not fit the model: {}'.format(
                path, _first_line(e))) from None
        except ValueError as e:
            if 'allow_pickle' in str(e):
                raise
            raise ModelFileError('{} does not fit the model: {}'.format(
                path, _first_line(e))) from None


def load_model(path, arch=None, thresholds='evaluate', **overrides):
    """Build the model an npz describes and load its weights.

    Args:
        path (str): npz written by ``save_model`` (or the converter).
        arch (str): 'c4' / 'fpn'; default: the npz's metadata.
        thresholds (str or dict): test-time thresholds, as
            ``models.mask_rcnn.MaskRCNN.use_thresholds`` takes them.
        overrides: ``models.presets.Preset`` fields to replace.

    Returns:
        (MaskRCNN, dict): the model and the metadata.
    """
    meta = read_meta(path)
    if meta.get('kind', 'model') != 'model':
        raise ModelFileError('{} holds a {} only, not a detection model; '
                             'use it as train.py --pretrained'.format(
                                 path, meta['kind']))
    arch = arch or meta.get('arch')
    if arch is None:
        raise ModelFileError('{} has no architecture metadata; pass --arch '
                             'c4 or fpn'.format(path))
    if meta.get('arch') not in (None, arch):
        raise ModelFileError('{} holds a {!r} model, not {!r}'.format(
            path, meta['arch'], arch))
    if arch not in ARCHS:
        raise ModelFileError('{}: unknown architecture {!r}, expected one '
                             'of {}'.format(path, arch, ', '.join(ARCHS)))
    fields = preset_fields(meta, path)
    fields.update(overrides)
    preset = get_preset(arch, **fields)
    check_preset_arrays(preset, path)
    model = build_mask_rcnn(preset, thresholds)
    load_weights(path, model)
    return model, meta


def check_preset_arrays(preset, path):
    """Before the model is built: its pyramid levels are the arch's and
    the numbers the file's arrays fix (classes, widths, the box head's
    input) are the preset's, so no metadata builds a model much larger
    than the file (``utils.weights.meta_ranges``)."""
    problem = levels_problem(preset.rpn_strides, preset.rpn_sizes,
                             preset.arch)
    if problem is None:
        with open_npz(path) as npz:
            shapes = {name: shape for name, (shape, _) in
                      member_headers(npz.zip, path).items()}
        problem = array_problem(preset, shapes)
    if problem:
        raise ModelFileError('{}: {}'.format(path, problem))


def preset_fields(meta, path='the model file'):
    """``Preset`` fields an npz's (checked) metadata fixes: depth, classes,
    the conventions and any preset overrides, each of the type of the
    field it replaces."""
    try:
        conventions = Conventions.from_dict(meta.get('conventions', {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError('{}: bad conventions metadata ({})'.format(
            path, e)) from None
    fields = {'depth': meta.get('depth', 50),
              'n_fg_class': meta.get('n_fg_class', DEFAULT_N_FG_CLASS),
              'conventions': conventions}
    defaults = {f.name: f.default for f in dataclasses.fields(Preset)}
    for key, value in meta.get('preset', {}).items():
        if key not in defaults or key in fields:
            raise ModelFileError('{}: unknown preset field {!r} in its '
                                 'metadata'.format(path, key))
        value = _tuples(value)
        if not _same_kind(value, defaults[key]):
            raise ModelFileError('{}: preset field {!r} is {!r}, expected '
                                 'a value like {!r}'.format(
                                     path, key, value, defaults[key]))
        problem = field_problem(key, value)
        if problem:
            raise ModelFileError('{}: preset field {!r} is {!r}, {}'.format(
                path, key, value, problem))
        if key == 'norm' and value not in NORMS:
            raise ModelFileError('{}: preset field \'norm\' is {!r}, '
                                 'expected one of {}'.format(
                                     path, value, ', '.join(NORMS)))
        fields[key] = value
    return fields


def _same_kind(value, default):
    """``value`` has the structure of ``default``: numbers for numbers (a
    bool is not one), strings for strings, tuples of such for tuples; a
    field whose default is None takes None or a tuple of numbers."""
    if default is None:
        return value is None or _same_kind(value, (0.,))
    if isinstance(default, tuple):
        return isinstance(value, tuple) and all(
            _same_kind(v, default[0]) for v in value) if default else \
            isinstance(value, tuple)
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (
            isinstance(value, int) or not isinstance(default, int))
    return type(value) is type(default)


def _tuples(value):
    """JSON lists back to the tuples presets hold."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
