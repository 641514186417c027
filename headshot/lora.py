"""Quick LoRA: a DreamBooth-style identity adapter trained with peft on the user's own selfies.

The recipe (diffusers' own peft integration, nothing hand-rolled where the libraries have it):

1. Data: a face-centred head-and-shoulders crop of every accepted selfie at the training resolution,
   in a few zooms (small scale jitter) and mirrored (horizontal flips). Each variant goes through the
   VAE **once**; its latent mean and standard deviation are cached and a latent is sampled from them
   at every step, so the VAE never runs inside the loop.
2. Captions: one instance prompt, a rare token plus the class word (``"a photo of ohwx person"``).
   Its SDXL text embeddings (both encoders, penultimate hidden states + pooled) are computed once;
   the text encoders stay frozen and leave the loop (``train_text_encoder`` trains LoRAs on them too,
   and then encodes the caption at every step).
3. Model: ``unet.add_adapter(LoraConfig(...))`` on the attention projections ``to_q``, ``to_k``,
   ``to_v``, ``to_out.0``; the base weights are frozen; the LoRA parameters train in fp32 under
   bf16/fp16 autocast on CUDA (with gradient checkpointing where memory is short), in fp32 on CPU.
4. Objective: noise-prediction MSE against the target of the scheduler's ``prediction_type``
   (epsilon, v-prediction or sample) with the repository's DDPM noise schedule; AdamW, constant
   learning rate, gradient clipping.
5. Output: ``get_peft_model_state_dict`` keys with the component prefix (``"unet.…lora_A.weight"``),
   the diffusers SDXL LoRA format that ``pipe.load_lora_weights(state_dict, adapter_name=...)`` and
   ``StableDiffusionXLPipeline.save_lora_weights`` accept. The LoRA scaling ``alpha / rank`` is folded
   into ``lora_B``, so a loader that assumes ``alpha == rank`` (diffusers does for in-memory state dicts)
   reproduces the trained adapter exactly.

Time budget and resume: training stops at its step count or its time budget, whichever comes
first, and returns a :class:`LoraState` (adapter weights, optimizer moments, random-generator state,
loss history) that serialises to safetensors bytes (no pickle). A later call with ``resume=state``
continues exactly: on CPU, 10 steps in one call equal 5 steps plus 5 resumed steps, bit for bit.
That is how training fits ZeroGPU calls: each call a bounded chunk, the state carried between calls.

Determinism: every random draw of the loop (variant, flip, latent sample, noise, timestep) comes
from one seeded CPU ``torch.Generator``, and the adapter initialisation runs under
``torch.random.fork_rng`` seeded from the settings. No global random state (Python, NumPy or torch)
is read or changed, so concurrent code cannot perturb a run, nor a run perturb it.

Sharing the pipeline's UNet: training adds a named adapter to the UNet it is given (the pipeline's
own, so no second multi-gigabyte copy sits on the GPU) and takes it away afterwards, also when
training fails: with no other adapter loaded the peft layers are removed entirely (``unload_lora``
semantics), otherwise only the training adapter is deleted and the previously active adapters are
re-activated. Parameter ``requires_grad`` flags, train/eval mode, gradient checkpointing and an
InstantID IP-adapter (suspended during training: its attention processors and face projection would
otherwise demand face embeddings) are all restored. The caller must not render with the same UNet
while training runs (the app serialises GPU work: one job per GPU).

Defaults and the 90 s target (the default setup on an H100; not yet measured on one, see below):
400 steps at 1024 px, batch 1, rank 16, learning rate 1e-4, bf16 autocast. The arithmetic: an SDXL
UNet forward at 1024 px is 6.76 TFLOP, which an H100 runs in about 0.045-0.05 s at batch 1 (its SDXL
inference speed). A LoRA step needs the forward plus a backward for activation gradients only (the
base weights are frozen), about 2x a forward, 0.10-0.13 s with the optimizer and the 560 small LoRA
layers; gradient checkpointing adds a re-forward, ~3x, 0.15-0.2 s. Caching the latents of 4-6
selfies (x2 zooms x2 flips) costs 1-3 s. So 400 steps take about 45-55 s without checkpointing and
60-80 s with it, both under 90 s. ``gradient_checkpointing=None`` therefore decides by memory: off
where the GPU has room for the activations (estimated ``ACTIVATION_GIB_1024`` GiB at 1024 px, scaling
with the pixel count, plus a margin; an H100 next to the loaded pipeline has), on where it has not,
always on for explicit ``True``. ``benchmarks/lora_bench.py --full-size`` measures seconds per step at
768 and 1024 px with and without checkpointing, the peak memory and the projected default setup; the
time budget bounds each call whatever the machine, and the run resumes. A rank-16 adapter on SDXL's
attention projections has 23.2 M parameters: 46 MB in float16 (the default ``save_dtype``), 93 MB
in float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from . import config
from .errors import IdentityFileError, InvalidRequest, NotEnoughSelfies

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

UNET_TARGET_MODULES: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_TARGET_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "unet": UNET_TARGET_MODULES,
    "text_encoder": TEXT_ENCODER_TARGET_MODULES,
    "text_encoder_2": TEXT_ENCODER_TARGET_MODULES,
}
COMPONENTS: tuple[str, ...] = ("unet", "text_encoder", "text_encoder_2")
STATE_DICT_FORMAT = "diffusers-sdxl-lora"  # "unet.<module>.lora_A.weight" / ".lora_B.weight"
STATE_FORMAT = "headshot-lora-state/1"
TRAINING_ADAPTER = "headshot_lora_training"
MAX_RANK = 128
MAX_TRAIN_STEPS = 5000
ADAPTER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Activation memory of one SDXL LoRA step at 1024 px, batch 1, bf16, without gradient checkpointing
# (an estimate from published SDXL LoRA training runs: ~24-30 GB total with fp16 weights); calibrate
# with the peak memory that benchmarks/lora_bench.py --full-size prints.
ACTIVATION_GIB_1024 = 24.0
MEMORY_MARGIN_GIB = 6.0
# The tiny profile's defaults (random tiny models, CPU): a few steps, a stronger learning rate.
TINY_PROFILE_SETTINGS: dict[str, Any] = {
    "steps": 8,
    "rank": 4,
    "alpha": 4.0,
    "learning_rate": 1e-3,
    "zooms": (1.0,),
}
FINAL_LOSS_WINDOW = 20  # final_loss: mean loss over the last steps (one step's loss depends on its timestep)
_KEY_PATTERN = re.compile(r"^(unet|text_encoder|text_encoder_2)\.(.+)\.(lora_A|lora_B)\.weight$")
_SAVE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

ProgressFn = Callable[[int, int, float], None]


# --------------------------------------------------------------------------------------
# Settings, state and result
# --------------------------------------------------------------------------------------


@dataclass
class LoraSettings:
    """How to train. Every field has a default suited to the full profile on a GPU.

    ``resolution=None`` trains at the UNet's native size (``sample_size`` times the VAE factor:
    1024 px for SDXL, the tiny size on the tiny profile). ``time_budget_s`` bounds the wall time of
    one call (preparation included); ``None`` means no bound. ``mixed_precision`` is ``"bf16"``,
    ``"fp16"`` or ``"no"``; ``None`` picks bf16 on CUDA (fp16 where bf16 is unsupported) and fp32
    elsewhere. ``gradient_checkpointing=None`` turns it on for CUDA when the GPU's free memory cannot
    hold the activations without it (see :func:`auto_gradient_checkpointing`), never on CPU.
    """

    rank: int = 16
    alpha: float = 16.0
    learning_rate: float = 1e-4
    steps: int = 400
    resolution: int | None = None
    seed: int = 0
    token: str = "ohwx"
    class_word: str = "person"
    caption_template: str = "a photo of {token} {class_word}"
    train_text_encoder: bool = False
    time_budget_s: float | None = None
    batch_size: int = 1
    zooms: tuple[float, ...] = (1.0, 1.12)  # scale jitter: 1.0 = the plain crop, >1 zooms in on the face
    flip: bool = True
    face_fraction: float = 0.4  # face box side / crop side, for selfies given with a face box
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    mixed_precision: str | None = None
    gradient_checkpointing: bool | None = None
    save_dtype: str = "float16"

    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides: Any) -> LoraSettings:
        """The defaults for a profile (``config.profile()`` when None), then ``overrides``.

        ``full``: the recipe above. ``tiny``: a few quick steps on the tiny random models, so the
        LoRA path of the app and its tests runs on a CPU in about a second.
        """
        values: dict[str, Any] = (
            dict(TINY_PROFILE_SETTINGS) if (profile or config.profile()) == "tiny" else {}
        )
        values.update(overrides)
        return cls(**values)

    @property
    def caption(self) -> str:
        """The instance prompt every training image is paired with."""
        return self.caption_template.format(token=self.token, class_word=self.class_word)

    @property
    def subject(self) -> str:
        """The words standing for the person in a generation prompt (``"ohwx person"``)."""
        return f"{self.token} {self.class_word}"

    def check(self) -> None:
        """Raise :class:`InvalidRequest` with a readable message for an out-of-range setting."""
        problems = []
        if not (1 <= int(self.rank) <= MAX_RANK):
            problems.append(f"rank must be between 1 and {MAX_RANK}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            problems.append("alpha must be a positive number")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 1e-2):
            problems.append("learning rate must be above 0 and at most 0.01")
        if not (1 <= int(self.steps) <= MAX_TRAIN_STEPS):
            problems.append(f"steps must be between 1 and {MAX_TRAIN_STEPS}")
        if not (1 <= int(self.batch_size) <= 16):
            problems.append("batch size must be between 1 and 16")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            problems.append("the time budget must be positive")
        if not self.zooms or any(not (1.0 <= z <= 2.0) for z in self.zooms):
            problems.append("zooms must be between 1.0 and 2.0")
        if not (0.1 <= self.face_fraction <= 0.9):
            problems.append("face fraction must be between 0.1 and 0.9")
        if not re.fullmatch(r"[A-Za-z0-9]{2,32}", self.token or ""):
            problems.append("the token must be 2-32 letters or digits")
        if not re.fullmatch(r"[A-Za-z][A-Za-z -]{0,31}", self.class_word or ""):
            problems.append("the class word must be up to 32 letters")
        if "{token}" not in self.caption_template:
            problems.append("the caption template must contain {token}")
        if self.mixed_precision not in (None, "bf16", "fp16", "no"):
            problems.append("mixed precision must be 'bf16', 'fp16' or 'no'")
        if self.save_dtype not in _SAVE_DTYPES:
            problems.append(f"save dtype must be one of {', '.join(_SAVE_DTYPES)}")
        if self.resolution is not None and not (32 <= int(self.resolution) <= 2048):
            problems.append("resolution must be between 32 and 2048 pixels")
        if problems:
            raise InvalidRequest("LoRA settings: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["zooms"] = list(self.zooms)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "zooms" in values:
            values["zooms"] = tuple(values["zooms"])
        return cls(**values)

    def resume_key(self) -> dict:
        """The settings a resumed run must share with the run that saved the state.

        Step count, time budget and gradient checkpointing may change between calls (more steps,
        another chunk size, another memory trade-off); anything that changes the numbers may not.
        """
        data = self.to_dict()
        for name in ("steps", "time_budget_s", "gradient_checkpointing"):
            data.pop(name)
        return data


@dataclass
class LoraState:
    """Everything needed to continue a run exactly: serialisable with :meth:`to_bytes` (safetensors)."""

    step: int
    settings: dict  # LoraSettings.to_dict() of the run
    fingerprint: str  # hash of the training crops, resolution and base model
    adapter: dict[str, torch.Tensor]  # fp32 CPU LoRA weights, export keys, alpha NOT folded
    optimizer: dict[str, torch.Tensor]  # "<export key>.<exp_avg|exp_avg_sq|step>"
    rng: torch.Tensor  # the CPU torch.Generator state (uint8)
    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training wall time over all calls
    scaler: dict | None = None  # torch.amp.GradScaler state for fp16 runs

    def to_bytes(self) -> bytes:
        """Safetensors bytes: the tensors plus a JSON header (no pickle anywhere)."""
        from safetensors.torch import save

        tensors = {f"adapter.{k}": v.contiguous() for k, v in self.adapter.items()}
        tensors.update({f"optimizer.{k}": v.contiguous() for k, v in self.optimizer.items()})
        tensors["rng"] = self.rng.contiguous()
        header = {
            "step": self.step,
            "settings": self.settings,
            "fingerprint": self.fingerprint,
            "loss_history": self.loss_history,
            "seconds": self.seconds,
            "scaler": self.scaler,
        }
        return save(tensors, metadata={"format": STATE_FORMAT, "state": json.dumps(header)})

    @classmethod
    def from_bytes(cls, data: bytes) -> LoraState:
        """Read :meth:`to_bytes` output; raises :class:`InvalidRequest` for anything else."""
        from safetensors.torch import load

        try:
            data = bytes(data)
            metadata = _safetensors_metadata(data)
            if metadata.get("format") != STATE_FORMAT:
                raise ValueError(f"format {metadata.get('format')!r}")
            header = json.loads(metadata["state"])
            tensors = load(data)
            return cls(
                step=int(header["step"]),
                settings=dict(header["settings"]),
                fingerprint=str(header["fingerprint"]),
                adapter={k[len("adapter.") :]: v for k, v in tensors.items() if k.startswith("adapter.")},
                optimizer={
                    k[len("optimizer.") :]: v for k, v in tensors.items() if k.startswith("optimizer.")
                },
                rng=tensors["rng"],
                loss_history=[float(x) for x in header["loss_history"]],
                seconds=float(header["seconds"]),
                scaler=header.get("scaler"),
            )
        except Exception as exc:  # any decoding problem is the same user-facing error
            raise InvalidRequest(f"The saved LoRA training state cannot be read ({exc}).") from exc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path) -> LoraState:
        return cls.from_bytes(Path(path).read_bytes())


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of safetensors bytes, read from the JSON header (no tensor decoded)."""
    size = int.from_bytes(data[:8], "little")
    if not 0 < size <= len(data) - 8:
        raise ValueError("not a safetensors file")
    header = json.loads(data[8 : 8 + size].decode("utf-8"))
    return dict(header.get("__metadata__") or {})


