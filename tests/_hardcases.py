"""Development cases for the intake checks, made from the shared photos (in memory, never saved).

Every category is drawn in several different ways (shapes, colours, textures, strengths), selected by
``variant``: a rule must hold across the variants, not on one drawing. Each function takes an upright RGB
photo and its largest face's five keypoints (left eye, right eye, nose, left mouth, right mouth, as seen)
and returns a new RGB image. ``CATEGORIES`` maps a category to (function, number of variants, the error
codes of which one must be raised, or None: the photo must stay accepted).

Nothing here is a copy of the held-out set: its people and renderings are not in this repository.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps


def _geometry(kps: np.ndarray) -> tuple[np.ndarray, float, float, np.ndarray, np.ndarray]:
    """(points, eye distance, roll in radians, unit vector along the eyes, unit vector down the face)."""
    pts = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    eye = pts[1] - pts[0]
    dist = float(np.hypot(*eye))
    ux = eye / max(dist, 1e-6)
    uy = np.array([-ux[1], ux[0]])
    return pts, dist, math.atan2(eye[1], eye[0]), ux, uy


def _ellipse_poly(centre, rx, ry, ux, uy, n=48) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = centre + np.outer(rx * np.cos(t), ux) + np.outer(ry * np.sin(t), uy)
    return [tuple(p) for p in pts]


def _rect_poly(centre, rx, ry, ux, uy, rounding=0.0) -> list[tuple[float, float]]:
    # a (rounded) rectangle as a superellipse
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    p = 2.0 / (1.0 + 6.0 * (1 - rounding))
    c, s = np.cos(t), np.sin(t)
    x = rx * np.sign(c) * np.abs(c) ** p
    y = ry * np.sign(s) * np.abs(s) ** p
    pts = centre + np.outer(x, ux) + np.outer(y, uy)
    return [tuple(q) for q in pts]


def _paint(img: Image.Image, polys, fill_rgb, alpha=1.0, texture=None, blur=0.0) -> Image.Image:
    """Fill polygons with a colour (or an RGB texture array) at ``alpha``, edges softened by ``blur`` px."""
    mask = Image.new("L", img.size, 0)
    draw = ImageDraw.Draw(mask)
    for poly in polys:
        draw.polygon(poly, fill=int(255 * alpha))
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    layer = Image.fromarray(texture, "RGB") if texture is not None else Image.new("RGB", img.size, fill_rgb)
    return Image.composite(layer, img, mask)


def _shade(size, base_rgb, rng, grain=6.0, gradient=0.25, ux=(1.0, 0.0)) -> np.ndarray:
    """A colour with a soft gradient and grain (fabric, plastic, skin)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (xx * ux[0] + yy * ux[1]) / max(w, h)
    arr = np.asarray(base_rgb, np.float32)[None, None, :] * (1 - gradient / 2 + gradient * g[..., None])
    arr += rng.normal(0, grain, (h, w, 1)).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Occlusions
# --------------------------------------------------------------------------------------

SUNGLASS_STYLES = (
    # (shape, lens colour, alpha, size factor, reflection)
    ("round", (12, 12, 14), 1.0, 0.42, False),
    ("aviator", (40, 30, 20), 0.97, 0.48, True),
    ("rect", (20, 24, 30), 1.0, 0.45, False),
    ("round", (25, 60, 110), 0.95, 0.40, True),  # blue mirrored
    ("cat", (70, 20, 40), 0.93, 0.46, False),  # tinted burgundy
    ("rect", (60, 60, 55), 0.9, 0.5, True),  # grey, wide
    ("aviator", (150, 110, 30), 0.92, 0.44, True),  # gold mirror
    ("round", (5, 5, 5), 1.0, 0.36, False),  # small, black
)


