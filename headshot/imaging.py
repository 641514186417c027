"""Image intake and image utilities (PIL + numpy only).

* :func:`load_image` decodes an upload safely: only photo formats (JPEG, PNG, WebP, HEIC/HEIF, AVIF, GIF,
  BMP, TIFF), size limits checked before any pixel is decoded, truncated files refused, EXIF orientation
  applied, every colour mode normalised to 8-bit sRGB ``RGB``.
* Geometry helpers for the face pipeline: :func:`to_bgr`, :func:`downscale`, :func:`draw_kps` (the
  InstantID keypoint control image), :func:`headshot_crop_box` and :func:`crop_around_face`.
* Measures used by validation: :func:`sharpness`, :func:`brightness`, :func:`dhash` / :func:`hamming`.
* :func:`load_reduced` decodes only as many pixels as the checks need (JPEG draft mode), the whole
  image on demand. What an output PNG says about itself is ``disclosure.py``'s.

Nothing here knows about faces models, Gradio or torch.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import (
    Image,
    ImageCms,
    ImageDraw,
    ImageFile,
    ImageOps,
    UnidentifiedImageError,
)

from headshot import config, errors

log = logging.getLogger(__name__)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]
Box = tuple[int, int, int, int]

# Formats an upload may be decoded as. Everything else (EPS, which runs Ghostscript, PSD, ICO, SVG, ...)
# is refused at identification time. MPO is how many phones save JPEGs.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF", "GIF", "BMP", "TIFF")
SUPPORTED_FORMATS_TEXT = "a JPEG, PNG, WebP or HEIC photo"


# sharpness(): the input is resized to this short side before measuring, and the measure saturates at
# SHARPNESS_HALF (score 0.5). See sharpness() for the calibration.
SHARPNESS_SIDE = 160
SHARPNESS_HALF = 0.02

# draw_kps(): InstantID's drawing constants (pixels at ~1000 px output, scaled down for smaller canvases).
KPS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
KPS_LIMBS = ((0, 2), (1, 2), (3, 2), (4, 2))  # eyes and mouth corners to the nose
KPS_STICK_WIDTH = 4
KPS_RADIUS = 10

# Truncated images must be refused, never filled with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_HEIF_LOCK = threading.Lock()
_HEIF_STATE: dict[str, bool] = {}
_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings is process-global state on Python < 3.14


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def heif_available() -> bool:
    """Register pillow-heif's HEIC/HEIF opener once (lazily); False when pillow-heif is not installed."""
    with _HEIF_LOCK:
        if "ok" not in _HEIF_STATE:
            try:
                import pillow_heif

                pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
                _HEIF_STATE["ok"] = True
            except Exception as exc:  # ImportError, or a broken binary wheel
                log.warning("HEIC/HEIF support unavailable: %s", exc)
                _HEIF_STATE["ok"] = False
        return _HEIF_STATE["ok"]


