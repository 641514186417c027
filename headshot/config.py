"""Profiles, pinned model ids and revisions, limits and ``HEADSHOT_*`` overrides.

Standard library only: every other module reads its settings from here.
Settings are read from the environment when asked for (functions), so tests and the
CLI can change the environment before use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------------------
# Profiles and paths
# --------------------------------------------------------------------------------------

PROFILES = ("full", "tiny")


def profile() -> str:
    """``full`` (real models from the Hub) or ``tiny`` (tiny random models built on disk)."""
    value = os.environ.get("HEADSHOT_PROFILE", "full").strip().lower() or "full"
    if value not in PROFILES:
        raise ValueError(f"HEADSHOT_PROFILE must be one of {PROFILES}, not {value!r}")
    return value


def cache_dir() -> Path:
    """Where downloaded face packs and built tiny models live."""
    value = os.environ.get("HEADSHOT_CACHE_DIR")
    path = Path(value).expanduser() if value else Path.home() / ".cache" / "headshot"
    return path


def face_models_dir() -> Path | None:
    """A local insightface model-pack folder (detector + recognizer ONNX), or None to download."""
    value = os.environ.get("HEADSHOT_FACE_MODELS", "").strip()
    return Path(value).expanduser().resolve() if value else None


def device_override() -> str | None:
    """``cuda``, ``mps`` or ``cpu`` from ``HEADSHOT_DEVICE``; None picks the best available."""
    value = os.environ.get("HEADSHOT_DEVICE", "").strip().lower()
    return value or None


def on_zerogpu() -> bool:
    """True inside a Hugging Face ZeroGPU Space."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


# --------------------------------------------------------------------------------------
# Real models (full profile): every Hub id with a pinned revision
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    revision: str
    subfolder: str | None = None
    filename: str | None = None


# A photoreal SDXL checkpoint in diffusers layout.
SDXL_BASE = HubModel("SG161222/RealVisXL_V5.0", revision="main")
# The fp16-safe SDXL VAE (the stock one overflows in fp16).
SDXL_VAE_FP16 = HubModel("madebyollin/sdxl-vae-fp16-fix", revision="main")
# InstantID: the IdentityNet ControlNet and the face adapter (image projection + to_k_ip/to_v_ip).
INSTANTID_CONTROLNET = HubModel("InstantX/InstantID", revision="main", subfolder="ControlNetModel")
INSTANTID_ADAPTER = HubModel("InstantX/InstantID", revision="main", filename="ip-adapter.bin")
# Few-step LoRA for the fast mode (LCM-LoRA for SDXL, with LCMScheduler).
FAST_LORA = HubModel(
    "latent-consistency/lcm-lora-sdxl",
    revision="main",
    filename="pytorch_lora_weights.safetensors",
)
# antelopev2, the pack InstantID was trained on (512-d ArcFace embeddings).
ANTELOPEV2 = HubModel("DIAMONIKA/insightface_models", revision="main", filename="antelopev2.zip")
ANTELOPEV2_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip"

# --------------------------------------------------------------------------------------
# Limits (intake, validation, generation)
# --------------------------------------------------------------------------------------

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # a single selfie or identity file
MAX_IMAGE_PIXELS = 50_000_000  # decoded pixel count; bigger is refused before decoding
MIN_SELFIES = 1
MAX_SELFIES = 12
INSTANTID_MIN_ACCEPTED = 1
LORA_MIN_ACCEPTED = 3
MIN_SHORT_SIDE = 512  # low_resolution below this
ANALYSIS_MAX_SIDE = 1024  # images are downscaled to this before face analysis

# Face quality (see validation.py for how each is measured)
MIN_FACE_SHORT_SIDE_PX = 96  # face box short side in the original image
MIN_FACE_FRACTION = 0.08  # face box short side / image short side
SECOND_FACE_RATIO = 0.45  # a second face this big (relative box side) makes multiple_faces
BLUR_ERROR = 0.15  # sharpness score (0..1) below this is blurry
BLUR_WARNING = 0.25
DARK_ERROR = 0.18  # mean face luminance (0..1)
DARK_WARNING = 0.28
BRIGHT_ERROR = 0.92
BRIGHT_WARNING = 0.85
MAX_YAW_DEG = 35.0
MAX_PITCH_DEG = 30.0
MAX_ROLL_DEG = 35.0

# Generation
MAX_PROMPT_CHARS = 400
MAX_IMAGES_PER_REQUEST = 8
MAX_PACK_IMAGES = 24
MAX_STEPS = 60
OUTPUT_SIZES = {  # aspect name -> (width, height) in the full profile
    "square": (1024, 1024),
    "4:5": (896, 1120),
    "3:4": (864, 1152),
}
TINY_OUTPUT_SIZES = {"square": (64, 64), "4:5": (64, 80), "3:4": (48, 64)}
LINKEDIN_SIZE = 400

# Serving
QUEUE_CONCURRENCY_PER_GPU = 1
QUEUE_MAX_SIZE = 32
DELETE_CACHE = (600, 1800)  # Gradio's delete_cache: every 10 min, files older than 30 min


def output_sizes() -> dict[str, tuple[int, int]]:
    return TINY_OUTPUT_SIZES if profile() == "tiny" else OUTPUT_SIZES


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default