@dataclass
class LoraResult:
    """What one training call returns."""

    state_dict: dict[str, torch.Tensor]  # diffusers SDXL LoRA format, CPU, alpha folded into lora_B
    config: dict  # JSON-serialisable: rank, alpha, target modules, base model, token, steps, ...
    steps_run: int  # total steps trained so far (over all resumed calls)
    steps_this_call: int
    final_loss: float  # mean loss of the last FINAL_LOSS_WINDOW steps (NaN before any step)
    loss_history: list[float]
    seconds: float  # wall time of this call
    done: bool  # True when the step count is reached; False when the time budget stopped it
    state: LoraState


# --------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------


@dataclass
class LoraComponents:
    """The SDXL parts training needs. Pass the pipeline's own (:meth:`from_pipeline`) to share them."""

    unet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    noise_scheduler: Any  # a DDPMScheduler
    base_model: str = ""

    @classmethod
    def from_pretrained(
        cls,
        repo: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        base_model: str | None = None,
    ) -> LoraComponents:
        """Load every part from an SDXL repository in diffusers layout (a Hub id or a local folder).

        ``dtype`` defaults to bf16 (fp16 without bf16 support) for the UNet and text encoders on
        CUDA and fp32 on CPU; the VAE always loads in fp32 (it only encodes a few crops).
        """
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        dev = torch.device(device) if device is not None else default_device()
        if dtype is None:
            dtype = _cuda_half_dtype() if dev.type == "cuda" else torch.float32
        kwargs: dict[str, Any] = {"revision": revision} if revision else {}
        try:
            unet = UNet2DConditionModel.from_pretrained(repo, subfolder="unet", torch_dtype=dtype, **kwargs)
            vae = AutoencoderKL.from_pretrained(repo, subfolder="vae", torch_dtype=torch.float32, **kwargs)
            text_encoder = CLIPTextModel.from_pretrained(
                repo, subfolder="text_encoder", torch_dtype=dtype, **kwargs
            )
            text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
                repo, subfolder="text_encoder_2", torch_dtype=dtype, **kwargs
            )
            tokenizer = CLIPTokenizer.from_pretrained(repo, subfolder="tokenizer", **kwargs)
            tokenizer_2 = CLIPTokenizer.from_pretrained(repo, subfolder="tokenizer_2", **kwargs)
            scheduler = DDPMScheduler.from_pretrained(repo, subfolder="scheduler", **kwargs)
        except OSError as exc:
            from .errors import ModelsUnavailable

            raise ModelsUnavailable(f"The base model for LoRA training could not be loaded: {exc}") from exc
        for module in (unet, vae, text_encoder, text_encoder_2):
            module.to(dev).eval().requires_grad_(False)
        return cls(
            unet=unet,
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            noise_scheduler=scheduler,
            base_model=base_model or str(repo),
        )

    @classmethod
    def from_pipeline(cls, pipe: Any, *, base_model: str | None = None) -> LoraComponents:
        """Share a loaded SDXL pipeline's modules; the DDPM schedule comes from its scheduler config."""
        from diffusers import DDPMScheduler

        return cls(
            unet=pipe.unet,
            vae=pipe.vae,
            text_encoder=pipe.text_encoder,
            text_encoder_2=pipe.text_encoder_2,
            tokenizer=pipe.tokenizer,
            tokenizer_2=pipe.tokenizer_2,
            noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
            base_model=base_model or str(getattr(pipe, "name_or_path", "") or ""),
        )


