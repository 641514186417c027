"""What an output says about itself: PNG disclosure metadata and the visible "AI-generated" mark.

Every headshot PNG carries an XMP packet with the IPTC digital source type ``trainedAlgorithmicMedia``
plus the software, style, prompt and seed as PNG text fields (:func:`save_png`); :func:`read_png_metadata`
reads them back. :func:`add_ai_mark` draws the optional visible mark.
"""

from __future__ import annotations

import io
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from headshot import config, errors

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SOFTWARE = "Headshot Studio"
XMP_KEY = "XML:com.adobe.xmp"


# --------------------------------------------------------------------------------------
# PNG output with AI disclosure metadata
# --------------------------------------------------------------------------------------

_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_ALIASES = {
    "software": "Software",
    "title": "Title",
    "description": "Description",
    "prompt": "Description",
    "comment": "Comment",
    "author": "Author",
    "copyright": "Copyright",
    "style": "headshot:style",
    "seed": "headshot:seed",
}


def _clean_text(value: Any) -> str:
    """A metadata value as text: no NULs or other characters XML and PNG text cannot carry."""
    text = value if isinstance(value, str) else str(value)
    return _XML_INVALID.sub("", text)


def _png_keyword(key: str) -> str:
    """A metadata key as a PNG keyword: known names mapped (prompt -> Description), others under
    ``headshot:``; Latin-1, 1-79 characters."""
    mapped = _TEXT_ALIASES.get(key.strip().lower())
    if mapped is None:
        mapped = key.strip() if ":" in key or key[:1].isupper() else f"headshot:{key.strip()}"
    mapped = "".join(ch for ch in mapped if 32 <= ord(ch) <= 126 and ch != "\x00")[:79].strip()
    if not mapped:
        raise ValueError(f"unusable PNG metadata key {key!r}")
    return mapped


def _text_fields(metadata: Mapping[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {"Software": SOFTWARE}
    for key, value in metadata.items():
        if value is None:
            continue
        fields[_png_keyword(str(key))] = _clean_text(value)
    fields["DigitalSourceType"] = DIGITAL_SOURCE_TYPE
    return fields


def xmp_packet(fields: Mapping[str, str]) -> str:
    """An XMP packet declaring the image AI-generated (IPTC ``DigitalSourceType`` =
    ``trainedAlgorithmicMedia``), with the creator tool, title and description from ``fields``."""

    def alt(tag: str, value: str) -> str:
        item = f'<rdf:li xml:lang="x-default">{escape(_clean_text(value))}</rdf:li>'
        return f"   <{tag}><rdf:Alt>{item}</rdf:Alt></{tag}>\n"

    body = ""
    if fields.get("Title"):
        body += alt("dc:title", fields["Title"])
    if fields.get("Description"):
        body += alt("dc:description", fields["Description"])
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f"    Iptc4xmpExt:DigitalSourceType={quoteattr(DIGITAL_SOURCE_TYPE)}\n"
        f"    xmp:CreatorTool={quoteattr(_clean_text(fields.get('Software', SOFTWARE)))}>\n"
        f"{body}"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    )


def png_bytes(img: Image.Image, metadata: Mapping[str, Any] | None = None) -> bytes:
    """Encode ``img`` as PNG with disclosure metadata.

    Text fields: ``Software`` (default "Headshot Studio"), then ``metadata`` with friendly keys mapped
    (``prompt``/``description`` -> ``Description``, ``title`` -> ``Title``, ``comment`` -> ``Comment``,
    ``style`` -> ``headshot:style``, ``seed`` -> ``headshot:seed``; other keys go under ``headshot:``
    unless they already contain ``:`` or start with a capital), a ``DigitalSourceType`` field, and an XMP
    packet (iTXt ``XML:com.adobe.xmp``) with ``Iptc4xmpExt:DigitalSourceType`` = trainedAlgorithmicMedia.
    Values that are not Latin-1 are stored as UTF-8 iTXt. ``None`` values are skipped.
    """
    fields = _text_fields(metadata or {})
    info = PngImagePlugin.PngInfo()
    for key, value in fields.items():
        info.add_text(key, value)
    info.add_itxt(XMP_KEY, xmp_packet(fields), lang="", tkey="", zip=False)
    out = img if img.mode in ("RGB", "RGBA", "L") else img.convert("RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(
    img: Image.Image,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    finish: Callable[[bytes], bytes] | None = None,
) -> Path:
    """Write :func:`png_bytes` to ``path`` (atomically: a temporary file renamed into place).

    ``finish`` takes the finished PNG bytes and returns what is written: ``credentials.signer_for``
    signs them last, after every text field, as a C2PA manifest hashes the whole file."""
    path = Path(path)
    data = png_bytes(img, metadata)
    if finish is not None:
        data = finish(data)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _xmp_source_type(xmp: str) -> str | None:
    try:
        root = ET.fromstring(re.sub(r"<\?xpacket[^>]*\?>", "", xmp).strip())
    except ET.ParseError:
        return None
    tag = "{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}DigitalSourceType"
    for element in root.iter():
        if tag in element.attrib:
            return element.attrib[tag]
        if element.tag == tag and element.text:
            return element.text.strip()
    return None


def read_png_metadata(source: str | os.PathLike | bytes) -> dict[str, Any]:
    """The text fields of a PNG as a dict, plus ``"xmp"`` (the XMP packet or None) and
    ``"digital_source_type"`` (from the XMP, else the ``DigitalSourceType`` text field, else None).
    Raises :class:`errors.UnreadableImage` for a file that is not a readable PNG."""
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            if img.width * img.height > config.MAX_IMAGE_PIXELS:
                raise errors.ImageTooLarge("This PNG is too large to read its metadata.")
            text = {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise errors.UnreadableImage(f"This file is not a readable PNG ({exc}).") from None
    xmp = text.get(XMP_KEY)
    result: dict[str, Any] = dict(text)
    result["xmp"] = xmp
    source_type = _xmp_source_type(xmp) if xmp else None
    result["digital_source_type"] = source_type or text.get("DigitalSourceType")
    return result


# --------------------------------------------------------------------------------------
# Visible label
# --------------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def add_ai_mark(img: Image.Image, text: str = "AI-generated") -> Image.Image:
    """A copy of ``img`` with a small semi-transparent label (white text on a dark rounded box) in the
    bottom-right corner. The text height is ~2.6 % of the short side (12 px at 400 px, 27 px at 1024 px),
    shrunk if needed to fit the width. Returns RGB (RGBA stays RGBA)."""
    base = img.convert("RGBA")
    width, height = base.size
    short = min(width, height)
    size = max(12, round(short * 0.026))
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    while True:
        font = _font(size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(2, size // 3)
        box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
        if box_w <= 0.9 * width or size <= 6:
            break
        size -= 1
    margin = max(2, round(short * 0.015))
    x1, y1 = width - margin, height - margin
    x0, y0 = x1 - box_w, y1 - box_h
    draw.rounded_rectangle((x0, y0, x1, y1), radius=pad, fill=(0, 0, 0, 150))
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=(255, 255, 255, 235))
    marked = Image.alpha_composite(base, overlay)
    return marked if img.mode == "RGBA" else marked.convert("RGB")
