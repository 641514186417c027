"""Selfie checks: per-photo quality rules and cross-photo identity checks, producing the report.

The report is the design doc's schema plus ``ready_lora``, ``readiness`` and a report-level ``errors``
list (files past ``config.MAX_SELFIES``, not analysed). An ``error`` rejects the selfie, a ``warning``
keeps it; ``face`` is the largest face in original image pixels, or null.

Per photo: ``unreadable_image`` / ``too_large`` (from imaging), ``low_resolution``, ``no_face`` (also for
what is not a human face: faces.FaceAnalyzer.is_human), ``multiple_faces`` (a second person who competes
with the subject), ``background_faces`` (a warning), ``face_too_small``, ``blurry``, ``too_dark``,
``overexposed``, ``extreme_pose``;
across photos: ``duplicate`` (image hash AND embedding) and ``different_person`` (the odd one out of a
majority, a warning when there is none). Each rule, its thresholds and why are in ``docs/design.md``
("Selfie checks") and next to the constants in ``config.py``.
"""


from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from headshot import config, errors, imaging
from headshot.faces.analyzer import Face, FaceAnalyzer, cosine, get_analyzer
from headshot.faces.measures import (
    drawing_measures,
    face_in_frame,
    face_quality,
    filter_measures,
    finish_occlusion,
    linear_score,
    occlusion_parts,
    periodic_peak,
    visible_share,
)

log = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"

ISSUE_CODES = (
    "unreadable_image",
    "too_large",
    "no_face",
    "multiple_faces",
    "background_faces",
    "low_resolution",
    "face_too_small",
    "blurry",
    "too_dark",
    "overexposed",
    "extreme_pose",
    "face_cut_off",
    "eyes_covered",
    "face_covered",
    "screen_photo",
    "not_a_photo",
    "filtered",
    "turned_upright",
    "duplicate",
    "different_person",
)


# The order issues are listed in, most basic first (a photo with no face is refused for that before its size,
# its size before its light; a drawing or a screen for what it is before what covers the face): errors before
# warnings, then this order.
ISSUE_ORDER = (
    "unreadable_image",
    "too_large",
    "no_face",
    "multiple_faces",
    "not_a_photo",
    "screen_photo",
    "face_cut_off",
    "eyes_covered",
    "face_covered",
    "low_resolution",
    "face_too_small",
    "extreme_pose",
    "blurry",
    "too_dark",
    "overexposed",
    "duplicate",
    "different_person",
    "background_faces",
    "filtered",
    "turned_upright",
)
assert sorted(ISSUE_ORDER) == sorted(ISSUE_CODES)


def _issue_rank(issue: dict[str, str]) -> tuple[bool, int]:
    return issue["severity"] != ERROR, ISSUE_ORDER.index(issue["code"])


class AcceptedSelfie:
    """A selfie that passed: the decoded (upright RGB) photo and its largest face in its pixels.

    ``image`` is the whole picture; the checks decode only what they need, so it may be decoded when it
    is first used (``image`` given as a function of no arguments), once."""

    def __init__(self, name: str, image: Image.Image | Callable[[], Image.Image], face: Face) -> None:
        self.name = name
        self._image = image
        self.face = face

    @property
    def image(self) -> Image.Image:
        if not isinstance(self._image, Image.Image):
            self._image = self._image()
        return self._image

    def __repr__(self) -> str:
        return f"AcceptedSelfie(name={self.name!r}, face={self.face.bbox.round(1).tolist()})"


@dataclass
class ValidationResult:
    report: dict  # the JSON report (see the module docstring)
    accepted: list[AcceptedSelfie]  # in upload order


