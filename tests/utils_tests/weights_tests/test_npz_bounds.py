"""npz members are bounded before any is read (``npz_members``, through
``open_npz``, the reader of --modelfile, --pretrained, --resume and
export_onnx.py); metadata fields have ranges and must agree with the
arrays (``meta_ranges``)."""
import json
import zipfile

import numpy
import pytest

from models.presets import build_mask_rcnn, get_preset, preset_overrides
from tests.helpers.crafted_sizes import (npy_header, npz_of, set_zip_method,
                                         zip_bomb_npz)
from utils import export_onnx
from utils.training.pretrained import PretrainedError, load_pretrained
from utils.training.snapshots import SnapshotError, check_snapshot
from utils.weights.model_io import (ModelFileError, load_model, read_meta,
                                    save_model)
from utils.weights.npz_members import ALLOWANCE, MAX_RATIO


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(path, arrays, meta) of a random 3-class fpn-tiny model npz."""
    numpy.random.seed(0)
    preset = get_preset('fpn-tiny', n_fg_class=3)
    model = build_mask_rcnn(preset)
    meta = {'arch': 'fpn-tiny', 'n_fg_class': 3, 'class_ids': [1, 2, 3],
            'class_names': ['a', 'b', 'c'],
            'conventions': preset.conventions.to_dict(),
            'preset': preset_overrides(preset)}
    path = tmp_path_factory.mktemp('tiny') / 'model.npz'
    save_model(str(path), model, meta)
    with numpy.load(str(path)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return path, arrays, json.loads(json.dumps(meta))


def _one_line(error, call, *words):
    with pytest.raises(error) as e:
        call()
    text = str(e.value)
    assert '\n' not in text, text
    for word in words:
        assert word in text, text
    return text


def _readers(path):
    """Every reader of an npz named on a command line."""
    return [(ModelFileError, lambda: load_model(str(path))),
            (ModelFileError, lambda: read_meta(str(path))),
            (SnapshotError, lambda: check_snapshot(str(path))),
            # read_meta's ModelFileError comes first, as before
            ((PretrainedError, ModelFileError), lambda: load_pretrained(
                build_mask_rcnn(get_preset('fpn-tiny', n_fg_class=3)),
                str(path))),
            (ModelFileError, lambda: export_onnx.main(
                [str(path), '-o', str(path) + '.onnx']))]


def test_a_zip_bomb_is_refused_before_it_is_inflated(tiny, tmp_path):
    path = tmp_path / 'bomb.npz'
    zip_bomb_npz(path, 'extractor/body/conv1/conv/W', 256 << 20,
                 {'_meta': tiny[1]['_meta']})
    size = path.stat().st_size
    assert size < 300000 and (256 << 20) > ALLOWANCE + MAX_RATIO * size
    for error, call in _readers(path):
        _one_line(error, call, str(path), 'declares 268435584 bytes, more '
                  'than its', 'or this file may inflate to')


@pytest.mark.parametrize('member, words', [
    (npy_header((2 ** 40,)) + bytes(16), 'declares a (1099511627776,) '
     'array of 4398046511104 bytes but holds 16'),
    (npy_header((), '<U500000000') + bytes(64), 'declares a string of '
     '2000000000 bytes'),
    (npy_header((2,), '|O') + bytes(16), 'object array'),
    (npy_header((2,), '|V8') + bytes(16), 'has dtype |V8'),
    (b'PK not an npy', 'is not an npy array')])
def test_declared_members_are_checked_before_reading(member, words, tiny,
                                                     tmp_path):
    path = npz_of(tmp_path / 'crafted.npz', {'_meta': tiny[1]['_meta'],
                                             'x': member})
    for error, call in _readers(path):
        _one_line(error, call, str(path), words)


@pytest.mark.parametrize('method', [99, zipfile.ZIP_BZIP2])
def test_another_zip_method_is_one_line(method, tiny, tmp_path):
    path = npz_of(tmp_path / 'method.npz', {'_meta': tiny[1]['_meta']})
    set_zip_method(path, method)
    for error, call in _readers(path):
        _one_line(error, call, str(path),
                  'uses zip compression method {}; expected stored or '
                  'deflated'.format(method))


def test_a_shape_that_does_not_fit_is_refused_before_reading(tiny,
                                                             tmp_path):
    path = tmp_path / 'shape.npz'
    arrays = dict(tiny[1])
    arrays['rpn/conv/b'] = numpy.zeros(7, numpy.float32)
    numpy.savez(str(path), **arrays)
    _one_line(ModelFileError, lambda: load_model(str(path)),
              '{} does not fit the model: rpn/conv/b is (7,) in the file, '
              'expected (64,)'.format(path))


def _with_meta(tiny, tmp_path, **changes):
    meta = json.loads(json.dumps(tiny[2]))
    for key, value in changes.items():
        section, _, field = key.partition('__')
        if field:
            meta[section][field] = value
        else:
            meta[key] = value
    path = tmp_path / 'meta.npz'
    numpy.savez(str(path), **dict(tiny[1], _meta=numpy.array(
        json.dumps(meta))))
    return str(path)


@pytest.mark.parametrize('changes, words', [
    ({'n_fg_class': 100000}, "metadata 'n_fg_class' is 100000, expected an "
     'integer in [1, 10000]'),
    ({'n_fg_class': 80, 'class_ids': list(range(80)),
      'class_names': ['x'] * 80}, 'its metadata gives n_fg_class + 1 = 81, '
     'but its array box_head/predictor/cls_score/W has 4'),
    ({'preset__min_size': 100000}, "preset field 'min_size' is 100000, "
     'expected an integer in [1, 4096]'),
    ({'preset__mask_roi_size': 1000}, "preset field 'mask_roi_size' is "
     '1000, expected an integer in [1, 32]'),
    ({'preset__rpn_strides': [0, 8, 16, 32, 64]}, "'rpn_strides' is (0, 8, "
     '16, 32, 64), expected an integer in [1, 128]'),
    ({'preset__rpn_strides': [4, 8, 16, 32, 128]}, 'fpn has RPN '
     'strides [4, 8, 16, 32, 64]; the metadata gives strides [4, 8, 16, '
     '32, 128]'),
    ({'preset__bbox_reg_weights': [10, 10, 5, 0]}, "'bbox_reg_weights' is "
     '(10, 10, 5, 0), expected a number in [0.001, 1000.0]'),
    ({'preset__aspect_ratios': [0.5, 1, 0]}, "'aspect_ratios' is (0.5, 1, "
     '0), expected a number in [0.015625, 64.0]'),
    ({'preset__fc_channels': 16384}, 'fc_channels = 16384, but its array '
     'box_head/fc6/W has 256'),
    ({'preset__rpn_nms_thresh': 2.0}, "'rpn_nms_thresh' is 2.0, expected "
     'a number in [0.0, 1.0]'),
    ({'conventions__pixel_mean': [float('nan'), 1, 2]}, 'pixel_mean must '
     'be finite numbers in [-1000, 1000]')])
def test_hand_edited_metadata_is_one_line(changes, words, tiny, tmp_path):
    path = _with_meta(tiny, tmp_path, **changes)
    _one_line(ModelFileError, lambda: load_model(path), path, words)


def test_the_unedited_model_loads(tiny, tmp_path):
    model, meta = load_model(_with_meta(tiny, tmp_path))
    assert meta['n_fg_class'] == 3
    numpy.testing.assert_array_equal(model.rpn.conv.b.array,
                                     tiny[1]['rpn/conv/b'])