def sunglasses(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    shape, colour, alpha, size, reflect = SUNGLASS_STYLES[variant % len(SUNGLASS_STYLES)]
    rng = np.random.default_rng(variant)
    pts, d, _, ux, uy = _geometry(kps)
    rx, ry = size * d, size * d * (0.8 if shape != "rect" else 0.7)
    polys = []
    for i, eye in enumerate(pts[:2]):
        c = eye + uy * 0.05 * d
        if shape == "rect":
            polys.append(_rect_poly(c, rx, ry, ux, uy, rounding=0.3))
        elif shape == "aviator":
            poly = _ellipse_poly(c + uy * 0.1 * d, rx, ry * 1.1, ux, uy)
            polys.append(poly)
        elif shape == "cat":
            poly = np.array(_ellipse_poly(c, rx, ry * 0.85, ux, uy))
            outer = ux * (1 if i == 1 else -1)
            lift = np.clip((poly - c) @ outer / rx, 0, 1)[:, None] * (-uy) * 0.25 * d
            polys.append([tuple(p) for p in poly + lift])
        else:
            polys.append(_ellipse_poly(c, rx, ry, ux, uy))
    tex = _shade(img.size, colour, rng, grain=3.0, gradient=0.6, ux=tuple(uy))
    out = _paint(img, polys, colour, alpha=alpha, texture=tex, blur=0.6)
    draw = ImageDraw.Draw(out)
    frame = tuple(int(v * 0.6) for v in colour)
    width = max(1, int(0.05 * d))
    for poly in polys:
        draw.line([*poly, poly[0]], fill=frame, width=width)
    inner = [pts[0] + ux * rx, pts[1] - ux * rx]
    draw.line([tuple(inner[0]), tuple(inner[1])], fill=frame, width=width)  # bridge
    for i, eye in enumerate(pts[:2]):  # temple arms
        side = ux * (1 if i == 1 else -1)
        a = eye + side * rx
        draw.line([tuple(a), tuple(a + side * 0.5 * d - uy * 0.05 * d)], fill=frame, width=width)
    if reflect:  # a highlight streak on each lens
        hl = Image.new("L", out.size, 0)
        hd = ImageDraw.Draw(hl)
        for eye in pts[:2]:
            c = eye - uy * 0.15 * d - ux * 0.1 * d
            hd.polygon(_ellipse_poly(c, 0.25 * d, 0.06 * d, ux + uy * 0.3, uy), fill=110)
        hl = hl.filter(ImageFilter.GaussianBlur(max(1, d * 0.03)))
        out = Image.composite(Image.new("RGB", out.size, (235, 240, 250)), out, hl)
    return out


MASK_STYLES = (
    # (colour, kind)
    ((150, 195, 225), "surgical"),  # light blue
    ((240, 240, 238), "surgical"),  # white
    ((25, 25, 28), "cloth"),  # black
    ((120, 150, 110), "cloth"),  # sage
    ((200, 190, 170), "n95"),  # beige N95
    ((70, 90, 160), "patterned"),  # blue with dots
    ((230, 170, 180), "cloth"),  # pink
    ((95, 80, 70), "scarf"),  # brown scarf
)


def mask(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    colour, kind = MASK_STYLES[variant % len(MASK_STYLES)]
    rng = np.random.default_rng(100 + variant)
    pts, d, _, ux, uy = _geometry(kps)
    eyes = pts[:2].mean(axis=0)
    mouth = pts[3:].mean(axis=0)
    down = float((mouth - eyes) @ uy)
    top = eyes + uy * (0.45 * down if kind != "scarf" else 0.6 * down)
    chin = mouth + uy * 0.75 * down
    half = 0.95 * d if kind != "n95" else 0.85 * d
    poly = [
        top - ux * half * 0.85,
        top + ux * half * 0.85,
        (top + chin) / 2 + ux * half * 1.05,
        chin + ux * half * 0.55,
        chin + uy * 0.15 * d,
        chin - ux * half * 0.55,
        (top + chin) / 2 - ux * half * 1.05,
    ]
    if kind == "n95":
        poly = _ellipse_poly((top + chin) / 2, half, float((chin - top) @ uy) / 2 * 1.1, ux, uy)
    poly = [tuple(p) for p in poly]
    tex = _shade(img.size, colour, rng, grain=4.0 if kind != "scarf" else 10.0, gradient=0.35, ux=tuple(uy))
    if kind == "surgical":  # pleats
        arr = tex.astype(np.float32)
        yy, xx = np.mgrid[0 : img.height, 0 : img.width]
        proj = (xx - top[0]) * uy[0] + (yy - top[1]) * uy[1]
        arr *= (1 - 0.12 * (np.sin(proj / max(0.22 * d, 1) * 2 * np.pi) > 0.6))[..., None]
        tex = np.clip(arr, 0, 255).astype(np.uint8)
    if kind == "patterned":
        t = Image.fromarray(tex)
        draw = ImageDraw.Draw(t)
        step = max(4, int(0.2 * d))
        for y in range(0, img.height, step):
            for x in range((y // step % 2) * step // 2, img.width, step):
                draw.ellipse([x, y, x + step // 3, y + step // 3], fill=(240, 240, 240))
        tex = np.asarray(t)
    out = _paint(img, [poly], colour, texture=tex, blur=0.8)
    draw = ImageDraw.Draw(out)
    if kind in ("surgical", "n95", "cloth"):  # ear loops
        strap = (235, 235, 235) if kind != "cloth" else tuple(int(c * 0.8) for c in colour)
        for s in (-1, 1):
            a = top + ux * s * half * 0.85
            b = a + ux * s * 0.45 * d - uy * 0.1 * d
            draw.line([tuple(a), tuple(b)], fill=strap, width=max(1, int(0.04 * d)))
    return out


SKIN_TONES = ((224, 172, 140), (198, 134, 96), (141, 85, 58), (240, 200, 175), (92, 56, 40))


def hand(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """A hand (palm and fingers) or a phone over one eye and the cheek below it."""
    rng = np.random.default_rng(200 + variant)
    pts, d, _, ux, uy = _geometry(kps)
    eye = pts[variant % 2]
    side = ux * (-1 if variant % 2 == 0 else 1)
    if variant % 4 == 3:  # a phone: dark rounded rectangle with a lit edge
        c = eye + uy * 0.45 * d + side * 0.1 * d
        poly = _rect_poly(c, 0.55 * d, 1.0 * d, ux, uy, rounding=0.85)
        colour = ((30, 30, 34), (200, 200, 205), (60, 40, 90), (180, 40, 40))[variant // 4 % 4]
        tex = _shade(img.size, colour, rng, grain=3.0, gradient=0.5, ux=tuple(ux))
        out = _paint(img, [poly], colour, texture=tex, blur=0.8)
        ImageDraw.Draw(out).line([*poly, poly[0]], fill=(120, 120, 125), width=max(1, int(0.04 * d)))
        return out
    tone = SKIN_TONES[variant % len(SKIN_TONES)]
    palm_c = eye + uy * 0.5 * d + side * 0.15 * d
    polys = [_ellipse_poly(palm_c, 0.6 * d, 0.75 * d, ux, uy)]
    tilt = (variant % 3 - 1) * 0.3
    for k in range(4):  # fingers reaching up over the eye and brow
        base = palm_c + ux * (k - 1.5) * 0.3 * d - uy * 0.3 * d
        direction = -uy + ux * tilt
        direction /= np.linalg.norm(direction)
        perp = np.array([-direction[1], direction[0]])
        length = (0.9 + 0.15 * (k % 2)) * d
        tip = base + direction * length
        polys.append(
            [
                tuple(base - perp * 0.13 * d),
                tuple(tip - perp * 0.11 * d),
                tuple(tip + direction * 0.08 * d),
                tuple(tip + perp * 0.11 * d),
                tuple(base + perp * 0.13 * d),
            ]
        )
    tex = _shade(img.size, tone, rng, grain=5.0, gradient=0.4, ux=tuple(uy))
    out = _paint(img, polys, tone, texture=tex, blur=1.0)
    draw = ImageDraw.Draw(out)
    crease = tuple(int(c * 0.75) for c in tone)
    for poly in polys[1:]:
        draw.line([poly[0], poly[1]], fill=crease, width=max(1, int(0.02 * d)))
    return out


# --------------------------------------------------------------------------------------
# Renderings
# --------------------------------------------------------------------------------------


def beauty_filter(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """Heavy skin smoothing and glow (what beauty apps do), at several strengths and methods: over the
    whole frame (variants 0-3: bilateral, edge-preserving, a soft blur blend, each with glow and
    brightening), and the renderings of :func:`_retouched` (4-11: on the skin only or the whole frame,
    guided filter, frequency separation, whitening, an Orton glow, eyes sharpened after, enlarged eyes)."""
    if variant >= 4:
        return _retouched(img, kps, variant)
    arr = np.asarray(img.convert("RGB"))
    _, d, *_ = _geometry(kps)
    k = variant % 4
    s = max(5, int(d * (0.15 + 0.05 * (variant % 3))))
    if k == 0:
        out = cv2.bilateralFilter(arr, s | 1, 60, s)
        out = cv2.bilateralFilter(out, s | 1, 60, s)
    elif k == 1:
        out = cv2.edgePreservingFilter(arr, flags=cv2.RECURS_FILTER, sigma_s=30 + 10 * variant, sigma_r=0.3)
    elif k == 2:
        out = cv2.GaussianBlur(arr, (0, 0), max(1.5, d * 0.06))
        out = cv2.addWeighted(out, 0.85, arr, 0.15, 0)
    else:
        out = cv2.edgePreservingFilter(arr, flags=cv2.NORMCONV_FILTER, sigma_s=40, sigma_r=0.35)
    glow = cv2.GaussianBlur(out, (0, 0), max(2.0, d * 0.2))
    out = cv2.addWeighted(out, 0.75, glow, 0.25, 18 + 4 * variant)  # glow and brightening
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _skin_mask(shape: tuple[int, int], kps: np.ndarray, feather: float) -> np.ndarray:
    """0..1 float mask of the face's skin (an ellipse from the hairline to the chin, less the eyes and
    the mouth), feathered by ``feather`` eye distances."""
    pts, d, _, ux, uy = _geometry(kps)
    eyes, mouth = pts[:2].mean(axis=0), pts[3:].mean(axis=0)
    down = max(float((mouth - eyes) @ uy), 0.5 * d)
    mask = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(_ellipse_poly(eyes + uy * down * 0.4, 1.0 * d, 1.35 * down, ux, uy), fill=255)
    for eye in pts[:2]:
        draw.polygon(_ellipse_poly(eye, 0.3 * d, 0.16 * d, ux, uy), fill=0)
    draw.polygon(_ellipse_poly(mouth, 0.45 * d, 0.2 * d, ux, uy), fill=0)
    out = np.asarray(mask, np.float32) / 255.0
    return cv2.GaussianBlur(out, (0, 0), max(1.0, feather * d))[..., None]


def _guided(p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter, each channel guided by itself (0..1 floats)."""

    def box(x):
        return cv2.boxFilter(x, -1, (r, r))

    mean = box(p)
    var = box(p * p) - mean * mean
    a = var / (var + eps)
    return box(a) * p + box(mean - a * mean)


def _retouched(img: Image.Image, kps: np.ndarray, variant: int) -> Image.Image:
    arr = np.asarray(img.convert("RGB")).astype(np.float32)
    pts, d, *_ = _geometry(kps)
    k = (variant - 4) % 8
    skin = _skin_mask(arr.shape[:2], kps, 0.12)
    if k == 0:  # guided filter on the skin only, a little brighter
        smooth = _guided(arr / 255, max(3, int(0.14 * d)), 0.004) * 255 + 8
        out = arr * (1 - skin) + smooth * skin
    elif k == 1:  # frequency separation: the low layer blurred again, most of the high layer dropped
        low = cv2.GaussianBlur(arr, (0, 0), max(1.5, 0.05 * d))
        smoother = cv2.GaussianBlur(low, (0, 0), max(2.0, 0.1 * d))
        retouched = 0.5 * low + 0.5 * smoother + 0.15 * (arr - low)
        out = arr * (1 - skin) + retouched * skin
    elif k == 2:  # whitening and smoothing: three light bilateral passes, then lighter, paler skin
        u8 = arr.astype(np.uint8)
        for _ in range(3):
            u8 = cv2.bilateralFilter(u8, 9, 35, 9)
        lab = cv2.cvtColor(u8, cv2.COLOR_RGB2LAB).astype(np.float32)
        lab[..., 0] = lab[..., 0] + (255 - lab[..., 0]) * 0.25 * skin[..., 0]
        lab[..., 1:] = 128 + (lab[..., 1:] - 128) * (1 - 0.3 * skin)
        out = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    elif k == 3:  # an Orton soft glow: a smoothed copy screened with its own blurred, brighter copy
        base = cv2.edgePreservingFilter(arr.astype(np.uint8), flags=cv2.RECURS_FILTER, sigma_s=20, sigma_r=0.2)
        a = base.astype(np.float32) / 255
        g = cv2.GaussianBlur(np.clip(a * 1.1, 0, 1), (0, 0), max(3.0, 0.25 * d))
        out = (1 - (1 - a) * (1 - 0.55 * g)) * 255
    elif k == 4:  # smoothed all over, then the eyes sharpened again (an unsharp mask on the eyes)
        out = cv2.bilateralFilter(arr.astype(np.uint8), max(5, int(0.12 * d)) | 1, 70, 12).astype(np.float32)
        out = cv2.bilateralFilter(out.astype(np.uint8), 7, 50, 7).astype(np.float32)
        eye_zone = np.zeros(arr.shape[:2], np.float32)
        for eye in pts[:2]:
            cv2.circle(eye_zone, (int(eye[0]), int(eye[1])), int(0.35 * d), 1.0, -1)
        eyes = cv2.GaussianBlur(eye_zone, (0, 0), max(1.0, 0.05 * d))[..., None]
        sharp = out + 1.2 * (out - cv2.GaussianBlur(out, (0, 0), 1.5))
        out = out * (1 - eyes) + sharp * eyes + 10
    elif k == 5:  # the face only, feathered wide, strongly smoothed, with enlarged eyes
        smooth = cv2.edgePreservingFilter(arr.astype(np.uint8), flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4)
        wide = _skin_mask(arr.shape[:2], kps, 0.3)
        out = _enlarge_eyes(arr * (1 - wide) + smooth.astype(np.float32) * wide, pts, d)
    elif k == 6:  # surface blur (a median, then bilateral) with a soft vignette glow, whole frame
        u8 = cv2.medianBlur(arr.astype(np.uint8), max(3, int(0.05 * d)) | 1)
        u8 = cv2.bilateralFilter(u8, max(5, int(0.1 * d)) | 1, 45, 9)
        glow = cv2.GaussianBlur(u8, (0, 0), max(3.0, 0.3 * d)).astype(np.float32)
        out = 0.8 * u8 + 0.2 * glow + 12
    else:  # a lighter pass: one bilateral at a smaller size, whole frame, a slight glow
        u8 = cv2.bilateralFilter(arr.astype(np.uint8), max(5, int(0.08 * d)) | 1, 40, 6)
        glow = cv2.GaussianBlur(u8, (0, 0), max(2.0, 0.15 * d)).astype(np.float32)
        out = 0.85 * u8 + 0.15 * glow + 6
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _enlarge_eyes(arr: np.ndarray, pts: np.ndarray, d: float, gain: float = 0.3) -> np.ndarray:
    """A face-changing effect: each eye magnified (a local radial warp of radius 0.5 eye distances)."""
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mx, my = xx.copy(), yy.copy()
    radius = 0.5 * d
    for ex, ey in pts[:2]:
        dx, dy = xx - ex, yy - ey
        r = np.sqrt(dx * dx + dy * dy) / radius
        pull = np.where(r < 1, 1 - gain * (1 - r) ** 2, 1.0).astype(np.float32)
        mx = np.where(r < 1, ex + dx * pull, mx)
        my = np.where(r < 1, ey + dy * pull, my)
    return cv2.remap(arr, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR)


def screen_photo(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """The photo shown on a screen and photographed: sub-pixel stripes and/or a moire beat at several
    frequencies and angles, a bezel, glare and a slight perspective (variants 0-5); a printed photo's
    halftone dots (6) and a screen's pixel grid photographed at twice its size and scaled down (7), drawn
    after the screen rule's line was set: renderings it was not tuned on."""
    if variant >= 6:
        return _printed_or_pixel_grid(img, variant)
    rng = np.random.default_rng(300 + variant)
    arr = np.asarray(img.convert("RGB")).astype(np.float32)
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = (3.0, 4.0, 5.0, 6.0, 3.5, 7.0)[variant % 6]
    angle = math.radians((0, 7, -12, 3, 20, -5)[variant % 6])
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    if variant % 2 == 0:  # RGB sub-pixel stripes
        for ch in range(3):
            arr[..., ch] *= 0.55 + 0.45 * (np.cos(2 * np.pi * (u / period - ch / 3)) > 0.2)
    # moire: a slow beat of two fine gratings
    beat = 0.5 + 0.5 * np.cos(2 * np.pi * (u / (period * 9 + variant) + v / (period * 23)))
    arr *= (0.78 + 0.22 * beat)[..., None]
    arr *= (0.88 + 0.12 * np.cos(2 * np.pi * v / (period * 1.5)))[..., None]  # scan lines
    # glare
    gx, gy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.4) * h
    glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (0.2 * max(w, h)) ** 2))
    arr += 90 * glare[..., None]
    arr = np.clip(arr * (0.85 + 0.05 * (variant % 3)), 0, 255).astype(np.uint8)
    shown = Image.fromarray(arr)
    # bezel and perspective: the screen inside a dark frame on a desk-coloured background
    pad = int(0.06 * max(w, h))
    canvas = Image.new("RGB", (w + 2 * pad, h + 2 * pad), (20, 20, 22))
    canvas.paste(shown, (pad, pad))
    cw, ch = canvas.size
    j = 0.03 * (1 + variant % 3)
    src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
    dst = np.float32([[j * cw, 0], [cw * (1 - j / 2), j * ch], [cw, ch * (1 - j)], [0, ch]])
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(np.asarray(canvas), m, (cw, ch), borderValue=(150, 140, 120))
    return Image.fromarray(warped)


def _printed_or_pixel_grid(img: Image.Image, variant: int) -> Image.Image:
    arr = np.asarray(img.convert("RGB")).astype(np.float32)
    h, w = arr.shape[:2]
    if variant % 2 == 0:  # halftone: two crossed gratings at 45 degrees, period 5 px
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = math.radians(45)
        u, v = xx * math.cos(t) + yy * math.sin(t), -xx * math.sin(t) + yy * math.cos(t)
        dots = (np.cos(2 * np.pi * u / 5) + np.cos(2 * np.pi * v / 5)) / 4 + 0.5
        out = arr * (0.7 + 0.3 * dots[..., None])
    else:  # a pixel grid of period 7 at twice the size, softened by the lens, scaled down
        up = cv2.resize(arr, (w * 2, h * 2))
        yy, xx = np.mgrid[0 : 2 * h, 0 : 2 * w]
        up *= (0.6 + 0.4 * (((xx % 7) < 6) & ((yy % 7) < 6)))[..., None]
        up = cv2.GaussianBlur(up, (0, 0), 0.8)
        out = cv2.resize(up, (w, h), interpolation=cv2.INTER_AREA) * 1.1
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def cartoon(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """A drawing or cartoon of the photo: several stylisations."""
    arr = np.asarray(img.convert("RGB"))
    k = variant % 6
    if k == 0:
        out = cv2.stylization(arr, sigma_s=60, sigma_r=0.45)
    elif k == 1:  # colour quantisation + black outlines (cel shading)
        smooth = cv2.bilateralFilter(arr, 9, 75, 75)
        levels = 5
        q = (smooth // (256 // levels)) * (256 // levels) + 256 // levels // 2
        edges = cv2.adaptiveThreshold(
            cv2.medianBlur(cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY), 7),
            255,
            cv2.ADAPTIVE_THRESH_MEAN_C,
            cv2.THRESH_BINARY,
            9,
            3,
        )
        out = cv2.bitwise_and(q.astype(np.uint8), q.astype(np.uint8), mask=edges)
    elif k == 2:  # pencil sketch, colour
        _, out = cv2.pencilSketch(arr, sigma_s=60, sigma_r=0.07, shade_factor=0.05)
    elif k == 3:  # pencil sketch, grey
        gray, _ = cv2.pencilSketch(arr, sigma_s=50, sigma_r=0.08, shade_factor=0.04)
        out = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    elif k == 4:  # posterised flat paint (k-means colours)
        small = cv2.resize(arr, (0, 0), fx=0.5, fy=0.5)
        data = small.reshape(-1, 3).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
        _, labels, centres = cv2.kmeans(data, 8, None, crit, 2, cv2.KMEANS_PP_CENTERS)
        flat = centres[labels.ravel()].reshape(small.shape).astype(np.uint8)
        out = cv2.resize(
            cv2.medianBlur(flat, 5), (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    else:  # oil-paint-like: strong edge-preserving smoothing + saturation boost
        out = cv2.edgePreservingFilter(arr, flags=cv2.RECURS_FILTER, sigma_s=100, sigma_r=0.6)
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * 1.6, 0, 255)
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        edges = cv2.Canny(cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY), 80, 160)
        out[cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0] = (30, 25, 20)
    return Image.fromarray(out)


def cut_off(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """The face about 35-45% outside the frame, on the left, right, top or bottom."""
    pts, d, *_ = _geometry(kps)
    # the face box is roughly 2.2 eye distances wide, from the eyes' midpoint
    cx, cy = pts[:2].mean(axis=0)
    mouth_y = pts[3:, 1].mean()
    fw = 2.2 * d
    top, bottom = cy - 1.1 * d, mouth_y + 0.9 * d
    fh = bottom - top
    share = (0.35, 0.4, 0.45)[variant // 4 % 3]
    side = variant % 4
    w, h = img.size
    if side == 0:
        box = (int(cx - fw / 2 + share * fw), 0, w, h)
    elif side == 1:
        box = (0, 0, int(cx + fw / 2 - share * fw), h)
    elif side == 2:
        box = (0, int(top + share * fh), w, h)
    else:
        box = (0, 0, w, int(bottom - share * fh))
    return img.crop(box)


# --------------------------------------------------------------------------------------
# Orientation and things that must stay accepted
# --------------------------------------------------------------------------------------


def rotated(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    return img.rotate((90, 180, 270)[variant % 3], expand=True)


def benign(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """Changes a person would not refuse a photo for: mirrored, greyscale, warm or green cast, head rolled
    30 degrees, JPEG quality 6."""
    k = variant % 6
    if k == 0:
        return ImageOps.mirror(img)
    if k == 1:
        return ImageOps.grayscale(img).convert("RGB")
    if k in (2, 3):
        arr = np.asarray(img).astype(np.float32)
        gain = np.array([1.18, 1.0, 0.75]) if k == 2 else np.array([0.85, 1.15, 0.85])
        return Image.fromarray(np.clip(arr * gain, 0, 255).astype(np.uint8))
    if k == 4:
        pts, *_ = _geometry(kps)
        c = tuple(pts[:2].mean(axis=0))
        return img.rotate(
            30 if variant % 2 else -30, center=c, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128)
        )
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=6)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def soft_or_small(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """Ordinary copies that lose fine detail without a filter (the filtered rule must not take them for
    one): a slightly soft photo (Gaussian blur 1 and 1.8 px), a small one (560 px on the short side),
    a sharpened one, JPEG quality 25, and soft + JPEG quality 12."""
    k = variant % 6
    if k in (0, 1):
        return img.filter(ImageFilter.GaussianBlur(1.0 if k == 0 else 1.8))
    if k == 2:
        s = 560 / min(img.size)
        return img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
    if k == 3:
        return img.filter(ImageFilter.UnsharpMask(2, 120, 2))
    import io

    buf = io.BytesIO()
    (img if k == 4 else img.filter(ImageFilter.GaussianBlur(1.2))).save(buf, "JPEG", quality=25 if k == 4 else 12)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


CATEGORIES = {
    "sunglasses": (sunglasses, len(SUNGLASS_STYLES), {"eyes_covered"}),
    "mask": (mask, len(MASK_STYLES), {"face_covered"}),
    "hand": (hand, 8, {"eyes_covered", "face_covered"}),
    "filter": (beauty_filter, 12, {"filtered"}),  # a warning
    "screen": (screen_photo, 8, {"screen_photo"}),
    "cartoon": (cartoon, 6, {"not_a_photo"}),
    "cut": (cut_off, 12, {"face_cut_off"}),
    "rotated": (rotated, 3, None),
    "benign": (benign, 6, None),
}
