"""Tests for headshot.imaging: safe intake of every format and mode, hostile files, geometry helpers,
perceptual hash, focus/brightness measures, PNG disclosure metadata and the visible AI label."""

from __future__ import annotations

import io
import resource
import threading
import time
import xml.etree.ElementTree as ET
import zlib

import _imagegen as gen
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageFilter

from headshot import disclosure, errors, imaging

ALEX = "same_person/alex_lacamoire/img1.jpg"


def rgb_at(img: Image.Image, xy: tuple[int, int]) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)[xy[1], xy[0]]


def assert_close(actual, expected, tol: int = 10) -> None:
    diff = np.abs(np.asarray(actual, dtype=np.int16) - np.asarray(expected, dtype=np.int16))
    assert diff.max() <= tol, f"{tuple(int(v) for v in actual)} != {expected} (tolerance {tol})"


@pytest.fixture(scope="module")
def photo(faces_dir) -> Image.Image:
    return imaging.load_image(faces_dir / ALEX)


# --------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "tol"),
    [
        ("JPEG", {"quality": 95}, 12),
        ("PNG", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 90}, 14),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
        ("GIF", {}, 8),
    ],
)
def test_formats_decode_to_rgb(fmt, params, tol):
    src = gen.asymmetric()
    out = imaging.load_image(gen.encode(src, fmt, **params), name=f"x.{fmt.lower()}")
    assert out.mode == "RGB" and out.size == src.size
    for xy in [(2, 2), (30, 12), (20, 31), (47, 5)]:
        assert_close(rgb_at(out, xy), rgb_at(src, xy), tol)


def test_heic_decodes(photo):
    small = photo.resize((160, 220))
    out = imaging.load_image(gen.heic(small, quality=90), name="IMG_0001.HEIC")
    assert out.mode == "RGB" and out.size == small.size
    assert imaging.hamming(imaging.dhash(out), imaging.dhash(small)) <= 4
    assert abs(np.asarray(out, np.float32).mean() - np.asarray(small, np.float32).mean()) < 3


def test_heic_orientation_is_applied_once():
    upright = gen.asymmetric(64, 48)
    out = imaging.load_image(gen.heic_with_orientation(upright, 6), name="IMG_0002.heic")
    assert out.size == upright.size
    assert_close(np.asarray(out).reshape(-1, 3).T, np.asarray(upright).reshape(-1, 3).T, 4)


def test_heic_with_alpha_composited_on_white():
    img = Image.new("RGBA", (64, 64), (0, 0, 255, 0))
    img.paste((0, 0, 255, 255), (0, 0, 32, 64))
    out = imaging.load_image(gen.heic(img, quality=-1, chroma=444), name="alpha.heic")
    assert_close(rgb_at(out, (10, 30)), (0, 0, 255), 20)
    assert_close(rgb_at(out, (50, 30)), (255, 255, 255), 20)


def test_webp_named_jpg_is_read_by_content(faces_dir):
    # This shared file is a WebP with a .jpg name, as phones and websites produce.
    out = imaging.load_image(faces_dir / "same_person/deepface_p03/img47.jpg")
    assert out.size == (1350, 1800) and out.mode == "RGB"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_gives_first_frame(fmt):
    data = gen.animated(fmt, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = imaging.load_image(data, name=f"anim.{fmt.lower()}")
    assert out.mode == "RGB" and out.size == (24, 16)
    assert_close(rgb_at(out, (12, 8)), (255, 0, 0), 6)


def test_mpo_gives_first_image():
    out = imaging.load_image(gen.mpo([(0, 200, 0), (200, 0, 0)]), name="phone.jpg")
    assert_close(rgb_at(out, (12, 8)), (0, 200, 0), 12)


def test_one_pixel_image_decodes():
    out = imaging.load_image(gen.encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), name="dot.png")
    assert out.size == (1, 1) and tuple(rgb_at(out, (0, 0))) == (10, 20, 30)


# --------------------------------------------------------------------------------------
# Colour modes
# --------------------------------------------------------------------------------------


def test_rgba_la_pa_composited_on_white():
    rgba = Image.new("RGBA", (4, 1))
    rgba.putdata([(255, 0, 0, 255), (255, 0, 0, 0), (255, 0, 0, 128), (0, 0, 0, 255)])
    out = imaging.load_image(gen.encode(rgba, "PNG"), name="a.png")
    assert [tuple(rgb_at(out, (x, 0))) for x in (0, 1, 3)] == [(255, 0, 0), (255, 255, 255), (0, 0, 0)]
    assert_close(rgb_at(out, (2, 0)), (255, 127, 127), 2)

    la = Image.new("LA", (2, 1))
    la.putdata([(0, 255), (0, 0)])
    out = imaging.load_image(gen.encode(la, "PNG"), name="la.png")
    assert [tuple(rgb_at(out, (x, 0))) for x in (0, 1)] == [(0, 0, 0), (255, 255, 255)]

    pa = Image.new("PA", (2, 1))
    pa.putpalette([0, 0, 255] * 256)
    pa.putdata([(0, 255), (0, 0)])
    out = imaging.load_image(gen.encode(pa.convert("RGBA"), "PNG"), name="pa.png")
    assert [tuple(rgb_at(out, (x, 0))) for x in (0, 1)] == [(0, 0, 255), (255, 255, 255)]