@dataclass
class _Selfie:
    """Working state of one photo while it is checked."""

    index: int
    name: str
    decoded: imaging.ReducedImage | None = None  # the photo at the size the checks need
    faces: list[Face] = field(default_factory=list)  # in the whole picture's pixels
    quality: dict[str, float] | None = None
    occlusion: dict[str, float] | None = None  # occlusion_measures of the largest face
    image_hash: int | None = None
    issues: list[dict[str, str]] = field(default_factory=list)

    @property
    def face(self) -> Face | None:
        return self.faces[0] if self.faces else None

    @property
    def size(self) -> tuple[int, int]:
        """The whole picture's (width, height)."""
        assert self.decoded is not None
        return self.decoded.full_size

    def quality_of(self, face: Face) -> dict[str, float]:
        """:func:`face_quality` of a face of this photo, on the decoded pixels where they settle it, else
        on the whole picture (decoded for it). A JPEG decoded at 1/2 or 1/4 reads like the face shrunk by
        a box filter: on the shared photos, sharp faces within 0.01 of the whole picture's sharpness, but
        blurred ones up to 0.04 sharper (JPEG's block edges survive the scaled decode), and faces under
        ``imaging.SHARPNESS_SIDE`` px lower. So the whole picture decides for a face under that size and
        for any sharpness under ``BLUR_WARNING + QUALITY_RECHECK_MARGIN`` (a blur verdict near its line)."""
        assert self.decoded is not None
        scale = self.decoded.scale
        if scale < 1.0 and face.size * scale >= imaging.SHARPNESS_SIDE:
            quality = face_quality(self.decoded.image, face, scale=scale)
            if quality["sharpness"] >= config.BLUR_WARNING + config.QUALITY_RECHECK_MARGIN:
                return quality
        if scale < 1.0:
            return face_quality(self.decoded.full(), face)
        return face_quality(self.decoded.image, face)

    def add(self, code: str, severity: str, message: str) -> None:
        assert code in ISSUE_CODES, code
        self.issues.append({"code": code, "severity": severity, "message": message})

    def has(self, code: str) -> bool:
        return any(i["code"] == code for i in self.issues)

    @property
    def accepted(self) -> bool:
        return (
            self.decoded is not None
            and self.face is not None
            and not any(i["severity"] == ERROR for i in self.issues)
        )


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _name_and_source(item: Any, index: int) -> tuple[str, Any]:
    """``(display name, source for imaging.load_image)`` of a path, a ``(name, bytes)`` pair, bytes, or a
    file-like object (Gradio passes paths or objects with a ``.name`` path)."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        name, data = item
        return (os.path.basename(str(name)) or f"photo {index + 1}"), data
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name, item
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"photo {index + 1}", bytes(item)
    path = getattr(item, "path", None) or getattr(item, "name", None)
    if isinstance(path, str) and not hasattr(item, "read"):
        return Path(path).name, path
    if hasattr(item, "read"):
        return (Path(path).name if isinstance(path, str) else f"photo {index + 1}"), item
    return f"photo {index + 1}", item



def _face_dict(face: Face, quality: dict[str, float] | None) -> dict[str, Any]:
    quality = quality or {}
    return {
        "bbox": [round(float(v), 1) for v in face.bbox],
        "score": round(float(face.score), 3),
        "yaw": round(float(face.yaw), 1),
        "pitch": round(float(face.pitch), 1),
        "sharpness": round(float(quality.get("sharpness", 0.0)), 3),
        "brightness": round(float(quality.get("brightness", 0.0)), 3),
    }


# --------------------------------------------------------------------------------------
# Per-photo rules
# --------------------------------------------------------------------------------------


def _centre(face: Face) -> tuple[float, float]:
    return float(face.bbox[0] + face.bbox[2]) / 2, float(face.bbox[1] + face.bbox[3]) / 2


def _competes(selfie: _Selfie, face: Face, other: Face, crop: tuple[int, int, int, int]) -> bool:
    """Whether ``other`` is a second person who competes with the subject ``face`` (config.py's "Other
    faces" block): close enough to crowd the subject's headshot crop, or of comparable size, seen whole and
    in focus. Sharpness is measured only when size and framing leave the question open."""
    ratio = other.size / max(face.size, 1e-6)
    cx, cy = _centre(other)
    if ratio >= config.CROWDING_FACE_RATIO and crop[0] <= cx <= crop[2] and crop[1] <= cy <= crop[3]:
        return True
    if (
        ratio < config.SECOND_FACE_RATIO
        or visible_share(other, selfie.size) < config.SECOND_FACE_MIN_VISIBLE
    ):
        return False
    main_sharp = selfie.quality["sharpness"] if selfie.quality else 0.0
    return selfie.quality_of(other)["sharpness"] >= config.SECOND_FACE_MIN_REL_SHARPNESS * main_sharp


def _check_other_faces(selfie: _Selfie, face: Face) -> None:
    """multiple_faces (error): another person competes with the subject (see :func:`_competes`).
    background_faces (warning): every other face is small, blurred, cut by the frame or away from the
    subject; the photo is kept and the largest face, the subject's, is the one used."""
    others = selfie.faces[1:]
    if not others:
        return
    crop = imaging.headshot_crop_box(face.bbox, selfie.size)
    if any(_competes(selfie, face, other, crop) for other in others):  # lazily: the first settles it
        selfie.add(
            "multiple_faces",
            ERROR,
            "There is more than one person in this photo: upload photos of you alone (or crop the others "
            "out), so it is clear whose face to use.",
        )
    else:
        selfie.add(
            "background_faces",
            WARNING,
            "Other people are in the background of this photo. It can be used: the largest sharp face, "
            "yours, is the one that will be used.",
        )


def _check_quality(selfie: _Selfie, small_face: bool) -> None:
    """blurry (also lost detail: heavy noise or compression), too_dark, overexposed."""
    q = selfie.quality or {}
    sharp = q.get("sharpness", 0.0)
    # A face under the minimum size is already refused; upscaled to be measured it always looks soft.
    if not small_face:
        if sharp < config.BLUR_ERROR:
            selfie.add(
                "blurry",
                ERROR,
                "The photo is blurry: hold the phone still, tap to focus on your face, and take it again in "
                "good light.",
            )
        elif sharp < config.BLUR_WARNING:
            selfie.add(
                "blurry",
                WARNING,
                "The photo is a little soft. It can be used, but a sharper photo (phone held still, focused "
                "on your face) gives better results.",
            )
        elif (
            q.get("noise", 0.0) > config.NOISE_WARNING_SIGMA
            or q.get("blockiness", 1.0) > config.BLOCKINESS_WARNING
        ):
            selfie.add(
                "blurry",
                WARNING,
                "The photo has lost fine detail (it is grainy or heavily compressed). It can be used, but the "
                "original photo from your phone, taken in good light, gives better results.",
            )

    bright, highlight, clipped = q.get("brightness", 0.0), q.get("highlight", 0.0), q.get("clipped", 0.0)
    if bright < config.DARK_SEVERE or (
        bright < config.DARK_ERROR and highlight < config.DARK_HIGHLIGHT_ERROR
    ):
        selfie.add(
            "too_dark",
            ERROR,
            "The photo is too dark: face a window or a lamp so the light falls on your face, and take it again.",
        )
    elif bright < config.DARK_WARNING and highlight < config.DARK_HIGHLIGHT_WARNING:
        selfie.add(
            "too_dark",
            WARNING,
            "The photo is a little dark. It can be used, but more light on your face gives better results.",
        )
    elif bright > config.BRIGHT_ERROR or clipped > config.CLIPPED_ERROR:
        selfie.add(
            "overexposed",
            ERROR,
            "The photo is overexposed (your face is washed out): move out of direct sunlight or turn off the "
            "flash, and take it again.",
        )
    elif bright > config.BRIGHT_WARNING or clipped > config.CLIPPED_WARNING:
        selfie.add(
            "overexposed",
            WARNING,
            "Parts of your face are very bright in this photo. It can be used, but softer light gives better "
            "results.",
        )


def _check_pose(selfie: _Selfie, face: Face) -> None:
    """extreme_pose: errors beyond ``MAX_*_DEG``, warnings beyond ``*_WARNING_DEG``."""
    yaw, pitch, roll = abs(face.yaw), abs(face.pitch), abs(face.roll)
    if roll > config.ROTATED_PHOTO_DEG:
        selfie.add(
            "extreme_pose",
            ERROR,
            "Your face is upside down or sideways in this photo: rotate the photo so your face is upright and "
            "upload it again.",
        )
        return
    limits = [
        (yaw, config.MAX_YAW_DEG, config.YAW_WARNING_DEG, "turned to the side"),
        (
            pitch,
            config.MAX_PITCH_DEG,
            config.PITCH_WARNING_DEG,
            "tilted up" if face.pitch > 0 else "tilted down",
        ),
        (roll, config.MAX_ROLL_DEG, config.ROLL_WARNING_DEG, "tilted sideways"),
    ]
    for value, error_limit, _, how in limits:
        if value > error_limit:
            selfie.add(
                "extreme_pose",
                ERROR,
                f"Your head is {how} too far in this photo: look straight into the camera with your head "
                "level, and take it again.",
            )
            return
    for value, _, warning_limit, how in limits:
        if value > warning_limit:
            selfie.add(
                "extreme_pose",
                WARNING,
                f"Your head is {how} in this photo. It can be used, but photos looking straight into the "
                "camera work best.",
            )
            return


def _check_in_frame(selfie: _Selfie, face: Face) -> None:
    """face_cut_off: part of the face (its outline from the keypoints, :func:`face_in_frame`) is outside
    the picture: an error past ``FACE_CUT_ERROR``, a warning past ``FACE_CUT_WARNING``."""
    share = face_in_frame(face, selfie.size)
    if share < config.FACE_CUT_ERROR:
        selfie.add(
            "face_cut_off",
            ERROR,
            f"About {100 - round(share * 100, -1):.0f}% of your face is outside the photo: take it again with "
            "your whole face and some space around your head inside the frame.",
        )
    elif share < config.FACE_CUT_WARNING:
        selfie.add(
            "face_cut_off",
            WARNING,
            "The edge of the photo cuts off a little of your face. It can be used, but a photo with your whole "
            "head inside the frame gives better results.",
        )


def _check_covered(selfie: _Selfie, face: Face) -> None:
    """eyes_covered (sunglasses, a hand or a phone over an eye) and face_covered (a mask, a scarf, a hand
    over the nose and mouth): config.py's occlusion models over :func:`occlusion_measures`. Not judged on a
    face already refused as cut off, too small or turned too far (the aligned regions would be wrong), nor
    on one under ``FACE_SMALL_WARNING_PX``."""
    m = selfie.occlusion
    # A face under FACE_SMALL_WARNING_PX is upscaled to be aligned: its eyes look flat whatever covers
    # them (the masked crowds and group photos of the shared set), so it is not judged.
    if (
        not m
        or "probe_eyes" not in m
        or face.size < config.FACE_SMALL_WARNING_PX
        or any(
            i["severity"] == ERROR and i["code"] in ("face_cut_off", "face_too_small", "extreme_pose")
            for i in selfie.issues
        )
    ):
        return
    if linear_score(m, config.SUNGLASSES_MODEL) > 0 or linear_score(m, config.HAND_OVER_EYE_MODEL) > 0:
        selfie.add(
            "eyes_covered",
            ERROR,
            "Your eyes are covered in this photo (sunglasses, a hand, a phone or hair over them): take it "
            "again with both eyes clearly visible; clear glasses are fine.",
        )
    if linear_score(m, config.FACE_COVERED_MODEL) > 0:
        selfie.add(
            "face_covered",
            ERROR,
            "Part of your face is covered in this photo (a mask, a scarf or a hand over your nose and mouth): "
            "take it again with your whole face uncovered.",
        )


def _check_screen(selfie: _Selfie) -> None:
    """screen_photo: a fine regular pattern across the face (:func:`periodic_peak`)."""
    m = selfie.occlusion
    if m and m.get("screen_peak", 0.0) > config.SCREEN_PEAK_ERROR:
        selfie.add(
            "screen_photo",
            ERROR,
            "This looks like a photo of a screen or of a printed photo (a fine regular pattern, such as a "
            "screen's pixels or moire, runs across your face): upload the original photo from your phone or "
            "camera instead.",
        )


def _check_drawing(selfie: _Selfie) -> None:
    """not_a_photo: ink lines and flat tones across the face (:func:`drawing_measures`) scored by
    config.NOT_A_PHOTO_MODEL, or paper-white over most of its upper part (config.DRAWING_PAPER)."""
    m = selfie.occlusion
    if m and "ink_lines" in m and (
        linear_score(m, config.NOT_A_PHOTO_MODEL) > 0 or m["paper"] > config.DRAWING_PAPER
    ):
        selfie.add(
            "not_a_photo",
            ERROR,
            "This looks like a drawing, painting, cartoon or render, not a photo (drawn lines, flat colours "
            "or paper across your face): use a real photo of yourself from your phone or camera.",
        )


def _check_filtered(selfie: _Selfie) -> None:
    """filtered (a warning): config.FILTERED_MODEL over :func:`filter_measures` says the face's faint
    detail is gone while its strong edges stay, or the eyes' contrast is washed out (a beauty filter's
    smoothing and glow). Judged only on a photo with no error (a refused photo is replaced anyway, and a
    tiny or cut face reads smooth) and not where JPEG's 8x8 blocks show (``BLOCKINESS_WARNING``: heavy
    compression also wipes out faint detail, and has its own warning)."""
    m = selfie.occlusion
    if (
        not m
        or "filter_gap" not in m
        or any(i["severity"] == ERROR for i in selfie.issues)
        or (selfie.quality or {}).get("blockiness", 1.0) > config.BLOCKINESS_WARNING
    ):
        return
    if linear_score(m, config.FILTERED_MODEL) > 0:
        selfie.add(
            "filtered",
            WARNING,
            "This photo looks smoothed by a beauty filter or effect: your headshots will copy it. It can be "
            "used, but an unfiltered photo (filters and beauty mode off) works best.",
        )


def _check_faces(selfie: _Selfie) -> None:
    """no_face, multiple_faces, background_faces, face_too_small, blurry, too_dark, overexposed,
    extreme_pose. Only human faces get here (the analyzer's plausibility gate, faces.is_human)."""
    face = selfie.face
    if face is None:
        selfie.add(
            "no_face",
            ERROR,
            "No human face was found in this photo: upload a photo of yourself where your face is clearly "
            "visible, facing the camera, in good light, with nothing covering it.",
        )
        return
    _check_other_faces(selfie, face)
    _check_in_frame(selfie, face)
    min_size = max(config.MIN_FACE_SHORT_SIDE_PX, config.MIN_FACE_FRACTION * min(selfie.size))
    small_face = face.size < min_size
    if small_face:
        selfie.add(
            "face_too_small",
            ERROR,
            f"Your face is too small in this photo ({face.size:.0f} pixels across): take a closer photo in "
            "which your head and shoulders fill most of the frame, like a selfie at arm's length.",
        )
    elif face.size < config.FACE_SMALL_WARNING_PX:
        selfie.add(
            "face_too_small",
            WARNING,
            f"Your face is rather small in this photo ({face.size:.0f} pixels across). It can be used, but a "
            "closer photo gives more detail.",
        )
    _check_quality(selfie, small_face)
    _check_pose(selfie, face)
    _check_covered(selfie, face)
    _check_drawing(selfie)
    _check_screen(selfie)
    _check_filtered(selfie)


# Work beside the face analysis, on one worker thread (Pillow and numpy let go of the GIL on whole images):
# * the image hash (a grey thumbnail of the whole photo) needs nothing from the face analysis: it runs while
#   the detector does. Inline it costs 1-2 ms of a selfie's ~50; beside the detector, 1.9 ms less per selfie
#   (median over the photos of benchmarks/validate_bench.py, paired runs in one process, load average 4);
# * the face measures (quality_of) of the largest detection run while its embedding and plausibility gate
#   do (faces.FaceAnalyzer.detect's on_largest); they are used when that face passes the gate, as it does
#   in nearly every selfie, else the face that did is measured afterwards: 3.1-3.6 ms less per selfie
#   (measured the same way, load average 3).
_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="selfie-checks")


