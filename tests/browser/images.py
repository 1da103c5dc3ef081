"""Reading the PNG screenshots Chromium takes, so tests can check what a page looked like."""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_pixels(data: bytes) -> list[tuple[int, int, int]]:
    """The RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    width, height = png_size(data)
    depth, color_type, interlace = data[24], data[25], data[28]
    assert (depth, interlace) == (8, 0) and color_type in (2, 6)
    bpp = 3 if color_type == 2 else 4
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        if data[position + 4 : position + 8] == b"IDAT":
            chunks.append(data[position + 8 : position + 8 + length])
        position += length + 12
    raw, stride = zlib.decompress(b"".join(chunks)), width * bpp
    pixels: list[tuple[int, int, int]] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = previous[i], (previous[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                guess = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - up_left), 2, up_left))
                line[i] = (line[i] + guess[2]) & 0xFF
        pixels += zip(line[0::bpp], line[1::bpp], line[2::bpp], strict=True)
        previous = line
    return pixels


def share_of_color(data: bytes, color: tuple[int, int, int]) -> float:
    pixels = png_pixels(data)
    return sum(pixel == color for pixel in pixels) / len(pixels)


def share_of_near_white(data: bytes) -> float:
    """The share of pixels that are white or nearly so (a blank area)."""
    pixels = png_pixels(data)
    return sum(min(pixel) >= 240 for pixel in pixels) / len(pixels)
