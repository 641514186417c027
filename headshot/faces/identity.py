"""The face identity: built from accepted selfies, saved to and loaded from a safetensors identity file.

An :class:`Identity` holds what generation needs from the person's selfies: the mean face embedding (for
InstantID's face tokens), the five keypoints of the best reference selfie (for the IdentityNet control
image), a head-and-shoulders crop of that selfie (shown in the UI), and, for ``method="lora"``, the LoRA
weights trained by :mod:`headshot.lora`.

The identity file is safetensors only: it is parsed as data and never unpickled. Tensors:
``face_embedding`` (float32, D), ``face_keypoints`` (float32, 5x2, 0..1 within the crop),
``reference_crop`` (uint8, HxWx3) and the LoRA tensors under ``lora.`` (checked by
:func:`check_lora_state_dict`, the one LoRA check, also run before a render). Metadata (all strings): ``format``,
``format_version``, ``method``, ``face_pack``, ``embedding_size``, ``base_model``, ``selfie_count``,
``created`` and, with a LoRA, ``lora_config`` (JSON). :func:`load_identity` checks all of it and refuses
anything else with an :class:`errors.IdentityFileError` whose message starts "This identity file ...".
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from headshot import config, errors, imaging

if TYPE_CHECKING:  # imported for types only: validation pulls in the face models
    import torch

    from headshot.faces.analyzer import Face
    from headshot.faces.validation import AcceptedSelfie

FORMAT = "headshot-identity"
FORMAT_VERSION = 1
METHODS = ("instantid", "lora")
REFERENCE_SIZE = 512  # the reference crop is REFERENCE_SIZE x REFERENCE_SIZE
REFERENCE_FACE_FRACTION = 0.4  # face box short side / crop side (as in the generated headshots)
LORA_PREFIX = "lora."
LORA_DTYPES = ("float16", "bfloat16", "float32")

# Best reference selfie: weights of the three scores (each 0..1) and their scales.
REFERENCE_WEIGHTS = {"frontal": 0.45, "size": 0.30, "sharpness": 0.25}
FRONTAL_RANGE_DEG = config.MAX_YAW_DEG + config.MAX_PITCH_DEG  # |yaw|+|pitch| at which frontality is 0
FULL_SIZE_FACE_PX = REFERENCE_SIZE * REFERENCE_FACE_FRACTION  # a face this big fills the crop unscaled

_MAX_HEADER_BYTES = 16 * 1024 * 1024
_MIN_CROP, _MAX_CROP = 32, 2048
_NORM_TOLERANCE = 1e-3


@dataclass
class Identity:
    """A person's face identity (see the module docstring for what each part is for)."""

    embedding: np.ndarray  # (D,) float32, L2-normalised mean of the selfies' embeddings
    keypoints: np.ndarray  # (5, 2) float32, 0..1 within the reference crop
    reference: Image.Image  # square head-and-shoulders crop of the best selfie, REFERENCE_SIZE px
    method: str  # "instantid" or "lora"
    face_pack: str
    base_model: str
    selfie_count: int
    lora: dict[str, torch.Tensor] | None = None  # LoRA state dict (keys without the "lora." prefix)
    lora_config: dict[str, Any] | None = None
    created: str | None = None  # ISO 8601 UTC time, set when first saved

    @property
    def embedding_size(self) -> int:
        return int(np.asarray(self.embedding).shape[0])


# --------------------------------------------------------------------------------------
# Building an identity from accepted selfies
# --------------------------------------------------------------------------------------