def _occlusion_or_none(analyzer: FaceAnalyzer, img: Image.Image, face: Face) -> dict[str, Any] | None:
    try:
        # Only the face's surroundings are turned into an array (the alignment needs no more).
        x0, y0, x1, y1 = (float(v) for v in face.bbox)
        side = max(x1 - x0, y1 - y0)
        box = (
            max(0, int(x0 - side)),
            max(0, int(y0 - side)),
            min(img.width, int(x1 + side) + 1),
            min(img.height, int(y1 + side) + 1),
        )
        near = face.scaled(1.0, offset=(box[0], box[1]))
        rgb = np.asarray(img.crop(box).convert("RGB"))
        parts = occlusion_parts(analyzer, rgb, near)
        peak = periodic_peak(rgb, near)
        if peak is not None:
            parts["screen_peak"] = peak
        parts.update(drawing_measures(rgb, near) or {})
        parts.update(filter_measures(rgb, near) or {})
        return parts
    except Exception:  # a face too odd to align: the occlusion rules are left out for it
        log.exception("occlusion measures failed")
        return None


def _quality_or_none(selfie: _Selfie, face: Face) -> dict[str, float] | None:
    try:
        return selfie.quality_of(face)
    except Exception:  # measured again where it is used, so any error surfaces there as before
        return None


