"""Property-based fuzz of the readers of declared sizes: valid small files
mutated at random (bytes flipped, truncated, header fields edited) are
either read or refused with one line of the reader's error class, never
a traceback of another kind, within a deadline. Few examples each, so
the whole file stays within seconds."""
import io
import json
import os
import struct
import tempfile
import zlib

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.crafted_sizes import npy_header, npz_of, png
from utils.data.coco_json import DatasetError, load_coco
from utils.deploy.onnx_predict import runtime_problem
from utils.ops.image import ImageError, read_image
from utils.training.snapshot_checks import check_fields
from utils.training.snapshots import SnapshotError
from utils.weights.model_io import (ModelFileError, check_meta, open_npz,
                                    read_meta)
from utils.weights.model_meta import preset_fields

FUZZ = settings(max_examples=40, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
PIXELS = numpy.arange(6 * 7 * 3, dtype=numpy.uint8).reshape(6, 7, 3)
TMP = tempfile.mkdtemp(prefix='fuzz')


def _write(name, data):
    path = os.path.join(TMP, name)
    with open(path, 'wb') as f:
        f.write(data)
    return path


def _one_line(error):
    text = str(error)
    assert text and '\n' not in text, text


def _mutate(data, flips, cut):
    data = bytearray(data)
    for at, value in flips:
        data[at % len(data)] = value
    return bytes(data[:max(1, len(data) - cut)])


BYTE_EDITS = dict(flips=st.lists(st.tuples(st.integers(0, 10 ** 6),
                                           st.integers(0, 255)),
                                 max_size=8),
                  cut=st.integers(0, 64))


@FUZZ
@given(width=st.integers(0, 2 ** 32 - 1), height=st.integers(0, 2 ** 32 - 1),
       **BYTE_EDITS)
def test_png_headers(width, height, flips, cut):
    data = bytearray(png(7, 6, PIXELS))
    data[16:24] = struct.pack('>II', width, height)   # IHDR, CRC now stale
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    path = _write('f.png', _mutate(data, flips, cut))
    try:
        img = read_image(path)
    except ImageError as e:
        _one_line(e)
        return
    assert img.ndim == 3 and img.shape[0] == 3
    assert img.shape[1] * img.shape[2] <= 89478485


def _small_npz():
    meta = {'arch': 'fpn-tiny', 'n_fg_class': 2, 'class_ids': [1, 2],
            'preset': {'min_size': 64}}
    return open(npz_of(os.path.join(TMP, 'base.npz'), {
        '_meta': numpy.array(json.dumps(meta)),
        'a/W': numpy.arange(12, dtype=numpy.float32).reshape(3, 4),
        'a/b': numpy.zeros(3, numpy.float32)}), 'rb').read()


SMALL_NPZ = _small_npz()


@FUZZ
@given(shape=st.lists(st.integers(0, 2 ** 40), max_size=3),
       descr=st.sampled_from(['<f4', '<i8', '<U100000000', '|O', '|V4',
                              '>f8']),
       **BYTE_EDITS)
def test_npz_members_and_metadata(shape, descr, flips, cut):
    data = SMALL_NPZ
    if flips or cut:
        data = _mutate(data, flips, cut)
    else:   # a member whose header declares anything
        data = open(npz_of(os.path.join(TMP, 'h.npz'), {
            'x': npy_header(shape, descr) + bytes(16)}), 'rb').read()
    path = _write('f.npz', data)
    try:
        read_meta(path)
        with open_npz(path) as npz:
            arrays = [npz[name] for name in npz.files]
    except ModelFileError as e:
        _one_line(e)
        return
    assert sum(a.nbytes for a in arrays) <= 64 << 20


VALUES = st.one_of(st.integers(-2 ** 40, 2 ** 40), st.floats(),
                   st.booleans(), st.none(), st.text(max_size=3),
                   st.lists(st.integers(-10, 10 ** 6), max_size=6),
                   st.lists(st.floats(), max_size=6))
FIELDS = ['min_size', 'max_size', 'rpn_strides', 'aspect_ratios',
          'rpn_sizes', 'box_roi_size', 'mask_roi_size', 'bbox_reg_weights',
          'rpn_nms_thresh', 'fc_channels', 'pad_stride', 'mask_thresh',
          'rpn_pre_nms_top_n']


@FUZZ
@given(preset=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3),
       n_fg_class=VALUES, pixel_mean=st.lists(st.floats(), max_size=4))
