"""Measures of one face in one photo, for the selfie checks (validation.py decides what they mean).

Pure functions of pixels, keypoints and the face pack: light, sharpness, noise and blockiness
(:func:`face_quality`), how much of a face is in the frame (:func:`face_in_frame`, :func:`visible_share`),
a regular screen or print pattern across it (:func:`periodic_peak`), signs of a drawing or render
(:func:`drawing_measures`), and what covers its eyes or mouth
(:func:`occlusion_parts`, :func:`finish_occlusion`, :func:`occlusion_measures`, scored by
:func:`linear_score` against the models in ``config.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np
from PIL import Image

from headshot import config, imaging
from headshot.faces.analyzer import Face, FaceAnalyzer, align_face, cosine

_DETAIL_REGION = 256  # noise and blockiness are read on at most this many pixels square (face centre)
_NOISE_KERNEL_NORM = 6.0  # the 3x3 kernel below has sum of squares 36: noise sigma = MAD * 1.4826 / 6


def _noise_sigma(gray: np.ndarray) -> float:
    """Noise level (0..255 scale) of a grey region: the median absolute response of the 3x3 operator
    ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` (it cancels smooth shading and lines, Immerkaer 1996), scaled to a
    Gaussian sigma. The median keeps edges and hair from counting as noise."""
    g = gray.astype(np.float32)
    if min(g.shape) < 3:
        return 0.0
    r = (
        g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
        - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
        + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:]
    )  # fmt: skip
    return float(np.median(np.abs(r)) * 1.4826 / _NOISE_KERNEL_NORM)


# The 10 people of benchmarks/calibrate_intake.py at 1.3-2.6 times their size (decoded at 1/2 or 1/4):
# ordinary copies read 1.00-1.06 there, JPEG quality 6 copies 2.1-14.7 (3.5-9.3 on whole pictures).
_REDUCED_STRETCH = 2.5


def _blockiness(gray: np.ndarray, block: int = 8) -> float:
    """JPEG block artefacts: mean step between neighbouring pixels at the strongest of the 8 column (and
    row) phases, over the median phase. About 1 for natural photos, 2.5+ when 8x8 blocks show. Phase-free,
    so it works whatever the crop offset or rotation.

    ``block`` is the block's side at the pixels given: 8, or 4, 2 or 1 in a JPEG decoded at 1/2, 1/4 or
    1/8. The 8 phases also catch 4-px blocks (two strong phases of eight), but 2-px blocks make every
    other phase strong, so the median is strong too: there the strongest of the 2 phases is taken over the
    weaker (a photo's two phases are alike, ~1). The scaled decode also spreads each block edge over its
    neighbours, so on 4- or 2-px blocks the ratio's excess over 1 is stretched by ``_REDUCED_STRETCH``:
    the lines set on whole pictures then hold (config.BLOCKINESS_WARNING, config.DRAWING_BLOCKY).
    Single-pixel blocks cannot be told from the picture: 1."""
    g = gray.astype(np.float32)
    if block < 2:
        return 1.0
    phases_n = 8 if block >= 4 else 2
    ratios = []
    for steps in (np.abs(np.diff(g, axis=1)).mean(axis=0), np.abs(np.diff(g, axis=0)).mean(axis=1)):
        if steps.size < 16:
            continue
        phases = np.array([steps[i::phases_n].mean() for i in range(phases_n)])
        floor = float(np.median(phases)) if phases_n == 8 else float(phases.min())
        ratios.append(float(phases.max() / max(floor, 1e-3)))
    ratio = max(ratios) if ratios else 1.0
    return ratio if block >= 8 else 1.0 + (ratio - 1.0) * _REDUCED_STRETCH


def face_quality(img: Image.Image, face: Face, *, scale: float = 1.0) -> dict[str, float]:
    """Measures of the face box of ``img`` (``face`` in pixels of the picture that ``img`` shows at
    ``scale``: 1 for ``img`` itself, 0.5 for a copy decoded at half size):

    * ``sharpness`` 0..1 and ``brightness`` (mean luminance) 0..1 from imaging;
    * ``highlight``: 99th percentile of luminance 0..1 (a dark face in good light still has bright eyes,
      teeth and skin highlights; an underexposed one has none);
    * ``clipped``: share of pixels at 250+ of 255 (burnt-out skin);
    * ``noise`` (sigma, 0..255) and ``blockiness`` (JPEG 8x8 blocks) on the centre of the face at full
      resolution: lost detail that a sharpness score mistakes for crisp edges.

    A big face is first reduced (box filter) to about twice imaging's sharpness scale, which changes none
    of the first four measures but keeps them cheap on 12-megapixel photos."""
    x0, y0, x1, y1 = (float(v) * scale for v in face.bbox)
    box = (max(0, round(x0)), max(0, round(y0)), min(img.width, round(x1)), min(img.height, round(y1)))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return {
            "sharpness": 0.0,
            "brightness": 0.0,
            "highlight": 0.0,
            "clipped": 0.0,
            "noise": 0.0,
            "blockiness": 1.0,
        }
    region = img.crop(box)
    w, h = region.size
    half = _DETAIL_REGION // 2
    cx, cy = w // 2, h // 2
    centre_box = (max(0, cx - half), max(0, cy - half), min(w, cx + half), min(h, cy + half))
    centre = np.asarray(region.crop(centre_box).convert("L"))
    factor = max(1, min(w, h) // (2 * imaging.SHARPNESS_SIDE))
    gray = np.asarray((region.reduce(factor) if factor > 1 else region).convert("L"))
    return {
        "sharpness": float(imaging.sharpness(gray)),
        "brightness": float(imaging.brightness(gray)),
        "highlight": float(np.percentile(gray, 99)) / 255.0,
        "clipped": float(np.count_nonzero(gray >= 250)) / gray.size,
        "noise": _noise_sigma(centre),
        "blockiness": _blockiness(centre, block=round(8 * scale)),
    }


def visible_share(face: Face, size: tuple[int, int]) -> float:
    """Share of the face box inside the image (detectors extend the box of a face cut by the edge)."""
    x0, y0, x1, y1 = (float(v) for v in face.bbox)
    w = max(0.0, min(x1, size[0]) - max(x0, 0.0))
    h = max(0.0, min(y1, size[1]) - max(y0, 0.0))
    return w * h / face.area if face.area > 0 else 0.0


# --------------------------------------------------------------------------------------
# A photo of a screen or of a print (screen_photo): a regular pattern across the face
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)


def periodic_peak(rgb: np.ndarray, face: Face) -> float | None:
    """How strongly one fine, regular pattern stands out in the centre of the face: a screen's sub-pixel
    stripes, scan lines or moire, a print's halftone. The centre square of the face box (at most 128 px,
    at the pixels given, not resampled, so the pattern keeps its period) is high-passed (less a Gaussian
    blur of sigma 2) and windowed; the score is the largest magnitude of its 2-D spectrum over its
    surroundings: the larger of the mean of a 15x15 box around it and of the 8 bins beside it along its
    row and along its column (so a line of the spectrum, such as a straight edge or JPEG's block edges,
    does not count: only an isolated peak does). Frequencies slower than 16 cycles per patch and JPEG's
    8-px block frequencies are left out. Skin, hair and JPEG blocks stay near 3-4; a pattern of period
    3-11 px reads 7-35 (config.SCREEN_PEAK_ERROR). None for a face too small to tell."""
    x0, y0, x1, y1 = (float(v) for v in face.bbox)
    n = int(0.75 * min(x1 - x0, y1 - y0)) // 16 * 16
    n = min(config.SCREEN_PATCH_PX, n)
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    top, left = cy - n // 2, cx - n // 2
    inside = top >= 0 and left >= 0 and top + n <= rgb.shape[0] and left + n <= rgb.shape[1]
    if n < config.SCREEN_MIN_PATCH_PX or not inside:
        return None
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[top : top + n, left : left + n]), cv2.COLOR_RGB2GRAY)
    gray = gray.astype(np.float32)
    detail = gray - cv2.GaussianBlur(gray, (0, 0), 2.0)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(detail * _hann(n)))).astype(np.float32)
    beside = np.zeros((1, 11), np.float32)
    beside[0, :4] = beside[0, -4:] = 1 / 8
    around = np.maximum(
        cv2.blur(spectrum, (15, 15)),
        np.maximum(cv2.filter2D(spectrum, -1, beside), cv2.filter2D(spectrum, -1, beside.T)),
    )
    c = n // 2
    fy, fx = np.mgrid[-c : n - c, -c : n - c]
    block = n // 8  # JPEG's 8-px blocks (4 or 2 px in a JPEG decoded at 1/2 or 1/4) fall on multiples of it
    on_block = ((np.abs(fy) + 1) % block <= 2) & ((np.abs(fx) + 1) % block <= 2)
    keep = (np.hypot(fy, fx) > n / 16) & ~on_block
    return float((spectrum[keep] / (around[keep] + 1e-6)).max())


# --------------------------------------------------------------------------------------
# A drawing, cartoon, painting or render (not_a_photo): what a camera does not make
# --------------------------------------------------------------------------------------


def _spiky_share(counts: np.ndarray, low: int, high: int) -> float:
    """Share of the pixels whose grey level, from ``low`` to ``high``, is a spike of the histogram
    ``counts``: over twice the mean count of the 4 levels on each side. Light that falls off smoothly, and
    noise, spread tones over neighbouring levels (a dark photo's few levels too); a flat fill piles them on
    one level."""
    c = counts.astype(np.float64)
    padded = np.pad(c, 4, mode="edge")
    around = (np.convolve(padded, np.ones(9), mode="valid") - c) / 8.0
    spikes = (c > 2.0 * around + 1.0) & (np.arange(c.size) >= low) & (np.arange(c.size) <= high)
    return float(c[spikes].sum() / max(c.sum(), 1.0))


def drawing_measures(rgb: np.ndarray, face: Face, *, block: int = 8) -> dict[str, float] | None:
    """Measures of the inner face (the face box less 15% at the sides and top and 10% at the bottom, at
    the pixels given, reduced by area averaging to at most ``config.DRAWING_REGION_PX``), for not_a_photo:

    * ``ink_lines``: share of pixels on a thin dark line, darker than both its sides (a 5x5 black-hat) by
      30% of the face's median grey and under 35% of it: a drawn outline or hatching stroke. In a photo
      only lashes, nostrils and the lips' parting do that;
    * ``flat_tones``: share of the pixels on a spike of the face's grey histogram (:func:`_spiky_share`),
      among the mid tones (half the median grey to 235): a camera's light falls off smoothly and its noise
      spreads every tone over neighbouring levels, paint and cel shading fill regions with one tone. Dark
      and white fills are left out (a black or white cloth mask, clipped shadows and highlights also pile
      up there). JPEG's flat 8x8 blocks make such tones too (quality 6): where blocks show
      (:func:`_blockiness` of the centre 128 px at least ``config.DRAWING_BLOCKY``; ``block``: their side
      at the pixels given, 8 / the decode's reduction) it reads 0, and on a
      face too dark to tell (median grey under 48 of 255: a handful of levels, refused as too dark);
    * ``paper``: share of near-white, colourless pixels (value over 230, saturation under 30) in the upper
      55% of the region (forehead, eyes, cheeks: not where a white mask would be): the paper of a sketch
      or line drawing showing through the face.

    None for a region under ``config.DRAWING_MIN_REGION_PX`` (too small a face to tell)."""
    x0, y0, x1, y1 = (float(v) for v in face.bbox)
    w, h = x1 - x0, y1 - y0
    top, bottom = max(0, int(y0 + 0.15 * h)), min(rgb.shape[0], int(y1 - 0.10 * h))
    left, right = max(0, int(x0 + 0.15 * w)), min(rgb.shape[1], int(x1 - 0.15 * w))
    if min(bottom - top, right - left) < config.DRAWING_MIN_REGION_PX:
        return None
    region = np.ascontiguousarray(rgb[top:bottom, left:right])
    rh, rw = region.shape[:2]
    centre = region[max(0, rh // 2 - 64) : rh // 2 + 64, max(0, rw // 2 - 64) : rw // 2 + 64]
    blocky = _blockiness(cv2.cvtColor(centre, cv2.COLOR_RGB2GRAY), block=block) >= config.DRAWING_BLOCKY
    side = max(region.shape[:2])
    if side > config.DRAWING_REGION_PX:
        f = config.DRAWING_REGION_PX / side
        size = (max(1, round(region.shape[1] * f)), max(1, round(region.shape[0] * f)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
    level = max(float(np.median(gray)), 1.0)
    line = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, np.ones((5, 5), np.uint8)).astype(np.float32)
    upper = cv2.cvtColor(region[: max(1, int(0.55 * region.shape[0]))], cv2.COLOR_RGB2HSV)
    counts = np.bincount(gray.ravel(), minlength=256)
    return {
        "ink_lines": float(((line > 0.30 * level) & (gray < 0.35 * level)).mean()),
        "flat_tones": 0.0 if blocky or level < 48 else _spiky_share(counts, int(level / 2), 235),
        "paper": float(((upper[..., 2] > 230) & (upper[..., 1] < 30)).mean()),
    }


# --------------------------------------------------------------------------------------
# What covers the face (eyes_covered, face_covered): measures on the aligned face
# --------------------------------------------------------------------------------------

# Regions of the 112x112 aligned crop (faces.FaceAnalyzer.region_probe; eyes at (38, 52) and (74, 52),
# mouth corners at y 92) where skin usually shows: forehead, nose bridge, both cheeks.
_SKIN_REGIONS = ((38, 16, 74, 34), (50, 42, 62, 60), (22, 64, 38, 80), (74, 64, 90, 80))
_EYES = ((38, 52), (74, 52))
_LOWER_FACE = (36, 76, 76, 106)  # x0, y0, x1, y1: nose tip to chin, between the mouth corners and a bit


def occlusion_measures(
    analyzer: FaceAnalyzer, rgb: np.ndarray, face: Face, embedding: np.ndarray | None = None
) -> dict[str, float]:
    """The measures the occlusion rules combine (config.py's "What covers the face" block), of ``face``
    in the picture ``rgb`` (HxWx3, the face's pixels):

    * ``probe_eyes``, ``probe_mouth``: cosine between the face's embedding and the embedding with the eye
      band (or the nose-mouth region) blurred (faces.FaceAnalyzer.region_probe): high where that part of
      the face shows nothing of the person (sunglasses, a hand, a mask); ``probe_gap`` = eyes - mouth,
      which cancels what blurs both alike (a small or soft face);
    * per eye (the lower and the higher of the two): ``iris_*``, how much darker the eye's centre is than
      its corners (an iris between the whites; ~0 for a lens or a hand), ``dark_*``, the share of the eye
      region darker than 0.55 of the skin (a dark lens), ``bright_*``, its 95th percentile over the skin
      (whites of the eyes, or a mirrored lens);
    * per eye, in the window of the eye itself (14x10 px of the crop): ``eye_detail_*``, the mean step
      between neighbouring pixels over the skin (an eye's edges; a lens or a hand is flat), ``eye_spread_*``
      (grey standard deviation over the skin) and ``eye_level_*`` (mean over the skin: a dark lens);
    * what tells a photo from a drawing: ``skin_noise`` (grain on the skin regions, per cent of the skin
      level), ``flat_share`` (pixels with no step to their neighbours), ``outline_share`` (pixels under a
      quarter of the skin level: drawn outlines), ``colour_count`` (16-level colours in the face, / 100)
      and ``saturation`` (mean HSV saturation);
    * ``lower_colour`` (CIELAB distance / 100 of the lower face from the skin above: a mask's fabric) and
      ``lower_texture`` (grey standard deviation of the lower face over the skin: lips, teeth, stubble;
      low on fabric).
    Skin is the median of the forehead, nose bridge and cheek medians, so one covered region does not
    move it."""
    return finish_occlusion(
        occlusion_parts(analyzer, rgb, face), embedding if embedding is not None else face.embedding
    )


def occlusion_parts(analyzer: FaceAnalyzer, rgb: np.ndarray, face: Face) -> dict[str, Any]:
    """:func:`occlusion_measures` but for the face's own embedding, which :func:`finish_occlusion` brings
    (so this part can run while the embedding is being computed)."""
    crop = align_face(rgb, face.kps)[:, :, ::-1].copy()  # BGR, as the recogniser sees it
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB).astype(np.float32)
    skin = max(float(np.median([np.median(gray[y0:y1, x0:x1]) for x0, y0, x1, y1 in _SKIN_REGIONS])), 1.0)
    iris, dark, bright, detail, spread, level = [], [], [], [], [], []
    for x, y in _EYES:
        window = gray[y - 5 : y + 5, x - 7 : x + 7]  # the eye itself: iris, whites, lids and lashes
        steps = np.abs(np.diff(window, axis=1)).mean() + np.abs(np.diff(window, axis=0)).mean()
        detail.append(float(steps) / skin)
        spread.append(float(window.std()) / skin)
        level.append(float(window.mean()) / skin)
        centre = gray[y - 4 : y + 4, x - 4 : x + 4].mean()
        corners = (
            gray[y - 3 : y + 3, x - 14 : x - 8].mean() + gray[y - 3 : y + 3, x + 8 : x + 14].mean()
        ) / 2
        iris.append((corners - centre) / skin)
        patch = gray[y - 7 : y + 7, x - 12 : x + 12]
        dark.append(float((patch < 0.55 * skin).mean()))
        bright.append(float(np.percentile(patch, 95)) / skin)
    # What a camera leaves and a drawing does not: fine grain on the skin, many slightly different colours,
    # few flat patches; a drawing has flat fills, few colours and dark outlines.
    skin_noise = (
        np.median([_noise_sigma(gray[y0:y1, x0:x1]) for x0, y0, x1, y1 in _SKIN_REGIONS]) / skin * 100
    )
    steps = np.abs(np.diff(gray, axis=1))[:-1, :] + np.abs(np.diff(gray, axis=0))[:, :-1]
    quantised = (crop[16:100, 20:92] // 16).reshape(-1, 3).astype(np.int32)
    colours = len(np.unique(quantised[:, 0] * 256 + quantised[:, 1] * 16 + quantised[:, 2]))
    saturation = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)[16:100, 20:92, 1].astype(np.float32)
    upper = np.concatenate([lab[y0:y1, x0:x1].reshape(-1, 3) for x0, y0, x1, y1 in _SKIN_REGIONS[:2]])
    x0, y0, x1, y1 = _LOWER_FACE
    lower = lab[y0:y1, x0:x1].reshape(-1, 3)
    measures: dict[str, Any] = {
        "iris_min": float(min(iris)),
        "iris_max": float(max(iris)),
        "dark_min": min(dark),
        "dark_max": max(dark),
        "bright_min": min(bright),
        "bright_max": max(bright),
        "eye_detail_min": min(detail),
        "eye_detail_max": max(detail),
        "eye_spread_min": min(spread),
        "eye_spread_max": max(spread),
        "eye_level_min": min(level),
        "eye_level_max": max(level),
        "skin_noise": float(skin_noise),
        "flat_share": float((steps[16:100, 20:92] < 1.0).mean()),
        "outline_share": float((gray[16:100, 20:92] < 0.25 * skin).mean()),
        "colour_count": colours / 100.0,
        "saturation": float(saturation.mean()) / 255.0,
        "lower_colour": float(np.linalg.norm(np.median(lower, axis=0) - np.median(upper, axis=0))) / 100.0,
        "lower_texture": float(gray[y0:y1, x0:x1].std()) / skin,
    }
    measures.update(skin_likeness(lab))
    measures.update(symmetry_measures(gray))
    # The probe (two recogniser runs, the costly part) only where the eyes look flat, the lower face
    # smooth or not skin-coloured, or the two sides of the face unlike: a face with detailed eyes, a
    # textured, skin-coloured mouth and chin and two sides alike is taken as uncovered without it.
    if (
        measures["eye_detail_min"] <= config.PROBE_EYE_DETAIL
        or measures["lower_texture"] <= config.PROBE_LOWER_TEXTURE
        or measures["lower_skin"] <= config.PROBE_LOWER_SKIN
        or measures["side_match"] <= config.PROBE_SIDE_MATCH
    ):
        measures["_eyes_blurred"], measures["_mouth_blurred"] = analyzer.region_probe(crop)
        measures["_crop"] = crop  # for one_eye_measures
    return measures


# Where the face's own skin shows: what covers an eye or the mouth is rarely the colour of the skin around
# it (a lens, a mask's cloth, a phone; a hand of another tone), and a hand or a phone covers one side.
_EYE_SKIN_PATCHES = ((20, 40, 56, 64), (56, 40, 92, 64))  # each eye with its lids, brow end and upper cheek
_CHEEKS = (_SKIN_REGIONS[2], _SKIN_REGIONS[3])


def skin_likeness(lab: np.ndarray) -> dict[str, float]:
    """Measures of how much of each part of the aligned face (``lab``: the 112x112 crop in OpenCV's 8-bit
    CIELAB) is the colour of its skin, the median of the forehead and nose bridge (config.SKIN_LIKE_DIST
    in CIELAB units, lightness counted half, so shading moves it less than another colour does):

    * ``lower_skin``: share of the nose-to-chin region that is skin-coloured (lips and stubble leave much
      of it; a mask of any colour or print, a scarf, almost none);
    * ``eye_skin_min``, ``eye_skin_max``: the same around each eye (lids, brow end, upper cheek; a lens
      covers nearly all of it, a phone all of it);
    * ``cheek_diff``: CIELAB distance / 100 between the two cheeks (a hand or a phone on one of them).
    """
    weight = np.array([0.5, 1.0, 1.0], np.float32)
    skin = np.median(
        np.concatenate([lab[y0:y1, x0:x1].reshape(-1, 3) for x0, y0, x1, y1 in _SKIN_REGIONS[:2]]), 0
    )

    def share(x0: int, y0: int, x1: int, y1: int) -> float:
        dist = np.linalg.norm((lab[y0:y1, x0:x1] - skin) * weight, axis=-1)
        return float((dist < config.SKIN_LIKE_DIST).mean())

    eyes = [share(*box) for box in _EYE_SKIN_PATCHES]
    left, right = (np.median(lab[y0:y1, x0:x1].reshape(-1, 3), 0) for x0, y0, x1, y1 in _CHEEKS)
    return {
        "lower_skin": share(*_LOWER_FACE),
        "eye_skin_min": min(eyes),
        "eye_skin_max": max(eyes),
        "cheek_diff": float(np.linalg.norm(left - right)) / 100.0,
    }


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(float(np.sqrt((a * a).sum() * (b * b).sum())), 1e-6))


def symmetry_measures(gray: np.ndarray) -> dict[str, float]:
    """How alike the two sides of the aligned face are (``gray``: the 112x112 crop, eyes at x 38 and 74,
    mirror images of each other about x 56): a hand or a phone over one eye and cheek makes them differ,
    sunglasses, a mask or side light do not (much):

    * ``eye_match``: normalised correlation of the left eye's window (24x14 px) with the right one
      mirrored (~0.5-0.9 for two eyes; low where one is a palm, fingers or a phone);
    * ``side_match``: the same for the fine detail (grey less a blur of sigma 3) of each side from the
      brow to the mouth corner, eye and cheek;
    * ``eye_detail_ratio``: the flatter eye's detail over the other's."""
    detail = gray - cv2.GaussianBlur(gray, (0, 0), 3.0)
    left_eye, right_eye = gray[45:59, 26:50], gray[45:59, 62:86][:, ::-1]
    left, right = detail[36:90, 14:54], detail[36:90, 58:98][:, ::-1]
    steps = [
        float(np.abs(np.diff(w, axis=1)).mean() + np.abs(np.diff(w, axis=0)).mean())
        for w in (gray[47:57, 31:45], gray[47:57, 67:81])
    ]
    return {
        "eye_match": _ncc(left_eye, right_eye),
        "side_match": _ncc(left, right),
        "eye_detail_ratio": min(steps) / max(max(steps), 1e-6),
    }


def finish_occlusion(parts: dict[str, Any], embedding: np.ndarray | None) -> dict[str, float]:
    """:func:`occlusion_parts` with the probe cosines against the face's (normalised) ``embedding``."""
    measures = {k: v for k, v in parts.items() if not k.startswith("_")}
    if embedding is None or "_eyes_blurred" not in parts:
        return measures  # not probed: the occlusion models are not applied
    measures["probe_eyes"] = cosine(parts["_eyes_blurred"], embedding)
    measures["probe_mouth"] = cosine(parts["_mouth_blurred"], embedding)
    measures["probe_gap"] = measures["probe_eyes"] - measures["probe_mouth"]
    return measures


def one_eye_measures(
    analyzer: FaceAnalyzer, parts: dict[str, Any], measures: dict[str, float], embedding: np.ndarray | None
) -> dict[str, float]:
    """One eye covered (a hand or a phone over it; eyes_covered): ``probe_eye_max``, the higher of the
    cosines between the face's embedding and the embedding with one eye blurred
    (faces.FaceAnalyzer.eye_probe), i.e. the eye whose blur changes least, and ``probe_eye_gap``, the
    difference between the two eyes' cosines. Two recogniser runs, so only taken where the probe ran, the
    two eyes and the two sides of the face differ (``eye_match`` under ``config.ONE_EYE_EYE_MATCH``,
    ``side_match`` under ``config.ONE_EYE_SIDE_MATCH``), and the eye models (config.SUNGLASSES_MODEL,
    config.HAND_OVER_EYE_MODEL) leave it open: their higher score from ``config.ONE_EYE_PROBE_FROM`` up
    to 0 (over 0 the eyes are covered already). ``{}`` otherwise."""
    if embedding is None or "_crop" not in parts or "probe_eyes" not in measures:
        return {}
    if (
        measures["eye_match"] >= config.ONE_EYE_EYE_MATCH
        or measures["side_match"] >= config.ONE_EYE_SIDE_MATCH
    ):
        return {}  # the two eyes, and the two sides of the face, alike: not one eye covered
    if not config.ONE_EYE_PROBE_FROM < eye_models_score(measures) <= 0:
        return {}
    left, right = analyzer.eye_probe(parts["_crop"])
    a, b = cosine(left, embedding), cosine(right, embedding)
    return {"probe_eye_max": max(a, b), "probe_eye_gap": abs(a - b)}


def linear_score(measures: dict[str, float], model: dict) -> float:
    """A config.py occlusion model's score: ``bias + sum(weight * (measure - mean) / scale)`` over its
    ``weights`` (name: (weight, mean, scale)); over 0 means covered."""
    return float(model["bias"]) + sum(
        weight * (measures[name] - mean) / scale for name, (weight, mean, scale) in model["weights"].items()
    )


def eye_models_score(measures: dict[str, float]) -> float:
    """The higher of the two eye models' scores (config.SUNGLASSES_MODEL, config.HAND_OVER_EYE_MODEL) of
    probed measures: over 0, the eyes are covered."""
    return max(
        linear_score(measures, config.SUNGLASSES_MODEL), linear_score(measures, config.HAND_OVER_EYE_MODEL)
    )


def one_eye_covered(measures: dict[str, float]) -> bool:
    """Whether :func:`one_eye_measures` (where taken) say one eye is covered: its gap over
    ``config.ONE_EYE_GAP`` and its higher cosine over ``config.ONE_EYE_MAX``."""
    gap, top = measures.get("probe_eye_gap", 0.0), measures.get("probe_eye_max", 0.0)
    return gap > config.ONE_EYE_GAP and top > config.ONE_EYE_MAX


# The face's outline from its five points, in the face's own axes (x along the eyes, in eye distances
# from the eyes' midpoint; y down the face, in eye-to-mouth heights from the eye line): an ellipse from
# the hairline (about one eye-to-mouth height above the eyes) to the chin (three quarters of one below the
# mouth) and about 1.1 eye distances to each side (cheek to cheek is ~2.2 eye distances).
_OUTLINE_HALF_WIDTH = 1.1
_OUTLINE_TOP = -0.95
_OUTLINE_BOTTOM = 1.75
_OUTLINE_GRID = np.stack(np.meshgrid(np.linspace(-1, 1, 21), np.linspace(-1, 1, 21)), -1).reshape(-1, 2)
_OUTLINE_GRID = _OUTLINE_GRID[(_OUTLINE_GRID**2).sum(axis=1) <= 1.0]


def face_in_frame(face: Face, size: tuple[int, int]) -> float:
    """Share (0..1) of the face's outline, estimated from its five keypoints, that lies inside a picture
    of ``size``. The detector's box is no guide here: it shrinks with the part of the face it sees, so a
    face cut in half still has most of its box in the frame; the keypoints of the eyes and mouth say where
    the rest of the face must be."""
    pts = np.asarray(face.kps, dtype=np.float64).reshape(5, 2)
    eyes, mouth = pts[:2].mean(axis=0), pts[3:].mean(axis=0)
    across = pts[1] - pts[0]
    dist = float(np.hypot(*across))
    if dist < 1e-6:
        return 1.0
    ux = across / dist
    uy = np.array([-ux[1], ux[0]])
    height = max(float((mouth - eyes) @ uy), 0.5 * dist)
    centre = eyes + uy * height * (_OUTLINE_TOP + _OUTLINE_BOTTOM) / 2
    rx, ry = _OUTLINE_HALF_WIDTH * dist, height * (_OUTLINE_BOTTOM - _OUTLINE_TOP) / 2
    points = centre + np.outer(_OUTLINE_GRID[:, 0] * rx, ux) + np.outer(_OUTLINE_GRID[:, 1] * ry, uy)
    inside = (points[:, 0] >= 0) & (points[:, 0] <= size[0]) & (points[:, 1] >= 0) & (points[:, 1] <= size[1])
    return float(inside.mean())


# --------------------------------------------------------------------------------------
# A heavy beauty filter (filtered): the skin's fine texture gone while the strong edges stay
# --------------------------------------------------------------------------------------


def _square(arr: np.ndarray, centre: np.ndarray, half: float) -> np.ndarray:
    """The part of ``arr`` inside the axis-aligned square of half side ``half`` around ``centre``."""
    x, y, r = round(float(centre[0])), round(float(centre[1])), max(2, round(half))
    return arr[max(0, y - r) : max(0, y + r), max(0, x - r) : max(0, x + r)]


def _band(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Absolute fine detail: the grey level less its Gaussian blur of ``sigma`` px."""
    return np.abs(gray - cv2.GaussianBlur(gray, (0, 0), sigma))


def _band_at(gray: np.ndarray, centre: np.ndarray, half: float, sigma: float) -> np.ndarray:
    """:func:`_band` of the square of :func:`_square`, blurred with its surroundings (3 sigma around it)
    so that only the picture's own edges are edges."""
    pad = round(3 * sigma)
    outer = _square(gray, centre, half + pad)
    x, y, r = round(float(centre[0])), round(float(centre[1])), max(2, round(half))
    top, left = max(0, y - r) - max(0, y - r - pad), max(0, x - r) - max(0, x - r - pad)
    inner = (max(0, y + r) - max(0, y - r), max(0, x + r) - max(0, x - r))
    if outer.size == 0 or min(inner) <= 0:
        return outer[:0, :0]
    return _band(outer, sigma)[top : top + inner[0], left : left + inner[1]]


def filter_measures(rgb: np.ndarray, face: Face) -> dict[str, float] | None:
    """What a beauty filter changes, on the face of ``rgb`` (HxWx3, the face's pixels; but for the grain,
    the face is first reduced by a whole factor to under twice ``config.FILTER_EYE_PX`` between the eyes,
    so the cost is bounded: ~2 ms). Regions are
    placed from the five keypoints (axis-aligned squares, in eye distances d); fine detail is the grey
    level less its Gaussian blur. Logarithms, as the model in config.py combines them:

    * ``filter_gap``: in the face (a square of 2 d around the eyes and mouth), the median of the fine
      detail (blur of 0.02 d) over its 95th percentile, in per cent. A camera leaves detail at every
      level, faint (skin grain, pores, noise) to strong (eyes, brows, outline); an edge-preserving
      smoother keeps the strong edges and wipes out the faint detail, so the median falls far under the
      edges. A soft photo loses both (the ratio stays); JPEG's flat blocks keep their steps;
    * ``filter_eyes``: the eyes' strong edges (95th percentile of detail at 0.04 d) over the skin's level:
      a glow or a brightening lowers it;
    * ``filter_around``: the most detail (median, at 0.04 d, over its level) in five squares beside and
      above the head (hair, background, clothes): a filter over the whole frame wipes it out too;
    * ``filter_grain``: the skin's pixel noise over the noise around the head, at the pixels given
      (:func:`_grain_ratio`): a filter laid on the face alone wipes out its grain and leaves the rest's.
    None where the eyes are under ``config.FILTER_MIN_EYE_PX`` apart (too small a face to tell)."""
    pts = np.asarray(face.kps, dtype=np.float64).reshape(5, 2)
    d = float(np.hypot(*(pts[1] - pts[0])))
    if d < config.FILTER_MIN_EYE_PX:
        return None
    centre = pts[:2].mean(axis=0)
    region = _square(rgb, centre, 2.6 * d)
    x0 = max(0, round(float(centre[0])) - max(2, round(2.6 * d)))
    y0 = max(0, round(float(centre[1])) - max(2, round(2.6 * d)))
    grain = _grain_ratio(region, (pts - (x0, y0)), d)
    gray = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
    factor = max(1, int(d // config.FILTER_EYE_PX))  # a whole factor: the fast box reduction
    if factor > 1:
        h, w = gray.shape[0] // factor, gray.shape[1] // factor
        gray = cv2.resize(gray[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)
    scale = 1.0 / factor
    gray = gray.astype(np.float32)
    pts = (pts - (x0, y0)) * scale
    d *= scale
    ux = (pts[1] - pts[0]) / d
    uy = np.array([-ux[1], ux[0]])
    eyes, mouth = pts[:2].mean(axis=0), pts[3:].mean(axis=0)
    down = max(float((mouth - eyes) @ uy), 0.5 * d)
    face_square = _square(gray, eyes + uy * 0.3 * down, 1.0 * d)  # eyes, nose, mouth and cheeks
    skin_places, around_places = _places(pts, d)
    skin_squares = [_square(gray, c, 0.14 * d) for c in skin_places]
    sigma = max(1.0, 0.04 * d)
    eye_squares = [_band_at(gray, e, 0.3 * d, sigma) for e in pts[:2]]
    if face_square.size < 64 or min(p.size for p in (*skin_squares, *eye_squares)) < 16:
        return None  # the face runs off the picture: not judged
    fine = _band(face_square, max(0.7, 0.02 * d))
    skin = max(float(np.median([np.median(p) for p in skin_squares])), 1.0)
    eye_edges = float(np.median([np.percentile(p, 95) for p in eye_squares]))
    around = 1e-4
    for c in around_places:
        patch = _band_at(gray, c, 0.25 * d, sigma)
        if patch.size >= 0.25 * (0.5 * d) ** 2:
            level = max(float(np.median(_square(gray, c, 0.25 * d))), 10.0)
            around = max(around, float(np.median(patch)) / level)
    median, top = np.percentile(fine[::2, ::2], (50, 95))  # every other pixel: the same, 4x cheaper
    gap = float(median) / max(float(top), 1e-3)
    return {
        "filter_gap": float(np.log(max(gap, 1e-5) * 100)),
        "filter_eyes": float(np.log(max(eye_edges / skin, 1e-5) * 100)),
        "filter_around": float(np.log(around * 100)),
        "filter_grain": grain,
    }


def _places(pts: np.ndarray, d: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Centres of the skin squares (the cheeks below the eyes, the forehead; half side 0.14 d) and of the
    squares around the head (beside it, above it and above each eye; half side 0.25 d)."""
    ux = (pts[1] - pts[0]) / d
    uy = np.array([-ux[1], ux[0]])
    eyes, mouth = pts[:2].mean(axis=0), pts[3:].mean(axis=0)
    down = max(float((mouth - eyes) @ uy), 0.5 * d)
    skin = [
        pts[0] + uy * 0.55 * down - ux * 0.05 * d,
        pts[1] + uy * 0.55 * down + ux * 0.05 * d,
        eyes - uy * 0.5 * down,
    ]
    around = [
        eyes - ux * 1.6 * d,
        eyes + ux * 1.6 * d,
        eyes - uy * 1.9 * down,
        eyes - uy * 1.5 * down - ux * d,
        eyes - uy * 1.5 * down + ux * d,
    ]
    return skin, around


def _grain_ratio(rgb: np.ndarray, pts: np.ndarray, d: float) -> float:
    """log of the skin's pixel noise (:func:`_noise_sigma`, at the pixels given) over the median noise of
    the squares around the head, each + 0.2: a camera leaves grain everywhere alike (the skin often more:
    pores), a filter on the face wipes it out there first."""
    skin_places, around_places = _places(pts, d)

    def grey(c, half):  # at most 64 px square: plenty to read the noise from
        square = _square(rgb, c, min(half, 32.0))
        return cv2.cvtColor(square, cv2.COLOR_RGB2GRAY) if square.size else square[..., 0]

    skin = float(np.median([_noise_sigma(grey(c, 0.14 * d)) for c in skin_places]))
    around = [grey(c, 0.25 * d) for c in around_places]
    noise = [_noise_sigma(p) for p in around if p.size >= 0.25 * (2 * min(0.25 * d, 32.0)) ** 2]
    return float(np.log((skin + 0.2) / ((float(np.median(noise)) if noise else 0.0) + 0.2)))