def _find_faces(selfie: _Selfie, decoded: imaging.ReducedImage, analyzer: FaceAnalyzer) -> None:
    """Detect the faces of ``decoded`` (with their measures and the photo's hash) into ``selfie``."""
    img = decoded.image
    image_hash = _WORKER.submit(imaging.dhash, img)  # beside the face analysis (see _WORKER)
    early: list[tuple[bytes, concurrent.futures.Future]] = []

    covering: list[tuple[bytes, concurrent.futures.Future]] = []

    def measure_early(face: Face) -> None:
        whole = face.scaled(decoded.reduction) if decoded.reduction > 1 else face
        early.append((whole.bbox.tobytes(), _WORKER.submit(_quality_or_none, selfie, whole)))
        covering.append((whole.bbox.tobytes(), _WORKER.submit(_occlusion_or_none, analyzer, img, face)))

    selfie.decoded = decoded
    try:
        # The largest face needs an embedding; the second largest goes through the same plausibility
        # gate (an animal beside you is no second person). The others only count for background_faces.
        found = analyzer.detect(img, embed=2, on_largest=measure_early)
        selfie.faces = [f.scaled(decoded.reduction) for f in found] if decoded.reduction > 1 else found
    except Exception:  # a photo the face models choke on must not break the other photos
        log.exception("face analysis failed for %r", selfie.name)
        selfie.faces = []
    selfie.image_hash = image_hash.result()
    measured = {bbox: pending.result() for bbox, pending in early}  # nothing runs on after this photo
    covered = {bbox: pending.result() for bbox, pending in covering}
    selfie.quality = selfie.occlusion = None
    if selfie.face is not None:
        key = selfie.face.bbox.tobytes()
        selfie.quality = measured.get(key) or selfie.quality_of(selfie.face)
        parts = covered.get(key) or _occlusion_or_none(
            analyzer,
            img,
            selfie.face.scaled(1.0 / decoded.reduction) if decoded.reduction > 1 else selfie.face,
        )
        selfie.occlusion = finish_occlusion(parts, selfie.face.embedding) if parts else None