def mean_embedding(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """The L2-normalised mean of the L2-normalised ``embeddings`` (float32)."""
    if not embeddings:
        raise ValueError("no embeddings to average")
    stack = np.stack([np.asarray(e, dtype=np.float64).reshape(-1) for e in embeddings])
    if not np.all(np.isfinite(stack)):
        raise ValueError("a face embedding has non-finite values")
    norms = np.linalg.norm(stack, axis=1, keepdims=True)
    if np.any(norms < 1e-8):
        raise ValueError("a face embedding is all zeros")
    mean = (stack / norms).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        raise ValueError("the face embeddings cancel out; they cannot be of one person")
    return (mean / norm).astype(np.float32)


def reference_scores(image: Image.Image, face: Face) -> dict[str, float]:
    """The three 0..1 scores of a selfie as a reference, and their weighted ``total``.

    ``size``: the face box's short side relative to :data:`FULL_SIZE_FACE_PX` (a face that fills the
    512 px crop without upscaling scores 1). ``frontal``: 1 - (|yaw| + |pitch|) / (max yaw + max pitch).
    ``sharpness``: :func:`imaging.sharpness` of the face box.
    """
    size = min(1.0, float(face.size) / FULL_SIZE_FACE_PX)
    turn = abs(float(face.yaw)) + abs(float(face.pitch))
    frontal = max(0.0, 1.0 - turn / FRONTAL_RANGE_DEG) if math.isfinite(turn) else 0.0
    sharp = float(imaging.sharpness(imaging.to_gray(image, tuple(np.asarray(face.bbox, dtype=float)[:4]))))
    scores = {"size": size, "frontal": frontal, "sharpness": sharp}
    scores["total"] = sum(REFERENCE_WEIGHTS[key] * scores[key] for key in REFERENCE_WEIGHTS)
    return scores


def best_reference(accepted: Sequence[AcceptedSelfie]) -> int:
    """Index of the best reference selfie: the highest :func:`reference_scores` total (first on ties)."""
    if not accepted:
        raise errors.NotEnoughSelfies("An identity needs at least one accepted selfie.")
    totals = [reference_scores(selfie.image, selfie.face)["total"] for selfie in accepted]
    return int(np.argmax(totals))


def reference_crop(image: Image.Image, face: Face) -> tuple[Image.Image, np.ndarray]:
    """The square head-and-shoulders crop (``REFERENCE_SIZE`` px) and the face keypoints in it (0..1)."""
    bbox = np.asarray(face.bbox, dtype=np.float64)[:4]
    x0, y0, x1, y1 = imaging.headshot_crop_box(
        bbox, image.size, aspect=1.0, face_fraction=REFERENCE_FACE_FRACTION
    )
    crop = imaging.crop_around_face(
        image, bbox, (REFERENCE_SIZE, REFERENCE_SIZE), face_fraction=REFERENCE_FACE_FRACTION
    )
    kps = np.asarray(face.kps, dtype=np.float64).reshape(5, 2)
    normalised = (kps - np.array([x0, y0])) / np.array([x1 - x0, y1 - y0])
    return crop.convert("RGB"), np.clip(normalised, 0.0, 1.0).astype(np.float32)


def build_identity(
    accepted: Sequence[AcceptedSelfie], *, face_pack: str, base_model: str, method: str = "instantid"
) -> Identity:
    """An identity from the accepted selfies (upload order): mean embedding and best reference."""
    if not accepted:
        raise errors.NotEnoughSelfies("An identity needs at least one accepted selfie with a clear face.")
    sizes = {np.asarray(s.face.embedding).reshape(-1).shape[0] for s in accepted}
    if len(sizes) != 1:
        raise ValueError(f"the selfies' embeddings have different sizes {sorted(sizes)}")
    if method not in METHODS:
        raise ValueError(f"unknown identity method {method!r}")
    best = accepted[best_reference(accepted)]
    crop, kps = reference_crop(best.image, best.face)
    return Identity(
        embedding=mean_embedding([s.face.embedding for s in accepted]),
        keypoints=kps,
        reference=crop,
        method=method,
        face_pack=str(face_pack),
        base_model=str(base_model),
        selfie_count=len(accepted),
    )


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def identity_to_bytes(identity: Identity) -> bytes:
    """The identity file's content (safetensors). Sets ``identity.created`` when it is not set yet."""
    import torch
    from safetensors.torch import save

    if identity.created is None:
        identity.created = _now_iso()
    embedding = np.ascontiguousarray(identity.embedding, dtype=np.float32).reshape(-1)
    keypoints = np.ascontiguousarray(identity.keypoints, dtype=np.float32)
    crop = np.ascontiguousarray(np.asarray(identity.reference.convert("RGB"), dtype=np.uint8))
    tensors: dict[str, torch.Tensor] = {
        "face_embedding": torch.from_numpy(embedding.copy()),
        "face_keypoints": torch.from_numpy(keypoints.copy()),
        "reference_crop": torch.from_numpy(crop.copy()),
    }
    for name, tensor in (identity.lora or {}).items():
        # clone: safetensors refuses tensors that share memory (tied or sliced weights)
        tensors[LORA_PREFIX + name] = tensor.detach().to("cpu").contiguous().clone()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "method": identity.method,
        "face_pack": identity.face_pack,
        "embedding_size": str(embedding.shape[0]),
        "base_model": identity.base_model,
        "selfie_count": str(int(identity.selfie_count)),
        "created": identity.created,
    }
    if identity.lora_config is not None:
        metadata["lora_config"] = json.dumps(identity.lora_config, sort_keys=True)
    arrays = {"face_embedding": embedding, "face_keypoints": keypoints, "reference_crop": crop}
    _check_content(metadata, arrays, tensors, face_pack=identity.face_pack, base_model=identity.base_model)
    data = save(tensors, metadata=metadata)
    if len(data) > config.MAX_IDENTITY_BYTES:
        raise errors.IdentityFileError(
            f"This identity file would be {_mb(len(data))}, over the {_mb(config.MAX_IDENTITY_BYTES)} upload "
            "limit, so it could not be uploaded again. Use a lower LoRA rank or half precision."
        )
    return data


