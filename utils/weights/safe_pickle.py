"""Reading weight pickles without running code or trusting sizes.

Detectron's ``model_final.pkl`` and ``R-50.pkl`` and detectron2's model-zoo
``model_final_*.pkl`` hold NumPy arrays in plain containers. The
restricted unpickler below hands the pickle none of NumPy's own
constructors: each global a weights pickle names is answered by a checked
builder of this module, and any other global is refused, so a malicious
file fails before anything in it runs.

The builders accept only the arguments NumPy's own pickles use:

* ``_reconstruct(ndarray, (0,), b'b')`` followed by BUILD with
  ``ndarray.__setstate__``'s state ``(1, shape, dtype, is_fortran, data)``
  (protocols 0-4);
* ``_frombuffer(buffer, dtype, shape, order)`` (protocol 5, in-band);
* ``dtype(code, False, True)`` followed by BUILD with its state, where
  only the byte order is used;
* ``scalar(dtype, data)``, ``_codecs.encode(text, 'latin1')`` (bytes in
  protocol 2), ``bytes()`` and ``collections.OrderedDict``.

An array is built only when its shape, dtype and data agree
(``len(data) == prod(shape) * itemsize``) and the bytes of all arrays
together fit in the file, so no declared shape is ever allocated on trust.
Arrays of a dtype weights never have (object, strings, complex,
structured, dates) are not built at all: they load as ``RefusedArray``,
which the converters refuse by name.
"""
import collections
import math
import os
import pickle
import zipfile

import numpy

from utils.printable import printable

# The dtypes of weights, as NumPy's pickles spell them ('<f4' is 'f4' with
# byte order '<' in the BUILD state).
NUMERIC_CODES = frozenset('b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8'.split())
# Pickled byte order -> numpy's: '|' (not applicable) and '=' are native.
BYTE_ORDERS = {'<': '<', '>': '>', '|': '=', '=': '='}
MAX_NDIM = 32
# Containers deeper than this are not a weights file (and a cycle is one).
MAX_DEPTH = 32


class ConversionError(ValueError):
    """A weights file that is not of the expected kind."""


class RefusedArray:
    """An array of a dtype weights never have (``dtype``: its pickled code,
    e.g. 'O8', 'c8', 'U2'), left unbuilt so that nothing of it is read."""
    __slots__ = ('dtype',)

    def __init__(self, dtype):
        self.dtype = dtype

    def __repr__(self):
        return 'RefusedArray({!r})'.format(self.dtype)


class _Dtype:
    """``numpy.dtype(code, False, True)`` as it comes out of a pickle: the
    code now, the byte order with BUILD."""
    __slots__ = ('code', 'order')

    def __init__(self, code):
        self.code, self.order = code, '='

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 2 and
                state[1] in BYTE_ORDERS):
            raise ConversionError('malformed dtype state {}'.format(
                short_repr(state)))
        self.order = state[1]

    def numpy(self):
        return numpy.dtype(BYTE_ORDERS[self.order] + self.code)