def default_device() -> torch.device:
    """``HEADSHOT_DEVICE`` if set, else CUDA when available, else CPU."""
    override = config.device_override()
    if override:
        return torch.device(override)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cuda_half_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def vae_scale_factor(vae: Any) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def default_resolution(unet: Any, vae: Any) -> int:
    """The UNet's native image size: 1024 px for SDXL, the tiny size for the tiny models."""
    return int(unet.config.sample_size) * vae_scale_factor(vae)


def _check_resolution(resolution: int, components: LoraComponents) -> None:
    multiple = vae_scale_factor(components.vae) * 2 ** (len(components.unet.config.block_out_channels) - 1)
    if resolution % multiple:
        raise InvalidRequest(f"The LoRA training resolution must be a multiple of {multiple} pixels.")


# --------------------------------------------------------------------------------------
# Data: face-centred crops, zooms and flips
# --------------------------------------------------------------------------------------


def _as_pairs(images: Sequence[Any], bboxes: Sequence[Any] | None) -> list[tuple[Image.Image, Any]]:
    """Normalise the inputs to (image, face box or None) pairs.

    Items may be PIL images (already face-centred crops, or selfies when ``bboxes`` gives their face
    boxes), ``(image, bbox)`` tuples, or objects with ``.image`` and ``.face.bbox`` (accepted selfies).
    """
    if bboxes is not None and len(bboxes) != len(images):
        raise InvalidRequest("Give one face box per selfie (or none at all).")
    pairs: list[tuple[Image.Image, Any]] = []
    for i, item in enumerate(images):
        if isinstance(item, Image.Image):
            image, bbox = item, None
        elif isinstance(item, tuple) and len(item) == 2:
            image, bbox = item
        elif hasattr(item, "image") and hasattr(item, "face"):
            image, bbox = item.image, item.face.bbox
        else:
            raise InvalidRequest(f"Training image {i + 1} is not an image.")
        if bboxes is not None:
            bbox = bboxes[i]
        if not isinstance(image, Image.Image):
            raise InvalidRequest(f"Training image {i + 1} is not an image.")
        pairs.append((image.convert("RGB"), None if bbox is None else np.asarray(bbox, dtype=np.float32)))
    return pairs


