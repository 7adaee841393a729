"""Checks that a screenshot of the window is a real picture, not a blank frame.

Usage: python3 .ci/check_png.py SHOT.png — exits non-zero when the PNG is smaller than 600×400 or
has 16 or fewer distinct byte values (a flat colour). Standard library only.
"""
import struct
import sys
import zlib


def main(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, compressed, size = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            compressed += body
        pos += 12 + length
    distinct = len(set(zlib.decompress(compressed)))
    print(f"{path}: {size[0]}x{size[1]}, {distinct} distinct byte values")
    if size[0] < 600 or size[1] < 400 or distinct <= 16:
        sys.exit(f"{path}: the screenshot is blank or too small")


if __name__ == "__main__":
    main(sys.argv[1])
