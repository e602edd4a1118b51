"""Saving and loading model npz files with their metadata.

An npz written here holds the model's arrays under chainer's serializer
paths plus one extra entry, ``_meta``: a JSON string with

=============  ==========================================================
key            meaning
=============  ==========================================================
arch           'c4' or 'fpn'
depth          50 or 101
n_fg_class     K (labels 1..K, background 0)
class_ids      dataset category id of labels 1..K
class_names    names of labels 1..K
conventions    {'channel_order': 'BGR', 'aligned': false,
               'box_offset': 1, 'background_index': 0}
source         where the weights came from: {'file', 'sha256', ...}
=============  ==========================================================
"""
import json
import os
import zipfile

import chainer
import numpy

META_KEY = '_meta'
DEFAULT_CONVENTIONS = {'channel_order': 'BGR', 'aligned': False,
                       'box_offset': 1, 'background_index': 0}


class ModelFileError(ValueError):
    """A model file that is missing, unreadable or does not fit."""


def model_arrays(model):
    """Every array the npz of ``model`` holds, keyed by serializer path."""
    target = {}
    chainer.serializers.DictionarySerializer(target).save(model)
    return {k: v for k, v in target.items() if v is not None}


def save_model(path, model, meta):
    """Write ``model``'s arrays and ``meta`` atomically to ``path``."""
    arrays = {k: chainer.backend.CpuDevice().send(v)
              for k, v in model_arrays(model).items()}
    arrays[META_KEY] = numpy.array(json.dumps(meta, sort_keys=True))
    tmp = path + '.tmp.npz'
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
    fields = {'depth': meta.get('depth', 50),
              'n_fg_class': meta.get('n_fg_class', 80),
              'aligned': meta.get('conventions', {}).get('aligned', False)}
    fields.update(overrides)
    model = build_mask_rcnn(get_preset(arch, **fields), preset)
    load_weights(path, model)
    return model, meta
