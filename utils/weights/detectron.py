"""Detectron (Caffe2) pickles to this project's models.

* ``model_final.pkl`` (Mask R-CNN R-50/101-C4 or -FPN): a model with
  Detectron's semantics;
* ImageNet ``R-50.pkl`` / ``R-101.pkl``: a ResNet body for
  ``train.py --pretrained`` (C4 or FPN).

``convert_file`` also recognises detectron2 checkpoints and hands them to
``utils/weights/detectron2.py``. The blob names are an explicit rename table
(``utils/weights/detectron_names.py``): every blob used once, every shape
checked, leftovers refused.
"""
import os
import re

from models.presets import build_mask_rcnn, get_preset
from models.resnet import ResNetBody
from utils.data.coco_names import coco_classes
from utils.weights.checks import (check_array, check_names_and_shapes,
                                  count_classes, fill, finite_float32, sha256)
from utils.weights.detectron2 import convert_d2, is_detectron2
from utils.weights.detectron_names import blob_shapes, rename_table
from utils.weights.model_io import DEFAULT_CONVENTIONS
from utils.weights.safe_pickle import ConversionError, load_pickle

# Blobs Detectron saves beside the parameters that no model uses:
# momentum of every trainable parameter, and "preserved" leftovers of the
# ImageNet initialisation (conv1 bias, the classifier, conv biases).
MOMENTUM = re.compile(r'.*_momentum$')
PRESERVED = re.compile(
    r'^(conv1_b|fc1000_[wb]|res\d+_\d+_branch(1|2[abc])_b)$')


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
    if arch == 'backbone':
        return ResNetBody(depth, 5, 'affine')
    return build_mask_rcnn(get_preset(arch, depth=depth,
                                      n_fg_class=n_class - 1))


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


def convert_pickle(path, arch='auto', name=None):
    """(model, meta, report) of the weights pickle file ``path``, read by
    the restricted unpickler; the metadata's source records the file's
    name (``name``, default its base name) and SHA-256."""
    model, meta, report = convert_file(load_pickle(path), arch, path)
    meta['source'].update(file=name or os.path.basename(path),
                          sha256=sha256(path))
    return model, meta, report