def _upright_turns(selfie: _Selfie) -> tuple[int, ...]:
    """The quarter turns (counter-clockwise) worth trying on a photo that seems to be sideways or upside
    down without EXIF saying so: the one that makes the largest face upright when it lies on its side or
    upside down (roll beyond ``ROTATED_PHOTO_DEG``), every turn when no face was found (the detector
    misses most faces lying on their side), none otherwise."""
    face = selfie.face
    if face is None:
        return (1, 3, 2) if selfie.decoded is not None else ()
    if abs(face.roll) <= config.ROTATED_PHOTO_DEG:
        return ()
    k = round(face.roll / 90.0) % 4
    # The detector labels the points of a face on its side either way round (its roll reads about +90 or
    # -90 for the same photo), so the opposite quarter turn is tried too; upside down is told apart by
    # faces.FaceAnalyzer's orientation check, but a face it misjudged may lie on its side.
    return (k, (k + 2) % 4) if k % 2 else (2, 1, 3)


def _turn_upright(
    selfie: _Selfie, decoded: imaging.ReducedImage, analyzer: FaceAnalyzer, turns: Sequence[int]
) -> None:
    """Try the photo turned by each of ``turns``; keep the first turn that shows an upright face, and say
    so in the report. When none does, the photo stays as it came (and its faces as found)."""
    before = (selfie.faces, selfie.quality, selfie.image_hash)
    for k in turns:
        if not k:
            continue
        _find_faces(selfie, decoded.turned(k), analyzer)
        if selfie.face is not None and abs(selfie.face.roll) <= config.ROTATED_PHOTO_DEG:
            how = "upside down" if k == 2 else "on its side"
            selfie.add(
                "turned_upright",
                WARNING,
                f"This photo was {how}, so it has been turned upright. It can be used as it is; your "
                "phone's original photo usually carries the right orientation.",
            )
            return
    selfie.decoded = decoded
    selfie.faces, selfie.quality, selfie.image_hash = before


