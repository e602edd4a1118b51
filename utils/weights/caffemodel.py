"""Reading and writing the parts of a Caffe ``.caffemodel`` that hold
weights, straight from the protobuf wire format.

Chainer's ``CaffeFunction`` reads caffemodels through ``protobuf``, but
the ``caffe_pb2`` module it ships was generated for protobuf 3 and only
imports with the slow pure-Python implementation, which takes minutes on
ResNet-101's 45M floats. The few fields needed here are read directly, with
packed floats decoded by ``numpy.frombuffer`` (``caffe.proto``). Every
field's wire type, length and content is checked before use, so a
truncated or crafted file is one ``CaffemodelError`` naming the file and
the field, never another exception or an allocation beyond the file's
size:

* ``NetParameter``: ``layer`` = 100 (``LayerParameter``), legacy ``layers``
  = 2 (``V1LayerParameter``).
* ``LayerParameter``: ``name`` = 1, ``type`` = 2, ``blobs`` = 7,
  ``batch_norm_param`` = 139 (``eps`` = 3).
  ``V1LayerParameter``: ``name`` = 4, ``blobs`` = 6.
* ``BlobProto``: ``num, channels, height, width`` = 1-4 (legacy shape),
  ``data`` = 5 (float), ``shape`` = 7 (``BlobShape.dim`` = 1, int64),
  ``double_data`` = 8.
"""
import math
import struct
from collections import OrderedDict

import numpy

from utils.protobuf_wire import (I32, I64, LEN, VARINT,  # noqa: F401
                                 WireError, fields, read_varint)


class CaffemodelError(ValueError):
    """A file that is not a readable caffemodel."""


def _fields(buf):
    """``protobuf_wire.fields``, its errors as ``CaffemodelError``."""
    try:
        yield from fields(buf)
    except WireError as e:
        raise CaffemodelError(str(e)) from None


def _varint(buf, pos):
    try:
        return read_varint(buf, pos)
    except WireError as e:
        raise CaffemodelError(str(e)) from None


def _expect(wire, expected, what):
    if wire != expected:
        raise CaffemodelError('{} has wire type {}, expected {}'.format(
            what, wire, expected))


def _blob(buf):
    legacy, shape, chunks = [1, 1, 1, 1], None, []
    for number, wire, value in _fields(buf):
        if 1 <= number <= 4 and wire == VARINT:
            legacy[number - 1] = value
        elif number in (5, 8):
            _expect(wire, LEN, 'blob data')  # packed floats
            dtype = numpy.dtype('<f4' if number == 5 else '<f8')
            if len(value) % dtype.itemsize:
                raise CaffemodelError('blob data of {} bytes is not a whole '
                                      'number of {}-byte floats'.format(
                                          len(value), dtype.itemsize))
            chunks.append(numpy.frombuffer(value, dtype)
                          .astype(numpy.float32))
        elif number == 7:
            _expect(wire, LEN, 'blob shape')
            shape = []
            for n, w, v in _fields(value):
                if n == 1 and w == LEN:  # packed
                    pos = 0
                    while pos < len(v):
                        d, pos = _varint(v, pos)
                        shape.append(d)
                elif n == 1 and w == VARINT:
                    shape.append(v)
                elif n == 1:
                    raise CaffemodelError('a blob dimension has wire type '
                                          '{}'.format(w))
    data = numpy.concatenate(chunks) if chunks else numpy.zeros(
        0, numpy.float32)
    shape = tuple(shape) if shape is not None else tuple(legacy)
    # math.prod of Python ints: numpy.prod would wrap around for huge dims.
    if len(shape) > 32 or math.prod(shape) != data.size:
        raise CaffemodelError('blob of shape {} holds {} values'.format(
            shape, data.size))
    return data.reshape(shape)


def _layer(buf, v1):
    name, eps, blobs = None, None, []
    for number, wire, value in _fields(buf):
        if number == (4 if v1 else 1) and wire == LEN:
            try:
                name = bytes(value).decode('utf-8')
            except UnicodeDecodeError:
                raise CaffemodelError('a layer name is not UTF-8') from None
        elif number == (6 if v1 else 7) and wire == LEN:
            blobs.append(_blob(value))
        elif number == 139 and not v1:
            _expect(wire, LEN, 'batch_norm_param')
            for n, w, v in _fields(value):
                if n == 3 and w == I32:
                    eps = struct.unpack('<f', bytes(v))[0]
    return name, {'blobs': blobs, 'eps': eps}


def read_caffemodel(path):
    """{layer name: {'blobs': [float32 ndarray], 'eps': float or None}}."""
    try:
        with open(path, 'rb') as f:
            buf = memoryview(f.read())
    except OSError as e:
        raise CaffemodelError('cannot read the caffemodel {} ({})'.format(
            path, e.strerror or e)) from None
    layers = OrderedDict()
    try:
        for number, wire, value in _fields(buf):
            if number in (100, 2) and wire == LEN:
                name, layer = _layer(value, v1=number == 2)
                if name is not None and (layer['blobs'] or
                                         name not in layers):
                    layers[name] = layer
    except CaffemodelError as e:
        raise CaffemodelError('{} is not a readable caffemodel ({})'.format(
            path, e)) from None
    return layers


def _key(number, wire):
    return _encode_varint(number << 3 | wire)


def _encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number, payload):
    return _key(number, LEN) + _encode_varint(len(payload)) + payload


def write_caffemodel(path, layers):
    """Write ``[(name, type, [arrays])]`` as a caffemodel (test data)."""
    out = bytearray()
    for name, kind, blobs in layers:
        msg = _len_field(1, name.encode()) + _len_field(2, kind.encode())
        for b in blobs:
            dims = b''.join(_encode_varint(d) for d in b.shape)
            blob = (_len_field(5, numpy.asarray(b, '<f4').tobytes()) +
                    _len_field(7, _len_field(1, dims)))
            msg += _len_field(7, blob)
        out += _len_field(100, msg)
    with open(path, 'wb') as f:
        f.write(bytes(out))