def _display_name(name: str | None) -> str:
    """The file name as shown to a person: base name, printable, at most 80 characters."""
    if not name:
        return ""
    base = re.split(r"[\\/]", str(name))[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base if len(base) <= 80 else base[:77] + "..."


def _subject(name: str) -> str:
    return f"'{name}'" if name else "The file"


def _unreadable(name: str, reason: str) -> errors.UnreadableImage:
    return errors.UnreadableImage(f"{_subject(name)} could not be read as a photo: {reason}")


def _too_large(name: str, reason: str) -> errors.ImageTooLarge:
    return errors.ImageTooLarge(f"{_subject(name)} is too large: {reason}")


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


class OverLimit(ValueError):
    """Raised by :func:`read_limited`; ``size`` is the byte count when it is known before reading."""

    def __init__(self, size: int | None = None):
        super().__init__(size)
        self.size = size


def read_limited(source, max_bytes: int) -> bytes:
    """The raw bytes of a path, a bytes-like object or a binary stream, never reading past ``max_bytes``.

    Raises :class:`OverLimit` for anything bigger (from the file size before reading, when there is
    one), ``FileNotFoundError`` / ``IsADirectoryError`` / ``OSError`` for a path that cannot be read,
    and ``TypeError`` for anything else. Callers turn these into their own user-facing errors.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise OverLimit(len(data))
        return data
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        size = path.stat().st_size  # FileNotFoundError when it is not there
        if not path.is_file():
            raise IsADirectoryError(f"{path} is not a file")
        if size > max_bytes:
            raise OverLimit(size)
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("a binary file object (opened with 'rb') is needed")
        data = bytes(data)
    else:
        raise TypeError(f"cannot read a {type(source).__name__}")
    if len(data) > max_bytes:  # the file grew, or a stream without a size
        raise OverLimit(None)
    return data


def _read_source(source: ImageSource, name: str, max_bytes: int) -> bytes:
    """The raw bytes of ``source``, refusing anything over ``max_bytes`` before reading it all."""
    try:
        return read_limited(source, max_bytes)
    except OverLimit as exc:
        if exc.size is None:
            detail = f"the file is over the limit of {_megabytes(max_bytes)}"
        else:
            detail = f"the file is {_megabytes(exc.size)}; the limit is {_megabytes(max_bytes)}"
        raise _too_large(name, f"{detail}. Please upload a smaller photo.") from None
    except FileNotFoundError:
        raise _unreadable(name, "the file was not found. Please upload it again.") from None
    except IsADirectoryError:
        raise _unreadable(name, "it is not a file.") from None
    except OSError as exc:
        raise _unreadable(name, f"the file could not be opened ({exc.strerror or exc}).") from None


_HEIF_BRANDS = (
    b"heic",
    b"heix",
    b"hevc",
    b"hevx",
    b"heim",
    b"heis",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
    b"avif",
)
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)


def _sniff(data: bytes) -> str:
    """A rough guess of what a file that is not a readable image is, for the message."""
    head = data[:4096]
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "heif"
    if head.startswith(_IMAGE_MAGIC) or (head.startswith(b"RIFF") and head[8:12] == b"WEBP"):
        return "image"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        return "archive"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text[:2048] and (
        text.startswith(b"<?xml") or text.startswith(b"<svg") or b"<!doctype svg" in text
    ):
        return "svg"
    if text.startswith((b"<!doctype html", b"<html")):
        return "html"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 4:  # a multi-byte character cut by the 4 KiB window
                return "text"
    return "unknown"


def _identify_failure(data: bytes) -> str:
    kind = _sniff(data)
    please = f"Please upload {SUPPORTED_FORMATS_TEXT}."
    return {
        "heif": "this HEIC/HEIF photo is damaged, or HEIC support is not installed on this server. "
        "Please export it as JPEG and upload it again.",
        "image": "the file is damaged or incomplete (the upload may have been cut off). "
        "Please upload it again.",
        "pdf": f"it is a PDF document, not a photo. {please}",
        "archive": f"it is a compressed archive, not a photo. {please}",
        "svg": f"it is an SVG drawing, not a photo. {please}",
        "html": f"it is a web page, not a photo. {please}",
        "text": f"it is a text file, not a photo. {please}",
    }.get(kind, f"it is not a photo format this app can read. {please}")


_TRUNCATION_HINTS = ("truncated", "broken data stream", "premature end", "unexpected end", "not enough data")


def _decode_failure(exc: BaseException) -> str:
    text = str(exc).lower()
    if isinstance(exc, EOFError) or any(hint in text for hint in _TRUNCATION_HINTS):
        return "the file is incomplete (the upload may have been cut off). Please upload it again."
    return (
        "the file is damaged and its picture cannot be decoded. "
        "Please upload it again or choose another photo."
    )


def _open_lazy(data: bytes, name: str, max_pixels: int) -> ImageFile.ImageFile:
    """``Image.open`` (header only) restricted to photo formats, with decompression bombs as errors."""
    Image.init()  # registers every built-in plugin once, so the allow-list below sees them all
    formats = [fmt for fmt in ALLOWED_FORMATS if fmt in Image.OPEN]
    too_many = f"more than {max_pixels / 1e6:.0f} megapixels; please upload a smaller photo."
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(name, f"the picture has {too_many}") from None
    except UnidentifiedImageError:
        raise _unreadable(name, _identify_failure(data)) from None
    except MemoryError:
        raise _too_large(name, "the picture does not fit in memory. Please upload a smaller photo.") from None
    except Exception as exc:  # a plugin tripping over a malformed header
        log.info("open failed for %r: %r", name, exc)
        raise _unreadable(name, _decode_failure(exc)) from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise _unreadable(name, "the picture has no pixels.")
    if width * height > max_pixels:
        raise _too_large(name, f"the picture is {width}x{height} pixels, {too_many}")
    return img


def _to_uint8_gray(arr: np.ndarray) -> np.ndarray:
    """A high-bit-depth single-channel array (I;16, I or F mode) scaled to 8 bits.

    Unsigned 16-bit data maps 0..65535 to 0..255. 32-bit integers are taken as 16-bit data when any value
    exceeds 255 (a 16-bit PNG or TIFF), else as 8-bit values. Floats are taken as 0..1 when their maximum is
    at most 1, as 0..255 when at most 255, and as 16-bit data otherwise. NaN becomes 0.
    """
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        values = arr.astype(np.float32) / 257.0
    else:
        values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=65535.0, neginf=0.0)
        top = float(values.max()) if values.size else 0.0
        if arr.dtype.kind == "f" and top <= 1.0:
            values = values * 255.0
        elif top > 255.0:
            values = np.clip(values, 0.0, 65535.0) / 257.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


_SRGB_PROFILE: ImageCms.ImageCmsProfile | None = None
# Transforms to sRGB by embedded profile (its bytes), built once: building one costs ~5 ms, and a phone's
# photos all carry the same profile. None for a profile that is sRGB under another name (its transform
# moves no colour of a grid over the whole cube by more than one level, such as Facebook's compact "c2"
# or a camera's own sRGB): such photos are taken as they are, which saves the ~30 ms of applying it.
_ICC_TRANSFORMS: dict[bytes, ImageCms.ImageCmsTransform | None] = {}
_ICC_TRANSFORMS_MAX = 16
_ICC_LOCK = threading.Lock()


def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The (cached) transform of an embedded profile to sRGB, or None where it would change nothing."""
    global _SRGB_PROFILE
    key = mode.encode() + icc
    with _ICC_LOCK:
        if key in _ICC_TRANSFORMS:
            return _ICC_TRANSFORMS[key]
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if _SRGB_PROFILE is None:
        _SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    # No 1-pixel cache: the uploads of several visitors may use one transform at once.
    transform: ImageCms.ImageCmsTransform | None = ImageCms.buildTransform(
        source, _SRGB_PROFILE, mode, "RGB", flags=ImageCms.Flags.NOCACHE
    )
    if mode == "RGB":
        levels = np.linspace(0, 255, 18).round().astype(np.uint8)
        grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(18 * 18, 18, 3)
        moved = np.asarray(ImageCms.applyTransform(Image.fromarray(grid, "RGB"), transform), dtype=np.int16)
        if int(np.abs(moved - grid).max()) <= 1:
            transform = None
    with _ICC_LOCK:
        if len(_ICC_TRANSFORMS) >= _ICC_TRANSFORMS_MAX:
            _ICC_TRANSFORMS.pop(next(iter(_ICC_TRANSFORMS)))
        _ICC_TRANSFORMS[key] = transform
    return transform


def _apply_icc(img: Image.Image) -> Image.Image:
    """Convert CMYK and non-sRGB RGB images with an embedded ICC profile to sRGB; unchanged on any error."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "CMYK"):
        return img
    try:
        transform = _srgb_transform(bytes(icc), img.mode)
        if transform is None:
            return img
        converted = ImageCms.applyTransform(img, transform)
        return converted if converted is not None else img
    except Exception as exc:  # malformed or unsupported profile: fall back to the plain conversion
        log.info("ignoring an unusable ICC profile: %r", exc)
        return img


def _normalise_mode(img: Image.Image, name: str) -> Image.Image:
    """Any PIL mode to 8-bit RGB: transparency composited on white, high bit depths scaled (not clipped)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8_gray(np.asarray(img)), "L").convert("RGB")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        return _composite_on_white(img)
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except (ValueError, OSError):
        raise _unreadable(
            name, f"its colour format ({mode}) is not supported. Please save it as JPEG or PNG."
        ) from None


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode an uploaded photo into an upright 8-bit sRGB ``RGB`` image (first frame of an animation).

    ``source`` is a path, the file's bytes, or a binary file object. ``name`` is used in messages (default:
    the path's file name). ``max_bytes`` / ``max_pixels`` default to ``config.MAX_UPLOAD_BYTES`` /
    ``config.MAX_IMAGE_PIXELS``; both are checked before any pixel is decoded.

    Raises :class:`errors.ImageTooLarge` (file size, or pixel count from the header) or
    :class:`errors.UnreadableImage` (empty, not an image, unsupported format, damaged or truncated), each
    with a message that names the file. The returned image carries no metadata (EXIF, ICC, XMP dropped).
    """
    data, label, max_pixels = _read_upload(source, name, max_bytes, max_pixels)
    return _decode(data, label, max_pixels)[0]


def _read_upload(source, name: str | None, max_bytes: int | None, max_pixels: int | None) -> tuple[bytes, str, int]:
    """The bytes of an upload (within the byte limit), its display name and the pixel limit to decode with."""
    max_bytes = config.MAX_UPLOAD_BYTES if max_bytes is None else int(max_bytes)
    max_pixels = config.MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    if name is None:
        if isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
        elif isinstance(getattr(source, "name", None), str):
            name = source.name  # type: ignore[union-attr]
    label = _display_name(name)
    return _read_source(source, label, max_bytes), label, max_pixels


def _decode(
    data: bytes, label: str, max_pixels: int, min_long_side: int = 0
) -> tuple[Image.Image, int, tuple[int, int]]:
    """``(upright RGB image, reduction, upright size of the whole picture)``: the whole picture, or with ``min_long_side`` a JPEG decoded
    at 1/2, 1/4 or 1/8 of its size in the decoder (draft mode: whole DCT blocks are skipped, several
    times faster) as long as its long side stays at least ``min_long_side``; ``reduction`` is 1, 2, 4
    or 8. Other formats are always decoded whole."""
    if not data:
        raise _unreadable(label, "the file is empty (0 bytes). Please upload it again.")
    if _sniff(data) == "heif":
        heif_available()

    img = _open_lazy(data, label, max_pixels)
    reduction = 1
    full_size = img.size
    try:
        if min_long_side > 0 and img.format in ("JPEG", "MPO"):
            width, height = img.size
            factor = max(1, max(width, height) // min_long_side)
            if factor >= 2:
                # draft() picks the largest reduction that keeps the size at least the one asked for.
                img.draft(img.mode, (math.ceil(width / factor), math.ceil(height / factor)))
                reduction = max(1, round(width / img.size[0]))
        img.load()  # frame 0 only; truncated data raises (LOAD_TRUNCATED_IMAGES is off)
        stored = img.size
        try:
            ImageOps.exif_transpose(img, in_place=True)  # no copy; the orientation tag is removed
        except Exception as exc:  # malformed EXIF: keep the stored orientation rather than fail
            log.info("ignoring unusable EXIF in %r: %r", label, exc)
        if img.size != stored:  # turned by a quarter: so is the whole picture
            full_size = (full_size[1], full_size[0])
        img = _apply_icc(img)
        rgb = _normalise_mode(img, label)
    except errors.HeadshotError:
        raise
    except MemoryError:
        raise _too_large(
            label, "the picture does not fit in memory. Please upload a smaller photo."
        ) from None
    except Exception as exc:
        log.info("decode failed for %r: %r", label, exc)
        raise _unreadable(label, _decode_failure(exc)) from None
    if rgb is img:  # still the opened file: a plain copy, detached from it and its cached EXIF
        rgb = img.copy()
    rgb.info.clear()
    return rgb, reduction, full_size


class ReducedImage:
    """An upload decoded for the selfie checks: ``image`` has just the pixels the checks need (a JPEG is
    decoded at 1/2, 1/4 or 1/8 in the decoder when its long side stays at least the size asked for),
    ``reduction`` is the factor (1: the whole picture), and :meth:`full` decodes the whole picture once,
    when it is first asked for (for the crops of an identity), from the bytes kept here."""

    def __init__(
        self,
        image: Image.Image,
        reduction: int,
        data: bytes,
        label: str,
        max_pixels: int,
        full_size: tuple[int, int] | None = None,
    ):
        self.image = image
        self.reduction = reduction
        self.full_size = full_size or image.size  # the whole picture's (width, height), upright
        self._data: bytes | None = data if reduction > 1 else None
        self._label = label
        self._max_pixels = max_pixels
        self._full: Image.Image | None = image if reduction == 1 else None
        self._lock = threading.Lock()

    @property
    def scale(self) -> float:
        """Pixels of ``image`` per pixel of the whole picture (1 / reduction; JPEG's scaled decode
        rounds each side up, by less than one pixel of ``image``)."""
        return 1.0 / self.reduction

    quarter_turns = 0  # turned this many times by 90 degrees counter-clockwise (see :meth:`turned`)

    def full(self) -> Image.Image:
        """The whole picture (decoded on first use, then kept)."""
        with self._lock:
            if self._full is None:
                assert self._data is not None
                self._full = turn(_decode(self._data, self._label, self._max_pixels)[0], self.quarter_turns)
                self._data = None
            return self._full

    def turned(self, quarter_turns: int) -> ReducedImage:
        """This upload turned by ``quarter_turns`` x 90 degrees counter-clockwise (a photo taken sideways or
        upside down whose EXIF does not say so): ``image`` now, the whole picture when it is decoded."""
        k = quarter_turns % 4
        width, height = self.full_size
        other = ReducedImage.__new__(ReducedImage)
        other.image = turn(self.image, k)
        other.reduction = self.reduction
        other.full_size = (height, width) if k % 2 else (width, height)
        other._data = self._data
        other._label = self._label
        other._max_pixels = self._max_pixels
        other._full = other.image if self.reduction == 1 else (turn(self._full, k) if self._full else None)
        other._lock = threading.Lock()
        other.quarter_turns = (self.quarter_turns + k) % 4
        return other


_QUARTER_TURNS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}


def turn(img: Image.Image, quarter_turns: int) -> Image.Image:
    """``img`` turned by ``quarter_turns`` x 90 degrees counter-clockwise (lossless; 0: ``img`` itself)."""
    k = quarter_turns % 4
    return img.transpose(_QUARTER_TURNS[k]) if k else img


def load_reduced(
    source: ImageSource,
    *,
    name: str | None = None,
    min_long_side: int,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> ReducedImage:
    """:func:`load_image` for the checks: the same limits, refusals, orientation and colour handling, but a
    JPEG is decoded only at the size the checks need (its long side at least ``min_long_side``); the whole
    picture stays one :meth:`ReducedImage.full` call away."""
    data, label, max_pixels = _read_upload(source, name, max_bytes, max_pixels)
    image, reduction, full_size = _decode(data, label, max_pixels, min_long_side)
    return ReducedImage(image, reduction, data, label, max_pixels, full_size)


# --------------------------------------------------------------------------------------
# Arrays and sizes
# --------------------------------------------------------------------------------------


def to_bgr(img: Image.Image) -> np.ndarray:
    """A contiguous ``uint8`` HxWx3 BGR array (what insightface and OpenCV expect)."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def to_gray(img: Image.Image, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """``uint8`` HxW luminance of ``img`` (optionally of the region ``box`` = x0, y0, x1, y1, clamped)."""
    if box is not None:
        x0, y0, x1, y1 = (round(v) for v in box)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(img.width, x1), min(img.height, y1)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((0, 0), dtype=np.uint8)
        img = img.crop((x0, y0, x1, y1))
    return np.asarray(img.convert("L"), dtype=np.uint8)


def downscale(img: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """Shrink ``img`` so its long side is at most ``max_side``; returns ``(image, scale)``, scale = new/old.

    Images already small enough come back unchanged with scale 1.0. Coordinates found on the small image
    map back to the original by dividing by ``scale``.
    """
    if max_side <= 0:
        raise ValueError("max_side must be positive")
    long_side = max(img.size)
    if long_side <= max_side:
        return img, 1.0
    scale = max_side / long_side
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    small = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return small, max(small.size) / long_side


# --------------------------------------------------------------------------------------
# InstantID keypoint control image
# --------------------------------------------------------------------------------------


def _ellipse_polygon(
    center: tuple[int, int], axes: tuple[int, int], angle_deg: float
) -> list[tuple[float, float]]:
    """Points of a rotated ellipse outline, one per degree (like OpenCV's ellipse2Poly)."""
    t = np.deg2rad(np.arange(0, 361, 1.0))
    a, b = axes
    theta = math.radians(angle_deg)
    xs = center[0] + a * np.cos(t) * math.cos(theta) - b * np.sin(t) * math.sin(theta)
    ys = center[1] + a * np.cos(t) * math.sin(theta) + b * np.sin(t) * math.cos(theta)
    return list(zip(np.rint(xs).tolist(), np.rint(ys).tolist(), strict=True))


def draw_kps(width: int, height: int, kps: np.ndarray) -> Image.Image:
    """InstantID's keypoint control image: black ``width`` x ``height`` RGB canvas.

    ``kps`` is (5, 2) pixel coordinates in insightface order: left eye, right eye, nose, left mouth corner,
    right mouth corner. As in InstantID's ``draw_kps``, each eye and mouth corner is joined to the nose by a
    thin ellipse ("limb") in that point's colour at 60 % intensity, then a filled dot of full colour
    (red, green, blue, yellow, magenta) is drawn on each point. Line width 4 px and dot radius 10 px are
    InstantID's values for ~1000 px images; smaller canvases scale them down (at least 1 px). Deterministic.
    """
    points = np.asarray(kps, dtype=np.float64).reshape(-1, 2)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError("kps must be 5 finite (x, y) points")
    factor = min(1.0, math.sqrt(width * height) / 1000.0)
    stick = max(1, round(KPS_STICK_WIDTH * factor))
    radius = max(1, round(KPS_RADIUS * factor))

    limbs = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(limbs)
    for start, end in KPS_LIMBS:
        (x0, y0), (x1, y1) = points[start], points[end]
        length = math.hypot(x0 - x1, y0 - y1)
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        center = (int((x0 + x1) / 2), int((y0 + y1) / 2))
        draw.polygon(_ellipse_polygon(center, (int(length / 2), stick), int(angle)), fill=KPS_COLORS[start])
    canvas = Image.fromarray((np.asarray(limbs, dtype=np.float32) * 0.6).astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(canvas)
    for (x, y), color in zip(points, KPS_COLORS, strict=True):
        cx, cy = int(x), int(y)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color)
    return canvas


# --------------------------------------------------------------------------------------
# Head-and-shoulders crops
# --------------------------------------------------------------------------------------


def headshot_crop_box(
    bbox: Any,
    image_size: tuple[int, int],
    *,
    aspect: float = 1.0,
    face_fraction: float = 0.4,
    face_center_y: float = 0.45,
    max_zoom: float = 1.5,
) -> Box:
    """A head-and-shoulders crop ``(x0, y0, x1, y1)`` (integers) around a face box.

    ``bbox`` is the face box (x0, y0, x1, y1) in image pixels, ``image_size`` is (width, height) and
    ``aspect`` the crop's width / height. The crop is sized so the face box's short side is
    ``face_fraction`` of the crop's short side, with the face centred horizontally and its centre at
    ``face_center_y`` of the crop height (a bit above the middle, leaving room for the shoulders).

    When that crop does not fit in the image, it is first shrunk to fit (zooming in on the face by at most
    ``max_zoom``), then shifted inside the image as long as the face stays inside the crop. Whatever still
    lies outside the image is left for :func:`crop_around_face` to pad, so the box may extend past the
    image edges.
    """
    fx0, fy0, fx1, fy1 = (float(v) for v in np.asarray(bbox, dtype=np.float64).reshape(-1)[:4])
    img_w, img_h = int(image_size[0]), int(image_size[1])
    if not (fx1 > fx0 and fy1 > fy0) or aspect <= 0 or not 0 < face_fraction <= 1:
        raise ValueError("need a non-empty face box, a positive aspect and 0 < face_fraction <= 1")
    face_short = min(fx1 - fx0, fy1 - fy0)
    cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2

    short = face_short / face_fraction  # the crop's short side
    width, height = (short * aspect, short) if aspect >= 1 else (short, short / aspect)
    fit = min(1.0, img_w / width, img_h / height)  # shrink to fit the image, within max_zoom
    fit = max(fit, 1.0 / max_zoom)
    width, height = width * fit, height * fit

    x0 = cx - width / 2
    y0 = cy - face_center_y * height

    def shift_inside(start: float, size: float, limit: float, lo: float, hi: float) -> float:
        # Move [start, start+size] inside [0, limit] where possible, keeping [lo, hi] (the face) inside it.
        # (a crop larger than the image keeps the whole image inside it)
        inside = (0.0, limit - size) if size <= limit else (limit - size, 0.0)
        start = min(max(start, inside[0]), inside[1])
        return min(max(start, hi - size), lo)

    x0 = shift_inside(x0, width, img_w, fx0, fx1)
    y0 = shift_inside(y0, height, img_h, fy0, fy1)
    box = (round(x0), round(y0), round(x0 + width), round(y0 + height))
    return (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))