def save_identity(identity: Identity, path: str | os.PathLike) -> Path:
    """Write the identity file to ``path`` (atomically) and return the path."""
    path = Path(path)
    data = identity_to_bytes(identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _refuse(problem: str, *, again: bool = True) -> errors.IdentityFileError:
    hint = " Create it again from your selfies." if again else ""
    return errors.IdentityFileError(f"This identity file {problem}{hint}")


def _read_bytes(source: str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]) -> bytes:
    limit = config.MAX_IDENTITY_BYTES
    try:
        data = imaging.read_limited(source, limit)
    except imaging.OverLimit:
        raise _refuse(f"is too large: the limit is {_mb(limit)}.", again=False) from None
    except (FileNotFoundError, IsADirectoryError):
        raise _refuse("was not found. Please upload it again.", again=False) from None
    except OSError as exc:
        raise _refuse(f"could not be opened ({exc.strerror or exc}).", again=False) from None
    if not data:
        raise _refuse("is empty (0 bytes).", again=False)
    return data


def _not_safetensors(data: bytes) -> errors.IdentityFileError:
    """The refusal for bytes that are not a safetensors file, naming what they look like."""
    head = data[:16]
    if head[:1] == b"\x80" or head.startswith(b"PK\x03\x04"):
        return _refuse(
            "is a Python pickle or PyTorch checkpoint, not a safetensors identity file. It was not opened, "
            "because such files can run code."
        )
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF")):
        return _refuse("is a picture, not an identity (.safetensors) file. Upload the identity file instead.")
    return _refuse("is not a safetensors identity file (or it is damaged or incomplete).")


def _parse_header(data: bytes) -> dict[str, Any]:
    """The safetensors JSON header, checked for plausibility before any tensor is read."""
    if len(data) < 10:
        raise _not_safetensors(data)
    (size,) = struct.unpack("<Q", data[:8])
    if size < 2 or size > _MAX_HEADER_BYTES or 8 + size > len(data) or data[8:9] != b"{":
        raise _not_safetensors(data)
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _not_safetensors(data) from None
    if not isinstance(header, dict):
        raise _not_safetensors(data)
    return header


def _int_field(metadata: dict[str, str], key: str, low: int, high: int) -> int:
    value = metadata.get(key)
    if value is None or not re.fullmatch(r"\d{1,9}", str(value)) or not low <= int(value) <= high:
        raise _refuse(f"has a missing or invalid '{key}' ({value!r}).")
    return int(value)


def _check_metadata(metadata: dict[str, str], *, face_pack: str, base_model: str) -> dict[str, Any]:
    """Checked metadata as Python values; the refusal messages a person will read."""
    if metadata.get("format") != FORMAT:
        raise _refuse("is a safetensors file but not a Headshot Studio identity (no identity metadata).")
    version = metadata.get("format_version", "")
    if not re.fullmatch(r"\d{1,6}", version):
        raise _refuse(f"has an unknown format version ({version!r}).")
    if int(version) > FORMAT_VERSION:
        raise _refuse(
            f"was made by a newer version of Headshot Studio (format {version}); this app reads format "
            f"{FORMAT_VERSION}. Update the app, or create the identity again here from your selfies.",
            again=False,
        )
    if int(version) != FORMAT_VERSION:
        raise _refuse(f"uses the old format {version}; this app reads format {FORMAT_VERSION}.")
    method = metadata.get("method")
    if method not in METHODS:
        raise _refuse(f"has an unknown method {method!r} (expected {' or '.join(METHODS)}).")
    pack = metadata.get("face_pack", "")
    if pack != face_pack:
        raise _refuse(f"was made with the face models {pack!r}; this app uses {face_pack!r}.")
    model = metadata.get("base_model", "")
    if method == "lora" and model != base_model:
        raise _refuse(f"holds a LoRA trained on the base model {model!r}; this app uses {base_model!r}.")
    lora_config = None
    if "lora_config" in metadata:
        try:
            lora_config = json.loads(metadata["lora_config"])
        except ValueError:
            lora_config = None
        if not isinstance(lora_config, dict):
            raise _refuse("has a damaged LoRA configuration (lora_config is not a JSON object).")
    return {
        "method": method,
        "face_pack": pack,
        "base_model": model,
        "embedding_size": _int_field(metadata, "embedding_size", 1, 65536),
        "selfie_count": _int_field(metadata, "selfie_count", 1, 100000),
        "created": metadata.get("created") or None,
        "lora_config": lora_config,
    }


