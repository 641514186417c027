"""Face analysis over insightface + onnxruntime: detection, pose, embeddings.

The pack, ``HEADSHOT_FACE_MODELS`` or antelopev2, comes from :mod:`headshot.faces.pack` (where it is and
its download, checked). Detection runs in tiers (320 px, 640 px, a padded pass for tight crops) and
returns boxes and keypoints in the pixels of the image given, largest first; pose comes from the five
keypoints (an upside-down face is caught by scoring it turned); embeddings are L2-normalised; cosine
thresholds are per pack (:data:`PACK_THRESHOLDS`). A lock serialises inference per analyzer (the
detector's session pool and anchor cache are plain Python state). Details: docs/design.md.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from headshot import config, errors
from headshot.faces.pack import OFFLINE_HINT, find_onnx_dir, pack_id_for, resolve_pack

log = logging.getLogger(__name__)
# insightface's face_align calls scikit-image's deprecated SimilarityTransform.estimate on every face: one
# FutureWarning per embedding, about their code, not ours.
warnings.filterwarnings("ignore", message=r"`estimate` is deprecated", category=FutureWarning)

# --------------------------------------------------------------------------------------
# Per-pack thresholds
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackThresholds:
    """Decision thresholds that depend on the pack's recognizer (cosine of normalised embeddings) and
    detector (score)."""

    same_person: float  # cosine >= this: the same person
    duplicate: float  # cosine >= this (and a near-identical image hash): the same photo again
    det_score: float = 0.5  # detections below this are not faces (animals, textures, paintings)
    # The recogniser's raw output norm of an aligned human face stays above this (0: not checked). The
    # norm depends on the recogniser, so it is per pack; see benchmarks/calibrate_selfies.py.
    min_embedding_norm: float = 0.0


# antelopev2 (SCRFD-10G + ArcFace ResNet-100 trained on Glint360K, 512-d). ArcFace papers and insightface
# users place the 1:1 verification threshold of this family around cosine 0.3-0.4 (about 0.3 at
# FMR 1e-4 on IJB-C; 0.35-0.45 is what deployments use for unconstrained photos). Selfies of one person
# typically score 0.5-0.8 against each other, strangers under 0.2, so 0.35 sits in the gap with margin for
# varied lighting, glasses and ageing.
# faces-small (SCRFD-2.5G + MobileFaceNet, 128-d), measured on shared/testdata/faces with
# benchmarks/calibrate_faces.py: same person min 0.34 (grey TV stills), 1st percentile 0.40, 5th 0.54,
# median 0.79; different people 99th percentile 0.24, 99.9th 0.32, max 0.35. 0.40 sits between.
# Duplicates need BOTH a near-identical image hash and this cosine: resized + re-encoded copies score
# >= 0.91 (faces-small, 5th percentile 0.96), so 0.85 keeps them; the hash keeps different photos out.
PACK_THRESHOLDS: dict[str, PackThresholds] = {
    "antelopev2": PackThresholds(same_person=0.35, duplicate=0.85),
    # faces-small: raw MobileFaceNet norms (benchmarks/calibrate_selfies.py): the largest face of every
    # shared photo of people 8.6-21.9 (median 16.5), every detection down to 10 px 6.8 and up (a profile in
    # the background), drawn sunglasses 13.1+, drawn masks 11.8+. Animals' near misses read 7.5-13.1, so
    # the norm alone cannot tell them apart on these photos: 6.0 only refuses what no human face came near.
    # antelopev2 is not on the test machine, so its floor is unmeasured: 0 leaves the check off.
    "faces-small": PackThresholds(same_person=0.40, duplicate=0.85, min_embedding_norm=6.0),
}
# A pack we do not know: stricter duplicate, the ArcFace-family same-person value.
DEFAULT_THRESHOLDS = PackThresholds(same_person=0.40, duplicate=0.90)

# Detection runs in tiers (SCRFD finds faces from ~10 px up to most of its input):
# 1. a quick pass at 256 px on the long side. It finds every face above ~60 px of a 1024 px photo,
#    including faces that fill the frame. When the largest face there is at least QUICK_MIN_FACE px,
#    every face of comparable size (what multiple_faces is about) is big enough to be found too: done.
#    This is the common selfie case, at a sixth of the cost of the full pass. It was 320 px until
#    2026-12-08: 256 px takes 4.5 ms less per selfie (validate_bench's photos, the two interleaved in one
#    process: 40.0 against 44.5 ms), and `calibrate_intake.py --sources 10 --shared` is as good on the
#    whole (1,180 cases: sunglasses 77 -> 76/80, filter 103 -> 102/120, cartoon 72 -> 71/160, hand
#    79 -> 80/80, hand_new 74 -> 77/80, cut_new 75 -> 77/80, every other category and the 40 shared photos
#    that must be accepted unchanged). The calibration numbers elsewhere in config.py were measured at 320.
# 2. otherwise the full pass at 640 px (insightface's default) for small faces and group photos;
# 3. when nothing was found, or the largest face fills most of the frame, the photo inside a black border
#    (a face seen whole is found more reliably and with more accurate keypoints).
# The short side of the input follows the photo's aspect (a 3:4 phone photo runs at 480x640: no letterbox
# padding), in steps that keep the number of input shapes (one ONNX session each) small.
DET_SIZE = (640, 640)
QUICK_DET_SIDE = 256
QUICK_MIN_FACE = 38  # px at the quick pass's scale (~150 px on a 1024 px photo)
RETRY_DET_SIZE = (320, 320)
RETRY_BORDER = 0.5  # border on each side, as a fraction of the long side (the face then fills <= 1/2)
# The bordered pass is for faces too big for the other passes: it runs when nothing was found or the
# largest face is at least TIGHT_CROP_FRACTION of the photo's short side (a close-up selfie's face, at
# 40-60%, does not need it), and keeps only faces of at least RETRY_MIN_FACE_FRACTION (at its coarser
# scale a smaller "face" is more likely a pattern).
TIGHT_CROP_FRACTION = 0.7
RETRY_MIN_FACE_FRACTION = 0.5
# Orientation check (see FaceAnalyzer._upside_down): a square of 2x the face box, at 160 px. Measured on
# the single-face photos of shared/testdata/faces (benchmarks/calibrate_faces.py), "turned minus as it
# is" scores at most -0.17 for upright faces and at least +0.03 for the same photos upside down (160 px
# separates better than 128 or 192); the decision point sits in the middle of that gap.
ORIENTATION_CROP_SCALE = 2.0
ORIENTATION_SIZE = 160
ORIENTATION_MARGIN = -0.07  # upside down when turned - as_is > this
ORIENTATION_CHECKS = 4  # only the largest faces that get an embedding are checked
# A face with the orientation check needs three model runs that do not depend on each other (its
# embedding, the region as it is, the region turned); two worker threads run two of them beside the
# caller's (FaceAnalyzer._measure_unlocked). At 160 px a second intra-op thread barely helps one run
# (7.7 -> 7.0 ms), so side by side they use the second core. On the 63 faces under FACE_SURE_SCORE of
# shared/testdata/faces (embedding and both scores, median per face; bit-identical results): 21.6-27.8 ms
# one after the other, 16.9-20.7 ms side by side, with another process busy on one of the 2 cores (load
# average 2.3). About a third of the selfies of benchmarks/validate_bench.py have a face with the check.
ORIENT_WORKERS = 2
# Occlusion probe (FaceAnalyzer.region_probe), in the 112x112 aligned crop (eyes at y 52, mouth at y 92): the
# eye band from brow to cheekbone, the nose-mouth region down to the chin, blurred with this sigma.
PROBE_EYES = (22, 38, 90, 66)
PROBE_MOUTH = (30, 66, 82, 108)
# Each eye's half of that band, for FaceAnalyzer.eye_probe (one eye covered by a hand or a phone).
PROBE_EACH_EYE = ((22, 36, 56, 66), (56, 36, 90, 66))
PROBE_BLUR_SIGMA = 6.0
MAX_ASPECT = 4  # slimmer photos are padded to this aspect before detection


# --------------------------------------------------------------------------------------
# Faces and pose
# --------------------------------------------------------------------------------------


@dataclass
class Face:
    """One detected face, in the coordinates of the image given to :meth:`FaceAnalyzer.detect`."""

    bbox: np.ndarray  # (4,) float x0, y0, x1, y1
    score: float  # detection score 0..1
    kps: np.ndarray  # (5, 2) float: left eye, right eye, nose, left mouth, right mouth (as seen in the image)
    embedding: np.ndarray | None  # (D,) float32, L2-normalised; None when not computed (see detect)
    yaw: float = 0.0  # degrees, 0 = facing the camera; + = nose towards the image's right
    pitch: float = 0.0  # degrees, 0 = level; + = chin up
    roll: float = 0.0  # degrees, 0 = upright; + = clockwise in the image; about +-180 = upside down
    # Plausibility measures (see FaceAnalyzer.is_human); 0 where not measured.
    embedding_norm: float = 0.0  # the recogniser's raw output norm, before normalising
    frame_score: float = 0.0  # detector score of the face re-framed at ORIENTATION_SIZE (as is or turned)
    shape_error: float = 0.0  # kps_shape_error: how far the 5 points are from any human head pose

    @property
    def size(self) -> float:
        """Short side of the box in pixels."""
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))

    def scaled(self, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> Face:
        """This face with coordinates mapped by ``(p - offset) * factor`` (pose and embedding unchanged)."""
        off = np.asarray(offset, dtype=np.float32)
        return replace(
            self,
            bbox=((self.bbox.reshape(2, 2) - off) * factor).reshape(4).astype(np.float32),
            kps=((self.kps - off) * factor).astype(np.float32),
        )


# The ArcFace alignment template (insightface's 112x112 reference points) is the frontal projection of
# the 5 points. Depths, towards the camera and relative to the eye centres, in the same units (one unit
# is ~1.8 mm: half the interocular distance, 17.6 units, is ~31.5 mm): the nose tip stands ~29 mm in front
# of the eyes, the mouth corners ~4 mm. These anthropometric averages set how fast the angles grow; the
# nose depth was checked against photos whose turn is visible (a face turned by about a quarter of the way
# to profile reads 25-30 degrees). The frontal reference (0 degrees) is the template itself, which matches
# the median of real photos (benchmarks/calibrate_faces.py).
_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
_HALF_EYES = float(np.linalg.norm(_TEMPLATE[1] - _TEMPLATE[0]) / 2)  # e: 17.6
_NOSE_DROP = float(_TEMPLATE[2, 1] - _TEMPLATE[:2, 1].mean())  # n: eye line to nose tip, 20.1
_MOUTH_DROP = float(_TEMPLATE[3:, 1].mean() - _TEMPLATE[:2, 1].mean())  # h: eye line to mouth, 40.7
_NOSE_DEPTH = 16.0  # d
_MOUTH_DEPTH = 2.2  # m
_MAX_YAW_FOR_SCALE = 75.0  # beyond this the eye distance says nothing about scale
FACE_MODEL_3D = np.array(
    [
        [-_HALF_EYES, 0.0, 0.0],
        [_HALF_EYES, 0.0, 0.0],
        [0.0, _NOSE_DROP, _NOSE_DEPTH],
        [_TEMPLATE[3, 0] - _TEMPLATE[2, 0], _MOUTH_DROP, _MOUTH_DEPTH],
        [_TEMPLATE[4, 0] - _TEMPLATE[2, 0], _MOUTH_DROP, _MOUTH_DEPTH],
    ]
)
"""The 5 points in 3-D (x right, y down, z towards the camera), eye centres at the origin; used by tests
to project known poses."""


def _wrap_degrees(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def pose_from_kps(kps: np.ndarray) -> tuple[float, float, float]:
    """Head pose ``(yaw, pitch, roll)`` in degrees from the 5 keypoints (any pixel scale).

    Geometry (weak perspective, the 3-D points of :data:`FACE_MODEL_3D`: half eye distance ``e``, nose
    tip ``n`` below the eye line and ``d`` in front of it, mouth ``m`` in front):

    * **Roll** is the angle of the line through the eyes (``atan2(dy, dx)``, clockwise positive in image
      coordinates). The eye-to-mouth axis gives the same angle; it decides when the two disagree by more
      than 90 degrees (the detector may label an upside-down face's eyes either way), so an upside-down
      face reads about +-180.
    * The points are rotated by ``-roll`` about the eye midpoint, so the eyes lie on a horizontal line.
    * **Yaw**: turning by ``t`` moves the nose tip sideways by ``d sin t`` and the mouth by ``m sin t``,
      and shrinks the eye distance to ``2e cos t``. With ``r`` the nose's sideways offset from the face's
      midline (eye midpoint to mouth midpoint, read at the nose's height) divided by half the eye
      distance, ``r = (d - k m) / e * tan t`` (``k`` = nose height / mouth height), so
      ``t = atan(r e / (d - k m))``: 0 for a frontal face, ~50 degrees when the nose tip reaches an eye.
    * **Pitch** (chin up positive) moves the nose tip vertically to ``n cos p - d sin p`` while the eye
      distance, once corrected for yaw (divided by ``cos t``), keeps the scale. With ``R`` = nose drop /
      corrected half eye distance, the first-order solution is ``p = atan((n / e - R) e / d)``: 0 at the
      template's ratio ``n / e`` = 1.14. It is exact to a few degrees for chin-up poses and reads low for
      chin-down ones (-35 reads about -19: the nose drop saturates there). The mouth is not used:
      smiling lifts the mouth corners a lot. Five points pin pitch down loosely (nose length differs
      between people by ~10%, i.e. ~+-10 degrees), so callers should only act on large values.
    """
    pts = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    eye_mid = pts[:2].mean(axis=0)
    mouth_mid = pts[3:].mean(axis=0)
    eye_vec = pts[1] - pts[0]
    axis = mouth_mid - eye_mid
    roll_eyes = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    roll_axis = math.degrees(math.atan2(-axis[0], axis[1]))
    roll = roll_eyes if abs(_wrap_degrees(roll_eyes - roll_axis)) <= 90.0 else roll_axis
    roll = _wrap_degrees(roll)

    theta = math.radians(-roll)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    local = (pts - eye_mid) @ rot.T  # eye line horizontal, y down the face
    half_eyes = abs(local[1, 0] - local[0, 0]) / 2.0
    mouth_y = float(local[3:, 1].mean())
    if half_eyes < 1e-6 or mouth_y <= 1e-6:
        # Degenerate keypoints (eyes on top of each other, mouth above the eyes): no pose can be read.
        return 0.0, 0.0, roll
    nose = local[2]
    k = float(np.clip(nose[1] / mouth_y, 0.0, 1.0))
    midline_x = k * float(local[3:, 0].mean())
    ratio = (nose[0] - midline_x) / half_eyes
    yaw = math.degrees(math.atan(ratio * _HALF_EYES / (_NOSE_DEPTH - k * _MOUTH_DEPTH)))

    scale = half_eyes / math.cos(math.radians(min(abs(yaw), _MAX_YAW_FOR_SCALE)))
    drop = float(nose[1]) / scale
    pitch = math.degrees(math.atan((_NOSE_DROP / _HALF_EYES - drop) * _HALF_EYES / _NOSE_DEPTH))
    return float(yaw), float(pitch), float(roll)


def _pose_grid() -> np.ndarray:
    """The 5 points of :data:`FACE_MODEL_3D` seen under every yaw (-90..90) and pitch (-60..60) in steps of
    5 degrees, orthographic, centred, as complex numbers ``x + iy``: shape (poses, 5)."""
    yaws = np.radians(np.arange(-90.0, 90.1, 5.0))
    pitches = np.radians(np.arange(-60.0, 60.1, 5.0))
    shapes = []
    for y in yaws:
        ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        for p in pitches:
            rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
            pts = FACE_MODEL_3D @ (rx @ ry).T
            shapes.append(pts[:, 0] + 1j * pts[:, 1])
    grid = np.array(shapes)
    return grid - grid.mean(axis=1, keepdims=True)


_POSE_GRID = _pose_grid()
_POSE_GRID_NORM = np.sum(np.abs(_POSE_GRID) ** 2, axis=1)
_POSE_RE, _POSE_IM = np.ascontiguousarray(_POSE_GRID.real), np.ascontiguousarray(_POSE_GRID.imag)


def kps_shape_error(kps: np.ndarray) -> float:
    """How far 5 keypoints are from any human head pose: the smallest RMS distance, over the poses of
    :func:`_pose_grid`, between the points and the 3-D face model seen in that pose and fitted by scale,
    in-plane rotation and shift (least squares), as a fraction of the model's eye distance.

    A human face in any pose up to profile, any roll, smiling or not, stays under ~0.1 (see
    ``FACE_MAX_SHAPE_ERROR`` in config.py); points that no head pose explains (an animal's muzzle, where
    the "mouth corners" sit beside the nose, or eyes far apart above a long snout) score higher."""
    pts = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    x, y = pts[:, 0] - pts[:, 0].mean(), pts[:, 1] - pts[:, 1].mean()
    energy = float(x @ x + y @ y)
    if not math.isfinite(energy) or energy < 1e-9:
        return float("inf")
    # Per pose, the least-squares similarity a = <P, z> / |P|^2 (z = x + iy) leaves
    # |z - aP|^2 = |z|^2 - |<P, z>|^2 / |P|^2; in model units (divided by |a|^2), per point, relative to
    # the model's eye distance. Real arithmetic: <P, z> = (Re.x + Im.y) + i (Re.y - Im.x).
    dots = (_POSE_RE @ x + _POSE_IM @ y) ** 2 + (_POSE_RE @ y - _POSE_IM @ x) ** 2
    with np.errstate(divide="ignore"):
        model_units = (energy * _POSE_GRID_NORM**2 / dots - _POSE_GRID_NORM) / 5.0
    err = math.sqrt(max(float(np.min(model_units)), 0.0)) / (2.0 * _HALF_EYES)
    return float(err)


def align_face(img: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """The face of ``img`` (HxWxC, any channel order) warped onto ArcFace's 112x112 template by the
    least-squares similarity of its five keypoints (Umeyama's closed form, what insightface's norm_crop
    estimates), at ``size`` px. Unlike norm_crop it needs no BGR copy of the whole picture."""
    src = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    dst = _TEMPLATE * (size / 112.0)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / len(src)
    u, sv, vt = np.linalg.svd(cov)
    d = np.array([1.0, -1.0 if np.linalg.det(cov) < 0 else 1.0])
    rot = u @ np.diag(d) @ vt
    var = float((sc**2).sum()) / len(src)
    scale = float((sv * d).sum()) / var if var > 1e-12 else 1.0
    matrix = np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]]).astype(np.float32)
    return cv2.warpAffine(np.ascontiguousarray(img), matrix, (size, size), borderValue=0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (normalised or not); 0 if either is all zeros."""
    a = np.asarray(a, dtype=np.float32).ravel()
    b = np.asarray(b, dtype=np.float32).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def _normalise(vec: np.ndarray) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def _session_options():
    """ONNX Runtime options: ``HEADSHOT_ONNX_THREADS`` threads per inference (0 or unset: ONNX Runtime's
    default, one per physical core), and no busy-waiting of those threads between operators. On the
    2-core test machine with one other busy process, spinning doubled detection time (140 vs 65 ms per
    selfie): the spinning thread fights the other process for the second core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    threads = config.env_int("HEADSHOT_ONNX_THREADS", 0)
    if threads > 0:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def onnx_providers() -> list[str]:
    """CUDA first when ONNX Runtime has it and the device is not forced elsewhere, CPU always."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    wanted = config.device_override()
    if "CUDAExecutionProvider" in available and wanted in (None, "cuda"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# --------------------------------------------------------------------------------------
# The analyzer
# --------------------------------------------------------------------------------------


def det_size_for(width: int, height: int, long_side: int = DET_SIZE[0]) -> tuple[int, int]:
    """A detector input ``(w, h)`` for a photo: ``long_side`` on its long side, the short side rounded up
    for the photo's aspect to a multiple of 32 (the detector's largest stride; 64 from 640 px up) and at
    least half the long side."""
    step = 64 if long_side >= 640 else 32
    ratio = min(width, height) / max(width, height, 1)
    short = min(long_side, max(long_side // 2 // step * step, math.ceil(long_side * ratio / step) * step))
    return (long_side, short) if width >= height else (short, long_side)


@dataclass
class _Detection:
    bbox: np.ndarray
    score: float
    kps: np.ndarray


def _analysis_bgr(img: Image.Image) -> tuple[np.ndarray, float]:
    """The detector's working copy: BGR, at most ``config.ANALYSIS_MAX_SIDE`` on the long side, shrunk
    by area averaging (a box filter: alias-free, and several times faster than the Lanczos resize used
    for pictures people look at; converting only the small copy to an array saves the rest). Returns
    ``(bgr, scale)`` with scale = new / original."""
    width, height = img.size
    long_side = max(width, height, 1)
    if long_side > config.ANALYSIS_MAX_SIDE:
        shrink = config.ANALYSIS_MAX_SIDE / long_side
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        img = img.resize(size, Image.Resampling.BOX)
    # cv2's channel swap: the same pixels as imaging.to_bgr, 1 ms instead of 6 on a 1024 px photo (numpy's
    # reversed-stride copy is slow); imaging stays free of OpenCV (the web layer imports it).
    rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), max(img.size) / long_side


def _short_side(det: _Detection) -> float:
    return float(min(det.bbox[2] - det.bbox[0], det.bbox[3] - det.bbox[1]))


class FaceAnalyzer:
    """Detection + recognition over one insightface model pack.

    ``FaceAnalyzer(folder)`` loads the pack in ``folder`` (see :func:`find_onnx_dir`); most code uses
    :func:`get_analyzer` instead, which resolves the folder from the configuration and caches it.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        pack_id: str | None = None,
        providers: list[str] | None = None,
        thresholds: PackThresholds | None = None,
    ) -> None:
        from insightface.app import FaceAnalysis

        onnx_dir = find_onnx_dir(Path(folder)).resolve()
        self.folder = onnx_dir
        self.pack_id = pack_id or pack_id_for(onnx_dir)
        self.providers = providers or onnx_providers()
        on_gpu = self.providers[0] == "CUDAExecutionProvider"
        # insightface 2.x takes a pack folder path as ``name`` (and 0.7's os.path.join(root, "models",
        # name) also returns an absolute ``name`` unchanged), so any folder loads in place: no copies, no
        # symlinks, and no lookup of a same-named folder in the working directory.
        try:
            app = FaceAnalysis(
                name=str(onnx_dir),
                allowed_modules=["detection", "recognition"],
                providers=self.providers,
                sess_options=_session_options(),
            )
        except AssertionError:
            raise errors.FaceModelsUnavailable(
                f"The face model folder {onnx_dir} has no face detector model. {OFFLINE_HINT}"
            ) from None
        except Exception as exc:  # a damaged or foreign .onnx file
            raise errors.FaceModelsUnavailable(
                f"The face models in {onnx_dir} could not be loaded ({type(exc).__name__}: {exc}). "
                f"{OFFLINE_HINT}"
            ) from exc
        if "recognition" not in app.models:
            raise errors.FaceModelsUnavailable(
                f"The face model folder {onnx_dir} has no face recognition model. {OFFLINE_HINT}"
            )
        thr = thresholds or PACK_THRESHOLDS.get(self.pack_id, DEFAULT_THRESHOLDS)
        app.prepare(ctx_id=0 if on_gpu else -1, det_thresh=thr.det_score, det_size=DET_SIZE)
        self._app = app
        self._det = app.det_model
        self._rec = app.models["recognition"]
        self.thresholds = thr
        self.same_person_threshold = thr.same_person
        self.duplicate_threshold = thr.duplicate
        self.det_threshold = thr.det_score
        out_shape = getattr(self._rec, "output_shape", None)
        self.embedding_size = int(out_shape[-1]) if out_shape and isinstance(out_shape[-1], int) else 0
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # see ORIENT_WORKERS
        self._probe = None  # the recogniser's session for region_probe (made on first use)
        if not self.embedding_size:
            self.embedding_size = int(self._embed(np.zeros((112, 112, 3), np.uint8), _TEMPLATE).shape[0])

    def __repr__(self) -> str:
        return (
            f"FaceAnalyzer(pack_id={self.pack_id!r}, folder={str(self.folder)!r}, providers={self.providers})"
        )

    # -- low level ---------------------------------------------------------------------

    def _detect_bgr(self, bgr: np.ndarray, size: tuple[int, int]) -> list[_Detection]:
        with self._lock:
            bboxes, kpss = self._det.detect(bgr, input_size=size, max_num=0, det_thresh=self.det_threshold)
        found = []
        for i in range(bboxes.shape[0]):
            if kpss is None:  # a detector without keypoints cannot align faces for recognition
                continue
            found.append(
                _Detection(bboxes[i, :4].astype(np.float32), float(bboxes[i, 4]), kpss[i].astype(np.float32))
            )
        return found

    def _best_score(self, bgr: np.ndarray, size: tuple[int, int]) -> float:
        with self._lock:
            return self._best_score_unlocked(bgr, size)

    def _best_score_unlocked(self, bgr: np.ndarray, size: tuple[int, int]) -> float:
        bboxes, _ = self._det.detect(bgr, input_size=size, max_num=0, det_thresh=0.05)
        return float(bboxes[:, 4].max()) if bboxes.shape[0] else 0.0

    def _upside_down(self, bgr: np.ndarray, det: _Detection) -> bool:
        """Whether a detected face is upside down. SCRFD finds most upside-down faces (score 0.5-0.75)
        but places the keypoints as if they were upright, so the pose cannot tell. Instead the region
        around the face is scored as it is and turned by 180 degrees: an upright face scores clearly
        higher as it is, an upside-down one about as high or higher turned (ORIENTATION_MARGIN)."""
        as_is, turned = self._orientation_scores(bgr, det)
        return turned - as_is > ORIENTATION_MARGIN

    def _orientation_scores(self, bgr: np.ndarray, det: _Detection) -> tuple[float, float]:
        """Best detection scores of the square around ``det`` (2x its box, at ORIENTATION_SIZE px) as it
        is and turned by 180 degrees."""
        with self._lock:
            return self._measure_unlocked(bgr, det, embed=False, orient=True)[2:]

    def _measure(
        self, bgr: np.ndarray, det: _Detection, *, orient: bool
    ) -> tuple[np.ndarray | None, float, float, float]:
        """``(embedding, raw norm, as-is score, turned score)`` of a detected face (scores 0 when
        ``orient`` is false): :meth:`_embed_raw` and :meth:`_orientation_scores` in one go."""
        with self._lock:
            return self._measure_unlocked(bgr, det, embed=True, orient=orient)

    def _measure_unlocked(
        self, bgr: np.ndarray, det: _Detection, *, embed: bool, orient: bool
    ) -> tuple[np.ndarray | None, float, float, float]:
        """The work of :meth:`_measure`, with ``self._lock`` held by the caller. The three model runs
        (the embedding, the region as it is, the region turned) do not depend on each other, so with the
        orientation check they run side by side on ORIENT_WORKERS threads (ONNX Runtime's ``run`` is
        thread-safe, and releases the GIL): same inputs, same sessions, the same numbers as one after the
        other (see ORIENT_WORKERS for the time it saves)."""
        if not orient:
            return (*self._embed_raw_unlocked(bgr, det.kps), 0.0, 0.0) if embed else (None, 0.0, 0.0, 0.0)
        x0, y0, x1, y1 = (float(v) for v in det.bbox)
        side = ORIENTATION_CROP_SCALE * max(x1 - x0, y1 - y0, 1.0)
        out = ORIENTATION_SIZE
        s = out / side
        matrix = np.array(
            [[s, 0.0, out / 2 - s * (x0 + x1) / 2], [0.0, s, out / 2 - s * (y0 + y1) / 2]], dtype=np.float32
        )
        crop = cv2.warpAffine(bgr, matrix, (out, out), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
        flipped = np.ascontiguousarray(crop[::-1, ::-1])
        futures = [self._workers().submit(self._best_score_unlocked, flipped, (out, out))]
        if embed:
            futures.append(self._workers().submit(self._embed_raw_unlocked, bgr, det.kps))
        try:
            as_is = self._best_score_unlocked(crop, (out, out))
        finally:
            concurrent.futures.wait(futures)  # nothing of this face runs on after the lock is released
        turned = futures[0].result()
        embedding, norm = futures[1].result() if embed else (None, 0.0)
        return embedding, norm, as_is, turned

    def _workers(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=ORIENT_WORKERS, thread_name_prefix="face-analysis"
            )
        return self._pool

    def _embed(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        return self._embed_raw(bgr, kps)[0]

    def _embed_raw(self, bgr: np.ndarray, kps: np.ndarray) -> tuple[np.ndarray, float]:
        """The L2-normalised embedding of the aligned face and the recogniser's raw output norm."""
        with self._lock:
            return self._embed_raw_unlocked(bgr, kps)

    def _embed_raw_unlocked(self, bgr: np.ndarray, kps: np.ndarray) -> tuple[np.ndarray, float]:
        from insightface.utils import face_align

        crop = face_align.norm_crop(
            bgr, landmark=np.asarray(kps, dtype=np.float32), image_size=self._rec.input_size[0]
        )
        feat = np.asarray(self._rec.get_feat(crop), dtype=np.float32).ravel()
        return _normalise(feat), float(np.linalg.norm(feat))

    def region_probe(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the occlusion checks, how much the eyes and the mouth carry of the face's identity: the
        embeddings of the aligned face ``crop`` (112x112 BGR, :func:`align_face`) with the eye band blurred
        and with the nose-mouth region blurred (one batch of two); the caller compares them with the
        face's own embedding. Where an eye is seen, blurring it changes the embedding a lot (cosine
        ~0.3-0.7); where sunglasses or a hand already hide it, little (0.6-0.95); the same for the mouth
        under a mask. It needs no lock (see :meth:`_probe_session`), so it can run beside detection."""
        eyes, mouth = self._blurred_embeddings(crop, (PROBE_EYES, PROBE_MOUTH))
        return eyes, mouth

    def eye_probe(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`region_probe` for each eye alone: the embeddings of ``crop`` with the left eye's half of
        the eye band blurred, and with the right eye's (as seen in the image). A hand or a phone over one
        eye leaves that eye's blur nearly without effect and the other's with its full one."""
        left, right = self._blurred_embeddings(crop, PROBE_EACH_EYE)
        return left, right

    def _blurred_embeddings(self, crop: np.ndarray, regions) -> list[np.ndarray]:
        """L2-normalised embeddings of ``crop`` with each region of ``regions`` (x0, y0, x1, y1) blurred
        (``PROBE_BLUR_SIGMA``), one batch on the probe session."""
        blurred = cv2.GaussianBlur(crop, (0, 0), PROBE_BLUR_SIGMA)
        batch = []
        for x0, y0, x1, y1 in regions:
            probe = crop.copy()
            probe[y0:y1, x0:x1] = blurred[y0:y1, x0:x1]
            batch.append(probe)
        rec = self._rec
        blob = cv2.dnn.blobFromImages(
            batch, 1.0 / rec.input_std, (112, 112), (rec.input_mean,) * 3, swapRB=True
        )
        feats = np.asarray(self._probe_session().run(None, {rec.input_name: blob})[0], dtype=np.float32)
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-6)
        return list(feats)

    def _probe_session(self):
        """The recogniser again, in a session of its own with one thread (ONNX Runtime sessions are
        thread-safe; the analyzer's lock guards the detector's Python state): the probe runs beside the
        main embedding (two threads) on a 2-core machine without the two fighting over the cores."""
        if self._probe is None:
            import onnxruntime

            options = _session_options()
            options.intra_op_num_threads = 1
            self._probe = onnxruntime.InferenceSession(
                self._rec.model_file, sess_options=options, providers=self.providers
            )
        return self._probe

    def is_human(self, face: Face) -> bool:
        """The plausibility gate: whether a detection is a human face, from what the models measure
        (thresholds in config.py's "plausibility gate" block and :class:`PackThresholds`):

        * the five keypoints fit a human head in some pose (``shape_error``, :func:`kps_shape_error`);
        * the recogniser's raw output norm is in the human range (``embedding_norm``, per pack);
        * the detector is sure (score at least ``FACE_SURE_SCORE``), or it still finds the face when the
          region around it is re-framed at a standard size (``frame_score``): a borderline detection on
          fur, bark or a painted face does not survive that second look, a human face does.

        Measures that were not taken (0) are not held against the face."""
        if face.shape_error > config.FACE_MAX_SHAPE_ERROR:
            return False
        floor = self.thresholds.min_embedding_norm
        if floor and face.embedding_norm and face.embedding_norm < floor:
            return False
        if face.score >= config.FACE_SURE_SCORE:
            return True
        return not face.frame_score or face.frame_score >= config.FACE_MIN_FRAME_SCORE

    # -- public ------------------------------------------------------------------------

    def detect(
        self,
        img: Image.Image,
        *,
        embed: int | None = None,
        on_largest: Callable[[Face], object] | None = None,
    ) -> list[Face]:
        """Faces in ``img``, largest box first (``[]`` if none), in ``img``'s pixel coordinates.

        ``embed``: how many of the largest faces get an embedding (None: all; the rest get ``None``).
        ``on_largest``: called with the largest detection (no embedding yet, before the plausibility gate)
        as soon as it is known, so a caller can measure it while the embedding runs.
        Big photos are analysed downscaled to ``config.ANALYSIS_MAX_SIDE``, in up to three passes (a
        quick one at 320 px that settles most selfies, the full one at 640 px for small faces, and one
        inside a black border for faces that fill the whole frame; see ``QUICK_DET_SIDE``)."""
        bgr, scale = _analysis_bgr(img)
        if min(bgr.shape[:2]) * MAX_ASPECT < max(bgr.shape[:2]):
            # A sliver (a banner, a 1-pixel line): pad the short side at the bottom/right, which leaves
            # coordinates unchanged, so the detector's resize never rounds a side down to zero.
            side = max(bgr.shape[:2]) // MAX_ASPECT + 1
            bgr = np.pad(
                bgr,
                ((0, max(0, side - bgr.shape[0])), (0, max(0, side - bgr.shape[1])), (0, 0)),
                mode="constant",
            )
        height, width = bgr.shape[:2]
        pad = 0
        quick_size = det_size_for(width, height, QUICK_DET_SIDE)
        found = self._detect_bgr(bgr, quick_size)
        quick_scale = max(quick_size) / max(width, height)
        if not found or max(_short_side(d) for d in found) * quick_scale < QUICK_MIN_FACE:
            found = self._detect_bgr(bgr, det_size_for(width, height)) or found
        min_size = RETRY_MIN_FACE_FRACTION * min(width, height)
        if not found or max(_short_side(d) for d in found) >= TIGHT_CROP_FRACTION * min(width, height):
            # Nothing found, or a face that fills the frame (its box and keypoints are more accurate when
            # the face is seen whole, inside a border).
            pad = max(1, round(max(width, height) * RETRY_BORDER))
            padded = np.zeros((height + 2 * pad, width + 2 * pad, 3), dtype=np.uint8)
            padded[pad : pad + height, pad : pad + width] = bgr
            framed = [d for d in self._detect_bgr(padded, RETRY_DET_SIZE) if _short_side(d) >= min_size]
            if framed:
                found, bgr = framed, padded
            else:
                pad = 0
        found.sort(key=lambda d: -float((d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1])))
        faces = []
        embedded = checked = 0
        for det in found:
            wanted = embed is None or embedded < embed
            yaw, pitch, roll = pose_from_kps(det.kps)
            face = Face(det.bbox, det.score, det.kps, None, yaw, pitch, roll)
            if on_largest is not None and det is found[0]:
                on_largest(face.scaled(1.0 / scale, offset=(pad, pad)))
            if wanted:
                # The plausibility gate (is_human) runs on every face that gets an embedding: a face
                # that fails it is left out, and the next one takes its place.
                orient = checked < ORIENTATION_CHECKS and det.score < config.FACE_SURE_SCORE
                face.embedding, face.embedding_norm, as_is, turned = self._measure(bgr, det, orient=orient)
                face.shape_error = kps_shape_error(det.kps)
                if orient:
                    checked += 1
                    face.frame_score = max(as_is, turned)  # an upside-down face is still a face
                    if turned - as_is > ORIENTATION_MARGIN:
                        face.roll = _wrap_degrees(roll + 180.0)
                if not self.is_human(face):
                    continue
                embedded += 1
            faces.append(face.scaled(1.0 / scale, offset=(pad, pad)))
        return faces

    def embed_largest(self, img: Image.Image) -> Face | None:
        """The largest face of ``img`` with its embedding, or None when there is no face."""
        faces = self.detect(img, embed=1)
        return faces[0] if faces else None

    def same_person(self, a: np.ndarray, b: np.ndarray) -> bool:
        return cosine(a, b) >= self.same_person_threshold


_ANALYZERS: dict[str, FaceAnalyzer] = {}
_ANALYZERS_LOCK = threading.Lock()


def get_analyzer() -> FaceAnalyzer:
    """The process-wide analyzer for the configured pack (``HEADSHOT_FACE_MODELS``, else antelopev2),
    created on first use; thread-safe. Raises :class:`errors.FaceModelsUnavailable`."""
    local = config.face_models_dir()
    key = str(local) if local is not None else "antelopev2"
    analyzer = _ANALYZERS.get(key)
    if analyzer is not None:
        return analyzer
    with _ANALYZERS_LOCK:
        analyzer = _ANALYZERS.get(key)
        if analyzer is None:
            pack_id, onnx_dir = resolve_pack()
            analyzer = FaceAnalyzer(onnx_dir, pack_id=pack_id)
            _ANALYZERS[key] = analyzer
            log.info("face analyzer ready: %r", analyzer)
        return analyzer


__all__ = [
    "DEFAULT_THRESHOLDS",
    "FACE_MODEL_3D",
    "PACK_THRESHOLDS",
    "Face",
    "FaceAnalyzer",
    "PackThresholds",
    "cosine",
    "get_analyzer",
    "pose_from_kps",
]
