"""Saving and loading model npz files with their metadata.

An npz written here holds the model's arrays under chainer's serializer
paths plus one extra entry, ``_meta``: a JSON string with

=============  ==========================================================
key            meaning
=============  ==========================================================
kind           'model' (default) or 'backbone' (ImageNet ResNet only)
arch           'c4' or 'fpn' (models)
depth          50 or 101
n_fg_class     K (labels 1..K, background 0)
class_ids      dataset category id of labels 1..K
class_names    names of labels 1..K
conventions    ``models.conventions.Conventions`` as a dict: Detectron's
               or detectron2's semantics (channel order, pixel mean and
               std, ROIAlign ``aligned``, ``box_offset``,
               ``background_index``, ``anchors``)
preset         ``models.presets.Preset`` fields that differ from the
               arch's preset (e.g. detectron2's ROIAlign sampling ratio)
source         where the weights came from: {'file', 'sha256', ...}
=============  ==========================================================
"""
import dataclasses
import json
import os
import zipfile

import chainer
import numpy

from models.conventions import DETECTRON, Conventions

META_KEY = '_meta'
DEFAULT_CONVENTIONS = DETECTRON.to_dict()


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
    the dtype every model is built with.
    """
    arrays = {k: chainer.backend.CpuDevice().send(v)
              for k, v in model_arrays(model).items()}
    arrays = {k: v.astype(numpy.float32) if v.dtype == numpy.float16 else v
              for k, v in arrays.items()}
    arrays[META_KEY] = numpy.array(json.dumps(meta, sort_keys=True))
    tmp = '{}.tmp{}.npz'.format(path, os.getpid())  # one per process
    numpy.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_meta(path):
    """The metadata dict of an npz (``{}`` when it has none)."""
    if not os.path.isfile(path):
        raise ModelFileError('model file not found: {}'.format(path))
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            if META_KEY not in npz.files:
                return {}
            return json.loads(str(npz[META_KEY]))
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ModelFileError('not a readable npz model file: {} ({})'.format(
            path, e)) from None


def load_weights(path, model):
    """Load the arrays of ``path`` into ``model``; every array must fit."""
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            chainer.serializers.NpzDeserializer(npz, strict=True).load(model)
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError('{} does not fit the model: {}'.format(
            path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        ) from None


def load_model(path, arch=None, preset='evaluate', **overrides):
    """Build the model an npz describes and load its weights.

    Args:
        path (str): npz written by ``save_model`` (or the converter).
        arch (str): 'c4' / 'fpn'; default: the npz's metadata.
        overrides: ``models.presets.Preset`` fields to replace.

    Returns:
        (MaskRCNN, dict): the model and the metadata.
    """
    from models.presets import build_mask_rcnn, get_preset
    meta = read_meta(path)
    arch = arch or meta.get('arch')
    if arch is None:
        raise ModelFileError('{} has no architecture metadata; pass --arch '
                             'c4 or fpn'.format(path))
    if meta.get('arch') not in (None, arch):
        raise ModelFileError('{} holds a {!r} model, not {!r}'.format(
            path, meta['arch'], arch))
    if meta.get('kind', 'model') != 'model':
        raise ModelFileError('{} holds a {} only, not a detection model; '
                             'use it as train.py --pretrained'.format(
                                 path, meta['kind']))
    fields = preset_fields(meta, path)
    fields.update(overrides)
    model = build_mask_rcnn(get_preset(arch, **fields), preset)
    load_weights(path, model)
    return model, meta


def preset_fields(meta, path='the model file'):
    """``Preset`` fields an npz's metadata fixes: depth, classes, the
    conventions and any preset overrides."""
    try:
        conventions = Conventions.from_dict(meta.get('conventions', {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError('{}: bad conventions metadata ({})'.format(
            path, e)) from None
    fields = {'depth': meta.get('depth', 50),
              'n_fg_class': meta.get('n_fg_class', 80),
              'conventions': conventions}
    from models.presets import Preset
    known = {f.name for f in dataclasses.fields(Preset)}
    for key, value in meta.get('preset', {}).items():
        if key not in known:
            raise ModelFileError('{}: unknown preset field {!r} in its '
                                 'metadata'.format(path, key))
        fields[key] = _tuples(value)
    return fields


def _tuples(value):
    """JSON lists back to the tuples presets hold."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