def test_palette_with_transparency_and_plain_palette():
    img = Image.new("P", (2, 1))
    img.putpalette([0, 128, 0, 9, 9, 9] + [0] * 762)
    img.putdata([0, 1])
    out = imaging.load_image(gen.encode(img, "PNG", transparency=1), name="p.png")
    assert [tuple(rgb_at(out, (x, 0))) for x in (0, 1)] == [(0, 128, 0), (255, 255, 255)]
    out = imaging.load_image(gen.encode(img, "PNG"), name="p.png")
    assert [tuple(rgb_at(out, (x, 0))) for x in (0, 1)] == [(0, 128, 0), (9, 9, 9)]


@pytest.mark.parametrize(
    ("mode", "fmt"), [("L", "JPEG"), ("L", "PNG"), ("1", "PNG"), ("1", "TIFF"), ("1", "BMP")]
)
def test_grayscale_and_bilevel(mode, fmt):
    img = Image.new("L", (16, 8), 0)
    img.paste(255, (8, 0, 16, 8))
    if mode == "1":
        img = img.convert("1")
    out = imaging.load_image(gen.encode(img, fmt), name=f"g.{fmt.lower()}")
    assert out.mode == "RGB"
    assert_close(rgb_at(out, (2, 4)), (0, 0, 0), 4)
    assert_close(rgb_at(out, (13, 4)), (255, 255, 255), 4)


def test_16bit_gray_png_is_scaled_not_clipped():
    arr = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    data = gen.encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = imaging.load_image(data, name="16bit.png")
    values = [int(rgb_at(out, (x, 1))[0]) for x in range(4)]
    assert values == [0, 64, 128, 255]


def test_16bit_gray_png_mid_grey_stays_mid_grey():
    out = imaging.load_image(gen.png16(np.full((32, 32), 32768, np.uint16)), name="mid.png")
    assert_close(rgb_at(out, (16, 16)), (128, 128, 128), 1)


