"""Crafted and truncated caffemodels: the reader and the MobileNet
converter refuse each in one line naming the file (never another
exception, a warning, a write, or an allocation beyond the file), and a
property-based fuzz mutates a valid file at random to keep it so."""
import os
import struct

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import utils.mobilenet_parser as mp
from tests.helpers.synthetic_weights import write_mobilenet_caffemodel
from utils.weights.caffemodel import (
    I32, LEN, VARINT, CaffemodelError, _encode_varint, _key, _len_field,
    read_caffemodel, write_caffemodel)
from utils.weights.safe_pickle import ConversionError


def _layer(*fields):
    return _len_field(100, b''.join(fields))


NAME = _len_field(1, b'conv1')
CRAFTED = {
    'name not UTF-8': _layer(_len_field(1, b'\xff\xfe')),
    # bytes(int) would allocate that many zero bytes.
    'data as a varint': _layer(NAME, _len_field(7, _key(5, VARINT) +
                                                _encode_varint(2 ** 40))),
    'data not whole floats': _layer(NAME, _len_field(7, _len_field(
        5, b'\0' * 7))),
    'shape as a varint': _layer(NAME, _len_field(7, _key(7, VARINT) +
                                                 b'\x05')),
    'dimension as I32': _layer(NAME, _len_field(7, _len_field(
        7, _key(1, I32) + b'\0\0\0\0'))),
    # numpy.prod of these dims wraps around to 0 in int64.
    'dims overflowing int64': _layer(NAME, _len_field(7, _len_field(
        7, _len_field(1, _encode_varint(2 ** 32) * 2)))),
    'eps truncated': _layer(NAME, _len_field(139, _key(3, I32) + b'\0')),
    'eps as a varint': _layer(NAME, _key(139, VARINT) + b'\x01'),
    'layer truncated': _key(100, LEN) + _encode_varint(50) + NAME,
    'unknown wire type': b'\x0f',
}


@pytest.mark.parametrize('name', sorted(CRAFTED))
def test_crafted_files_are_one_error_naming_the_file(tmp_path, name):
    path = tmp_path / 'bad.caffemodel'
    path.write_bytes(CRAFTED[name])
    with pytest.raises(CaffemodelError) as info:
        read_caffemodel(str(path))
    text = str(info.value)
    assert '\n' not in text and text.startswith(
        '{} is not a readable caffemodel ('.format(path)), text


def test_good_eps_is_read(tmp_path):
    # The reference: the same hand encoding, valid, reads back.
    path = tmp_path / 'good.caffemodel'
    path.write_bytes(_layer(NAME, _len_field(139, _key(3, I32) +
                                             struct.pack('<f', 0.5))))
    assert read_caffemodel(str(path)) == {'conv1': {'blobs': [],
                                                    'eps': 0.5}}


@pytest.fixture(scope='module')
def mobilenet(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('c') / 'mobilenet.caffemodel')
    write_mobilenet_caffemodel(path, seed=1)
    with open(path, 'rb') as f:
        return f.read()


def _convert(tmp_path, data):
    """mobilenet_parser on ``data``: (the output or None, the error line
    or None); no partial or temporary output either way."""
    src = tmp_path / 'm.caffemodel'
    src.write_bytes(data)
    out = tmp_path / 'out' / 'm.npz'
    try:
        mp.main([str(src), '-o', str(out)])
    except ConversionError as e:
        text = mp.one_line(str(e))
        assert str(src) in text and '\n' not in text, text
        assert not out.parent.exists() or os.listdir(str(out.parent)) == []
        return None, text
    assert os.listdir(str(out.parent)) == ['m.npz']
    return str(out), None