# The one accepted LoRA format, checked when an identity file is read and again before a render
# (adapters.check_lora_for_unet, with the UNet's layer shapes): what lora.train_lora exports, diffusers'
# layout "unet.<module path>.lora_A.weight" / ".lora_B.weight" on the attention projections, alpha folded in.
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
_LORA_KEY = re.compile(r"^unet\.(?P<path>[A-Za-z0-9_.]+)\.(?P<kind>lora_A|lora_B)\.weight$")
_LORA_FORMAT = "the diffusers layout 'unet.<module>.lora_A.weight' / '.lora_B.weight' that this app trains"


def _refuse_lora(problem: str) -> errors.IdentityFileError:
    return errors.IdentityFileError(
        f"This identity file's LoRA {problem}. Create it again here from your selfies."
    )


def _foreign_lora_name(name: str) -> str | None:
    """Why a tensor name is not in the accepted format, naming the format it looks like; None if it is."""
    if name.startswith(("lora_unet_", "lora_te")) or ".lora_down." in name or ".lora_up." in name:
        return f"has a tensor in another format (kohya name {name!r})"
    if name.endswith(".alpha") or name == "alpha":
        return f"has a separate alpha tensor {name!r} (this app folds alpha into the weights)"
    if name.startswith(("text_encoder", "te_", "te1", "te2")):
        return f"has text-encoder weights ({name!r}); this app trains and uses UNet LoRAs only"
    if ".lora.down." in name or ".lora.up." in name:
        return f"has a tensor in another format (old diffusers name {name!r})"
    match = _LORA_KEY.match(name)
    if match is None:
        return f"has an unexpected tensor {name!r}"
    path = match["path"]
    if not (path.rsplit(".", 1)[-1] in LORA_TARGET_MODULES or path.endswith(".to_out.0")):
        targets = ", ".join(LORA_TARGET_MODULES)
        return f"has a tensor {name!r} that is not on an attention projection ({targets})"
    return None