def _centre_crop(image: Image.Image, resolution: int, zoom: float) -> Image.Image:
    width, height = image.size
    side = min(width, height) / zoom
    x0, y0 = (width - side) / 2.0, (height - side) / 2.0
    box = tuple(int(round(v)) for v in (x0, y0, x0 + side, y0 + side))
    return image.crop(box).resize((resolution, resolution), Image.Resampling.LANCZOS)


def prepare_training_images(
    images: Sequence[Any],
    resolution: int,
    *,
    bboxes: Sequence[Any] | None = None,
    zooms: Sequence[float] = (1.0,),
    face_fraction: float = 0.4,
) -> list[Image.Image]:
    """Square crops at ``resolution``, one per (image, zoom), in input order (flips are added later).

    With a face box the crop is a head-and-shoulders frame around the face (``imaging.crop_around_face``,
    the face taking ``face_fraction * zoom`` of the side); without one the image is taken as an
    already face-centred crop and cut to a centred square, ``zoom`` times closer.
    """
    pairs = _as_pairs(images, bboxes)
    if not pairs:
        raise NotEnoughSelfies("LoRA training needs at least one accepted selfie.")
    crops = []
    for image, bbox in pairs:
        for zoom in zooms:
            if bbox is None:
                crops.append(_centre_crop(image, resolution, zoom))
            else:
                from . import imaging

                crop = imaging.crop_around_face(
                    image, bbox, (resolution, resolution), min(0.95, face_fraction * zoom)
                )
                crops.append(crop.convert("RGB"))
    return crops


def _fingerprint(crops: Sequence[Image.Image], resolution: int, base_model: str) -> str:
    digest = hashlib.sha256(f"{resolution}|{base_model}|{len(crops)}".encode())
    for crop in crops:
        digest.update(crop.tobytes())
    return digest.hexdigest()


def _to_pixels(crops: Sequence[Image.Image]) -> torch.Tensor:
    array = np.stack([np.asarray(c, dtype=np.float32) for c in crops]) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


@contextlib.contextmanager
def _vae_for_encoding(vae: Any) -> Iterator[torch.dtype]:
    """Upcast a float16 VAE that asks for it (SDXL's stock VAE overflows in fp16), then put it back."""
    original = vae.dtype
    upcast = original == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        yield vae.dtype
    finally:
        if upcast:
            vae.to(original)


