"""Issue 22's intake checks on development cases drawn from the shared photos (tests/_hardcases.py):
each rule across several renderings of its case, and the photos a person would not refuse stay accepted."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from headshot import imaging
from headshot.validation import validate_selfies

import _hardcases as hc  # noqa: E402  (tests/ is on sys.path under pytest)


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_a_reduced_image_turns_with_its_whole_picture():
    arr = np.zeros((1200, 1600, 3), np.uint8)
    arr[:100, :200] = (255, 0, 0)  # a red block top-left
    data = jpeg(Image.fromarray(arr))
    reduced = imaging.load_reduced(data, min_long_side=640)
    assert reduced.reduction == 2
    turned = reduced.turned(1)  # a quarter turn counter-clockwise: top-left goes to bottom-left
    assert turned.full_size == (1200, 1600) and turned.image.size == (600, 800)
    full = turned.full()
    assert full.size == (1200, 1600)
    assert np.asarray(full)[-50, 50, 0] > 200 and np.asarray(full)[50, 50, 0] < 50
    assert turned.turned(3).full().size == (1600, 1200)
