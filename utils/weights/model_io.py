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
import json
import os
import zipfile
import zlib

import chainer
import numpy

from models.conventions import DETECTRON
from models.presets import ARCHS, build_mask_rcnn, get_preset
from utils.atomic_write import OutputError, atomic_write
from utils.weights.meta_ranges import array_problem, levels_problem
from utils.weights.model_meta import (  # noqa: F401 (this module's API)
    DEFAULT_N_FG_CLASS, ModelFileError, check_meta, model_classes,
    preset_fields)
from utils.weights.npz_members import (
    ObjectArray, ShapeMismatch, check_shapes, member_headers)

META_KEY = '_meta'
DEFAULT_CONVENTIONS = DETECTRON.to_dict()


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
    try:
        with atomic_write(path, 'wb', 'model file') as f:
            numpy.savez(f, **arrays)
    except OutputError as e:
        raise ModelFileError(str(e)) from None


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
    except (ValueError, RecursionError) as e:  # Recursion: nested deep
        raise ModelFileError('{}: {} is not valid JSON ({})'.format(
            path, META_KEY, str(e) or type(e).__name__)) from None
    check_meta(meta, path)
    return meta


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
