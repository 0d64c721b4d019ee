"""pbwire.py - the protobuf wire format written out by hand, for the hostile peers the
tests play (a relay in cellsd-net's place, an independent MDM client, a receipt
decoder): they must send what no well-behaved encoder would, and a fresh machine has no
Python protobuf package. Also the header of a cellsd <-> cellsd-net datagram
(proto/netipc.h). Imported from the folder of the script that uses it: tests that copy
a peer elsewhere copy this file beside it."""
import struct


def varint(v):
    out = bytearray()
    while True:
        x = v & 0x7F
        v >>= 7
        if v:
            out.append(x | 0x80)
        else:
            out.append(x)
            return bytes(out)


def read_varint(b, i):
    v = s = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return v, i


def f_varint(field, v):
    """A varint field."""
    return varint(field << 3) + varint(v)


def f_bytes(field, data):
    """A length-delimited field (str is UTF-8 encoded)."""
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def fields(b):
    """[[field, wire type, value], ...] in order: varints as int, the rest as bytes."""
    out, i = [], 0
    while i < len(b):
        k, i = read_varint(b, i)
        f, t = k >> 3, k & 7
        if t == 0:
            v, i = read_varint(b, i)
        elif t == 2:
            n, i = read_varint(b, i)
            v = bytes(b[i:i + n])
            i += n
        elif t == 1:
            v = bytes(b[i:i + 8])
            i += 8
        elif t == 5:
            v = bytes(b[i:i + 4])
            i += 4
        else:
            raise ValueError("wire type %d" % t)
        out.append([f, t, v])
    return out


def by_field(b):
    """{field: [values]} (see fields)."""
    out = {}
    for f, _, v in fields(b):
        out.setdefault(f, []).append(v)
    return out


def ser(m):
    """The inverse of fields()."""
    o = b""
    for f, t, v in m:
        o += varint(f << 3 | t)
        if t == 0:
            o += varint(v)
        elif t == 2:
            o += varint(len(v)) + v
        else:
            o += v
    return o


def get(m, f):
    """The first [field, type, value] of fields() m with field f, or None."""
    for e in m:
        if e[0] == f:
            return e
    return None


NETIPC_MAGIC, NETIPC_VERSION = 0xCE11, 1


def dgram(t, payload, length=None):
    """A netipc datagram of type t (length: what the header claims, default the truth)."""
    n = len(payload) if length is None else length
    return struct.pack(">HBBI", NETIPC_MAGIC, NETIPC_VERSION, t, n) + payload
