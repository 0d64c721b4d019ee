#!/usr/bin/env python3
"""display_png.py FILE.png [ROWS] - decode a PNG (8-bit RGB/RGBA, no interlace) with
the standard library only and print "WIDTH HEIGHT" and then each distinct colour as
RRGGBB with its pixel count, most frequent first; with ROWS only the first ROWS rows
are decoded (fast on large screens). Used by the display shell tests."""
import struct
import sys
import zlib


def decode(path, limit=None):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit("not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if zlib.crc32(kind + body) & 0xffffffff != crc:
            raise SystemExit("bad CRC in " + kind.decode())
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise SystemExit("unsupported PNG")
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    full_h = h
    if limit is not None and limit < h:
        h = limit
        raw = zlib.decompressobj().decompress(idat, h * (stride + 1))
    else:
        raw = zlib.decompress(idat)
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        rows.append(bytes(line))
        prev = line
    return w, full_h, bpp, rows


def main():
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    w, h, bpp, rows = decode(sys.argv[1], limit)
    counts = {}
    for r in rows:
        for x in range(0, len(r), bpp):
            k = r[x:x + 3].hex()
            counts[k] = counts.get(k, 0) + 1
    print(w, h)
    for k, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(k, n)


main()
