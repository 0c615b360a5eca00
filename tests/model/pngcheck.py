"""pngcheck.py - a small PNG decoder for the picture tests (zlib only, no
third-party modules): chunk CRCs, IHDR, IDAT inflated and unfiltered.
Supports 8-bit greyscale, RGB and RGBA, non-interlaced (what stb and
Chromium write)."""
import struct
import zlib


def decode(path, unfilter=True):
    """Returns (width, height, channels, rows) with rows a list of bytes
    (None without unfilter: then only the sizes and filter bytes are
    checked, which is fast); raises ValueError on any malformed or
    unsupported file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, ihdr, ended = 8, [], None, False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"{path}: truncated chunk header")
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if len(body) != n or pos + 12 + n > len(data):
            raise ValueError(f"{path}: truncated {kind!r} chunk")
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: bad CRC in {kind!r}")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
        pos += 12 + n
    if ihdr is None or not idat or not ended:
        raise ValueError(f"{path}: missing IHDR, IDAT or IEND")
    w, h, depth, ctype, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {ctype})")
    raw = zlib.decompress(b"".join(idat))
    stride = w * channels
    if len(raw) != h * (stride + 1):
        raise ValueError(f"{path}: {len(raw)} bytes of pixels for {w}x{h}")
    if not unfilter:
        for y in range(h):
            if raw[y * (stride + 1)] > 4:
                raise ValueError(f"{path}: bad filter in row {y}")
        return w, h, channels, None
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pr) & 255
            elif f != 0:
                raise ValueError(f"{path}: bad filter {f} in row {y}")
        rows.append(bytes(line))
        prev = line
    return w, h, channels, rows


def pixels(rows, channels):
    """Every pixel as an (r, g, b) tuple."""
    out = []
    for row in rows:
        for x in range(0, len(row), channels):
            px = row[x:x + 3] if channels >= 3 else bytes([row[x]] * 3)
            out.append(tuple(px))
    return out
