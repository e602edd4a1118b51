"""Reading protobuf messages field by field from the wire format, with no
generated code and no protobuf package: what the caffemodel reader and
the ONNX file checks need (https://protobuf.dev/programming-guides/
encoding/). Every length is checked against the buffer, so a truncated or
crafted message is one ``WireError``, never a read past its end."""

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class WireError(ValueError):
    """Bytes that are not a protobuf message."""


def read_varint(buf, pos):
    """(value, position after it) of the varint at ``buf[pos]``."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError('truncated varint')
        b = buf[pos]
        pos += 1
        result |= (b & 0x7f) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """Yield (field number, wire type, value) of one message; LEN values
    are memoryviews (slices of ``buf``), VARINT values ints, I32/I64 raw
    little-endian memoryviews."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire == LEN:
            n, pos = read_varint(buf, pos)
            if pos + n > end:
                raise WireError('truncated field {}'.format(number))
            value, pos = buf[pos:pos + n], pos + n
        elif wire in (I32, I64):
            n = 4 if wire == I32 else 8
            if pos + n > end:
                raise WireError('truncated field {}'.format(number))
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise WireError('unsupported wire type {}'.format(wire))
        yield number, wire, value
