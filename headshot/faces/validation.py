"""The selfie intake: each photo decoded, turned upright and its faces found, the per-photo rules run
(``rules``), then the checks across photos and the report.

The report is the design doc's schema plus ``ready_lora``, ``readiness`` and a report-level ``errors``
list (files past ``config.MAX_SELFIES``, not analysed). An ``error`` rejects the selfie, a ``warning``
keeps it; ``face`` is the largest face in original image pixels, or null.

Per photo: ``unreadable_image`` / ``too_large`` (from imaging), ``low_resolution``, ``no_face`` (also for what
is not a human face: ``FaceAnalyzer.is_human``), ``turned_upright`` (a note), and the rules of ``rules``
(``multiple_faces``, ``background_faces``, ``face_too_small``, ``blurry``, ``too_dark``, ``overexposed``,
``extreme_pose``, ``face_cut_off``, ``eyes_covered``, ``face_covered``, ``not_a_photo``, ``screen_photo``,
``filtered``);
across photos: ``duplicate`` (image hash AND embedding) and ``different_person`` (the odd one out of a
majority, a warning when there is none). Each rule, its thresholds and why are in ``docs/design.md``
("Selfie checks") and next to the constants in ``config.py``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from headshot import config, errors, imaging
from headshot.faces.analyzer import Face, FaceAnalyzer, cosine, get_analyzer
from headshot.faces.measures import (
    drawing_measures,
    filter_measures,
    finish_occlusion,
    occlusion_parts,
    one_eye_measures,
    periodic_peak,
)
from headshot.faces.rules import ERROR, ISSUE_CODES, WARNING, SelfieCheck, check_faces

log = logging.getLogger(__name__)


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


# Work beside the face analysis, on two worker threads (Pillow, numpy and OpenCV let go of the GIL on whole
# images):
# * the image hash (a grey thumbnail of the whole photo) needs nothing from the face analysis: it runs while
#   the detector does. Inline it costs 1-2 ms of a selfie's ~50; beside the detector, 1.9 ms less per selfie
#   (median over the photos of benchmarks/validate_bench.py, paired runs in one process, load average 4);
# * the face measures (quality_of) of the largest detection run while its embedding and plausibility gate
#   do (faces.FaceAnalyzer.detect's on_largest); they are used when that face passes the gate, as it does
#   in nearly every selfie, else the face that did is measured afterwards: 3.1-3.6 ms less per selfie
#   (measured the same way, load average 3);
# * the occlusion, drawing, screen and filter measures (_occlusion_or_none) of that face too, on the second
#   thread: with one, they waited for quality_of, and the caller, its embedding done, waited ~6 ms for both
#   (2 ms less per selfie, interleaved runs in one process).
_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="selfie-checks")


def _occlusion_or_none(
    analyzer: FaceAnalyzer, img: Image.Image, face: Face, reduction: int = 1
) -> dict[str, Any] | None:
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
        near_img = img.crop(box)
        # The decoded photo is RGB already: convert() would copy the crop once more.
        rgb = np.asarray(near_img if near_img.mode == "RGB" else near_img.convert("RGB"))
        parts = occlusion_parts(analyzer, rgb, near)
        peak = periodic_peak(rgb, near)
        if peak is not None:
            parts["screen_peak"] = peak
        parts.update(drawing_measures(rgb, near, block=8 // reduction) or {})
        parts.update(filter_measures(rgb, near) or {})
        return parts
    except Exception:  # a face too odd to align: the occlusion rules are left out for it
        log.exception("occlusion measures failed")
        return None


def _quality_or_none(selfie: SelfieCheck, face: Face) -> dict[str, float] | None:
    try:
        return selfie.quality_of(face)
    except Exception:  # measured again where it is used, so any error surfaces there as before
        return None


def _find_faces(selfie: SelfieCheck, decoded: imaging.ReducedImage, analyzer: FaceAnalyzer) -> None:
    """Detect the faces of ``decoded`` (with their measures and the photo's hash) into ``selfie``."""
    img = decoded.image
    image_hash = _WORKER.submit(imaging.dhash, img)  # beside the face analysis (see _WORKER)
    early: list[tuple[bytes, concurrent.futures.Future]] = []

    covering: list[tuple[bytes, concurrent.futures.Future]] = []

    def measure_early(face: Face) -> None:
        whole = face.scaled(decoded.reduction) if decoded.reduction > 1 else face
        early.append((whole.bbox.tobytes(), _WORKER.submit(_quality_or_none, selfie, whole)))
        covering.append(
            (whole.bbox.tobytes(), _WORKER.submit(_occlusion_or_none, analyzer, img, face, decoded.reduction))
        )

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
            decoded.reduction,
        )
        if parts:
            selfie.occlusion = finish_occlusion(parts, selfie.face.embedding)
            try:
                selfie.occlusion.update(
                    one_eye_measures(analyzer, parts, selfie.occlusion, selfie.face.embedding)
                )
            except Exception:  # as _occlusion_or_none: the check is left out for this face
                log.exception("one-eye probe failed")
        else:
            selfie.occlusion = None


def _upright_turns(selfie: SelfieCheck) -> tuple[int, ...]:
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
    selfie: SelfieCheck, decoded: imaging.ReducedImage, analyzer: FaceAnalyzer, turns: Sequence[int]
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


def _analyse(selfie: SelfieCheck, source: Any, analyzer: FaceAnalyzer) -> None:
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
    check_faces(selfie)


# --------------------------------------------------------------------------------------
# Cross-photo rules
# --------------------------------------------------------------------------------------


# Errors after which a face's embedding says little about who it is (a tiny, blurred, dark, turned or
# upside-down face): such photos are refused anyway and take no part in the identity vote. Photos refused
# for other reasons (low resolution, other people in the frame) still say who is in them.
_UNRELIABLE_FACE = ("face_too_small", "blurry", "too_dark", "overexposed", "extreme_pose")


def _identity_usable(selfie: SelfieCheck) -> bool:
    if selfie.face is None or selfie.face.embedding is None:
        return False
    return not any(i["code"] in _UNRELIABLE_FACE and i["severity"] == ERROR for i in selfie.issues)


def _refused(selfie: SelfieCheck) -> bool:
    return any(i["severity"] == ERROR for i in selfie.issues)


def _check_duplicates(selfies: list[SelfieCheck], analyzer: FaceAnalyzer) -> None:
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


def _check_identity(selfies: list[SelfieCheck], analyzer: FaceAnalyzer) -> None:
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


def _background(selfie: SelfieCheck) -> np.ndarray:
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


def set_verdict(accepted: list[SelfieCheck]) -> dict[str, Any]:
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
    selfies: list[SelfieCheck] = []
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
        selfie = SelfieCheck(index=index, name=name)
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


__all__ = ["ISSUE_ORDER", "AcceptedSelfie", "ValidationResult", "validate_selfies"]
