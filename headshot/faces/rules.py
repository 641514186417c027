"""The per-photo rules of the selfie intake: one photo, its faces and measures in, issues out.

:class:`SelfieCheck` is the working state of one photo while it is checked (its decoded pixels, faces,
measures and issues); :func:`check_faces` runs every rule on the largest face once ``validation`` has found
the faces: other faces, in frame, light and sharpness, pose, what covers the eyes or the face, a drawing,
a screen, a filter. Each rule reads ``measures`` and the thresholds and models in ``config``. The checks
across photos (duplicates, the odd one out) and the report are ``validation``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headshot import config, imaging
from headshot.faces.analyzer import Face
from headshot.faces.measures import (
    eye_models_score,
    face_in_frame,
    face_quality,
    linear_score,
    one_eye_covered,
    visible_share,
)

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


@dataclass
class SelfieCheck:
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


def _centre(face: Face) -> tuple[float, float]:
    return float(face.bbox[0] + face.bbox[2]) / 2, float(face.bbox[1] + face.bbox[3]) / 2


def _competes(selfie: SelfieCheck, face: Face, other: Face, crop: tuple[int, int, int, int]) -> bool:
    """Whether ``other`` is a second person who competes with the subject ``face`` (config.py's "Other
    faces" block): close enough to crowd the subject's headshot crop, or of comparable size, seen whole and
    in focus. Sharpness is measured only when size and framing leave the question open."""
    ratio = other.size / max(face.size, 1e-6)
    cx, cy = _centre(other)
    if ratio >= config.CROWDING_FACE_RATIO and crop[0] <= cx <= crop[2] and crop[1] <= cy <= crop[3]:
        return True
    if ratio < config.SECOND_FACE_RATIO or visible_share(other, selfie.size) < config.SECOND_FACE_MIN_VISIBLE:
        return False
    main_sharp = selfie.quality["sharpness"] if selfie.quality else 0.0
    return selfie.quality_of(other)["sharpness"] >= config.SECOND_FACE_MIN_REL_SHARPNESS * main_sharp


def _check_other_faces(selfie: SelfieCheck, face: Face) -> None:
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


def _check_quality(selfie: SelfieCheck, small_face: bool) -> None:
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


def _check_pose(selfie: SelfieCheck, face: Face) -> None:
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


def _check_in_frame(selfie: SelfieCheck, face: Face) -> None:
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


def _check_covered(selfie: SelfieCheck, face: Face) -> None:
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
    if eye_models_score(m) > 0 or one_eye_covered(m):
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


def _check_screen(selfie: SelfieCheck) -> None:
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


def _check_drawing(selfie: SelfieCheck) -> None:
    """not_a_photo: ink lines and flat tones across the face (:func:`drawing_measures`) scored by
    config.NOT_A_PHOTO_MODEL, or paper-white over most of its upper part (config.DRAWING_PAPER)."""
    m = selfie.occlusion
    if (
        m
        and "ink_lines" in m
        and (linear_score(m, config.NOT_A_PHOTO_MODEL) > 0 or m["paper"] > config.DRAWING_PAPER)
    ):
        selfie.add(
            "not_a_photo",
            ERROR,
            "This looks like a drawing, painting, cartoon or render, not a photo (drawn lines, flat colours "
            "or paper across your face): use a real photo of yourself from your phone or camera.",
        )


def _check_filtered(selfie: SelfieCheck) -> None:
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


def check_faces(selfie: SelfieCheck) -> None:
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