def crop_around_face(
    img: Image.Image, bbox: Any, size: tuple[int, int], face_fraction: float = 0.4
) -> Image.Image:
    """The head-and-shoulders crop of :func:`headshot_crop_box`, resized to ``size`` = (width, height).

    Parts of the crop outside the image are filled by repeating the edge pixels. Used for the identity
    reference crop and the LinkedIn 400x400 picture.
    """
    out_w, out_h = int(size[0]), int(size[1])
    x0, y0, x1, y1 = headshot_crop_box(bbox, img.size, aspect=out_w / out_h, face_fraction=face_fraction)
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(img.width, x1), min(img.height, y1)
    rgb = img.convert("RGB")
    if ix1 <= ix0 or iy1 <= iy0:  # the face box lies outside the image: use the nearest edge pixels
        ix0, iy0 = min(max(ix0, 0), img.width - 1), min(max(iy0, 0), img.height - 1)
        ix1, iy1 = ix0 + 1, iy0 + 1
    region = rgb.crop((ix0, iy0, ix1, iy1))
    pads = (iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1)
    if any(p > 0 for p in pads):
        arr = np.asarray(region)
        arr = np.pad(
            arr, ((max(0, pads[0]), max(0, pads[1])), (max(0, pads[2]), max(0, pads[3])), (0, 0)), mode="edge"
        )
        region = Image.fromarray(arr, "RGB")
    return region.resize((out_w, out_h), Image.Resampling.LANCZOS, reducing_gap=3.0)