def test_model_metadata(preset, n_fg_class, pixel_mean):
    meta = {'n_fg_class': n_fg_class, 'preset': preset,
            'conventions': {'pixel_mean': pixel_mean}}
    try:
        check_meta(meta, 'm.npz')
        fields = preset_fields(meta, 'm.npz')
    except ModelFileError as e:
        _one_line(e)
        return
    assert 1 <= fields['n_fg_class'] <= 10000
    assert all(abs(v) <= 1000 for v in fields['conventions'].pixel_mean)
    for key in ('min_size', 'max_size', 'box_roi_size', 'mask_roi_size'):
        assert key not in fields or 1 <= fields[key] <= 4096


RUNTIME = {'min_size': 800, 'max_size': 1333, 'pad_stride': 32,
           'rpn_strides': [16], 'cell_anchors': [[[-8., -8., 23., 23.]]],
           'proposals': {'pre_nms_top_n': [10, 10],
                         'post_nms_top_n': [10, 10], 'collect_top_n': None,
                         'nms_thresh': 0.7, 'min_size': 0.},
           'k_min': 4, 'bbox_reg_weights': [10., 10., 5., 5.],
           'mask_thresh': 0.5}


@FUZZ
@given(key=st.sampled_from(sorted(RUNTIME) + ['proposals.nms_thresh',
                                              'proposals.pre_nms_top_n']),
       value=VALUES)
def test_onnx_runtime_metadata(key, value):
    rt = json.loads(json.dumps(RUNTIME))
    if key.startswith('proposals.'):
        rt['proposals'][key.split('.')[1]] = value
    else:
        rt[key] = value
    problem = runtime_problem(rt)
    assert problem is None or ('\n' not in problem and key.split('.')[-1]
                               in problem)


SNAPSHOT_KEYS = ['updater/iteration', 'updater/iterator:main/epoch',
                 'updater/iterator:main/current_position',
                 'updater/iterator:main/previous_epoch_detail',
                 'updater/converter/rng_pos', 'updater/optimizer:main/t']


@FUZZ
@given(values=st.dictionaries(st.sampled_from(SNAPSHOT_KEYS), st.one_of(
    st.integers(-2 ** 62, 2 ** 62), st.floats(), st.booleans()),
    min_size=1), **BYTE_EDITS)
def test_snapshot_fields(values, flips, cut):
    arrays = {'updater/iteration': numpy.array(4),
              'updater/iterator:main/order': numpy.arange(6),
              'updater/iterator:main/current_position': numpy.array(2)}
    arrays.update((k, numpy.array(v)) for k, v in values.items())
    buf = io.BytesIO()
    numpy.savez(buf, **arrays)
    path = _write('snapshot_iter_4', _mutate(buf.getvalue(), flips, cut)
                  if flips else buf.getvalue())
    try:
        with open_npz(path, 'trainer snapshot', SnapshotError) as npz:
            check_fields(npz, 6)
    except SnapshotError as e:
        _one_line(e)
    except ValueError as e:     # check_fields' own, wrapped by the loader
        _one_line(e)


@FUZZ
@given(coords=st.lists(st.one_of(st.floats(allow_nan=False,
                                           allow_infinity=False),
                                 st.integers(-10 ** 9, 10 ** 9)),
                       min_size=6, max_size=40))
def test_coco_polygon_coordinates(coords):
    coords = coords[:len(coords) // 2 * 2]
    path = _write('ann.json', json.dumps({
        'images': [{'id': 1, 'file_name': 'a.png', 'height': 48,
                    'width': 64}],
        'categories': [{'id': 1}],
        'annotations': [{'id': 3, 'image_id': 1, 'category_id': 1,
                         'bbox': [0, 0, 10, 10],
                         'segmentation': [coords]}]}).encode())
    try:
        coco = load_coco(path)
    except DatasetError as e:
        _one_line(e)
        assert 'annotation id 3' in str(e)
        return
    xs, ys = coords[0::2], coords[1::2]
    assert -256 <= min(xs) and max(xs) <= 320
    assert -192 <= min(ys) and max(ys) <= 240
    assert 0 <= coco.anns[3]['area'] <= 64 * 48


@pytest.fixture(autouse=True, scope='module')
def _cleanup():
    yield
    for name in os.listdir(TMP):
        os.remove(os.path.join(TMP, name))
    os.rmdir(TMP)