@torch.no_grad()
def encode_latent_stats(
    vae: Any, crops: Sequence[Image.Image], *, flip: bool, device: torch.device, batch: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled latent mean and std of every crop (and of its mirror image when ``flip``): fp32 tensors.

    Returned in the order crop0, crop0-mirrored, crop1, ... A training latent is ``mean + std * noise``:
    the VAE runs once per variant, never inside the training loop.
    """
    variants: list[Image.Image] = []
    for crop in crops:
        variants.append(crop)
        if flip:
            variants.append(ImageOps.mirror(crop))
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    means, stds = [], []
    with _vae_for_encoding(vae) as dtype:
        for start in range(0, len(variants), batch):
            pixels = _to_pixels(variants[start : start + batch]).to(device=device, dtype=dtype)
            dist = vae.encode(pixels).latent_dist
            means.append((dist.mean.float() - shift) * scale)
            stds.append(dist.std.float() * scale)
    return torch.cat(means), torch.cat(stds)


def encode_caption(
    components: LoraComponents, caption: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL text conditioning: both encoders' penultimate hidden states side by side, and the pooled
    projection of the second encoder. Runs with gradients when the text encoders carry trainable LoRAs."""
    hidden = []
    pooled = None
    for tokenizer, encoder in (
        (components.tokenizer, components.text_encoder),
        (components.tokenizer_2, components.text_encoder_2),
    ):
        ids = tokenizer(
            caption,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        out = encoder(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0]  # CLIPTextModelWithProjection: text_embeds (the last encoder's counts)
    return torch.cat(hidden, dim=-1), pooled


# --------------------------------------------------------------------------------------
# Adapters on shared modules: add for training, remove afterwards
# --------------------------------------------------------------------------------------


def _peft_layers(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """(module path, layer) of every peft-wrapped layer."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def _has_adapters(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "_hf_peft_config_loaded", False)) and bool(getattr(model, "peft_config", None))


_MISSING = object()


@contextlib.contextmanager
def attached_adapter(
    model: torch.nn.Module, lora_config: Any | None, adapter_name: str, *, seed: int = 0, state_dict=None
) -> Iterator[torch.nn.Module]:
    """Give ``model`` a LoRA adapter named ``adapter_name`` for the duration of the block.

    Either a fresh one (``lora_config``: ``model.add_adapter``, initialised under a seeded
    ``fork_rng``) or one loaded from a diffusers UNet ``state_dict`` (``load_lora_adapter``, keys
    without the ``unet.`` prefix). On exit the model is as it was: the peft layers are removed when
    the model had no adapter before, else only this adapter is deleted and the previous active
    adapters, their enabled flag and every ``requires_grad`` flag come back.
    """
    prior = _has_adapters(model)
    prior_active = list(model.active_adapters()) if prior else []
    prior_wrapped = {name: layer.disable_adapters for name, layer in _peft_layers(model)}
    grad_flags = {name: p.requires_grad for name, p in model.named_parameters()}
    loaded_flag = model.__dict__.get("_hf_peft_config_loaded", _MISSING)
    if prior and adapter_name in model.peft_config:
        raise RuntimeError(f"adapter {adapter_name!r} is already loaded")
    devices = [model.device] if getattr(model, "device", torch.device("cpu")).type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*peft_config.*multiple adapters", category=UserWarning
            )
            torch.manual_seed(seed)
            if state_dict is None:
                model.add_adapter(lora_config, adapter_name=adapter_name)
            else:
                model.load_lora_adapter(state_dict, prefix=None, adapter_name=adapter_name)
                model.set_adapter(adapter_name)
        for _, layer in _peft_layers(model):
            layer.enable_adapters(True)  # a pipeline may have disabled its LoRAs (pipe.disable_lora())
        yield model
    finally:
        if prior:
            from diffusers.utils.peft_utils import delete_adapter_layers

            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*was active which is now deleted", category=UserWarning
                )
                delete_adapter_layers(model, adapter_name)
            if hasattr(model, "peft_config"):
                model.peft_config.pop(adapter_name, None)
            for name, layer in _peft_layers(model):
                if name in prior_wrapped:
                    layer.set_adapter(prior_active)
                    layer.enable_adapters(not prior_wrapped[name])
                else:  # wrapped only for this adapter: put the plain layer back
                    parent, _, leaf = name.rpartition(".")
                    setattr(model.get_submodule(parent), leaf, layer.get_base_layer())
        else:
            from diffusers.utils.peft_utils import recurse_remove_peft_layers

            recurse_remove_peft_layers(model)
            if "peft_config" in model.__dict__:
                del model.peft_config
            if loaded_flag is _MISSING:
                model.__dict__.pop("_hf_peft_config_loaded", None)
            else:
                model._hf_peft_config_loaded = loaded_flag
        for name, param in model.named_parameters():
            if name in grad_flags:
                param.requires_grad_(grad_flags[name])


@contextlib.contextmanager
def _ip_adapter_suspended(unet: Any) -> Iterator[None]:
    """Train the plain text-conditioned UNet even when an IP-adapter (InstantID) is loaded into it.

    Its face projection would demand ``image_embeds`` and its attention processors would read face
    tokens off the end of the text; both are swapped out for the block and put back afterwards.
    """
    if getattr(unet, "encoder_hid_proj", None) is None or unet.config.encoder_hid_dim_type != "ip_image_proj":
        yield
        return
    from diffusers.models.attention_processor import (
        AttnProcessor2_0,
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
    )

    processors = dict(unet.attn_processors)  # includes the face projection's own attention layers
    plain = {
        name: AttnProcessor2_0()
        if isinstance(proc, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0))
        else proc
        for name, proc in processors.items()
    }
    projection = unet.encoder_hid_proj
    try:
        unet.set_attn_processor(plain)
        unet.encoder_hid_proj = None
        unet.config.encoder_hid_dim_type = None
        yield
    finally:
        unet.encoder_hid_proj = projection
        unet.config.encoder_hid_dim_type = "ip_image_proj"
        unet.set_attn_processor(processors)


@contextlib.contextmanager
def _restored_modes(models: Sequence[torch.nn.Module], unet: Any) -> Iterator[None]:
    """Put back each module's train/eval mode and the UNet's gradient checkpointing afterwards."""
    modes = [(m, m.training) for m in models]
    checkpointing = bool(getattr(unet, "is_gradient_checkpointing", False))
    try:
        yield
    finally:
        for module, mode in modes:
            module.train(mode)
        if bool(getattr(unet, "is_gradient_checkpointing", False)) != checkpointing:
            if checkpointing:
                unet.enable_gradient_checkpointing()
            else:
                unet.disable_gradient_checkpointing()


def _adapter_params(
    model: torch.nn.Module, prefix: str, adapter_name: str
) -> list[tuple[str, torch.nn.Parameter]]:
    """(export key, parameter) of one adapter, in module order: the optimizer's parameter order."""
    marker = f".{adapter_name}."
    out = []
    for name, param in model.named_parameters():
        if marker in name and ("lora_A" in name or "lora_B" in name):
            out.append((f"{prefix}.{name.replace(marker, '.')}", param))
    return out


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def _resolve_precision(settings: LoraSettings, device: torch.device) -> str:
    if settings.mixed_precision is not None:
        if device.type != "cuda" and settings.mixed_precision == "fp16":
            raise InvalidRequest("fp16 mixed precision needs a CUDA GPU.")
        return settings.mixed_precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def auto_gradient_checkpointing(device: torch.device, resolution: int, batch_size: int = 1) -> bool:
    """On CUDA, checkpoint unless the free GPU memory holds the activations of a full backward
    (``ACTIVATION_GIB_1024`` at 1024 px, scaled by pixel count and batch, plus ``MEMORY_MARGIN_GIB``)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    need = ACTIVATION_GIB_1024 * (resolution / 1024) ** 2 * batch_size + MEMORY_MARGIN_GIB
    return free / 2**30 < need


def _autocast(device: torch.device, precision: str):
    if precision == "no":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _export(
    trainable: Mapping[str, tuple[torch.nn.Module, str]], settings: LoraSettings
) -> dict[str, torch.Tensor]:
    """diffusers-format LoRA tensors on CPU, ``alpha / rank`` folded into ``lora_B``."""
    from peft import get_peft_model_state_dict

    scaling = float(settings.alpha) / float(settings.rank)
    dtype = _SAVE_DTYPES[settings.save_dtype]
    out: dict[str, torch.Tensor] = {}
    for prefix, (model, adapter_name) in trainable.items():
        for key, value in get_peft_model_state_dict(model, adapter_name=adapter_name).items():
            value = value.detach().float().cpu()
            if ".lora_B." in key:
                value = value * scaling
            out[f"{prefix}.{key}"] = value.to(dtype).contiguous()
    return out


def _check_resume(resume: LoraState, settings: LoraSettings, fingerprint: str) -> None:
    saved = LoraSettings.from_dict(resume.settings).resume_key()
    if saved != settings.resume_key():
        changed = sorted(k for k in saved if saved[k] != settings.resume_key().get(k))
        raise InvalidRequest(
            "The saved LoRA training state was made with other settings "
            f"({', '.join(changed)}); start a new training instead."
        )
    if resume.fingerprint != fingerprint:
        raise InvalidRequest(
            "The saved LoRA training state belongs to other selfies or another base model; "
            "start a new training instead."
        )


def train_lora(
    components: LoraComponents | Any | str | Path,
    images: Sequence[Any],
    settings: LoraSettings | None = None,
    *,
    bboxes: Sequence[Any] | None = None,
    resume: LoraState | None = None,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
    stop_after: int | None = None,
) -> LoraResult:
    """Train (or continue training) an identity LoRA on the selfies.

    Args:
        components: :class:`LoraComponents`, a loaded SDXL pipeline (its modules are shared and left
            unchanged afterwards), or a repository path/id to load from (``device`` applies then).
        images: face-centred crops, or selfies with ``bboxes`` (their face boxes), ``(image, bbox)``
            tuples or accepted selfies (``.image``, ``.face.bbox``).
        settings: :class:`LoraSettings` (defaults if ``None``).
        resume: the ``state`` of an earlier result with the same images and settings (``steps`` may
            grow): training continues exactly where it stopped.
        progress: ``progress(step, total_steps, loss)`` after every step.
        stop_after: run at most this many steps in this call (a deterministic chunk size).

    Returns a :class:`LoraResult`; ``done`` is False when the time budget or ``stop_after`` ended the
    call before ``settings.steps``. Each call runs at least one step when steps remain.
    """
    started = time.monotonic()
    settings = settings or LoraSettings()
    settings.check()
    if stop_after is not None and stop_after < 1:
        raise InvalidRequest("stop_after must be at least 1.")
    owned = isinstance(components, (str, Path))
    if owned:
        comps = LoraComponents.from_pretrained(components, device=device)
    elif isinstance(components, LoraComponents):
        comps = components
    else:
        comps = LoraComponents.from_pipeline(components)
    dev = comps.unet.device
    resolution = int(settings.resolution or default_resolution(comps.unet, comps.vae))
    _check_resolution(resolution, comps)

    # 1. Data: crops, their fingerprint, cached latent statistics.
    crops = prepare_training_images(
        images, resolution, bboxes=bboxes, zooms=settings.zooms, face_fraction=settings.face_fraction
    )
    fingerprint = _fingerprint(crops, resolution, comps.base_model)
    if resume is not None:
        _check_resume(resume, settings, fingerprint)
    latent_mean, latent_std = encode_latent_stats(comps.vae, crops, flip=settings.flip, device=dev)

    # 2. Text conditioning, once (unless the text encoders train too).
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32)
    time_ids = time_ids.to(dev).repeat(settings.batch_size, 1)
    fixed_text = None
    if not settings.train_text_encoder:
        with torch.no_grad():
            embeds, pooled = encode_caption(comps, settings.caption, dev)
        fixed_text = (embeds.float(), pooled.float())
        if owned:  # the text encoders leave the training loop (and memory) now
            comps.text_encoder = comps.text_encoder_2 = None
            comps.vae = None
            _free_cuda(dev)

    precision = _resolve_precision(settings, dev)
    checkpointing = settings.gradient_checkpointing
    if checkpointing is None:
        checkpointing = auto_gradient_checkpointing(dev, resolution, settings.batch_size)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(settings.seed))
    if resume is not None:
        generator.set_state(resume.rng.clone())

    from peft import LoraConfig

    def lora_config(targets: tuple[str, ...]) -> LoraConfig:
        return LoraConfig(
            r=int(settings.rank),
            lora_alpha=float(settings.alpha),
            init_lora_weights="gaussian",
            target_modules=list(targets),
            lora_dropout=0.0,
        )

    trainable_models = {"unet": comps.unet}
    if settings.train_text_encoder:
        trainable_models["text_encoder"] = comps.text_encoder
        trainable_models["text_encoder_2"] = comps.text_encoder_2

    with contextlib.ExitStack() as stack:
        # 3. Model: the training adapter on the shared modules, removed again on the way out.
        stack.enter_context(_restored_modes(list(trainable_models.values()), comps.unet))
        stack.enter_context(_ip_adapter_suspended(comps.unet))
        for offset, (prefix, model) in enumerate(trainable_models.items()):
            stack.enter_context(
                attached_adapter(
                    model, lora_config(TARGET_MODULES[prefix]), TRAINING_ADAPTER, seed=settings.seed + offset
                )
            )
        params: list[tuple[str, torch.nn.Parameter]] = []
        for prefix, model in trainable_models.items():
            model.requires_grad_(False)
            for key, param in _adapter_params(model, prefix, TRAINING_ADAPTER):
                param.data = param.data.float()
                param.requires_grad_(True)
                params.append((key, param))
        if resume is not None:
            _load_adapter_state(params, resume.adapter)
        comps.unet.train()
        if checkpointing:
            comps.unet.enable_gradient_checkpointing()

        optimizer = torch.optim.AdamW(
            [p for _, p in params],
            lr=settings.learning_rate,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=settings.weight_decay,
        )
        if resume is not None:
            _load_optimizer_state(optimizer, params, resume.optimizer)
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        if scaler is not None and resume is not None and resume.scaler:
            scaler.load_state_dict(resume.scaler)

        # 4. The loop: stop at the step count, the chunk size or the time budget.
        step = resume.step if resume is not None else 0
        history = list(resume.loss_history) if resume is not None else []
        ran = 0
        step_seconds: list[float] = []
        train_started = time.monotonic()
        while step < settings.steps:
            if stop_after is not None and ran >= stop_after:
                break
            if settings.time_budget_s is not None and ran > 0:
                expected = float(np.mean(step_seconds[-5:]))
                if time.monotonic() - started + expected > settings.time_budget_s:
                    break
            tick = time.monotonic()
            loss = _train_step(
                comps,
                settings,
                generator,
                latent_mean,
                latent_std,
                time_ids,
                fixed_text,
                precision,
                scaler,
                optimizer,
                [p for _, p in params],
                dev,
            )
            step += 1
            ran += 1
            history.append(loss)
            step_seconds.append(time.monotonic() - tick)
            if progress is not None:
                progress(step, settings.steps, loss)

        # 5. Snapshot before the adapter goes away.
        state = LoraState(
            step=step,
            settings=settings.to_dict(),
            fingerprint=fingerprint,
            adapter={k: p.detach().float().cpu().clone() for k, p in params},
            optimizer=_optimizer_tensors(optimizer, params),
            rng=generator.get_state().clone(),
            loss_history=history,
            seconds=(resume.seconds if resume is not None else 0.0) + (time.monotonic() - train_started),
            scaler=scaler.state_dict() if scaler is not None else None,
        )
        exported = _export({k: (m, TRAINING_ADAPTER) for k, m in trainable_models.items()}, settings)

    final = float(np.mean(history[-FINAL_LOSS_WINDOW:])) if history else float("nan")
    lora_config_dict = {
        "format": STATE_DICT_FORMAT,
        "rank": int(settings.rank),
        "r": int(settings.rank),  # peft's name for it (identity.py checks the tensors against it)
        "alpha": float(settings.alpha),
        "alpha_folded": True,
        "target_modules": {k: list(TARGET_MODULES[k]) for k in trainable_models},
        "base_model": comps.base_model,
        "token": settings.token,
        "class_word": settings.class_word,
        "instance_prompt": settings.caption,
        "steps": step,
        "planned_steps": int(settings.steps),
        "learning_rate": float(settings.learning_rate),
        "resolution": resolution,
        "seed": int(settings.seed),
        "train_text_encoder": bool(settings.train_text_encoder),
        "images": len(crops) // max(1, len(settings.zooms)),
        "final_loss": final if history else None,
        "prediction_type": comps.noise_scheduler.config.prediction_type,
        "mixed_precision": precision,
        "gradient_checkpointing": bool(checkpointing),
        "save_dtype": settings.save_dtype,
        "train_seconds": round(state.seconds, 3),
    }
    if owned:
        del comps
        _free_cuda(dev)
    return LoraResult(
        state_dict=exported,
        config=lora_config_dict,
        steps_run=step,
        steps_this_call=ran,
        final_loss=final,
        loss_history=history,
        seconds=time.monotonic() - started,
        done=step >= settings.steps,
        state=state,
    )


def _train_step(
    comps: LoraComponents,
    settings: LoraSettings,
    generator: torch.Generator,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    time_ids: torch.Tensor,
    fixed_text: tuple[torch.Tensor, torch.Tensor] | None,
    precision: str,
    scaler: Any,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    device: torch.device,
) -> float:
    """One optimisation step; every random draw comes from ``generator`` (CPU), in a fixed order."""
    batch = settings.batch_size
    scheduler = comps.noise_scheduler
    index = torch.randint(0, latent_mean.shape[0], (batch,), generator=generator)
    shape = (batch, *latent_mean.shape[1:])
    sample_noise = torch.randn(shape, generator=generator).to(device)
    noise = torch.randn(shape, generator=generator).to(device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    index = index.to(device)
    timesteps = timesteps.to(device)
    latents = latent_mean[index] + latent_std[index] * sample_noise
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    elif prediction_type == "sample":
        target = latents
    else:
        raise InvalidRequest(f"Unsupported scheduler prediction type {prediction_type!r}.")

    unet = comps.unet
    with _autocast(device, precision):
        if fixed_text is None:
            embeds, pooled = encode_caption(comps, settings.caption, device)
        else:
            embeds, pooled = fixed_text
        embeds = embeds.expand(batch, -1, -1).to(unet.dtype)
        pooled = pooled.expand(batch, -1).to(unet.dtype)
        prediction = unet(
            noisy.to(unet.dtype),
            timesteps,
            encoder_hidden_states=embeds,
            added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids.to(unet.dtype)},
            return_dict=False,
        )[0]
    loss = F.mse_loss(prediction.float(), target.float(), reduction="mean")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach().item())


def _load_adapter_state(
    params: list[tuple[str, torch.nn.Parameter]], saved: Mapping[str, torch.Tensor]
) -> None:
    keys = {k for k, _ in params}
    if keys != set(saved):
        raise InvalidRequest("The saved LoRA training state does not match this model's adapter layers.")
    with torch.no_grad():
        for key, param in params:
            if tuple(saved[key].shape) != tuple(param.shape):
                raise InvalidRequest(
                    "The saved LoRA training state does not match this model's adapter layers."
                )
            param.copy_(saved[key].to(param.device, param.dtype))


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer, params: list[tuple[str, torch.nn.Parameter]]
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, param in params:
        for name, value in optimizer.state.get(param, {}).items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"{key}.{name}"] = tensor.detach().cpu().clone()
    return out


def _load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    params: list[tuple[str, torch.nn.Parameter]],
    saved: Mapping[str, torch.Tensor],
) -> None:
    state_dict = optimizer.state_dict()
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for index, (key, _) in enumerate(params):
        entry = {
            name[len(key) + 1 :]: tensor.clone()
            for name, tensor in saved.items()
            if name.startswith(key + ".")
        }
        entry = {name: tensor for name, tensor in entry.items() if "." not in name}
        if entry:
            restored[index] = entry
    if saved and len(restored) != len(params):
        raise InvalidRequest("The saved LoRA training state does not match this model's adapter layers.")
    state_dict["state"] = restored
    optimizer.load_state_dict(state_dict)


def _free_cuda(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# Evaluation: the loss at fixed noise, with or without a LoRA
# --------------------------------------------------------------------------------------


@torch.no_grad()
def evaluation_loss(
    components: LoraComponents | Any,
    images: Sequence[Any],
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    bboxes: Sequence[Any] | None = None,
    resolution: int | None = None,
    caption: str = "a photo of ohwx person",
    samples: int = 8,
    seed: int = 1234,
) -> float:
    """Mean noise-prediction MSE on the selfies at fixed noise and evenly spread timesteps.

    With ``state_dict`` (the exported diffusers format) the UNet part of the LoRA is loaded into the
    UNet for the measurement and removed again, so the number measures what generation will see.
    The same ``seed`` gives the same noise, so values with and without a LoRA compare directly.
    """
    comps = components if isinstance(components, LoraComponents) else LoraComponents.from_pipeline(components)
    unet = comps.unet
    dev = unet.device
    resolution = int(resolution or default_resolution(unet, comps.vae))
    crops = prepare_training_images(images, resolution, bboxes=bboxes)
    latent_mean, _ = encode_latent_stats(comps.vae, crops, flip=False, device=dev)
    embeds, pooled = encode_caption(comps, caption, dev)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    scheduler = comps.noise_scheduler
    total = scheduler.config.num_train_timesteps
    timesteps = torch.linspace(total * 0.05, total * 0.95, samples).long()
    time_ids = torch.tensor(
        [[resolution, resolution, 0, 0, resolution, resolution]], dtype=unet.dtype, device=dev
    )
    unet_part = None
    if state_dict is not None:
        unet_part = {k[len("unet.") :]: v for k, v in state_dict.items() if k.startswith("unet.")}
    with contextlib.ExitStack() as stack:
        stack.enter_context(_ip_adapter_suspended(unet))
        if unet_part:
            stack.enter_context(attached_adapter(unet, None, "headshot_lora_eval", state_dict=unet_part))
        losses = []
        for i, t in enumerate(timesteps):
            latents = latent_mean[i % latent_mean.shape[0]].unsqueeze(0)
            noise = torch.randn(latents.shape, generator=generator).to(dev)
            tt = t.reshape(1).to(dev)
            noisy = scheduler.add_noise(latents, noise, tt)
            kind = scheduler.config.prediction_type
            target = (
                noise
                if kind == "epsilon"
                else scheduler.get_velocity(latents, noise, tt)
                if kind == "v_prediction"
                else latents
            )
            prediction = unet(
                noisy.to(unet.dtype),
                tt,
                encoder_hidden_states=embeds.to(unet.dtype),
                added_cond_kwargs={"text_embeds": pooled.to(unet.dtype), "time_ids": time_ids},
                return_dict=False,
            )[0]
            losses.append(F.mse_loss(prediction.float(), target.float()).item())
    return float(np.mean(losses))


# --------------------------------------------------------------------------------------
# Using the result: render requests, validation, files
# --------------------------------------------------------------------------------------


def lora_request(
    state_dict: Mapping[str, torch.Tensor],
    scale: float = 1.0,
    name: str = "identity",
    config: dict | None = None,
) -> dict:
    """The ``RenderRequest.lora`` dict: ``{"name", "state_dict", "scale", "config"}``.

    ``name`` becomes the peft adapter name (letters, digits, ``_`` and ``-``); ``scale`` is the LoRA
    strength, 0 (off) to 2.
    """
    if not ADAPTER_NAME_PATTERN.fullmatch(name or ""):
        raise InvalidRequest("A LoRA adapter name is 1-64 letters, digits, '_' or '-'.")
    scale = float(scale)
    if not (math.isfinite(scale) and 0.0 <= scale <= 2.0):
        raise InvalidRequest(f"LoRA strength must be between 0 and 2, not {scale}.")
    if not state_dict:
        raise InvalidRequest("The LoRA has no weights.")
    return {"name": name, "state_dict": dict(state_dict), "scale": scale, "config": dict(config or {})}


def _modules_for(model: Any) -> dict[str, Any]:
    """{"unet": module or config, "text_encoder": ..., ...} from a pipeline, components, UNet or config."""
    if isinstance(model, Mapping) and any(k in model for k in COMPONENTS):
        return {k: v for k, v in model.items() if k in COMPONENTS and v is not None}
    if hasattr(model, "unet"):
        return {k: getattr(model, k, None) for k in COMPONENTS if getattr(model, k, None) is not None}
    return {"unet": model}


def _linear_shapes(model: Any) -> Callable[[str], tuple[int, int] | None]:
    """Look up (in_features, out_features) of a Linear layer by module path; None if there is none."""
    if not isinstance(model, torch.nn.Module):
        from diffusers import UNet2DConditionModel

        with torch.device("meta"):
            model = UNet2DConditionModel.from_config(dict(model))

    def lookup(path: str) -> tuple[int, int] | None:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            return None
        module = getattr(module, "base_layer", module)
        if not isinstance(module, torch.nn.Linear):
            return None
        return module.in_features, module.out_features

    return lookup


def validate_lora_state_dict(state_dict: Mapping[str, Any], model: Any, *, max_rank: int = MAX_RANK) -> dict:
    """Refuse corrupt or foreign LoRA tensors before they get near the pipeline.

    ``model`` is the UNet, its config, an SDXL pipeline or :class:`LoraComponents` (needed to check
    text-encoder LoRAs). Keys may be ``lora_A/lora_B`` (peft) or ``lora.down/lora.up`` (diffusers).
    Checks: known components and attention projections that exist in the model as Linear layers,
    complete A/B pairs of one rank, shapes that match the layer, floating point, all values finite.
    Raises :class:`IdentityFileError`; returns ``{"rank", "layers", "components"}`` when all is well.
    """

    def refuse(why: str) -> IdentityFileError:
        return IdentityFileError(f"This identity file's LoRA weights cannot be used: {why}.")

    if not isinstance(state_dict, Mapping) or not state_dict:
        raise refuse("there are none")
    modules = _modules_for(model)
    lookups: dict[str, Callable[[str], tuple[int, int] | None]] = {}
    pairs: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for raw_key, value in state_dict.items():
        if not isinstance(raw_key, str):
            raise refuse("a tensor name is not text")
        key = raw_key.replace(".lora.down.weight", ".lora_A.weight").replace(
            ".lora.up.weight", ".lora_B.weight"
        )
        match = _KEY_PATTERN.match(key)
        if match is None:
            raise refuse(f"unexpected tensor {raw_key!r}")
        component, path, kind = match.groups()
        if not any(path == t or path.endswith("." + t) for t in TARGET_MODULES[component]):
            raise refuse(f"{raw_key!r} is not an attention projection this app trains")
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise refuse(f"{raw_key!r} is not a floating-point tensor")
        if value.ndim != 2:
            raise refuse(f"{raw_key!r} has shape {tuple(value.shape)}, not a matrix")
        pairs.setdefault((component, path), {})[kind] = value
    ranks = set()
    for (component, path), pair in pairs.items():
        name = f"{component}.{path}"
        if set(pair) != {"lora_A", "lora_B"}:
            raise refuse(f"{name} has only one of its two LoRA matrices")
        down, up = pair["lora_A"], pair["lora_B"]
        rank = down.shape[0]
        if up.shape[1] != rank:
            raise refuse(f"{name} has matrices of different ranks ({rank} and {up.shape[1]})")
        if not (1 <= rank <= max_rank):
            raise refuse(f"{name} has rank {rank}, outside 1-{max_rank}")
        if component not in modules:
            raise refuse(f"it has {component} weights, which cannot be checked here")
        if component not in lookups:
            lookups[component] = _linear_shapes(modules[component])
        shape = lookups[component](path)
        if shape is None:
            raise refuse(f"the base model has no layer {name} (it was trained on another model)")
        if down.shape[1] != shape[0] or up.shape[0] != shape[1]:
            raise refuse(
                f"{name} does not fit the base model (LoRA {tuple(up.shape)} x {tuple(down.shape)}, "
                f"layer {shape[1]} x {shape[0]})"
            )
        if not (torch.isfinite(down).all() and torch.isfinite(up).all()):
            raise refuse(f"{name} holds values that are not finite numbers")
        ranks.add(int(rank))
    return {
        "rank": max(ranks),
        "layers": len(pairs),
        "components": sorted({component for component, _ in pairs}),
    }


def save_lora_weights(state_dict: Mapping[str, torch.Tensor], directory: str | Path) -> Path:
    """Write the LoRA as ``pytorch_lora_weights.safetensors`` in the SDXL LoRA layout (for other tools);
    ``pipe.load_lora_weights(directory)`` reads it back."""
    from diffusers import StableDiffusionXLPipeline

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    parts: dict[str, dict[str, torch.Tensor]] = {c: {} for c in COMPONENTS}
    for key, value in state_dict.items():
        component, _, rest = key.partition(".")
        if component not in parts:
            raise InvalidRequest(f"Unexpected LoRA tensor {key!r}.")
        parts[component][rest] = value
    StableDiffusionXLPipeline.save_lora_weights(
        directory,
        unet_lora_layers=parts["unet"] or None,
        text_encoder_lora_layers=parts["text_encoder"] or None,
        text_encoder_2_lora_layers=parts["text_encoder_2"] or None,
    )
    return directory / "pytorch_lora_weights.safetensors"
