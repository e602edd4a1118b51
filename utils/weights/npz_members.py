"""The sizes an npz archive declares, checked before any member is read.

``numpy.load`` of an npz reads the zip directory only; each member is
inflated when indexed, into an array of the shape its npy header declares
(allocated in full before a byte is read). A small file may therefore
declare anything: a zip bomb (2 GB of zeros deflated to 2 MB), a member
whose header says 4 TiB, a 2 GB string, a compression method zipfile
cannot read. ``member_headers`` reads the directory and each member's npy
header (a few hundred bytes) and refuses, before any array is read:

* a member stored with another method than stored or deflated, or
  encrypted;
* a directory entry whose uncompressed size the compressed data cannot
  give (stored: equal sizes; deflate: at most 1032 : 1, its limit);
* a member that is not an npy array, or holds Python objects;
* an npy header whose shape and dtype need another byte count than the
  member holds;
* members that add up to more than ``MAX_RATIO`` times the archive's size
  plus ``ALLOWANCE`` bytes: real weights and snapshots inflate to about
  1 to 2 times their deflated size (``numpy.savez`` stores them as is).

Where the reader knows the shape each array must have (the model's
parameters), ``check_shapes`` compares the declared shapes before reading.
"""
import os
import zipfile
import zlib

from numpy.lib import format as npy_format

#: Stored and deflated (what ``numpy.savez`` and ``savez_compressed``
#: write); any other method is refused.
METHODS = {zipfile.ZIP_STORED: 'stored', zipfile.ZIP_DEFLATED: 'deflated'}
#: deflate's largest compression ratio (RFC 1951: 258 bytes per 2-bit
#: code, about 1032 : 1).
DEFLATE_RATIO = 1032
#: The members may inflate to this many times the archive's size ...
MAX_RATIO = 16
#: ... plus this many bytes (small files of zero-initialised arrays).
ALLOWANCE = 64 << 20
#: Array dtypes a model or snapshot may hold: bool, integers, floats,
#: and strings (the JSON metadata, chainer's log).
KINDS = 'biufUS'
#: The longest string member, in bytes (UCS-4: 4 per character).
MAX_STRING = 64 << 20


class ObjectArray(ValueError):
    """A member holding Python objects (a pickle), which is never read."""


class ShapeMismatch(ValueError):
    """A member whose declared shape is not the one expected."""


def member_headers(npz_zip, path):
    """``{member name without .npy: (shape, dtype)}`` of every member of
    an opened npz, checked as the module docstring says.

    Args:
        npz_zip (zipfile.ZipFile): ``numpy.load(path).zip``.
        path (str): the archive, for its size and the messages.

    Raises:
        ValueError: one line naming the member and what was expected.
    """
    budget = ALLOWANCE + MAX_RATIO * os.path.getsize(path)
    headers, total = {}, 0
    for info in npz_zip.infolist():
        name = info.filename
        _check_entry(info, budget)
        shape, dtype, offset = _read_header(npz_zip, info)
        nbytes = dtype.itemsize
        for n in shape:
            nbytes *= n
        if nbytes != info.file_size - offset:
            raise ValueError('member {} declares a {} array of {} bytes '
                             'but holds {}'.format(
                                 name, shape, nbytes,
                                 info.file_size - offset))
        total += nbytes
        if total > budget:
            raise ValueError(
                'its members inflate to more than {} bytes ({} times the '
                'file, plus {} MiB): a zip bomb or not a model'.format(
                    budget, MAX_RATIO, ALLOWANCE >> 20))
        key = name[:-len('.npy')] if name.endswith('.npy') else name
        headers[key] = shape, dtype
    return headers


def _check_entry(info, budget):
    name = info.filename
    if info.compress_type not in METHODS:
        raise ValueError('member {} uses zip compression method {}; '
                         'expected stored or deflated'.format(
                             name, info.compress_type))
    if info.flag_bits & 0x1:
        raise ValueError('member {} is encrypted'.format(name))
    most = info.compress_size * (
        DEFLATE_RATIO if info.compress_type == zipfile.ZIP_DEFLATED else 1)
    if info.file_size > max(most, 64) or info.file_size > budget:
        raise ValueError('member {} declares {} bytes, more than its {} '
                         'compressed bytes can hold or this file may '
                         'inflate to'.format(name, info.file_size,
                                             info.compress_size))


def _read_header(npz_zip, info):
    """(shape, dtype, header bytes) of the npy member ``info``."""
    name = info.filename
    try:
        with npz_zip.open(info) as f:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(f)
            else:
                raise ValueError('npy format version {} is not read'
                                 .format(version))
            offset = f.tell()
    except (ValueError, EOFError, OSError, SyntaxError, TypeError,
            zipfile.BadZipFile, zlib.error) as e:
        text = str(e).strip().splitlines()
        raise ValueError('member {} is not an npy array ({})'.format(
            name, text[0] if text else type(e).__name__)) from None
    if dtype.hasobject:
        raise ObjectArray('member {} holds Python objects'.format(name))
    if dtype.kind not in KINDS or dtype.subdtype is not None:
        raise ValueError('member {} has dtype {}, expected numbers or a '
                         'string'.format(name, dtype))
    if dtype.kind in 'US' and dtype.itemsize > MAX_STRING:
        raise ValueError('member {} declares a string of {} bytes, more '
                         'than {} MiB'.format(name, dtype.itemsize,
                                              MAX_STRING >> 20))
    return shape, dtype, offset


def check_shapes(headers, expected):
    """Raise ``ValueError`` naming the first member whose declared shape
    is not ``expected[name]`` (members not in ``expected`` are left to the
    caller)."""
    for name, (shape, _) in sorted(headers.items()):
        if name in expected and tuple(shape) != tuple(expected[name]):
            raise ShapeMismatch('{} is {} in the file, expected {}'
                                .format(name, tuple(shape),
                                        tuple(expected[name])))