class _PendingArray:
    """What ``_reconstruct`` returns: an array whose contents come with
    BUILD. Replaced by the array itself once the pickle is read."""
    __slots__ = ('loader', 'array')

    def __init__(self, loader):
        self.loader, self.array = loader, None

    def __setstate__(self, state):
        self.array = self.loader.array_from_state(state)


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: only ever compared with,
    never called, so no declared shape is allocated through it."""
    __slots__ = ()

    def __repr__(self):
        return 'numpy.ndarray'

    def __call__(self, *args):
        raise ConversionError('refusing to call numpy.ndarray{}: NumPy\'s '
                              'pickles only pass it to _reconstruct'.format(
                                  short_repr(args)))


NDARRAY = _NdarrayClass()


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, size):
        super().__init__(file, encoding='latin1')
        # Bytes the builders may still produce: a file holds every array's
        # data once, so more means the pickle reuses it (memo) to make us
        # allocate beyond its size.
        self.left = {'array': size, 'bytes': size}
        self.globals = {('numpy', 'ndarray'): NDARRAY,
                        ('numpy', 'dtype'): _dtype,
                        ('_codecs', 'encode'): self.encode,
                        ('__builtin__', 'bytes'): _empty_bytes,
                        ('builtins', 'bytes'): _empty_bytes,
                        ('collections', 'OrderedDict'):
                            collections.OrderedDict}
        for core in ('numpy.core', 'numpy._core'):  # NumPy 1.x and 2.x
            self.globals.update({
                (core + '.multiarray', '_reconstruct'): self.reconstruct,
                (core + '.multiarray', 'scalar'): self.scalar,
                (core + '.numeric', '_frombuffer'): self.frombuffer})

    def find_class(self, module, name):
        try:
            return self.globals[module, name]
        except KeyError:
            raise ConversionError(
                'refusing to load {}.{}: a weights pickle holds only NumPy '
                'arrays'.format(module, name)) from None

    def spend(self, kind, nbytes):
        if nbytes > self.left[kind]:
            raise ConversionError(
                'its arrays declare more bytes than the file holds (one '
                'more needs {:,}, {:,} left): refusing to allocate them'
                .format(nbytes, self.left[kind]))
        self.left[kind] -= nbytes

    def reconstruct(self, cls, shape, typecode):
        # NumPy writes exactly these arguments; anything else would make
        # the real _reconstruct allocate whatever shape it is given.
        if not (cls is NDARRAY and type(shape) is tuple and shape == (0,)
                and typecode in (b'b', 'b')):
            raise ConversionError(
                'unexpected _reconstruct{}: NumPy\'s pickles pass '
                "(numpy.ndarray, (0,), b'b')".format(
                    short_repr((cls, shape, typecode))))
        return _PendingArray(self)

    def array_from_state(self, state):
        """``ndarray.__setstate__``'s ``(1, shape, dtype, is_fortran,
        data)`` (or without the version) as an array."""
        if not (isinstance(state, tuple) and len(state) in (4, 5) and
                (len(state) == 4 or state[0] == 1)):
            raise ConversionError('malformed array state')
        shape, dtype, fortran, data = state[-4:]
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise ConversionError('malformed array state (is_fortran {})'
                                  .format(short_repr(fortran)))
        return self.array(data, dtype, shape, 'F' if fortran else 'C')

    def frombuffer(self, buffer, dtype, shape, order):
        if order not in ('C', 'F'):
            raise ConversionError('unexpected array order {}'.format(
                short_repr(order)))
        return self.array(buffer, dtype, shape, order)

    def scalar(self, dtype, data):
        array = self.array(data, dtype, (), 'C')
        return array if isinstance(array, RefusedArray) else array[()]

    def array(self, data, dtype, shape, order):
        """The array ``shape`` of ``dtype`` read from ``data``, once they
        are shown to agree; read-only when ``data`` is ``bytes``."""
        if not isinstance(dtype, _Dtype):
            raise ConversionError('array dtype is a {}, expected a '
                                  'numpy.dtype'.format(type(dtype).__name__))
        if dtype.code not in NUMERIC_CODES:
            return RefusedArray(dtype.code)
        shape, dtype = _checked_shape(shape), dtype.numpy()
        if not isinstance(data, (bytes, bytearray, str)):
            raise ConversionError('{} array data is a {}, expected bytes'
                                  .format(dtype, type(data).__name__))
        nbytes = math.prod(shape) * dtype.itemsize
        if len(data) != nbytes:
            raise ConversionError(
                'a {} array of shape {} needs {:,} bytes, the pickle gives '
                '{:,}'.format(dtype, shape, nbytes, len(data)))
        self.spend('array', nbytes)
        if isinstance(data, str):  # Python 2's str, read with latin1
            data = _latin1(data)
        return numpy.frombuffer(data, dtype).reshape(shape, order=order)

    def encode(self, text, encoding):
        if not isinstance(text, str) or encoding not in ('latin1',
                                                         'latin-1'):
            raise ConversionError('unexpected _codecs.encode of a {} with '
                                  '{}'.format(type(text).__name__,
                                              short_repr(encoding)))
        self.spend('bytes', len(text))
        return _latin1(text)


def _dtype(code, align=False, copy=True):
    if not (isinstance(code, str) and len(code) <= 16 and
            align in (0, False) and copy in (1, True)):
        raise ConversionError('unexpected dtype{}'.format(
            short_repr((code, align, copy))))
    return _Dtype(code)


def _empty_bytes(*args):
    # Protocol 2 writes b'' as bytes(); bytes(n) would allocate n.
    if args:
        raise ConversionError('unexpected bytes{}'.format(short_repr(args)))
    return b''


def _latin1(text):
    try:
        return text.encode('latin1')
    except UnicodeEncodeError:
        raise ConversionError('array data is text beyond latin1, expected '
                              'bytes') from None


def _checked_shape(shape):
    if not (type(shape) is tuple and len(shape) <= MAX_NDIM and
            all(type(n) is int and n >= 0 for n in shape)):
        raise ConversionError('malformed array shape {}'.format(
            short_repr(shape)))
    return shape


def short_repr(value, limit=80):
    """``repr(value)``, cut to ``limit`` characters for an error line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def one_line(text):
    """``text`` as one printable line: names from a file may hold line
    breaks or terminal escapes (``utils.printable``)."""
    return printable(text)


def _materialise(obj, done=None, depth=0):
    """``obj`` with each ``_PendingArray`` replaced by its array (dicts and
    lists in place). ``done`` ({id: result}) visits a container shared
    through the memo once, however often the pickle refers to it."""
    done = {} if done is None else done
    if id(obj) in done:
        return done[id(obj)]
    if depth > MAX_DEPTH:
        raise ConversionError('containers nested deeper than {}'.format(
            MAX_DEPTH))
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise ConversionError('an ndarray without contents')
        return obj.array
    result = obj
    if isinstance(obj, (dict, list)):
        done[id(obj)] = obj
        keys = list(obj) if isinstance(obj, dict) else range(len(obj))
        for key in keys:
            obj[key] = _materialise(obj[key], done, depth + 1)
    elif type(obj) is tuple:
        result = tuple(_materialise(v, done, depth + 1) for v in obj)
        done[id(obj)] = result
    return result


def load_pickle(path):
    """The object in ``path``, read with ``latin1`` (Python 2 pickles) by
    the restricted unpickler. Arrays are views of the bytes read, read-only
    but for protocol 5's bytearrays."""
    if os.path.isdir(path):
        raise ConversionError('{} is a directory, expected a weights '
                              'pickle (.pkl)'.format(path))
    if not os.path.isfile(path):
        raise ConversionError('file not found: {}'.format(path))
    if zipfile.is_zipfile(path):
        raise ConversionError(
            '{} is a zip archive (a PyTorch .pth checkpoint?); expected a '
            'pickle of NumPy arrays such as Detectron\'s model_final.pkl '
            'or detectron2\'s model-zoo model_final_*.pkl'.format(path))
    try:
        with open(path, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            return _materialise(_SafeUnpickler(f, size).load())
    except ConversionError as e:
        raise ConversionError('{}: {}'.format(path, e)) from None
    except Exception as e:  # truncated, not a pickle, unreadable, ...
        raise ConversionError('{} is not a readable pickle ({}: {})'.format(
            path, type(e).__name__, e)) from None
