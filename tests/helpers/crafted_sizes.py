"""Small files that declare huge sizes: image headers, npz members and zip
entries. Each is a few hundred bytes (or a few hundred KB of deflated
zeros), built here from the formats' specifications, not by the code
under test."""
import io
import struct
import zipfile
import zlib

import numpy
from numpy.lib import format as npy_format


def png(width, height, pixels=None):
    """A PNG whose IHDR declares ``width`` x ``height`` (8-bit RGB). With
    ``pixels`` ((H, W, 3) uint8) its data is complete; else there is none
    (a decoder that trusts the header allocates first)."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    raw = b'' if pixels is None else b''.join(
        b'\x00' + row.tobytes() for row in pixels)
    return (b'\x89PNG\r\n\x1a\n' +
            chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0,
                                       0, 0)) +
            chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def jpeg(width, height):
    """The start of a baseline JPEG whose SOF0 declares ``width`` x
    ``height`` (3 components); no scan data follows."""
    sof = struct.pack('>BHHB', 8, height, width, 3) + b''.join(
        struct.pack('>BBB', i, 0x11, 0) for i in (1, 2, 3))
    return (b'\xff\xd8' + b'\xff\xe0' + struct.pack('>H', 16) +
            b'JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00' +
            b'\xff\xc0' + struct.pack('>H', len(sof) + 2) + sof +
            b'\xff\xd9')


def bmp(width, height):
    """A 24-bit BMP header declaring ``width`` x ``height``, no pixels."""
    info = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, 0,
                       2835, 2835, 0, 0)
    return b'BM' + struct.pack('<IHHI', 14 + len(info), 0, 0,
                               14 + len(info)) + info


def npy_header(shape, descr='<f4'):
    """The npy (1.0) header of an array of ``shape`` and ``descr``."""
    f = io.BytesIO()
    npy_format.write_array_header_1_0(f, {'descr': descr,
                                          'fortran_order': False,
                                          'shape': tuple(shape)})
    return f.getvalue()


def npz_of(path, members, method=zipfile.ZIP_DEFLATED):
    """Write ``members`` ({name: bytes or numpy array}) as an npz."""
    with zipfile.ZipFile(str(path), 'w', method) as z:
        for name, data in members.items():
            if isinstance(data, numpy.ndarray):
                f = io.BytesIO()
                npy_format.write_array(f, data, allow_pickle=False)
                data = f.getvalue()
            z.writestr(name + '.npy', data)
    return path


def zip_bomb_npz(path, name, nbytes, others=None):
    """An npz whose member ``name`` is a float32 array of ``nbytes`` bytes
    of zeros, deflated (about 1000 : 1), beside ``others``."""
    with zipfile.ZipFile(str(path), 'w', zipfile.ZIP_DEFLATED) as z:
        for key, value in (others or {}).items():
            f = io.BytesIO()
            npy_format.write_array(f, value, allow_pickle=False)
            z.writestr(key + '.npy', f.getvalue())
        with z.open(name + '.npy', 'w', force_zip64=True) as f:
            f.write(npy_header((nbytes // 4,)))
            chunk = bytes(1 << 24)
            for _ in range(nbytes // len(chunk)):
                f.write(chunk)
            f.write(bytes(nbytes % len(chunk)))
    return path


def set_zip_method(path, method):
    """Rewrite every entry's compression method (local and central
    headers) to ``method``, e.g. 99 (AES), which zipfile cannot read."""
    data = bytearray(open(str(path), 'rb').read())
    for signature, offset in ((b'PK\x03\x04', 8), (b'PK\x01\x02', 10)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset:at + offset + 2] = struct.pack('<H', method)
            at = data.find(signature, at + 4)
    open(str(path), 'wb').write(bytes(data))
    return path
