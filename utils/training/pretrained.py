"""Starting weights for training: a converted model, an ImageNet backbone,
or MSRA's ImageNet caffemodel; and Detectron's frozen stages.

``train.py --pretrained`` takes

* an npz of a whole model (``utils/detectron_parser.py`` output, or a
  ``model_final.npz`` of this project): every array whose name and shape
  fit is copied, and the npz's conventions are adopted;
* a backbone npz (``kind: 'backbone'`` in its metadata, converted from
  Detectron's ``R-50.pkl`` / ``R-101.pkl`` or from a caffemodel): the stem
  and res2-res5 are copied into the body (and, for C4, res5 into the box
  head); heads keep their initialisers;
* a name of ``utils/weights/zoo.py``'s catalogue (``R-50.pkl``,
  ``e2e_mask_rcnn_R-50-FPN_1x``, ``mask_rcnn_R_50_FPN_3x``, ...):
  downloaded and converted once into the cache folder;
* ``imagenet``: MSRA's ``ResNet-{50,101}-model.caffemodel`` (or, for
  mobilenetv1-fpn, shicai/MobileNet-Caffe's ``mobilenet.caffemodel``)
  from ``CAFFEMODEL_DIR`` (where the reference implementation keeps
  them), converted once to a cached backbone npz beside it.

A MobileNetV1 backbone (metadata ``body: 'mobilenetv1'``) holds folded
BatchNorm, so it sets the preset's norm to the frozen 'affine'.

Backbone npz paths are the body's own, without prefix: ``conv1/conv/W``,
``res4/5/branch2b/norm/scale``.
"""
import functools
import os

from utils.weights.caffemodel import CaffemodelError
from utils.weights.model_io import (META_KEY, model_arrays, open_npz,
                                    preset_fields, read_meta)
from utils.weights.mobilenet import convert_mobilenet
from utils.weights.msra import convert_caffemodel
from utils.weights.safe_pickle import ConversionError
from utils.weights.zoo import CATALOGUE, weights_file

CAFFEMODEL_DIR = os.path.join('~', '.chainer', 'dataset', 'pfnet', 'chainer',
                              'models')
CAFFEMODEL_NAME = 'ResNet-{}-model.caffemodel'
MOBILENET_CAFFEMODEL = 'mobilenet.caffemodel'


# The body a backbone npz must hold for each arch (metadata ``body``; a
# backbone without it, and any other arch, is a ResNet).
BACKBONE_BODIES = {'mobilenetv1-fpn': 'mobilenetv1'}


class PretrainedError(ValueError):
    """Starting weights that are missing or do not fit."""


def resolve(pretrained, depth, caffemodel_dir=CAFFEMODEL_DIR, log=print,
            arch=None):
    """The npz path ``--pretrained`` names; a catalogue name is fetched and
    converted on first use (``utils/weights/zoo.py``); ``imagenet``
    converts the ImageNet caffemodel of ``arch`` (MSRA's ResNet of
    ``depth``, or shicai's MobileNetV1 for mobilenetv1-fpn) on first use
    and returns the cached npz."""
    if pretrained in CATALOGUE:
        if (CATALOGUE[pretrained].arch == 'backbone' and
                BACKBONE_BODIES.get(arch, 'resnet') != 'resnet'):
            raise PretrainedError('{} is a ResNet backbone, which does not '
                                  'fit --arch {}'.format(pretrained, arch))
        return weights_file(pretrained, log=log)
    if pretrained != 'imagenet':
        if not os.path.isfile(pretrained):
            raise PretrainedError('pretrained weights not found: {}'.format(
                pretrained))
        return pretrained
    folder = os.path.expanduser(caffemodel_dir)
    if BACKBONE_BODIES.get(arch) == 'mobilenetv1':
        name, convert = MOBILENET_CAFFEMODEL, convert_mobilenet
        where = ('https://github.com/shicai/MobileNet-Caffe); or convert '
                 'it with utils/mobilenet_parser.py and pass that npz')
    else:
        name = CAFFEMODEL_NAME.format(depth)
        convert = functools.partial(convert_caffemodel, depth=depth)
        where = ('https://github.com/KaimingHe/deep-residual-networks); or '
                 'pass --pretrained R-{}.pkl to fetch Detectron\'s ImageNet '
                 'weights by name'.format(depth))
    caffemodel = os.path.join(folder, name)
    cached = os.path.splitext(caffemodel)[0] + '.npz'
    if os.path.isfile(cached):
        return cached
    if not os.path.isfile(caffemodel):
        raise PretrainedError('--pretrained imagenet needs {} in {} (from '
                              '{}'.format(name, folder, where))
    log('converting {} once to {}'.format(caffemodel, cached))
    try:
        report = convert(caffemodel, cached)
    except (CaffemodelError, ConversionError) as e:
        why = str(e)  # a layer problem does not name the file
        raise PretrainedError(why if caffemodel in why else '{}: {}'.format(
            caffemodel, why)) from None
    log('\n'.join(report))
    return cached