def _analyse(selfie: _Selfie, source: Any, analyzer: FaceAnalyzer) -> None:
    """Decode, detect and run the per-photo rules; every failure becomes an issue on this photo only."""
    try:
        decoded = imaging.load_reduced(source, name=selfie.name, min_long_side=config.DECODE_MIN_LONG_SIDE)
    except errors.ImageTooLarge as exc:
        selfie.add("too_large", ERROR, exc.message)
        return
    except errors.UnreadableImage as exc:
        selfie.add("unreadable_image", ERROR, exc.message)
        return
    except Exception as exc:  # never let one bad file break the others
        log.warning("could not load %r: %r", selfie.name, exc)
        selfie.add(
            "unreadable_image",
            ERROR,
            f"{selfie.name} could not be read as a photo: upload a JPEG, PNG, WebP or HEIC photo.",
        )
        return
    selfie.decoded = decoded

    width, height = decoded.full_size
    if min(width, height) < config.MIN_SHORT_SIDE:
        selfie.add(
            "low_resolution",
            ERROR,
            f"The photo is only {width}x{height} pixels: use a photo at least {config.MIN_SHORT_SIDE} pixels "
            "on its shorter side, such as the original from your phone rather than a screenshot or a thumbnail.",
        )
        if min(width, height) < config.MIN_FACE_SHORT_SIDE_PX:
            return  # too small to hold a usable face: no face analysis (it would cost more than a photo's)

    _find_faces(selfie, decoded, analyzer)
    turns = _upright_turns(selfie)
    if turns:
        _turn_upright(selfie, decoded, analyzer, turns)
    _check_faces(selfie)


# --------------------------------------------------------------------------------------
# Cross-photo rules
# --------------------------------------------------------------------------------------