def check_lora_state_dict(
    state_dict: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, int]] | None = None,
    *,
    rank: int | None = None,
    max_rank: int = config.MAX_LORA_RANK,
) -> dict[str, int]:
    """The one LoRA tensor check: when an identity file is read and (with ``shapes``) before a render.

    Accepted: :data:`_LORA_FORMAT`, float16/bfloat16/float32 matrices in complete A/B pairs of one rank
    (1..``max_rank``; ``rank`` when the file's config names one), finite values. Kohya names, separate
    ``alpha`` tensors, text-encoder weights and anything else are refused. ``shapes`` maps a UNet module
    path to its ``(in_features, out_features)`` (``adapters.lora_target_shapes``): each pair must name
    such a layer and fit it. Raises :class:`errors.IdentityFileError`; returns ``{"rank", "layers"}``.
    """
    import torch

    if not isinstance(state_dict, Mapping) or not state_dict:
        raise _refuse_lora("has no weights (the identity file says it holds a LoRA, but has no LoRA weights)")
    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in sorted(state_dict.items(), key=lambda item: str(item[0])):  # the first in order
        if not isinstance(name, str):
            raise _refuse_lora("has a tensor name that is not text")
        why = _foreign_lora_name(name)
        if why is not None:
            raise _refuse_lora(f"{why}; it must be in {_LORA_FORMAT}")
        if not torch.is_tensor(tensor) or str(tensor.dtype).removeprefix("torch.") not in LORA_DTYPES:
            kind = getattr(tensor, "dtype", type(tensor).__name__)
            raise _refuse_lora(f"has a tensor {name!r} of type {kind}; expected float16/32 or bfloat16")
        if tensor.ndim != 2:
            raise _refuse_lora(f"has a tensor {name!r} of shape {tuple(tensor.shape)}, not a matrix")
        match = _LORA_KEY.match(name)
        pairs.setdefault(match["path"], {})[match["kind"]] = (name, tensor)
    ranks = set()
    for path, pair in pairs.items():
        if len(pair) != 2:
            ((kind, (name, _)),) = pair.items()
            partner = name.replace(f".{kind}.", ".lora_B." if kind == "lora_A" else ".lora_A.")
            raise _refuse_lora(f"has a tensor {name!r} without its partner {partner!r}")
        (a_name, down), (b_name, up) = pair["lora_A"], pair["lora_B"]
        if down.shape[0] != up.shape[1]:
            raise _refuse_lora(
                f"has matrices of different ranks that do not fit together: {a_name!r} "
                f"{tuple(down.shape)} and {b_name!r} {tuple(up.shape)}"
            )
        if not 1 <= down.shape[0] <= max_rank:
            raise _refuse_lora(f"has rank {down.shape[0]} at {path!r}, outside 1-{max_rank}")
        if rank is not None and down.shape[0] != rank:
            raise _refuse_lora(f"has a tensor {a_name!r} of rank {down.shape[0]}, not the configured {rank}")
        if shapes is not None:
            shape = shapes.get(path)
            if shape is None:
                raise _refuse_lora(
                    f"has weights for a layer {path!r} that the base model does not have "
                    "(it was trained on another model)"
                )
            if down.shape[1] != shape[0] or up.shape[0] != shape[1]:
                raise _refuse_lora(
                    f"does not fit the base model at {path!r} (LoRA {tuple(up.shape)} x {tuple(down.shape)}, "
                    f"layer {shape[1]} x {shape[0]})"
                )
        for name, tensor in ((a_name, down), (b_name, up)):
            if not bool(torch.isfinite(tensor).all()):
                raise _refuse_lora(f"has a damaged tensor {name!r} (NaN or infinite values)")
        ranks.add(int(down.shape[0]))
    return {"rank": max(ranks), "layers": len(pairs)}


def _configured_rank(lora_config: dict[str, Any] | None) -> int | None:
    settings = lora_config or {}
    return next((settings[k] for k in ("r", "rank") if type(settings.get(k)) is int), None)


def _check_content(
    metadata: dict[str, str],
    arrays: dict[str, np.ndarray | None],  # the three face tensors as numpy (None: not representable)
    tensors: dict[str, torch.Tensor],
    *,
    face_pack: str,
    base_model: str,
    embedding_size: int | None = None,
) -> dict[str, Any]:
    """Check metadata and tensors together; returns the checked metadata values."""
    meta = _check_metadata(metadata, face_pack=face_pack, base_model=base_model)
    unexpected = [n for n in tensors if n not in ("face_embedding", "face_keypoints", "reference_crop")]
    unexpected = [n for n in unexpected if not n.startswith(LORA_PREFIX) or n == LORA_PREFIX]
    if unexpected:
        raise _refuse(f"has an unexpected tensor {unexpected[0]!r}.")
    for name in ("face_embedding", "face_keypoints", "reference_crop"):
        if name not in tensors:
            raise _refuse(f"has no {name!r} tensor.")

    embedding = arrays["face_embedding"]
    if embedding is None or embedding.dtype != np.float32 or embedding.ndim != 1:
        raise _refuse(
            f"has a face embedding of the wrong type or shape ({_describe(tensors['face_embedding'])})."
        )
    if embedding.shape[0] != meta["embedding_size"]:
        raise _refuse(
            f"is damaged: its face embedding has {embedding.shape[0]} values but its metadata says "
            f"{meta['embedding_size']}."
        )
    if embedding_size is not None and embedding.shape[0] != int(embedding_size):
        raise _refuse(
            f"has {embedding.shape[0]}-value face embeddings; the face models {face_pack!r} make "
            f"{int(embedding_size)}-value embeddings."
        )
    if not np.all(np.isfinite(embedding)):
        raise _refuse("has a damaged face embedding (NaN or infinite values).")
    if abs(float(np.linalg.norm(embedding.astype(np.float64))) - 1.0) > _NORM_TOLERANCE:
        raise _refuse("has a face embedding that is not normalised (it is not a face embedding).")

    keypoints = arrays["face_keypoints"]
    if keypoints is None or keypoints.dtype != np.float32 or keypoints.shape != (5, 2):
        raise _refuse(
            f"has face keypoints of the wrong type or shape ({_describe(tensors['face_keypoints'])}; "
            "expected float32 5x2)."
        )
    if not np.all(np.isfinite(keypoints)) or keypoints.min() < 0.0 or keypoints.max() > 1.0:
        raise _refuse("has face keypoints outside the reference picture.")

    crop = arrays["reference_crop"]
    if crop is None or crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise _refuse(
            f"has a reference picture of the wrong type or shape ({_describe(tensors['reference_crop'])}; "
            "expected uint8 HxWx3)."
        )
    if not (_MIN_CROP <= crop.shape[0] <= _MAX_CROP and _MIN_CROP <= crop.shape[1] <= _MAX_CROP):
        raise _refuse(
            f"has a reference picture of {crop.shape[1]}x{crop.shape[0]} px (expected about 512x512)."
        )

    lora = {n[len(LORA_PREFIX) :]: t for n, t in tensors.items() if n.startswith(LORA_PREFIX)}
    if meta["method"] == "lora":
        check_lora_state_dict(lora, rank=_configured_rank(meta["lora_config"]))
    elif lora:
        raise _refuse("is an InstantID identity but holds LoRA weights.")
    return meta