# --------------------------------------------------------------------------------------
# Perceptual hash, sharpness, brightness
# --------------------------------------------------------------------------------------


def dhash(img: Image.Image, size: int = 8) -> int:
    """Difference hash: ``size * size`` bits, one per horizontally adjacent pair of a (size+1) x size
    area-averaged grey thumbnail. Robust to resizing and re-encoding; compare with :func:`hamming`
    (out of 64 bits: near-copies differ by a few bits, unrelated photos by ~20 or more)."""
    small = img.convert("L").resize((size + 1, size), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).reshape(-1)
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return bin(int(a) ^ int(b)).count("1")


def _unit_gray(gray: np.ndarray | Image.Image) -> np.ndarray:
    """float32 0..1 from a PIL image, an integer array (uint8 0..255, uint16 0..65535) or a float array
    (taken as 0..1). A colour array (HxWx3 RGB) is reduced to luminance (ITU-R 601 weights)."""
    if isinstance(gray, Image.Image):
        gray = np.asarray(gray.convert("L"))
    arr = np.asarray(gray)
    if arr.dtype.kind == "f":
        unit = np.nan_to_num(arr.astype(np.float32))
    elif arr.dtype.kind in "ui":
        unit = arr.astype(np.float32) / (65535.0 if arr.dtype.itemsize == 2 else 255.0)
    elif arr.dtype.kind == "b":
        unit = arr.astype(np.float32)
    else:
        raise ValueError(f"expected a numeric grey array, not {arr.dtype}")
    if unit.ndim == 3 and unit.shape[2] >= 3:
        unit = unit[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif unit.ndim == 3 and unit.shape[2] == 1:
        unit = unit[..., 0]
    if unit.ndim != 2:
        raise ValueError("expected a 2-D grey array (or HxWx3 RGB)")
    return np.clip(unit, 0.0, 1.0)


def sharpness(gray: np.ndarray | Image.Image) -> float:
    """Focus score in 0..1 (higher is sharper) of a face region.

    Expected input: the face box crop of the decoded photo as a 2-D grey array, e.g.
    ``to_gray(img, face.bbox)`` (uint8 0..255; floats are taken as 0..1; an RGB array or PIL image is
    converted). Method: the crop is resized to ``SHARPNESS_SIDE`` (160) px on its short side (area
    averaging when shrinking, bicubic when enlarging) so the score does not depend on the photo's
    resolution, then the variance of its 4-neighbour Laplacian (0..1 intensity units) is divided by the
    crop's own intensity variance, so a dark or low contrast but focused face is not called blurry. This
    ratio ``r`` is mapped to ``r / (r + SHARPNESS_HALF)``:
    0 for a flat or fully blurred crop, 0.5 at ``r = SHARPNESS_HALF``, approaching 1 for crisp detail.
    Calibrated on the real test photos (faces 100-1000 px): sharp faces score 0.55-0.99 (median ~0.9); the
    same photos with a Gaussian blur of radius 8 px score 0.01-0.13 (0.29 for a 1000 px face), radius 3 px
    0.02-0.5 depending on face size; a 0.12x darkened photo keeps its score. Noise reads as detail.
    Crops under 8 px score 0.
    """
    arr = _unit_gray(gray)
    h, w = arr.shape
    if min(h, w) < 8:
        return 0.0
    scale = SHARPNESS_SIDE / min(h, w)
    size = (max(3, round(w * scale)), max(3, round(h * scale)))
    resized = np.asarray(
        Image.fromarray(arr, "F").resize(
            size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
        )
    )
    lap = (
        resized[1:-1, :-2]
        + resized[1:-1, 2:]
        + resized[:-2, 1:-1]
        + resized[2:, 1:-1]
        - 4.0 * resized[1:-1, 1:-1]
    )
    contrast = float(resized.var())
    if contrast < 1e-6:
        return 0.0
    ratio = float(lap.var()) / contrast
    return ratio / (ratio + SHARPNESS_HALF)


def brightness(gray: np.ndarray | Image.Image) -> float:
    """Mean luminance in 0..1 of a face region (same input as :func:`sharpness`: ``to_gray(img, bbox)``).

    0 is black, 1 is white; a well exposed face is roughly 0.35-0.7.
    """
    arr = _unit_gray(gray)
    return float(arr.mean()) if arr.size else 0.0


# --------------------------------------------------------------------------------------
# The face region (InstantID's "enhance non-face region")
# --------------------------------------------------------------------------------------

# The face box of a detector (SCRFD), measured on the project's test photos in units of the distance
# between the eyes: 2.2 wide, 3.1 tall, its centre 0.22 above the midpoint of eyes and mouth.
FACE_BOX_WIDTH_EYES = 2.2
FACE_BOX_HEIGHT_EYES = 3.1
FACE_BOX_RAISE_EYES = 0.22


def face_region_mask(width: int, height: int, kps: np.ndarray, margin: float = 1.15) -> Image.Image:
    """A ``width`` x ``height`` mask ("L", 255 on the face, 0 elsewhere) around 5 face keypoints.

    The box is the face box a detector would draw for these keypoints (``FACE_BOX_*``), ``margin``
    times larger, clipped to the canvas: what InstantID's demo masks ("enhance non-face region").
    ``kps`` are pixel coordinates in insightface order (eyes, nose, mouth corners).
    """
    points = np.asarray(kps, dtype=np.float64).reshape(-1, 2)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError("kps must be 5 finite (x, y) points")
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    unit = max(float(np.linalg.norm(points[1] - points[0])), float(np.linalg.norm(mouth - eyes)) / 1.1, 1.0)
    cx, cy = (eyes + mouth) / 2.0 - (0.0, FACE_BOX_RAISE_EYES * unit)
    half_w = FACE_BOX_WIDTH_EYES * unit * margin / 2.0
    half_h = FACE_BOX_HEIGHT_EYES * unit * margin / 2.0
    mask = Image.new("L", (width, height), 0)
    box = (max(0, cx - half_w), max(0, cy - half_h), min(width, cx + half_w), min(height, cy + half_h))
    ImageDraw.Draw(mask).rectangle(tuple(round(v) for v in box), fill=255)
    return mask