def test_16bit_rgb_and_rgba_png():
    rgb = np.zeros((8, 8, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 32768, 8192
    out = imaging.load_image(gen.png16(rgb), name="rgb16.png")
    assert_close(rgb_at(out, (3, 3)), (255, 128, 32), 1)

    rgba = np.zeros((8, 8, 4), np.uint16)
    rgba[..., 0], rgba[..., 3] = 65535, 65535
    rgba[:, 4:, 3] = 0
    out = imaging.load_image(gen.png16(rgba), name="rgba16.png")
    assert_close(rgb_at(out, (1, 1)), (255, 0, 0), 1)
    assert_close(rgb_at(out, (6, 1)), (255, 255, 255), 1)

    gray_alpha = np.zeros((8, 8, 2), np.uint16)
    gray_alpha[..., 0], gray_alpha[..., 1] = 32768, 65535
    out = imaging.load_image(gen.png16(gray_alpha), name="la16.png")
    assert_close(rgb_at(out, (1, 1)), (128, 128, 128), 1)


def test_32bit_int_and_float_tiff():
    ints = Image.fromarray(np.full((8, 8), 49152, np.int32), "I")
    out = imaging.load_image(gen.encode(ints, "TIFF"), name="i.tif")
    assert_close(rgb_at(out, (4, 4)), (191, 191, 191), 1)

    floats = Image.fromarray(np.full((8, 8), 0.25, np.float32), "F")
    out = imaging.load_image(gen.encode(floats, "TIFF"), name="f.tif")
    assert_close(rgb_at(out, (4, 4)), (64, 64, 64), 1)


def test_adobe_cmyk_jpeg_colours():
    img, patches = gen.cmyk_patches()
    data = gen.encode(img, "JPEG", quality=95)
    assert "adobe" in Image.open(io.BytesIO(data)).info  # Adobe APP14: inverted CMYK, as Photoshop writes
    out = imaging.load_image(data, name="print.jpg")
    assert out.mode == "RGB"
    for i, (_, expected) in enumerate(patches):
        assert_close(rgb_at(out, (16 * i + 8, 8)), expected, 12)


def test_cmyk_tiff_colours():
    img, patches = gen.cmyk_patches()
    out = imaging.load_image(gen.encode(img, "TIFF"), name="print.tif")
    for i, (_, expected) in enumerate(patches):
        assert_close(rgb_at(out, (16 * i + 8, 8)), expected, 0)


def test_srgb_and_broken_icc_profiles():
    from PIL import ImageCms

    src = gen.asymmetric()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    plain = imaging.load_image(gen.encode(src, "PNG"), name="plain.png")
    tagged = imaging.load_image(gen.encode(src, "PNG", icc_profile=srgb), name="srgb.png")
    broken = imaging.load_image(gen.encode(src, "PNG", icc_profile=b"not a profile" * 10), name="bad.png")
    assert np.array_equal(np.asarray(plain), np.asarray(tagged))
    assert np.array_equal(np.asarray(plain), np.asarray(broken))
    assert tagged.info == {} and broken.info == {}


def test_embedded_profiles_convert_to_srgb_once_and_srgb_under_another_name_is_kept(faces_dir):
    """Adobe RGB converts (its saturated colours move); Facebook's "c2", sRGB under another name, is taken
    as it is (no colour would move by more than one level); each profile's transform is built once."""
    adobe = (faces_dir / "group" / "faceapi_bbt5.jpg").read_bytes()
    c2 = (faces_dir / "same_person" / "deepface_p04" / "img53.jpg").read_bytes()
    imaging._ICC_TRANSFORMS.clear()
    for data, moved in ((adobe, True), (c2, False)):
        raw = Image.open(io.BytesIO(data)).convert("RGB")
        out = imaging.load_image(data, name="profiled.jpg")
        diff = np.abs(np.asarray(out, np.int16) - np.asarray(raw, np.int16))
        assert bool(diff.mean() > 1.0) is moved, diff.mean()
        if not moved:
            assert diff.max() == 0
    assert len(imaging._ICC_TRANSFORMS) == 2
    assert sum(t is None for t in imaging._ICC_TRANSFORMS.values()) == 1
    again = imaging.load_image(adobe, name="again.jpg")
    assert len(imaging._ICC_TRANSFORMS) == 2
    assert np.array_equal(np.asarray(again), np.asarray(imaging.load_image(adobe, name="profiled.jpg")))


# --------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied(orientation):
    upright = gen.asymmetric()
    out = imaging.load_image(gen.with_orientation(upright, orientation), name="o.png")
    assert out.size == upright.size
    assert np.array_equal(np.asarray(out), np.asarray(upright))
    assert not out.getexif() and "exif" not in out.info


def test_exif_orientation_6_jpeg_swaps_width_and_height(photo):
    small = photo.resize((300, 412))
    data = gen.with_orientation(small, 6, fmt="JPEG", quality=92)
    assert Image.open(io.BytesIO(data)).size == (412, 300)  # stored on its side
    out = imaging.load_image(data, name="rotated.jpg")
    assert out.size == (300, 412)
    assert imaging.hamming(imaging.dhash(out), imaging.dhash(small)) <= 4


@pytest.mark.parametrize(
    ("derived", "source"),
    [
        ("hard/derived/alex_lacamoire_img1_exif_orient6.jpg", ALEX),
        (
            "hard/derived/astronaut_skimage_astronaut_exif_orient6.jpg",
            "hard/derived/astronaut_skimage_astronaut_jpeg_q4.jpg",
        ),
    ],
)
def test_exif_rotated_test_photos_come_out_upright(faces_dir, derived, source):
    raw = Image.open(faces_dir / derived)
    assert raw.getexif().get(0x0112) == 6
    out = imaging.load_image(faces_dir / derived)
    reference = imaging.load_image(faces_dir / source)
    assert out.size == reference.size
    assert imaging.hamming(imaging.dhash(out), imaging.dhash(reference)) <= 6
    # ... and it really was stored on its side: the stored pixels do not match the upright photo.
    assert imaging.hamming(imaging.dhash(raw.convert("RGB")), imaging.dhash(reference)) > 16


def test_huge_exif_is_read_and_dropped():
    upright = gen.asymmetric(64, 40)
    data = gen.huge_exif_jpeg(upright)
    assert len(data) > 60_000
    out = imaging.load_image(data, name="exif.jpg")
    assert out.size == upright.size
    assert_close(rgb_at(out, (4, 4)), (255, 0, 0), 40)
    assert out.info == {} and not out.getexif()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_garbage_exif_does_not_prevent_decoding():
    out = imaging.load_image(gen.garbage_exif_jpeg(gen.asymmetric()), name="junk-exif.jpg")
    assert out.size == (48, 32)


# --------------------------------------------------------------------------------------
# Hostile and broken files
# --------------------------------------------------------------------------------------


def test_truncated_images_are_not_loaded_half_grey(faces_dir):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = (faces_dir / ALEX).read_bytes()
    for fraction in (0.05, 0.5, 0.95):
        with pytest.raises(errors.UnreadableImage) as info:
            imaging.load_image(data[: int(len(data) * fraction)], name="selfie.jpg")
        assert info.value.code == "unreadable_image"
        assert "'selfie.jpg'" in str(info.value) and "incomplete" in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_other_formats(fmt):
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    data = gen.encode(noisy, fmt)
    with pytest.raises(errors.UnreadableImage, match=r"'cut\..*' could not be read as a photo"):
        imaging.load_image(data[: len(data) // 2], name=f"cut.{fmt.lower()}")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (gen.TEXT_FILE, "text file"),
        (gen.SVG_WITH_SCRIPT, "SVG"),
        (gen.HTML_PAGE, "web page"),
        (gen.PDF_FILE, "PDF"),
        (gen.EPS_FILE, "not a photo"),
        (gen.FAKE_HEIC, "HEIC"),
        (gen.random_bytes(), "not a photo format"),
        (b"\xff\xd8\xff\xe0" + gen.random_bytes(500), "incomplete"),
        (b"\x89PNG\r\n\x1a\n" + gen.random_bytes(100), "incomplete"),
        (zlib.compress(b"PK") * 3, "not a photo"),
    ],
)
def test_unreadable_files_name_the_file(content, words):
    with pytest.raises(errors.UnreadableImage) as info:
        imaging.load_image(content, name="upload.jpg")
    message = str(info.value)
    assert info.value.code == "unreadable_image"
    assert message.startswith("'upload.jpg' could not be read as a photo: ")
    assert words in message and message.endswith(".")


def test_unsupported_image_formats_are_refused():
    # Valid pictures in formats that are not photos (or not safe to decode) are refused outright.
    ico = gen.encode(Image.new("RGB", (32, 32), "red"), "ICO")
    assert Image.open(io.BytesIO(ico)).format == "ICO"
    with pytest.raises(errors.UnreadableImage, match="not a photo format"):
        imaging.load_image(ico, name="favicon.jpg")


def test_svg_is_never_rendered(tmp_path):
    path = tmp_path / "portrait.svg"
    path.write_bytes(gen.SVG_WITH_SCRIPT)
    with pytest.raises(
        errors.UnreadableImage, match=r"'portrait\.svg' could not be read as a photo: it is an SVG"
    ):
        imaging.load_image(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(errors.UnreadableImage, match=r"'gone\.jpg'.*not found"):
        imaging.load_image(tmp_path / "gone.jpg")
    with pytest.raises(errors.UnreadableImage, match="not a file"):
        imaging.load_image(tmp_path)


def test_display_name_is_sanitised():
    with pytest.raises(errors.UnreadableImage) as info:
        imaging.load_image(b"", name="C:\\Users\\me\\evil\x1b[31m" + "a" * 200 + ".jpg")
    message = str(info.value)
    assert "\x1b" not in message and "Users" not in message and "..." in message
    with pytest.raises(errors.UnreadableImage, match=r"^The file could not be read"):
        imaging.load_image(b"")


@pytest.mark.parametrize("builder", ["png", "gif"])
def test_decompression_bomb_refused_quickly_without_allocating(builder, monkeypatch):
    data = gen.png_bomb(40_000) if builder == "png" else gen.gif_bomb(40_000, 40_000)
    assert len(data) < 1_000_000
    for pillow_limit in (Image.MAX_IMAGE_PIXELS, None):  # with and without PIL's own bomb check
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        with pytest.raises(errors.ImageTooLarge) as info:
            imaging.load_image(data, name=f"bomb.{builder}")
        elapsed = time.perf_counter() - start
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        assert info.value.code == "too_large" and "'bomb." in str(info.value)
        assert elapsed < 1.0
        assert grown_kib < 100_000  # decoding would need 1.6 GB
    assert "40000x40000" in str(info.value)


def test_pixel_limit_checked_from_header():
    data = gen.encode(Image.new("RGB", (200, 100), "white"), "PNG")
    with pytest.raises(errors.ImageTooLarge, match=r"200x100 pixels"):
        imaging.load_image(data, name="big.png", max_pixels=19_999)
    assert imaging.load_image(data, name="big.png", max_pixels=20_000).size == (200, 100)


def test_file_size_limit_for_bytes_path_and_stream(tmp_path):
    data = gen.encode(gen.asymmetric(), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data)
    limit = len(data) - 1
    for source in (data, path, io.BytesIO(data)):
        with pytest.raises(errors.ImageTooLarge) as info:
            imaging.load_image(source, name="big.png", max_bytes=limit)
        assert info.value.code == "too_large" and "'big.png' is too large" in str(info.value)
        assert "limit" in str(info.value)
    assert imaging.load_image(path, max_bytes=len(data)).size == (48, 32)


def test_default_file_size_limit_comes_from_config(monkeypatch):
    from headshot import config

    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(errors.ImageTooLarge):
        imaging.load_image(gen.encode(gen.asymmetric(), "PNG"), name="x.png")


def test_file_object_name_is_used(tmp_path):
    path = tmp_path / "from-stream.jpg"
    path.write_bytes(b"plain text, not a picture\n")
    with open(path, "rb") as fh, pytest.raises(errors.UnreadableImage, match=r"'from-stream\.jpg'"):
        imaging.load_image(fh)


def test_concurrent_loads_are_independent():
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)] * 3
    payloads = [gen.encode(Image.new("RGB", (64, 48), c), "PNG") for c in colors]
    results: list = [None] * len(payloads)

    def work(i: int) -> None:
        results[i] = tuple(rgb_at(imaging.load_image(payloads[i], name=f"{i}.png"), (5, 5)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == colors


# --------------------------------------------------------------------------------------
# Arrays and sizes
# --------------------------------------------------------------------------------------


def test_to_bgr_and_to_gray():
    img = Image.new("RGB", (3, 2), (10, 20, 30))
    bgr = imaging.to_bgr(img)
    assert bgr.shape == (2, 3, 3) and bgr.dtype == np.uint8 and bgr.flags["C_CONTIGUOUS"]
    assert tuple(bgr[0, 0]) == (30, 20, 10)
    gray = imaging.to_gray(Image.new("RGB", (10, 10), (255, 255, 255)), box=(-5, 2, 4, 20))
    assert gray.shape == (8, 4) and gray.dtype == np.uint8 and gray.min() == 255


def test_downscale():
    img = Image.new("RGB", (2000, 1000))
    small, scale = imaging.downscale(img, 1024)
    assert small.size == (1024, 512) and scale == pytest.approx(0.512)
    same, scale = imaging.downscale(small, 1024)
    assert same is small and scale == 1.0
    with pytest.raises(ValueError):
        imaging.downscale(img, 0)


# --------------------------------------------------------------------------------------
# Keypoint control image
# --------------------------------------------------------------------------------------

KPS = np.array([[400.0, 380.0], [600.0, 380.0], [500.0, 500.0], [420.0, 640.0], [580.0, 640.0]])


def test_draw_kps_dots_limbs_and_background():
    img = imaging.draw_kps(1000, 1200, KPS)
    assert img.size == (1000, 1200) and img.mode == "RGB"
    for (x, y), color in zip(KPS, imaging.KPS_COLORS, strict=True):
        assert tuple(rgb_at(img, (int(x), int(y)))) == color
        assert tuple(rgb_at(img, (int(x) + 8, int(y)))) == color  # a dot of radius 10, not a pixel
    # Each limb, halfway to the nose, is the point's colour at 60 %.
    nose = KPS[2]
    for index in (0, 1, 3, 4):
        mid = (KPS[index] + nose) / 2
        expected = tuple(int(c * 0.6) for c in imaging.KPS_COLORS[index])
        assert tuple(rgb_at(img, (int(mid[0]), int(mid[1])))) == expected
    arr = np.asarray(img)
    assert arr[:300].max() == 0 and arr[800:].max() == 0 and arr[:, :350].max() == 0
    assert 0.003 < (arr.max(axis=2) > 0).mean() < 0.05


def _instantid_reference(width: int, height: int, kps: np.ndarray) -> np.ndarray:
    """InstantID's own draw_kps (OpenCV), restated from its pipeline code, as the reference."""
    cv2 = pytest.importorskip("cv2")
    out = np.zeros((height, width, 3))
    for start, end in imaging.KPS_LIMBS:
        x, y = kps[[start, end], 0], kps[[start, end], 1]
        length = float(np.hypot(x[0] - x[1], y[0] - y[1]))
        angle = np.degrees(np.arctan2(y[0] - y[1], x[0] - x[1]))
        polygon = cv2.ellipse2Poly(
            (int(x.mean()), int(y.mean())), (int(length / 2), 4), int(angle), 0, 360, 1
        )
        out = cv2.fillConvexPoly(out.copy(), polygon, imaging.KPS_COLORS[start])
    out = (out * 0.6).astype(np.uint8)
    for (x, y), color in zip(kps, imaging.KPS_COLORS, strict=True):
        out = cv2.circle(out.copy(), (int(x), int(y)), 10, color, -1)
    return out


def test_draw_kps_matches_instantid_drawing():
    kps = KPS + np.array([[0.3, 0.7], [10.2, -7.1], [5.5, 0.1], [10.8, 0.4], [5.1, 12.2]])
    ours = np.asarray(imaging.draw_kps(1024, 1024, kps))
    reference = _instantid_reference(1024, 1024, kps)
    drawn = (ours.max(axis=2) > 0) | (reference.max(axis=2) > 0)
    differ = (ours != reference).any(axis=2)
    assert differ.sum() / drawn.sum() < 0.06  # only anti-aliasing-free edge pixels may differ


def test_draw_kps_is_deterministic_and_depends_on_the_points():
    first = np.asarray(imaging.draw_kps(640, 800, KPS * 0.6))
    again = np.asarray(imaging.draw_kps(640, 800, KPS * 0.6))
    moved = np.asarray(imaging.draw_kps(640, 800, KPS * 0.6 + 20))
    assert first.shape == (800, 640, 3)
    assert np.array_equal(first, again) and not np.array_equal(first, moved)


def test_draw_kps_small_canvas_and_bad_input():
    img = imaging.draw_kps(64, 64, KPS / 1000 * 64)
    arr = np.asarray(img)
    assert 0 < (arr.max(axis=2) > 0).mean() < 0.25  # dots scaled down, not 10 px blobs
    with pytest.raises(ValueError):
        imaging.draw_kps(64, 64, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        imaging.draw_kps(64, 64, np.full((5, 2), np.nan))


# --------------------------------------------------------------------------------------
# Head-and-shoulders crops
# --------------------------------------------------------------------------------------


def test_crop_box_frames_the_face():
    face = (900.0, 700.0, 1100.0, 960.0)  # 200 x 260 face in a big image
    x0, y0, x1, y1 = imaging.headshot_crop_box(face, (3000, 3000), face_fraction=0.4)
    assert x1 - x0 == pytest.approx(500, abs=1) and y1 - y0 == pytest.approx(500, abs=1)
    assert x0 <= face[0] and y0 <= face[1] and x1 >= face[2] and y1 >= face[3]
    assert (x0 + x1) / 2 == pytest.approx(1000, abs=1)  # centred horizontally
    face_cy = (face[1] + face[3]) / 2
    assert y0 + 0.35 * (y1 - y0) < face_cy < (y0 + y1) / 2  # a bit above the middle

    x0, y0, x1, y1 = imaging.headshot_crop_box(face, (3000, 3000), aspect=0.8, face_fraction=0.4)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(0.8, abs=0.01)
    assert min(x1 - x0, y1 - y0) == pytest.approx(500, abs=1)


def test_crop_box_shifts_inside_and_keeps_the_face():
    face = (10.0, 20.0, 110.0, 140.0)  # face in the top-left corner of a 1000x800 photo
    x0, y0, x1, y1 = imaging.headshot_crop_box(face, (1000, 800))
    assert (x0, y0) == (0, 0) and x1 == y1 == 250
    face = (850.0, 600.0, 990.0, 790.0)  # bottom-right
    x0, y0, x1, y1 = imaging.headshot_crop_box(face, (1000, 800))
    assert x1 == 1000 and y1 == 800 and x0 <= face[0] and y0 <= face[1]


def test_crop_box_zooms_in_before_padding():
    face = (100.0, 100.0, 300.0, 300.0)  # needs a 500 px crop, the photo is 400 px
    x0, y0, x1, y1 = imaging.headshot_crop_box(face, (400, 400))
    assert (x0, y0, x1, y1) == (0, 0, 400, 400)
    face = (10.0, 10.0, 390.0, 390.0)  # fills the photo: even zoomed in 1.5x the crop is bigger
    x0, y0, x1, y1 = imaging.headshot_crop_box(face, (400, 400))
    assert x0 < 0 and x1 > 400 and x0 <= face[0] and x1 >= face[2]
    with pytest.raises(ValueError):
        imaging.headshot_crop_box((5, 5, 5, 10), (100, 100))


def test_crop_around_face_pads_with_edge_colours():
    arr = np.zeros((400, 400, 3), np.uint8)
    arr[:, :200] = (200, 30, 30)
    arr[:, 200:] = (30, 30, 200)
    img = Image.fromarray(arr, "RGB")
    out = imaging.crop_around_face(img, (20, 20, 380, 380), (400, 400), face_fraction=0.4)
    assert out.size == (400, 400)
    assert_close(rgb_at(out, (2, 200)), (200, 30, 30), 2)
    assert_close(rgb_at(out, (397, 200)), (30, 30, 200), 2)
    assert_close(rgb_at(out, (2, 2)), (200, 30, 30), 2)


def test_crop_around_face_on_a_photo(photo):
    face = (290.0, 330.0, 580.0, 700.0)  # roughly the face in alex_lacamoire/img1.jpg
    out = imaging.crop_around_face(photo, face, (400, 400))
    assert out.size == (400, 400) and out.mode == "RGB"
    x0, y0, x1, y1 = imaging.headshot_crop_box(face, photo.size)
    expected = photo.crop((x0, y0, x1, y1)).resize((400, 400))
    assert imaging.hamming(imaging.dhash(out), imaging.dhash(expected)) <= 2


# --------------------------------------------------------------------------------------
# Perceptual hash
# --------------------------------------------------------------------------------------


def test_dhash_robust_to_resize_and_reencode(faces_dir):
    names = [
        ALEX,
        "same_person/obama/obama.jpg",
        "same_person/biden/biden2.jpg",
        "same_person/deepface_p01/img1.jpg",
        "same_person/deepface_p01/img2.jpg",
    ]
    photos = [imaging.load_image(faces_dir / n) for n in names]
    hashes = [imaging.dhash(p) for p in photos]
    for img, h in zip(photos, hashes, strict=True):
        small = img.resize((img.width // 2, img.height // 2), Image.Resampling.BILINEAR)
        copy = imaging.load_image(gen.encode(small, "JPEG", quality=55), name="copy.jpg")
        assert imaging.hamming(imaging.dhash(copy), h) <= 5
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert imaging.hamming(hashes[i], hashes[j]) >= 12, (names[i], names[j])


def test_dhash_size_and_hamming():
    img = gen.asymmetric()
    assert imaging.dhash(img, size=16).bit_length() <= 256
    assert imaging.hamming(0b1011, 0b0001) == 2 and imaging.hamming(5, 5) == 0


# --------------------------------------------------------------------------------------
# Sharpness and brightness
# --------------------------------------------------------------------------------------


def _center(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((int(w * 0.3), int(h * 0.25), int(w * 0.7), int(h * 0.6)))


@pytest.mark.parametrize("name", [ALEX, "same_person/obama/obama.jpg", "same_person/deepface_p01/img1.jpg"])
def test_sharpness_separates_blur_and_is_resolution_and_exposure_robust(faces_dir, name):
    img = imaging.load_image(faces_dir / name)
    crop = _center(img)
    sharp = imaging.sharpness(imaging.to_gray(crop))
    blurred = imaging.sharpness(imaging.to_gray(_center(img.filter(ImageFilter.GaussianBlur(8)))))
    half = imaging.sharpness(imaging.to_gray(crop.resize((crop.width // 2, crop.height // 2))))
    dark = imaging.sharpness(np.asarray(crop.convert("L"), np.float32) / 255.0 * 0.15)
    assert sharp > 0.45 and blurred < 0.15
    assert abs(half - sharp) < 0.15
    assert abs(dark - sharp) < 0.1


def test_sharpness_input_handling():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (120, 100), dtype=np.uint8)
    assert imaging.sharpness(texture) > 0.9
    assert imaging.sharpness(texture) == pytest.approx(imaging.sharpness(texture / 255.0), abs=1e-3)
    assert imaging.sharpness(Image.fromarray(texture)) == pytest.approx(imaging.sharpness(texture), abs=1e-6)
    assert imaging.sharpness(np.full((50, 50), 128, np.uint8)) == 0.0
    assert imaging.sharpness(np.zeros((5, 5), np.uint8)) == 0.0
    smooth = np.tile(np.linspace(0, 255, 100, dtype=np.float32), (100, 1)).astype(np.uint8)
    assert imaging.sharpness(smooth) < 0.05


def test_brightness():
    assert imaging.brightness(np.zeros((4, 4), np.uint8)) == 0.0
    assert imaging.brightness(np.full((4, 4), 255, np.uint8)) == 1.0
    assert imaging.brightness(np.full((4, 4), 128, np.uint8)) == pytest.approx(128 / 255)
    assert imaging.brightness(np.full((4, 4), 0.25, np.float32)) == pytest.approx(0.25)
    assert imaging.brightness(np.full((4, 4, 3), (255, 0, 0), np.uint8)) == pytest.approx(0.299, abs=1e-3)
    assert imaging.brightness(np.zeros((0, 0), np.uint8)) == 0.0


def test_dark_copy_is_darker(faces_dir):
    normal = imaging.load_image(faces_dir / ALEX)
    dark = imaging.load_image(faces_dir / "hard/derived/alex_lacamoire_img1_dark_x0.12.jpg")
    b_normal = imaging.brightness(imaging.to_gray(_center(normal)))
    b_dark = imaging.brightness(imaging.to_gray(_center(dark)))
    assert 0.35 < b_normal < 0.75 and b_dark < 0.1


# --------------------------------------------------------------------------------------
# PNG metadata
# --------------------------------------------------------------------------------------

PROMPT = 'a <b>bold</b> "CEO" & co\'s headshot, café, 東京 🙂\x00\x07 end'


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def test_png_metadata_round_trip():
    img = gen.asymmetric()
    data = disclosure.png_bytes(
        img, {"prompt": PROMPT, "style": "studio-grey", "seed": 1234, "title": "Headshot"}
    )
    meta = disclosure.read_png_metadata(data)
    assert meta["Software"] == "Headshot Studio"
    assert meta["Description"] == PROMPT.replace("\x00", "").replace("\x07", "")
    assert meta["headshot:style"] == "studio-grey" and meta["headshot:seed"] == "1234"
    assert meta["Title"] == "Headshot"
    assert meta["DigitalSourceType"] == disclosure.DIGITAL_SOURCE_TYPE
    assert meta["digital_source_type"] == disclosure.DIGITAL_SOURCE_TYPE

    root = ET.fromstring(meta["xmp"].split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    ns = {
        "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
        "dc": "http://purl.org/dc/elements/1.1/",
        "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    }
    desc = root.find(".//rdf:Description", ns)
    assert desc.get(f"{{{ns['Iptc4xmpExt']}}}DigitalSourceType") == disclosure.DIGITAL_SOURCE_TYPE
    assert root.find(".//dc:description//rdf:li", ns).text == meta["Description"]
    assert "&lt;b&gt;" in meta["xmp"] and "&amp;" in meta["xmp"]

    kinds = {(kind, body.split(b"\x00", 1)[0]) for kind, body in _png_chunks(data)}
    assert (b"tEXt", b"Software") in kinds and (b"tEXt", b"DigitalSourceType") in kinds
    assert (b"iTXt", b"XML:com.adobe.xmp") in kinds
    assert (b"iTXt", b"Description") in kinds  # not Latin-1: stored as UTF-8
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(img))


def test_save_png_writes_a_file_with_metadata(tmp_path):
    path = disclosure.save_png(
        Image.new("RGBA", (8, 8), (1, 2, 3, 4)), tmp_path / "out.png", {"seed": 7, "extra": None}
    )
    assert path.exists() and list(tmp_path.iterdir()) == [path]
    meta = disclosure.read_png_metadata(path)
    assert meta["headshot:seed"] == "7" and "headshot:extra" not in meta
    assert meta["digital_source_type"] == disclosure.DIGITAL_SOURCE_TYPE
    assert Image.open(path).mode == "RGBA"


def test_read_png_metadata_of_a_plain_png_and_of_other_files():
    meta = disclosure.read_png_metadata(gen.encode(gen.asymmetric(), "PNG"))
    assert meta == {"xmp": None, "digital_source_type": None}
    with pytest.raises(errors.UnreadableImage, match="not a readable PNG"):
        disclosure.read_png_metadata(gen.encode(gen.asymmetric(), "JPEG"))


# --------------------------------------------------------------------------------------
# Visible AI label
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [400, 1024])
def test_ai_mark_is_small_visible_and_in_the_corner(side):
    img = Image.new("RGB", (side, side), (128, 128, 128))
    out = disclosure.add_ai_mark(img)
    assert out.size == img.size and out.mode == "RGB"
    diff = np.abs(np.asarray(out, np.int16) - 128).max(axis=2) > 0
    ys, xs = np.nonzero(diff)
    assert ys.min() > side * 0.85 and xs.min() > side * 0.6  # only the bottom-right corner changed
    assert diff.mean() < 0.02
    gray = np.asarray(out.convert("L"))[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    text_rows = np.nonzero((gray > 200).any(axis=1))[0]
    assert text_rows.size and text_rows.max() - text_rows.min() + 1 >= (9 if side == 400 else 20)
    background = np.median(gray)
    assert 20 < background < 100  # a dark, semi-transparent box: the photo shows through


def test_ai_mark_fits_a_tiny_image_and_keeps_rgba():
    out = disclosure.add_ai_mark(Image.new("RGBA", (64, 64), (200, 200, 200, 255)))
    assert out.mode == "RGBA" and out.size == (64, 64)
    changed = (np.asarray(out)[..., :3] != 200).any(axis=2)
    assert changed.any() and not changed[:, :3].any()


# --------------------------------------------------------------------------------------
# Reduced decode for the selfie checks (issue 16)
# --------------------------------------------------------------------------------------


def test_a_big_jpeg_is_decoded_reduced_and_whole_on_demand(photo):
    big = photo.resize((2600, 1800))
    data = gen.encode(big, "JPEG", quality=90)
    reduced = imaging.load_reduced(data, name="big.jpg", min_long_side=640)
    assert reduced.reduction == 4 and reduced.image.size == (650, 450)
    assert reduced.full_size == (2600, 1800) and reduced.scale == 0.25
    whole = reduced.full()
    assert whole.size == (2600, 1800) and whole is reduced.full()  # decoded once
    assert np.array_equal(np.asarray(whole), np.asarray(imaging.load_image(data)))
    assert imaging.hamming(imaging.dhash(reduced.image), imaging.dhash(whole)) <= 2
    assert reduced.image.mode == "RGB" and not reduced.image.info


def test_reduced_decode_keeps_the_exif_orientation(photo):
    small = photo.resize((1400, 1900))
    data = gen.with_orientation(small, 6, fmt="JPEG", quality=92)  # stored on its side, 1900x1400
    reduced = imaging.load_reduced(data, name="turned.jpg", min_long_side=640)
    assert reduced.reduction == 2
    assert reduced.full_size == (1400, 1900) and reduced.image.size == (700, 950)
    assert reduced.full().size == (1400, 1900)


def test_small_photos_and_other_formats_are_decoded_whole(photo):
    for data, name in (
        (gen.encode(photo.resize((1000, 700)), "JPEG"), "small.jpg"),
        (gen.encode(photo.resize((2600, 1800)), "PNG"), "big.png"),
    ):
        reduced = imaging.load_reduced(data, name=name, min_long_side=640)
        assert reduced.reduction == 1 and reduced.image.size == reduced.full_size
        assert reduced.full() is reduced.image


def test_reduced_decode_keeps_the_limits():
    with pytest.raises(errors.ImageTooLarge):
        imaging.load_reduced(gen.encode(gen.asymmetric(400, 300), "JPEG"), min_long_side=64, max_pixels=1000)
    with pytest.raises(errors.UnreadableImage):
        imaging.load_reduced(b"\xff\xd8\xff\xe0 not a jpeg", name="x.jpg", min_long_side=64)