# Errors after which a face's embedding says little about who it is (a tiny, blurred, dark, turned or
# upside-down face): such photos are refused anyway and take no part in the identity vote. Photos refused
# for other reasons (low resolution, other people in the frame) still say who is in them.
_UNRELIABLE_FACE = ("face_too_small", "blurry", "too_dark", "overexposed", "extreme_pose")


def _identity_usable(selfie: _Selfie) -> bool:
    if selfie.face is None or selfie.face.embedding is None:
        return False
    return not any(i["code"] in _UNRELIABLE_FACE and i["severity"] == ERROR for i in selfie.issues)


def _refused(selfie: _Selfie) -> bool:
    return any(i["severity"] == ERROR for i in selfie.issues)


def _check_duplicates(selfies: list[_Selfie], analyzer: FaceAnalyzer) -> None:
    """Two copies of the same photo: the later one gets ``duplicate``, unless only the earlier one is
    already refused for another reason (then that one gets it, and the good copy is kept)."""
    with_face = [s for s in selfies if s.face is not None and s.image_hash is not None]
    for j, later in enumerate(with_face):
        for earlier in with_face[:j]:
            if earlier.has("duplicate") or later.has("duplicate"):
                continue
            if imaging.hamming(earlier.image_hash, later.image_hash) > config.DUPLICATE_MAX_HASH_DISTANCE:
                continue
            if cosine(earlier.face.embedding, later.face.embedding) < analyzer.duplicate_threshold:
                continue
            copy, kept = (earlier, later) if _refused(earlier) and not _refused(later) else (later, earlier)
            copy.add(
                "duplicate",
                ERROR,
                f"This is the same photo as {kept.name}: upload a different photo instead (another day, place "
                "or angle helps the most).",
            )


def _groups(sim: np.ndarray, threshold: float) -> list[list[int]]:
    """Connected components of the graph linking faces whose similarity reaches ``threshold``."""
    n = sim.shape[0]
    seen: set[int] = set()
    groups = []
    for start in range(n):
        if start in seen:
            continue
        stack, group = [start], []
        seen.add(start)
        while stack:
            i = stack.pop()
            group.append(i)
            for j in range(n):
                if j not in seen and sim[i, j] >= threshold:
                    seen.add(j)
                    stack.append(j)
        groups.append(sorted(group))
    return sorted(groups, key=len, reverse=True)


def _check_identity(selfies: list[_Selfie], analyzer: FaceAnalyzer) -> None:
    """``different_person``: the odd ones out against the majority (see the module docstring)."""
    people = [s for s in selfies if _identity_usable(s) and not s.has("duplicate")]
    if len(people) < 2:
        return
    emb = np.stack([s.face.embedding for s in people]).astype(np.float32)
    sim = emb @ emb.T
    threshold = analyzer.same_person_threshold
    groups = _groups(sim, threshold)
    majority = groups[0]
    has_majority = len(majority) >= 2 and 2 * len(majority) > len(people)
    if has_majority:
        for i, selfie in enumerate(people):
            others = [j for j in majority if j != i]
            mean = float(sim[i, others].mean())
            if mean < threshold:
                selfie.add(
                    "different_person",
                    ERROR,
                    "This photo seems to show a different person from your other photos: remove it, and use "
                    "only photos of yourself.",
                )
        return
    # No majority (two photos that disagree, or equal groups): nobody can tell which photos are the odd
    # ones, so every photo gets a warning that asks the person to check.
    for selfie in people:
        selfie.add(
            "different_person",
            WARNING,
            "Your photos do not all seem to show the same person: check that every photo shows you, and "
            "remove the others (with more photos of you, the odd one out can be found).",
        )


def _background(selfie: _Selfie) -> np.ndarray:
    """Mean CIELAB colour of the photo's outer frame (a tenth of each side), where the background shows."""
    assert selfie.decoded is not None
    small = np.asarray(selfie.decoded.image.convert("RGB").resize((40, 40), Image.Resampling.BOX))
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    frame = np.ones((40, 40), bool)
    frame[4:-4, 4:-4] = False
    return lab[frame].mean(axis=0)


def _smile(face: Face) -> float:
    """Mouth width over eye distance (wider when smiling)."""
    kps = np.asarray(face.kps, dtype=np.float64)
    return float(np.linalg.norm(kps[4] - kps[3]) / max(np.linalg.norm(kps[1] - kps[0]), 1e-6))


