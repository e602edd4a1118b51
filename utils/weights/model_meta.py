"""The metadata of a model file, checked for type and range: the keys of
``utils/weights/model_io.py``'s table, and the ``models.presets.Preset``
fields its ``preset`` replaces (ranges: ``utils/weights/meta_ranges.py``).
"""
import dataclasses

from models.conventions import Conventions
from models.norm import NORMS
from models.presets import Preset
from utils.data.coco_names import coco_classes
from utils.weights.meta_ranges import MAX_CLASSES, field_problem

#: Classes of a model whose metadata has no ``n_fg_class`` (Detectron's
#: COCO models).
DEFAULT_N_FG_CLASS = 80


class ModelFileError(ValueError):
    """A model file that is missing, unreadable or does not fit."""


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
    """Raise ``ModelFileError`` unless ``meta`` has the types of
    ``model_io``'s table and its class lists have one entry per class
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