def test_truncated_mobilenet_is_one_line(tmp_path, mobilenet):
    for cut in (10, len(mobilenet) // 2, len(mobilenet) - 3):
        out, error = _convert(tmp_path, mobilenet[:cut])
        assert out is None and 'caffemodel' in error


def test_negative_variance_is_refused_without_a_warning(tmp_path, recwarn):
    layers = write_mobilenet_caffemodel(str(tmp_path / 'ok.caffemodel'))
    bn = [numpy.asarray(b, numpy.float32) for b in layers['conv1/bn']]
    bn[1][0] = -5.  # variance below 0: sqrt of a negative
    src = str(tmp_path / 'neg.caffemodel')
    write_mobilenet_caffemodel(src, drop='conv1/bn',
                               extra=[('conv1/bn', 'BatchNorm', bn)])
    with pytest.raises(ConversionError, match='NaN or infinite'):
        mp.main([src, '-o', str(tmp_path / 'neg.npz')])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert not os.path.exists(str(tmp_path / 'neg.npz'))


_EDIT = st.tuples(st.sampled_from(['cut', 'flip', 'insert', 'delete']),
                  st.floats(0, 1), st.binary(min_size=1, max_size=8))


def _mutate(data, edits, head=None):
    """Apply ``edits`` (op, where in [0, 1], bytes); positions fall in the
    first ``head`` bytes when given (the structure, not the floats)."""
    data = bytearray(data)
    for op, where, blob in edits:
        span = min(len(data), head or len(data))
        i = int(where * span)
        if op == 'cut':
            del data[i:]
        elif op == 'flip' and i < len(data):
            data[i] ^= blob[0] or 1
        elif op == 'insert':
            data[i:i] = blob
        else:
            del data[i:i + len(blob)]
    return bytes(data)


FUZZ = settings(max_examples=150, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(st.lists(_EDIT, min_size=1, max_size=4))
def test_fuzz_reader(tmp_path, edits):
    layers = [('c', 'Convolution', [numpy.ones((2, 1, 3, 3), 'f')]),
              ('c/bn', 'BatchNorm', [numpy.ones(2, 'f')] * 2 +
               [numpy.ones(1, 'f')])]
    path = str(tmp_path / 'small.caffemodel')
    write_caffemodel(path, layers)
    with open(path, 'rb') as f:
        data = _mutate(f.read(), edits)
    with open(path, 'wb') as f:
        f.write(data)
    try:
        layers = read_caffemodel(path)
    except CaffemodelError as e:
        assert '\n' not in str(e) and path in str(e)
        return
    for layer in layers.values():  # what it read is what it declares
        assert all(b.dtype == numpy.float32 for b in layer['blobs'])
        assert sum(b.nbytes for b in layer['blobs']) <= 2 * len(data)


@settings(FUZZ, max_examples=25, deadline=5000)
@given(st.lists(_EDIT, min_size=1, max_size=3))
def test_fuzz_mobilenet_converter(tmp_path_factory, mobilenet, edits):
    tmp_path = tmp_path_factory.mktemp('f')
    # Mostly the first layers' structure; floats anywhere change weights.
    _convert(tmp_path, _mutate(mobilenet, edits, head=4000))


@pytest.mark.parametrize('cut', [100, None])
def test_pretrained_imagenet_names_the_bad_caffemodel(tmp_path, mobilenet,
                                                      cut):
    # train.py --arch mobilenetv1-fpn --pretrained imagenet converts the
    # cached caffemodel; a truncated one or one with a missing layer is
    # one line naming it, and no npz is cached.
    from utils.training.pretrained import PretrainedError, resolve
    src = tmp_path / 'mobilenet.caffemodel'
    if cut:
        src.write_bytes(mobilenet[:cut])
    else:
        write_mobilenet_caffemodel(str(src), drop='conv2_1/dw/bn')
    with pytest.raises(PretrainedError) as info:
        resolve('imagenet', 50, str(tmp_path), log=lambda line: None,
                arch='mobilenetv1-fpn')
    text = str(info.value)
    assert text.startswith(str(src)) and '\n' not in text, text
    assert os.listdir(str(tmp_path)) == ['mobilenet.caffemodel']