def _describe(tensor: Any) -> str:
    dtype = str(getattr(tensor, "dtype", "?")).replace("torch.", "")
    return f"{dtype} {'x'.join(str(d) for d in getattr(tensor, 'shape', ())) or 'scalar'}"


def load_identity(
    source: str | os.PathLike | bytes | bytearray | memoryview | IO[bytes],
    *,
    face_pack: str,
    base_model: str,
    embedding_size: int | None = None,
) -> Identity:
    """Read and check an identity file (path, bytes or binary file object) made for this app's models.

    ``face_pack`` and ``base_model`` are the ids this app runs with (``embedding_size``, when given, the
    pack's embedding size). Refusals raise :class:`errors.IdentityFileError` with a message for a person.
    The file is parsed by safetensors as data only; nothing is ever unpickled.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = _read_bytes(source)
    header = _parse_header(data)
    raw_meta = header.get("__metadata__") or {}
    if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
        raise _refuse("has damaged metadata.")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError) as exc:
        if "dtype" in str(exc).lower():
            raise _refuse(f"has a tensor of a type this app cannot read ({exc}).") from None
        raise _refuse(
            "is damaged or incomplete (the download or upload may have been cut off). Please upload the "
            "complete file again, or create the identity again from your selfies.",
            again=False,
        ) from None
    core = ("face_embedding", "face_keypoints", "reference_crop")
    arrays = {n: (t.numpy() if t.dtype != torch.bfloat16 else None) for n, t in tensors.items() if n in core}
    meta = _check_content(
        raw_meta, arrays, tensors, face_pack=face_pack, base_model=base_model, embedding_size=embedding_size
    )
    lora = {n[len(LORA_PREFIX) :]: t for n, t in tensors.items() if n.startswith(LORA_PREFIX)}
    crop = arrays["reference_crop"]
    assert crop is not None  # checked above
    return Identity(
        embedding=arrays["face_embedding"].copy(),  # type: ignore[union-attr]
        keypoints=arrays["face_keypoints"].copy(),  # type: ignore[union-attr]
        reference=Image.fromarray(np.ascontiguousarray(crop), "RGB"),
        method=meta["method"],
        face_pack=meta["face_pack"],
        base_model=meta["base_model"],
        selfie_count=meta["selfie_count"],
        lora=lora or None,
        lora_config=meta["lora_config"],
        created=meta["created"],
    )


# --------------------------------------------------------------------------------------
# For the UI
# --------------------------------------------------------------------------------------


def identity_summary(identity: Identity) -> dict[str, Any]:
    """A JSON-serialisable summary for the UI and ``/create_identity``."""
    return {
        "method": identity.method,
        "face_pack": identity.face_pack,
        "base_model": identity.base_model,
        "selfie_count": int(identity.selfie_count),
        "embedding_size": identity.embedding_size,
        "has_lora": bool(identity.lora),
        "lora_config": identity.lora_config,
        "created": identity.created,
    }


def reference_with_keypoints(identity: Identity) -> Image.Image:
    """The reference crop with InstantID's keypoint drawing (eyes, nose, mouth corners) laid over it."""
    base = identity.reference.convert("RGB")
    width, height = base.size
    kps = np.asarray(identity.keypoints, dtype=np.float64) * np.array([width, height])
    overlay = imaging.draw_kps(width, height, kps)
    mask = overlay.convert("L").point(lambda v: 255 if v > 0 else 0)
    return Image.composite(overlay, base, mask)