def set_verdict(accepted: list[_Selfie]) -> dict[str, Any]:
    """The set as a whole (the report's ``set``): a short verdict on the accepted photos and at most two
    suggestions, the most useful first. A likeness is learnt best from photos that differ in light,
    background, angle and expression (taken on different days), so the checks are (config.py's "set"
    block): backgrounds (mean colour of the frame) and light (face brightness) all alike: one moment;
    head turns within a few degrees of each other: one angle; mouth widths alike: one expression."""
    n = len(accepted)
    if n == 0:
        return {
            "verdict": "No usable photos yet.",
            "suggestions": ["Add 3-10 photos of yourself alone, facing the camera, in good light."],
        }
    suggestions: list[str] = []
    if n < config.LORA_MIN_ACCEPTED:
        verdict = f"{n} usable photo{'s' if n > 1 else ''}: enough to start."
        suggestions.append(
            f"Add {config.LORA_MIN_ACCEPTED - n} or more photos from other days and places: with "
            f"{config.LORA_MIN_ACCEPTED} or more the likeness improves (and LoRA becomes possible)."
        )
    else:
        verdict = f"{n} usable photos."
    if n >= 2:
        backgrounds = np.stack([_background(s) for s in accepted])
        spread = float(np.max(np.linalg.norm(backgrounds[:, None] - backgrounds[None], axis=-1)))
        light = [float((s.quality or {}).get("brightness", 0.0)) for s in accepted]
        yaws = [float(s.face.yaw) for s in accepted if s.face is not None]
        smiles = [_smile(s.face) for s in accepted if s.face is not None]
        same_moment = spread < config.SET_SAME_BACKGROUND and max(light) - min(light) < config.SET_SAME_LIGHT
        varied = []
        if not same_moment:
            varied.append("light and background")
        if max(yaws) - min(yaws) >= config.SET_SAME_ANGLE_DEG:
            varied.append("angle")
        if max(smiles) - min(smiles) >= config.SET_SAME_EXPRESSION:
            varied.append("expression")
        if same_moment:
            verdict += " They all seem to be from the same moment (same place and light)."
            suggestions.append("Add photos from another day or place, with different light and background.")
        elif varied:
            listed = ", ".join(varied[:-1]) + (" and " if len(varied) > 1 else "") + varied[-1]
            verdict += f" Good variety of {listed}."
        if "angle" not in varied:
            suggestions.append("Add a photo with your head turned a little to one side.")
        if "expression" not in varied:
            suggestions.append("Add one photo smiling and one with a relaxed, neutral face.")
    return {"verdict": verdict, "suggestions": suggestions[:2]}


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def validate_selfies(files: Sequence[Any], analyzer: FaceAnalyzer | None = None) -> ValidationResult:
    """Check a set of selfies and build the report. ``files``: paths (str/Path), ``(name, bytes)`` pairs,
    bytes or binary file objects. Never raises for a bad file: it becomes that file's issue. Raises
    :class:`errors.FaceModelsUnavailable` only when no analyzer is given and none can be loaded."""
    files = list(files or [])
    analyzer = analyzer or get_analyzer()
    report_errors: list[dict[str, str]] = []
    selfies: list[_Selfie] = []
    for index, item in enumerate(files):
        name, source = _name_and_source(item, index)
        if index >= config.MAX_SELFIES:
            report_errors.append(
                {
                    "file": name,
                    "code": "too_many_selfies",
                    "message": f"{name} was not checked: at most {config.MAX_SELFIES} selfies can be used at "
                    "once. Keep your best ones.",
                }
            )
            continue
        selfie = _Selfie(index=index, name=name)
        _analyse(selfie, source, analyzer)
        selfies.append(selfie)

    _check_duplicates(selfies, analyzer)
    _check_identity(selfies, analyzer)

    accepted = [
        AcceptedSelfie(s.name, s.decoded.full, s.face)  # type: ignore[union-attr, arg-type]
        for s in selfies
        if s.accepted
    ]
    count = len(accepted)
    ready_instantid = count >= config.INSTANTID_MIN_ACCEPTED
    ready_lora = count >= config.LORA_MIN_ACCEPTED
    report = {
        "ready": ready_instantid,
        "ready_lora": ready_lora,
        "readiness": {"instantid": ready_instantid, "lora": ready_lora},
        "accepted": count,
        "selfies": [
            {
                "file": s.name,
                "accepted": s.accepted,
                "issues": sorted(s.issues, key=_issue_rank),
                "face": _face_dict(s.face, s.quality) if s.face is not None else None,
            }
            for s in selfies
        ],
        "errors": report_errors,
        "set": set_verdict([s for s in selfies if s.accepted]),
    }
    return ValidationResult(report=report, accepted=accepted)


__all__ = ["ISSUE_CODES", "AcceptedSelfie", "ValidationResult", "validate_selfies"]
