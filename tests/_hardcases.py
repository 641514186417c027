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
    """A drawing, cartoon, painting or render of the photo: several stylisations (variants 0-5 the first
    ones; 6-15 drawn later in other ways: see :func:`_more_cartoons`)."""
    if variant % CARTOON_VARIANTS >= 6:
        return _more_cartoons(img, kps, variant % CARTOON_VARIANTS)
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


CARTOON_VARIANTS = 16


def _ink(gray: np.ndarray, block: int = 9, c: int = 3) -> np.ndarray:
    """Dark lines where the grey image has edges: 255 elsewhere, 0 on a line (adaptive threshold)."""
    return cv2.adaptiveThreshold(
        cv2.medianBlur(gray, 5), 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, c
    )


def _more_cartoons(img: Image.Image, kps: np.ndarray, k: int) -> Image.Image:
    """Renderings 6-15: flat paint (mean shift), watercolour on paper, ink line art, a comic with halftone
    shading, a smooth 3-D render with specular light, detail-enhanced paint, posterised colour without
    outlines, a small cel-shaded cartoon scaled up, a grey cel-shaded cartoon, an oil paint (Kuwahara)."""
    arr = np.asarray(img.convert("RGB"))
    h, w = arr.shape[:2]
    _, d, *_ = _geometry(kps)
    gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(400 + k)
    if k == 6:  # flat paint: mean-shift segmentation (regions of one colour)
        small = cv2.resize(arr, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        out = cv2.resize(
            cv2.pyrMeanShiftFiltering(small, 12, 40, maxLevel=1), (w, h), interpolation=cv2.INTER_LINEAR
        )
    elif k == 7:  # watercolour: light washes that pool at their edges, on textured paper
        wash = cv2.stylization(arr, sigma_s=60, sigma_r=0.35).astype(np.float32)
        wash = 255 - 0.65 * (255 - cv2.GaussianBlur(wash, (0, 0), max(1.0, d * 0.015)))
        pooled = np.abs(wash - cv2.GaussianBlur(wash, (0, 0), 3.0)).sum(axis=2, keepdims=True)
        paper = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
        paper = 1 + 0.05 * paper / (paper.std() + 1e-6)
        out = (wash - 0.8 * pooled) * paper[..., None]
    elif k == 8:  # ink line art on white paper, a light flat tint on the skin
        lines = _ink(gray, 11, 4)
        tint = np.full_like(arr, 250)
        tint[gray < np.percentile(gray, 35)] = (225, 215, 205)
        out = np.where(lines[..., None] > 0, tint, np.uint8(20))
    elif k == 9:  # comic: three grey-green tones, halftone dots in the middle tone, black ink
        yy, xx = np.mgrid[0:h, 0:w]
        step = max(4, int(d * 0.08))
        dots = ((xx % step - step / 2) ** 2 + (yy % step - step / 2) ** 2) < (step * 0.3) ** 2
        smooth = cv2.bilateralFilter(gray, 9, 60, 9)
        paper = np.array((245, 235, 200), np.uint8)
        out = np.empty_like(arr)
        out[:] = paper
        mid = (smooth < 150) & (smooth >= 90)
        out[mid & dots] = (90, 110, 160)
        out[smooth < 90] = (60, 70, 120)
        out[_ink(gray, 9, 5) == 0] = (10, 10, 10)
    elif k == 10:  # smooth 3-D render: a few flat albedos, soft shading from the form, a specular light
        small = cv2.resize(arr, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        data = cv2.bilateralFilter(small, 9, 60, 9).reshape(-1, 3).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
        _, labels, centres = cv2.kmeans(data, 6, None, crit, 1, cv2.KMEANS_PP_CENTERS)
        albedo = cv2.resize(
            centres[labels.ravel()].reshape(small.shape), (w, h), interpolation=cv2.INTER_LINEAR
        )
        albedo = cv2.GaussianBlur(albedo, (0, 0), 1.5)
        height = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), max(2.0, d * 0.12))
        gx, gy = cv2.Sobel(height, cv2.CV_32F, 1, 0), cv2.Sobel(height, cv2.CV_32F, 0, 1)
        n = np.dstack([-gx, -gy, np.full_like(gx, 6.0)])
        n /= np.linalg.norm(n, axis=2, keepdims=True)
        lit = np.clip(n @ np.array([-0.4, -0.5, 0.77]), 0, 1)
        out = albedo * (0.55 + 0.6 * lit)[..., None] + 180 * (lit**30)[..., None]
    elif k == 11:  # detail-enhanced paint: edge-preserving smoothing, then local contrast pushed
        out = cv2.detailEnhance(
            cv2.edgePreservingFilter(arr, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4),
            sigma_s=20,
            sigma_r=0.3,
        )
    elif k == 12:  # posterised colour, four levels a channel, no outlines
        smooth = cv2.medianBlur(cv2.bilateralFilter(arr, 9, 50, 9), 5)
        out = np.asarray(ImageOps.posterize(Image.fromarray(smooth), 2))
    elif k == 13:  # a cel-shaded cartoon drawn small (360 px) and scaled up
        s = 360 / max(h, w)
        small = cv2.resize(arr, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        sm = cv2.bilateralFilter(small, 7, 60, 7)
        q = (sm // 48) * 48 + 24
        q[_ink(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), 7, 4) == 0] = 15
        out = cv2.resize(q.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    elif k == 14:  # grey cel-shaded cartoon: four grey tones and ink
        smooth = cv2.bilateralFilter(gray, 9, 70, 9)
        q = (np.digitize(smooth, (70, 120, 175)) * 60 + 40).astype(np.uint8)
        q[_ink(gray, 9, 3) == 0] = 0
        out = cv2.cvtColor(q, cv2.COLOR_GRAY2RGB)
    else:  # oil paint: Kuwahara-like (the flattest of four quadrants around each pixel)
        f = arr.astype(np.float32)
        r = max(4, int(d * 0.12))
        means, varis = [], []
        for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            m = cv2.blur(f, (r + 1, r + 1), anchor=(r if dx > 0 else 0, r if dy > 0 else 0))
            g = cv2.blur(f.mean(axis=2) ** 2, (r + 1, r + 1), anchor=(r if dx > 0 else 0, r if dy > 0 else 0))
            means.append(m)
            varis.append(g - m.mean(axis=2) ** 2)
        pick = np.argmin(np.stack(varis), axis=0)
        out = np.take_along_axis(np.stack(means), pick[None, ..., None].repeat(3, axis=3), axis=0)[0]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


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
    "cartoon": (cartoon, CARTOON_VARIANTS, {"not_a_photo"}),
    "cut": (cut_off, 12, {"face_cut_off"}),
    "rotated": (rotated, 3, None),
    "benign": (benign, 6, None),
}


# --------------------------------------------------------------------------------------
# Renderings kept out of fitting ("*_new"): other ways to draw each covering and cut, with light and
# shading, used only to measure how the rules do on drawings they were not fit on (see
# benchmarks/calibrate_intake.py --fit, which leaves them out unless asked).
# --------------------------------------------------------------------------------------


class _FaceFrame:
    """The pixels around a face in the face's own coordinates: ``u`` along the eyes and ``v`` down the face,
    both in eye distances from the eyes' midpoint (eyes at u = -0.5 and 0.5, v = 0). Works on a window of
    about 3 eye distances around the face; :meth:`done` pastes it back."""

    def __init__(self, img: Image.Image, kps: np.ndarray, reach: float = 3.2):
        pts, d, _, ux, uy = _geometry(kps)
        c = pts[:2].mean(axis=0)
        self.img, self.d, self.ux, self.uy, self.c = img.convert("RGB"), d, ux, uy, c
        self.box = (
            max(0, int(c[0] - reach * d)),
            max(0, int(c[1] - reach * d)),
            min(img.width, int(c[0] + reach * d)),
            min(img.height, int(c[1] + reach * d)),
        )
        self.arr = np.asarray(self.img.crop(self.box)).astype(np.float32)
        h, w = self.arr.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dx, dy = xx + self.box[0] - c[0], yy + self.box[1] - c[1]
        self.u = ((dx * ux[0] + dy * ux[1]) / d).astype(np.float32)
        self.v = ((dx * uy[0] + dy * uy[1]) / d).astype(np.float32)
        self.nose_v = float((pts[2] - c) @ uy) / d
        self.mouth_v = float((pts[3:].mean(axis=0) - c) @ uy) / d
        self.px = 1.0 / d  # one pixel in face units

    def edge(self, inside: np.ndarray, width_px: float = 1.2) -> np.ndarray:
        """An alpha 0..1 from a signed distance in face units (positive inside), soft over ``width_px``."""
        return np.clip(inside / (width_px * self.px) + 0.5, 0.0, 1.0)

    def blend(self, layer: np.ndarray, alpha: np.ndarray) -> None:
        a = alpha[..., None] if alpha.ndim == 2 else alpha
        self.arr = self.arr * (1 - a) + layer * a

    def darken(self, alpha: np.ndarray, strength: float) -> None:
        self.arr *= (1 - strength * alpha)[..., None]

    def blur(self, alpha: np.ndarray, sigma_units: float) -> np.ndarray:
        """A Gaussian blur of ``sigma_units`` eye distances (done at a quarter size or less when wide)."""
        sigma = max(0.5, sigma_units * self.d)
        k = max(1, int(sigma / 4))
        h, w = alpha.shape[:2]
        small = cv2.resize(
            alpha.astype(np.float32), (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA
        )
        return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / k), (w, h), interpolation=cv2.INTER_LINEAR)

    def texture(self, tile: np.ndarray, scale: float, u0: float = 0.0, v0: float = 0.0) -> np.ndarray:
        """An RGB tile laid on the face (``scale`` tile pixels per face unit), repeating."""
        mx = ((self.u - u0) * scale).astype(np.float32)
        my = ((self.v - v0) * scale).astype(np.float32)
        return cv2.remap(tile.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

    def done(self) -> Image.Image:
        out = self.img.copy()
        out.paste(Image.fromarray(np.clip(self.arr, 0, 255).astype(np.uint8)), self.box[:2])
        return out


def _superellipse(u, v, cu, cv, ru, rv, p=2.0, angle=0.0):
    """Signed distance-like measure (face units, positive inside) of a rotated superellipse."""
    du, dv = u - float(cu), v - float(cv)  # Python floats keep the float32 grids float32
    if angle:
        ca, sa = math.cos(angle), math.sin(angle)
        du, dv = du * ca + dv * sa, -du * sa + dv * ca
    f = (np.abs(du / ru) ** p + np.abs(dv / rv) ** p) ** (1.0 / p)
    return (1.0 - f) * np.minimum(ru, rv)


def _capsule(u, v, a, b, r):
    """(distance inside in face units, position across 0 centre .. 1 edge, position along 0..1)."""
    (a0, a1), (b0, b1) = (float(x) for x in a), (float(x) for x in b)  # Python floats: float32 stays float32
    ab0, ab1 = b0 - a0, b1 - a1
    t = np.clip(((u - a0) * ab0 + (v - a1) * ab1) / max(ab0 * ab0 + ab1 * ab1, 1e-9), 0, 1)
    dist = np.hypot(u - (a0 + t * ab0), v - (a1 + t * ab1))
    return r - dist, np.clip(dist / r, 0, 1), t


NEW_SUNGLASS_STYLES = (
    # (shape, lens rgb top, lens rgb bottom, opacity top, opacity bottom, frame rgb, frame width, mirror)
    ("wayfarer", (18, 18, 20), (35, 35, 38), 0.96, 0.93, (12, 12, 12), 0.09, 0.15),
    ("shield", (60, 70, 160), (150, 60, 140), 0.97, 0.94, (200, 200, 205), 0.02, 0.6),
    ("clipon", (25, 35, 30), (25, 35, 30), 0.95, 0.95, (170, 150, 90), 0.025, 0.25),
    ("aviator", (45, 30, 20), (150, 110, 80), 0.97, 0.55, (190, 170, 110), 0.025, 0.2),
    ("round", (55, 60, 70), (55, 60, 70), 0.72, 0.72, (30, 30, 30), 0.04, 0.1),
    ("thick", (25, 45, 30), (35, 55, 40), 0.94, 0.92, (95, 55, 25), 0.13, 0.15),
    ("lennon", (190, 195, 200), (120, 125, 135), 0.95, 0.95, (60, 60, 60), 0.03, 0.9),
    ("wrap", (200, 70, 20), (60, 20, 30), 0.96, 0.96, (20, 20, 22), 0.06, 0.7),
)


def _lens_shape(f: _FaceFrame, shape: str, side: int) -> tuple[np.ndarray, float]:
    """Inside measure of one lens (side -1 left, +1 right; for 'shield' both at once) and its half height."""
    u, v = f.u, f.v
    cu = 0.5 * side
    if shape == "wayfarer":  # wider at the top, flat top edge
        ru = 0.43 * (1 + 0.18 * np.clip(-(v - 0.02) / 0.3, -1, 1))
        return _superellipse(u, v, cu + 0.02 * side, 0.02, ru, 0.3, p=4.5), 0.3
    if shape == "shield":  # one visor over both eyes, a notch for the nose
        inside = _superellipse(u, v, 0.0, 0.0, 1.18, 0.4, p=3.0)
        notch = _superellipse(u, v, 0.0, 0.42, 0.16, 0.26, p=2.0)
        return np.minimum(inside, -notch), 0.4
    if shape == "clipon":
        return _superellipse(u, v, cu, 0.0, 0.4, 0.27, p=6.0), 0.27
    if shape == "aviator":  # a teardrop: wide at the top, down towards the cheek at the inner side
        return _superellipse(u, v, cu + 0.03 * side, 0.08, 0.44, 0.4, p=2.2, angle=0.25 * side), 0.4
    if shape in ("round", "lennon"):
        r = 0.36 if shape == "round" else 0.31
        return _superellipse(u, v, cu, 0.03, r, r, p=2.0), r
    if shape == "thick":
        return _superellipse(u, v, cu, 0.02, 0.45, 0.34, p=3.0), 0.34
    return _superellipse(u, v, cu + 0.06 * side, 0.0, 0.52, 0.3, p=3.5, angle=-0.12 * side), 0.3  # wrap


def sunglasses_new(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """Sunglasses drawn another way: wayfarer, shield visor, clip-on, gradient aviator, a light tint through
    which the eyes show, thick tortoiseshell frames, small mirrored round lenses, a mirrored sports wrap;
    lenses shaded top to bottom, reflecting the scene, with a frame, arms and a soft shadow on the cheeks."""
    shape, top, bottom, op_top, op_bottom, frame_rgb, frame_w, mirror = NEW_SUNGLASS_STYLES[variant % 8]
    rng = np.random.default_rng(500 + variant)
    f = _FaceFrame(img, kps, reach=2.0)
    sides = (0,) if shape == "shield" else (-1, 1)
    lenses = [_lens_shape(f, shape, s) for s in sides]
    inside = np.maximum.reduce([ins for ins, _ in lenses])
    half = lenses[0][1]
    lens_a = f.edge(inside)
    frame_a = f.edge(np.minimum(inside + frame_w, -inside + 0.002)) if frame_w else np.zeros_like(inside)
    # the shadow of the glasses falls on the cheeks below them
    shadow = f.blur(np.clip(lens_a + frame_a, 0, 1), 0.06)
    shadow = np.roll(shadow, int(0.12 * f.d), axis=0)
    f.darken(shadow, 0.3)
    # lens: a vertical gradient, the scene reflected (the photo flipped and blurred), a highlight streak
    t = np.clip((f.v + half) / (2 * half), 0, 1)[..., None]
    colour = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    scene = f.blur(np.ascontiguousarray(f.arr[::-1, ::-1]), 0.08)
    colour = colour * (1 - 0.35 * mirror) + scene * 0.35 * mirror
    streak = np.exp(-(((f.u + 0.9 * f.v + 0.1) / 0.06) ** 2)) * (f.v < 0.05)
    colour += (120 + 100 * mirror) * streak[..., None]
    colour += rng.normal(0, 2.0, colour.shape[:2])[..., None]
    opacity = op_top * (1 - t[..., 0]) + op_bottom * t[..., 0]
    f.blend(colour, lens_a * opacity)
    if shape == "clipon":  # the clear glasses under the clip: a thin metal rim a bit larger than the clip
        under = np.maximum.reduce(
            [_superellipse(f.u, f.v, 0.5 * s, 0.05, 0.42, 0.31, p=2.4) for s in (-1, 1)]
        )
        f.blend(np.full_like(f.arr, 160), f.edge(np.minimum(under + 0.018, -under)) * (1 - lens_a))
    if frame_w:
        frame = np.asarray(frame_rgb, np.float32) * (1.15 - 0.3 * t)
        if shape == "thick":  # tortoiseshell: mottled browns
            mottle = f.blur(rng.random(f.arr.shape[:2]).astype(np.float32), 0.04)
            frame = frame * (1.0 + 0.3 * (mottle - mottle.mean()) / (mottle.std() + 1e-6))[..., None]
        f.blend(frame, frame_a)
    bar = f.edge(np.minimum(0.035 - np.abs(f.v + 0.06), 0.2 - np.abs(f.u)))  # the bridge
    arms = f.edge(np.minimum(0.03 - np.abs(f.v + 0.05 - 0.04 * (np.abs(f.u) - 0.9)), np.abs(f.u) - 0.88))
    arms *= np.abs(f.u) < 1.25
    f.blend(np.broadcast_to(np.asarray(frame_rgb, np.float32), f.arr.shape), np.clip(bar + arms, 0, 1))
    return f.done()


NEW_MASK_STYLES = (
    # (kind, rgb, light from: -1 left .. 1 right)
    ("surgical", (120, 175, 215), -0.6),  # light blue, pleated, ear loops
    ("surgical", (236, 238, 240), 0.5),  # white
    ("surgical", (150, 200, 185), 0.0),  # pale green
    ("surgical", (40, 42, 48), -0.3),  # black
    ("kn95", (235, 232, 225), 0.7),  # a seam down the middle
    ("floral", (35, 45, 85), -0.4),  # printed cloth: flowers on navy
    ("tartan", (150, 30, 35), 0.3),  # printed cloth: a red check
    ("bandana", (170, 25, 30), -0.2),  # paisley bandana tied over the nose
    ("scarf", (150, 140, 125), 0.4),  # a knitted scarf pulled up to the nose
    ("surgical", (215, 175, 200), 0.9),  # pink, strong side light
)


def _mask_tile(kind: str, rgb, rng) -> np.ndarray:
    """A 256 px tile of the mask's cloth (for _FaceFrame.texture, 256 px per ... see callers)."""
    base = np.ones((256, 256, 3), np.float32) * np.asarray(rgb, np.float32)
    tile = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(tile)
    if kind == "floral":
        for _ in range(14):
            x, y = rng.uniform(0, 256, 2)
            petal = tuple(int(c) for c in rng.choice([(240, 200, 210), (250, 240, 200), (200, 220, 250)]))
            for k in range(5):
                a = 2 * math.pi * k / 5
                px, py = x + 11 * math.cos(a), y + 11 * math.sin(a)
                draw.ellipse([px - 8, py - 8, px + 8, py + 8], fill=petal)
            draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(240, 190, 60))
            draw.line([x + 14, y + 14, x + 34, y + 30], fill=(70, 130, 80), width=4)
    elif kind == "tartan":
        arr = np.asarray(tile).astype(np.float32)
        i = np.arange(256)
        stripes = ((i % 64) < 14).astype(np.float32) * 0.45 + ((i % 64 > 30) & (i % 64 < 34)) * -0.6
        arr *= (1 - stripes[None, :, None] * 0.5) * (1 - stripes[:, None, None] * 0.5)
        arr[((i % 64 > 44) & (i % 64 < 47))[:, None] | ((i % 64 > 44) & (i % 64 < 47))[None, :]] = (
            230,
            220,
            120,
        )
        tile = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif kind == "bandana":
        draw = ImageDraw.Draw(tile)
        for _ in range(10):
            x, y = rng.uniform(0, 256, 2)
            draw.arc([x - 22, y - 22, x + 22, y + 22], 30, 300, fill=(245, 240, 230), width=4)
            draw.ellipse([x - 6, y - 6, x + 6, y + 6], outline=(20, 20, 20), width=3)
            for k in range(6):
                draw.ellipse([x + 28 + 5 * k, y - 2, x + 31 + 5 * k, y + 1], fill=(245, 240, 230))
    arr = np.asarray(tile).astype(np.float32)
    if kind == "scarf":  # knitted: ribs across, rows down
        yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
        arr *= (0.8 + 0.2 * np.abs(np.sin(xx / 256 * 16 * np.pi)))[..., None]
        arr *= (0.9 + 0.1 * np.sin(yy / 256 * 48 * np.pi + 2 * np.sin(xx / 256 * 16 * np.pi)))[..., None]
    return arr + rng.normal(0, 3.0, arr.shape[:2])[..., None]


def mask_new(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """A mask or scarf over the nose and mouth drawn another way: pleated surgical masks in several colours
    with binding, a nose wire and ear loops, a KN95 with its seam, printed cloth (flowers, a check), a
    paisley bandana, a knitted scarf; shaded like cloth round a face (darker at the sides, lit from one
    side) with a soft shadow under its top edge."""
    kind, rgb, light = NEW_MASK_STYLES[variant % len(NEW_MASK_STYLES)]
    rng = np.random.default_rng(600 + variant)
    f = _FaceFrame(img, kps, reach=2.6)
    u, v = f.u, f.v
    n, m = f.nose_v, f.mouth_v
    if kind == "bandana":  # straight across under the eyes, a point far below the chin
        top = n - 0.3 + 0.0 * u
        inside = np.minimum(v - top, 1.25 - np.abs(u) * 0.55 - (v - top) * 0.5)
    elif kind == "scarf":  # bulky, from just under the nose tip down, wider than the face
        top = n + 0.02 + 0.05 * np.sin(u * 7) + 0.1 * u**2
        inside = np.minimum(np.minimum(v - top, 1.45 - np.abs(u)), m + 1.5 - v)
    elif kind == "kn95":  # pointed at the nose and at the chin
        top = n - 0.38 + 0.3 * np.abs(u)
        bottom = m + 0.62 - 0.45 * np.abs(u)
        inside = np.minimum(np.minimum(v - top, bottom - v), 0.95 - np.abs(u))
    else:
        top = n - 0.3 + 0.1 * u**2
        bottom = m + 0.58 - 0.25 * u**2
        half = 0.98 - 0.35 * np.clip((v - m) / 0.6, 0, 1)
        inside = np.minimum(np.minimum(v - top, bottom - v), half - np.abs(u))
    alpha = f.edge(inside)
    if kind in ("floral", "tartan", "bandana", "scarf"):
        colour = f.texture(_mask_tile(kind, rgb, rng), 256 / (0.9 if kind != "scarf" else 1.4), -1.5, -1.0)
    else:
        colour = np.broadcast_to(np.asarray(rgb, np.float32), f.arr.shape).copy()
        colour += rng.normal(0, 2.5, f.arr.shape[:2])[..., None]
    # cloth round a face: darker towards the sides, lit from one side
    shade = 1.0 - 0.35 * np.clip(np.abs(u) / 1.1, 0, 1) ** 2 + 0.12 * light * np.clip(u, -1, 1)
    if kind == "surgical":  # three pleats: lit above each fold, a dark crease under it
        depth = np.clip((v - (n - 0.15)) / ((m + 0.35) - (n - 0.15)), 0, 1) * 3
        frac = depth - np.floor(depth)
        shade *= np.where((depth > 0) & (depth < 3), 1.06 - 0.2 * frac**3, 1.0)
        binding = (np.minimum(v - top, bottom - v) < 0.06) | (half - np.abs(u) < 0.05)
        shade *= np.where(binding, 0.93, 1.0)
        shade *= 1 - 0.25 * np.exp(-(((v - (top + 0.05)) / 0.02) ** 2)) * (np.abs(u) < 0.35)  # the nose wire
    elif kind == "kn95":
        shade *= np.where(u < 0, 1.04, 0.9) - 0.35 * np.exp(-((u / 0.012) ** 2))
    elif kind in ("bandana", "scarf"):  # folds
        shade *= 1 - 0.12 * np.sin(v * 6 + u * 2) ** 8
    colour = colour * shade[..., None]
    f.darken(np.roll(f.blur(alpha, 0.05), int(-0.04 * f.d), axis=0) * (1 - alpha), 0.3)  # shadow above
    f.blend(colour, alpha)
    if kind in ("surgical", "kn95"):  # ear loops to behind the ears
        loops = np.zeros_like(alpha)
        for s in (-1, 1):
            for vv in (n - 0.25, m + 0.45):
                a = (0.9 * s, vv)
                b = (1.3 * s, 0.25)
                ins, _, _ = _capsule(u, v, a, b, 0.018)
                loops = np.maximum(loops, f.edge(ins))
        f.blend(np.full_like(f.arr, 225.0), loops * (np.abs(u) > 0.9))
    return f.done()


NEW_HAND_STYLES = (
    # (what, skin or phone rgb, angle of the fingers from straight up in degrees, covered eye -1 left / 1 right)
    ("hand", (236, 196, 170), 0.0, -1),  # light skin, fingers up over the eye
    ("hand", (112, 72, 50), 25.0, 1),  # dark skin, fingers slanted
    ("hand", (200, 150, 115), 80.0, -1),  # medium, hand from the side, fingers across the eye
    ("hand", (70, 44, 32), -20.0, 1),  # very dark skin
    ("hand", (175, 128, 92), 10.0, 1),  # olive, fingers spread
    ("phone", (22, 22, 26), 0.0, -1),  # black phone, held at its side
    ("phone", (205, 208, 212), 12.0, 1),  # silver phone
    ("phone", (40, 70, 120), -8.0, -1),  # blue case
)


def _draw_hand(f: _FaceFrame, rgb, origin, angle: float, spread: float, rng) -> np.ndarray:
    """A palm and four fingers (and a thumb), shaded as rounded shapes, with dark gaps between the fingers,
    knuckle creases and lighter nails; drawn into ``f``; returns its alpha."""
    ca, sa = math.cos(angle), math.sin(angle)
    up, across = np.array([sa, -ca]), np.array([ca, sa])
    o = np.asarray(origin, np.float64)
    parts = []  # (inside, across 0..1, along 0..1, is finger)
    palm_in = _superellipse(f.u, f.v, o[0], o[1], 0.5, 0.55, p=2.6, angle=angle)
    parts.append((palm_in, np.clip(1 - palm_in / 0.5, 0, 1), np.zeros_like(palm_in), False))
    for k in range(4):
        base = o + across * (k - 1.5) * 0.24 + up * 0.35
        direction = up * math.cos(spread * (k - 1.5)) + across * math.sin(spread * (k - 1.5))
        length = (0.78, 0.9, 0.86, 0.68)[k]
        ins, acr, along = _capsule(f.u, f.v, base, base + direction * length, 0.105)
        parts.append((ins, acr, along, True))
    thumb_base = o - across * 0.45 + up * 0.05
    ins, acr, along = _capsule(f.u, f.v, thumb_base, thumb_base - across * 0.35 + up * 0.45, 0.11)
    parts.append((ins, acr, along, True))
    alpha = np.zeros_like(f.u)
    light = np.zeros_like(f.u)  # the skin's shading (times the tone), composited part over part
    nails = np.zeros_like(f.u)
    tone = np.asarray(rgb, np.float32)
    gaps = np.zeros_like(f.u)
    for ins, acr, along, finger in parts:
        a = f.edge(ins)
        shade = 1.08 - 0.4 * acr**2  # rounded: lit in the middle, darker at the edges
        nail = np.zeros_like(a)
        if finger:
            crease = np.exp(-(((along - 0.45) / 0.02) ** 2)) + np.exp(-(((along - 0.72) / 0.015) ** 2))
            shade *= 1 - 0.25 * crease * (acr < 0.8)
            nail = ((along > 0.86) & (acr < 0.65)).astype(np.float32)
        gaps = np.maximum(gaps, np.minimum(alpha, a) * (acr > 0.6))
        light = light * (1 - a) + shade * a
        nails = nails * (1 - a) + nail * a
        alpha = np.maximum(alpha, a)
    colour = (
        tone * (light * (1 - 0.4 * nails))[..., None]
        + np.asarray((94, 80, 78), np.float32) * nails[..., None]
    )
    colour *= (1 - 0.45 * gaps)[..., None]  # shadow where one finger lies on the next
    colour += rng.normal(0, 3.0, f.arr.shape[:2])[..., None]
    colour *= (1.1 - 0.2 * np.clip((f.v - o[1] + 0.8) / 1.6, 0, 1))[..., None]  # light from above
    f.darken(np.roll(f.blur(alpha, 0.08), int(0.1 * f.d), axis=1) * (1 - alpha), 0.4)  # cast shadow
    f.blend(colour, alpha)
    return alpha


def hand_new(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """A hand or a phone over one eye and the cheek, drawn another way: shaded palms and fingers of several
    skin tones (light to very dark) at several angles, with creases, nails and a cast shadow; or a phone
    (rounded corners, a glossy back, a camera bump with lenses) held by fingers at its edge."""
    what, rgb, degrees, side = NEW_HAND_STYLES[variant % len(NEW_HAND_STYLES)]
    rng = np.random.default_rng(700 + variant)
    f = _FaceFrame(img, kps, reach=2.2)
    angle = -math.radians(degrees) * side
    eye = np.array([0.5 * side, 0.0])
    if what == "hand":
        spread = 0.12 if variant != 4 else 0.3
        if abs(degrees) > 60:  # from the side: the palm beside the face, fingers across the eye
            origin = eye + np.array([0.95 * side, 0.15])
            angle = -math.pi / 2 * side
        else:
            origin = eye + np.array([0.1 * side, 0.75])
        _draw_hand(f, rgb, origin, angle, spread, rng)
        return f.done()
    centre = eye + np.array([0.12 * side, 0.5])
    inside = _superellipse(f.u, f.v, centre[0], centre[1], 0.56, 1.12, p=7.0, angle=angle)
    alpha = f.edge(inside)
    across = np.clip(1 - inside / 0.08, 0, 1)  # towards the rim
    gloss = np.exp(-((((f.u - centre[0]) * 0.8 + (f.v - centre[1]) * 0.6 + 0.2) / 0.18) ** 2))
    colour = np.asarray(rgb, np.float32) * (1.0 - 0.25 * across)[..., None] + 70 * gloss[..., None]
    colour += rng.normal(0, 1.5, f.arr.shape[:2])[..., None]
    f.darken(np.roll(f.blur(alpha, 0.08), int(0.1 * f.d), axis=1) * (1 - alpha), 0.45)
    f.blend(colour, alpha)
    bump_c = centre + np.array([-0.28 * side, -0.78])
    bump = f.edge(_superellipse(f.u, f.v, bump_c[0], bump_c[1], 0.2, 0.3, p=5.0, angle=angle))
    f.blend(np.asarray(rgb, np.float32) * 0.7 + 15, bump)
    for dv in (-0.14, 0.12):  # two lenses: a dark glass with a bright ring and glint
        lc = bump_c + np.array([0.0, dv])
        r = np.hypot(f.u - lc[0], f.v - lc[1])
        f.blend(np.full_like(f.arr, 150.0), f.edge(0.085 - r) * bump)
        f.blend(np.full_like(f.arr, 12.0), f.edge(0.065 - r) * bump)
        f.blend(np.full_like(f.arr, 230.0), f.edge(0.015 - np.hypot(f.u - lc[0] + 0.02, f.v - lc[1] + 0.02)))
    skin = SKIN_TONES[variant % len(SKIN_TONES)]
    grip = np.zeros_like(alpha)
    for k in range(3):  # fingers round the outer edge
        a = centre + np.array([0.62 * side, 0.2 + 0.28 * k])
        ins, _, _ = _capsule(f.u, f.v, a, a - np.array([0.22 * side, 0.05]), 0.1)
        grip = np.maximum(grip, f.edge(ins))
    tone = np.asarray(skin, np.float32)
    f.blend(np.broadcast_to(tone, f.arr.shape) * 0.95, grip)
    return f.done()


NEW_CUTS = (
    # (share of the face's width cut at the left or right, share of its height at the top or bottom, which
    # sides ("l", "r", "t", "b"), then the crop scaled by)
    (0.25, 0.25, "lt", 1.0),  # a corner: about 44% of the face outside
    (0.25, 0.25, "rb", 1.0),
    (0.3, 0.2, "rt", 0.8),
    (0.2, 0.3, "lb", 1.0),
    (0.5, 0.0, "l", 1.0),  # half the face
    (0.3, 0.0, "r", 0.7),  # under a third, scaled down
    (0.0, 0.32, "t", 1.0),  # the forehead and brows
    (0.4, 0.0, "l", 1.3),  # scaled up
)


def cut_new(img: Image.Image, kps: np.ndarray, variant: int = 0) -> Image.Image:
    """The face cut by the frame drawn another way: at a corner (both a side and the top or bottom), at other
    shares (30% to half), the crop then scaled. The face's extent is taken from the eyes and mouth as a
    person would frame it: the hairline about one eye-to-mouth height above the eyes, the chin 0.8 below
    the mouth, the cheeks 1.1 eye distances from the eyes' midpoint."""
    across, down, sides, scale = NEW_CUTS[variant % len(NEW_CUTS)]
    pts, d, *_ = _geometry(kps)
    cx, cy = pts[:2].mean(axis=0)
    mouth_y = pts[3:, 1].mean()
    hgt = mouth_y - cy
    left, right, top, bottom = cx - 1.1 * d, cx + 1.1 * d, cy - 1.0 * hgt, mouth_y + 0.8 * hgt
    w, h = img.size
    box = [0, 0, w, h]
    if "l" in sides:
        box[0] = int(left + across * (right - left))
    if "r" in sides:
        box[2] = int(right - across * (right - left))
    if "t" in sides:
        box[1] = int(top + down * (bottom - top))
    if "b" in sides:
        box[3] = int(bottom - down * (bottom - top))
    out = img.crop(tuple(box))
    if scale != 1.0:
        out = out.resize((round(out.width * scale), round(out.height * scale)), Image.Resampling.LANCZOS)
    return out


CATEGORIES_NEW = {
    "sunglasses_new": (sunglasses_new, len(NEW_SUNGLASS_STYLES), {"eyes_covered"}),
    "mask_new": (mask_new, len(NEW_MASK_STYLES), {"face_covered"}),
    "hand_new": (hand_new, len(NEW_HAND_STYLES), {"eyes_covered", "face_covered"}),
    "cut_new": (cut_new, len(NEW_CUTS), {"face_cut_off"}),
}
CATEGORIES.update(CATEGORIES_NEW)