def pretrained_fields(path, arch):
    """Preset fields fixed by the npz: the depth, and for a whole model its
    conventions (so detectron2 weights keep detectron2's semantics) and,
    when it is of the same ``arch``, its preset overrides."""
    meta = read_meta(path)
    if meta.get('kind') == 'backbone':
        body = meta.get('body', 'resnet')
        if body != BACKBONE_BODIES.get(arch, 'resnet'):
            raise PretrainedError(
                '{} is a {} backbone, which does not fit --arch {} (a {} '
                'backbone was expected)'.format(
                    path, body, arch, BACKBONE_BODIES.get(arch, 'resnet')))
        if body == 'mobilenetv1':  # folded BatchNorm: the frozen affine
            return {'norm': 'affine'}
        return {'depth': meta.get('depth', 50)}
    if not meta:
        return {}
    fields = preset_fields(meta, path)
    if meta.get('arch') != arch:
        fields = {k: fields[k] for k in ('depth', 'conventions')}
    fields.pop('n_fg_class', None)  # the classes come from the dataset
    return fields


def starting_point(pretrained, arch, depth=None, log=print):
    """(npz path or None, preset fields it fixes) of ``--pretrained``
    (None: random initialisation), for ``arch`` and ``depth`` (None: the
    npz's, else 50). Weights run with the semantics they were trained
    under: a converted detectron2 model keeps detectron2's conventions
    (models/conventions.py), which also decide how the data's boxes are
    read."""
    path = None
    if pretrained:
        path = resolve(pretrained, depth or 50, log=log, arch=arch)
    fields = pretrained_fields(path, arch) if path else {}
    if depth is not None:
        fields['depth'] = depth
    return path, fields


def load_pretrained(model, path):
    """Copy the arrays of ``path`` into ``model``; returns a report line.

    A backbone npz must fill the whole ResNet (every array, every shape);
    a model npz fills what fits, and must fit somewhere.
    """
    meta = read_meta(path)
    arrays = model_arrays(model)
    with open_npz(path, 'weights file', PretrainedError) as npz:
        stored = {n: npz[n] for n in npz.files if n != META_KEY}
    if meta.get('kind') == 'backbone':
        stored = _backbone_paths(stored, arrays, path, meta.get('depth'))
    loaded, mismatched = 0, []
    for name, value in stored.items():
        if name in arrays:
            if value.shape != arrays[name].shape:
                mismatched.append(name)
                continue
            arrays[name][...] = value
            loaded += 1
    if loaded == 0:
        raise PretrainedError('{} holds no array of this model'.format(path))
    return 'pretrained: {} of {} arrays from {}{}'.format(
        loaded, len(arrays), path,
        ' ({} with another shape kept their initialisation, e.g. {})'.format(
            len(mismatched), mismatched[0]) if mismatched else '')


def _backbone_paths(stored, arrays, path, depth):
    """Backbone paths -> model paths; every backbone array must land."""
    out = {}
    for name, value in stored.items():
        targets = ['extractor/body/' + name, 'box_head/' + name]
        target = next((t for t in targets if t in arrays), None)
        if target is None:
            raise PretrainedError(
                '{}: backbone array {} has no place in this model (a '
                'backbone of its body was expected)'.format(path, name))
        if arrays[target].shape != value.shape:
            raise PretrainedError('{}: {} is {}, the model has {}'.format(
                path, name, value.shape, arrays[target].shape))
        out[target] = value
    body = [n for n in arrays if n.startswith(('extractor/body/',
                                               'box_head/res5/'))]
    missing = sorted(set(body) - set(out))
    if missing:
        raise PretrainedError(
            '{}: a {} backbone leaves {} array(s) of this model\'s '
            'body empty, e.g. {}'.format(
                path, 'ResNet-{}'.format(depth) if depth else 'MobileNetV1',
                len(missing), missing[0]))
    return out


def freeze(model, freeze_at):
    """Detectron's ``TRAIN.FREEZE_AT`` (detectron2's ``BACKBONE.FREEZE_AT``):
    1 freezes the stem, k >= 2 also res2..res_k (C4's res5 lives in the box
    head); for MobileNetV1 the blocks up to C_k (``models/mobilenet.py``
    ``STAGES``). Affine norms are never trained (``models/norm.py``).
    The frozen stages also run without a graph (Detectron's StopGradient,
    ``models/frozen.py``): neither their weights' gradients nor the first
    trained layer's input gradient are computed.

    Call it after ``optimizer.setup``: chainer's ``disable_update`` only
    switches off update rules that exist, and ``setup`` makes new ones.

    Returns:
        list of str: the frozen stages (MobileNetV1: blocks).
    """
    if not 0 <= freeze_at <= 5:
        raise PretrainedError('--freeze-at must be 0..5, got {}'.format(
            freeze_at))
    stages = ['conv1'] + ['res{}'.format(k) for k in range(2, freeze_at + 1)]
    stages = stages[:freeze_at]
    if any(p.update_rule is None for p in model.params()):
        raise RuntimeError('freeze() before optimizer.setup() freezes '
                           'nothing')
    body = model.extractor.body
    # Cut the graph after the frozen stages (models/frozen.py).
    body.frozen_stages = freeze_at
    blocks = getattr(body, 'freeze_stages', None)
    if blocks is not None:  # MobileNetV1: several blocks per stage
        names = [n for stage in blocks[:freeze_at] for n in stage]
        for name in names:
            getattr(body, name).disable_update()
        return names
    for name in stages:
        link = getattr(body, name, None)
        if link is None and name == 'res5':
            link = model.box_head.res5
            model.box_head.frozen_res5 = True
        link.disable_update()
    return stages
