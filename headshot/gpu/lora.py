"""Quick LoRA training: a DreamBooth-style identity adapter trained with peft on the user's selfies.

Face-centred crops of the selfies (a few zooms, mirrored) go through the VAE once (latent mean and std
cached, ``lora_data``); one instance caption (``"a photo of ohwx person"``) is encoded once. The LoRA sits on the UNet's
attention projections (``UNET_TARGET_MODULES``), attached to the pipeline's own UNet by
:func:`adapters.training_adapter` and removed afterwards; fp32 LoRA weights under autocast to the UNet's
own dtype (fp16 with a gradient scaler, bf16, or none for fp32), noise-prediction MSE, AdamW. Library helpers used: peft ``LoraConfig`` (through diffusers'
``unet.add_adapter``), ``get_peft_model_state_dict`` (export), ``set_peft_model_state_dict`` (resume);
diffusers ``DDPMScheduler`` (``add_noise``, ``get_velocity``), ``training_utils.cast_training_params``,
``enable_gradient_checkpointing``; torch ``autocast`` and ``GradScaler`` (accelerate would own device
placement of the shared UNet, so it is not used). The export is diffusers' layout (``"unet.<module>.
lora_A.weight"``, alpha folded into ``lora_B``), checked by :func:`identity.check_lora_state_dict`.
Training stops at its step count or time budget and returns a :class:`LoraState` (safetensors bytes)
from which ``resume=`` continues bit for bit; every random draw comes from one seeded CPU generator.
:func:`train_lora` runs as numbered steps (data, model, the loop, the snapshot, the result);
:func:`lora_settings` is the recipe of this profile and platform with a person's changes.
Defaults, the 90 s target and its arithmetic: ``benchmarks/README.md`` (LoRA).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from headshot import config
from headshot.errors import InvalidRequest
from headshot.faces import identity
from headshot.gpu import adapters, lora_data

UNET_TARGET_MODULES: tuple[str, ...] = identity.LORA_TARGET_MODULES
STATE_DICT_FORMAT = "diffusers-sdxl-lora"  # "unet.<module>.lora_A.weight" / ".lora_B.weight"
STATE_FORMAT = "headshot-lora-state/1"
TRAINING_ADAPTER = "headshot_lora_training"
# Activation memory of one SDXL LoRA step at 1024 px, batch 1, bf16, without gradient checkpointing
# (an estimate; calibrate with the peak memory that benchmarks/lora_bench.py --full-size prints).
ACTIVATION_GIB_1024 = 24.0
MEMORY_MARGIN_GIB = 6.0
# The tiny profile's defaults (random tiny models, CPU): a few steps, a stronger learning rate.
TINY_PROFILE_SETTINGS: dict[str, Any] = {
    "steps": 8,
    "rank": 4,
    "alpha": 4.0,
    "learning_rate": 1e-2,
    "zooms": (1.0,),
}
FINAL_LOSS_WINDOW = 20  # final_loss: mean loss over the last steps (one step's loss depends on its timestep)
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
    ``"fp16"`` or ``"no"``; ``None`` follows the UNet's own dtype (see :func:`resolve_precision`), and
    a half-precision UNet accepts only its own. ``gradient_checkpointing=None`` turns it on for CUDA
    when the GPU's free memory cannot hold the activations without it (see
    :func:`auto_gradient_checkpointing`), never on CPU.

    LoRA and InstantID together: ``face_adapter_scale`` > 0 trains with InstantID's face adapter active
    at that scale (the person's face embedding conditions the UNet as it does at render time), so the
    LoRA learns what the adapter misses rather than the whole face again; 0 trains the plain
    text-conditioned UNet. ``render_identity_strength`` and ``render_identitynet_strength`` are the
    InstantID strengths a render uses while this LoRA is on (written into the LoRA's config as
    ``instantid_scales``; ``studio`` reads them): the LoRA carries identity too, so the InstantID-only
    values of a style are not stacked on top of it at full strength.
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
    face_adapter_scale: float = 0.0
    render_identity_strength: float = 0.5
    render_identitynet_strength: float = 0.6

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
        if not (config.MIN_LORA_RANK <= int(self.rank) <= config.MAX_LORA_RANK):
            problems.append(f"rank must be between {config.MIN_LORA_RANK} and {config.MAX_LORA_RANK}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            problems.append("alpha must be a positive number")
        if not (
            math.isfinite(self.learning_rate) and 0 < self.learning_rate <= config.MAX_LORA_LEARNING_RATE
        ):
            problems.append(f"learning rate must be above 0 and at most {config.MAX_LORA_LEARNING_RATE}")
        if not (config.MIN_LORA_STEPS <= int(self.steps) <= config.MAX_LORA_STEPS):
            problems.append(f"steps must be between {config.MIN_LORA_STEPS} and {config.MAX_LORA_STEPS}")
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
        for value, what in (
            (self.face_adapter_scale, "the face adapter scale"),
            (self.render_identity_strength, "the render identity strength"),
            (self.render_identitynet_strength, "the render IdentityNet strength"),
        ):
            if not (math.isfinite(value) and config.MIN_ADAPTER_SCALE <= value <= config.MAX_ADAPTER_SCALE):
                problems.append(
                    f"{what} must be between {config.MIN_ADAPTER_SCALE} and {config.MAX_ADAPTER_SCALE}"
                )
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
        for name in (
            "steps",
            "time_budget_s",
            "gradient_checkpointing",
            "render_identity_strength",  # how renders use the LoRA, not how it is trained
            "render_identitynet_strength",
        ):
            data.pop(name)
        return data


def lora_settings(
    steps: int | None = None,
    rank: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
) -> LoraSettings:
    """The quick-LoRA recipe of this profile and platform, with the user's changes (None keeps the
    recipe's); checked (:meth:`LoraSettings.check`)."""
    settings = LoraSettings.for_profile(seed=int(seed))
    if config.on_zerogpu() and config.profile() == "full":
        settings.steps = config.ZEROGPU_LORA_STEPS  # sized to fit one ZeroGPU call (see config)
    if steps is not None:
        settings.steps = int(steps)
    if rank is not None:
        settings.rank = int(rank)
        settings.alpha = float(rank)
    if learning_rate is not None:
        settings.learning_rate = float(learning_rate)
    settings.check()
    return settings


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
# Components and sizes
# --------------------------------------------------------------------------------------


@dataclass
class LoraComponents:
    """The SDXL parts training needs; :meth:`from_pipeline` shares a loaded pipeline's own modules."""

    unet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    noise_scheduler: Any  # a DDPMScheduler
    base_model: str = ""

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
# Training
# --------------------------------------------------------------------------------------


_PRECISION_OF_DTYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "no"}


def resolve_precision(requested: str | None, unet_dtype: torch.dtype) -> str:
    """The autocast precision of training on a UNet whose weights are ``unet_dtype``.

    Training autocasts to the UNet's own dtype: a float16 UNet under float16 autocast with a gradient
    scaler (:func:`uses_grad_scaler`), a bfloat16 UNet under bfloat16 autocast, a float32 UNet without
    autocast; the LoRA weights are float32 in every case. Only a float32 UNet may be asked for another
    precision (``"bf16"`` or ``"fp16"`` autocast over float32 weights); a half-precision UNet under the
    other half type's autocast fails inside torch (``Unexpected floating ScalarType``), so that request
    is refused with :class:`InvalidRequest`.
    """
    own = _PRECISION_OF_DTYPE.get(unet_dtype)
    if own is None:
        raise InvalidRequest(f"LoRA training does not support a {unet_dtype} UNet.")
    if requested is None or requested == own:
        return own
    if own != "no":
        name = str(unet_dtype).removeprefix("torch.")
        raise InvalidRequest(
            f"The UNet is {name}: LoRA training on it runs in {own}, not {requested!r} "
            "(leave mixed precision unset to follow the model)."
        )
    return requested


def uses_grad_scaler(precision: str) -> bool:
    """fp16 needs loss scaling (its small exponent range loses small gradients); bf16 and fp32 do not."""
    return precision == "fp16"


def auto_gradient_checkpointing(device: torch.device, resolution: int, batch_size: int = 1) -> bool:
    """On CUDA, checkpoint unless the free GPU memory holds the activations of a full backward
    (``ACTIVATION_GIB_1024`` at 1024 px, scaled by pixel count and batch, plus ``MEMORY_MARGIN_GIB``)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    need = ACTIVATION_GIB_1024 * (resolution / 1024) ** 2 * batch_size + MEMORY_MARGIN_GIB
    return free / 2**30 < need


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast to ``precision`` (``"no"``: disabled, everything runs in the weights' float32)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=precision != "no")


def _export(unet: Any, settings: LoraSettings) -> dict[str, torch.Tensor]:
    """diffusers-format LoRA tensors on CPU, ``alpha / rank`` folded into ``lora_B``."""
    from peft import get_peft_model_state_dict

    scaling = float(settings.alpha) / float(settings.rank)
    dtype = _SAVE_DTYPES[settings.save_dtype]
    out: dict[str, torch.Tensor] = {}
    for key, value in get_peft_model_state_dict(unet, adapter_name=TRAINING_ADAPTER).items():
        value = value.detach().float().cpu()
        if ".lora_B." in key:
            value = value * scaling
        out[f"unet.{key}"] = value.to(dtype).contiguous()
    return out


def _load_adapter_state(
    unet: Any, params: list[tuple[str, torch.nn.Parameter]], saved: Mapping[str, torch.Tensor]
) -> None:
    from peft import set_peft_model_state_dict

    mismatch = InvalidRequest("The saved LoRA training state does not match this model's adapter layers.")
    shapes = {k: tuple(p.shape) for k, p in params}
    if shapes != {k: tuple(v.shape) for k, v in saved.items()}:
        raise mismatch
    state = {k.removeprefix("unet."): v for k, v in saved.items()}
    with torch.no_grad():
        set_peft_model_state_dict(unet, state, adapter_name=TRAINING_ADAPTER)


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
    components: LoraComponents | Any,
    images: Sequence[Any],
    settings: LoraSettings | None = None,
    *,
    bboxes: Sequence[Any] | None = None,
    resume: LoraState | None = None,
    progress: ProgressFn | None = None,
    face_embedding: Any = None,
) -> LoraResult:
    """Train (or continue training) an identity LoRA on the selfies, on the device of the UNet.

    Args:
        components: a loaded SDXL pipeline (its modules are shared and left unchanged afterwards)
            or :class:`LoraComponents`.
        images: face-centred crops, or selfies with ``bboxes`` (their face boxes), ``(image, bbox)``
            tuples or accepted selfies (``.image``, ``.face.bbox``).
        settings: :class:`LoraSettings` (defaults if ``None``).
        resume: the ``state`` of an earlier result with the same images and settings (``steps`` may
            grow): training continues exactly where it stopped.
        progress: ``progress(step, total_steps, loss)`` after every step.
        face_embedding: the person's face embedding (the identity's), needed when
            ``settings.face_adapter_scale`` > 0: it conditions the face adapter during training.

    Returns a :class:`LoraResult`; ``done`` is False when the time budget ended the call before
    ``settings.steps``. Each call runs at least one step when steps remain.
    """
    started = time.monotonic()
    settings = settings or LoraSettings()
    settings.check()
    comps = components if isinstance(components, LoraComponents) else LoraComponents.from_pipeline(components)
    # 1. Data: crops, their fingerprint, cached latent statistics; the caption's embeddings, once.
    data = _prepare_data(comps, images, settings, bboxes, resume, face_embedding)
    generator = _generator(settings, resume)
    # 2. Model: the training adapter on the shared UNet, removed again on the way out.
    with adapters.training_adapter(
        comps.unet,
        _peft_config(settings),
        TRAINING_ADAPTER,
        seed=settings.seed,
        face_adapter_scale=settings.face_adapter_scale if data.face is not None else None,
    ) as named:
        params = [(f"unet.{key}", param) for key, param in named]
        text, optimizer, scaler = _set_up_model(comps, data, params, settings, resume)
        # 3. The loop: stop at the step count or the time budget.
        train_started = time.monotonic()
        run = _run_steps(comps, data, text, generator, optimizer, scaler, settings, resume, progress, started)
        # 4. Snapshot before the adapter goes away.
        state = LoraState(
            step=run.step,
            settings=settings.to_dict(),
            fingerprint=data.fingerprint,
            adapter={k: p.detach().float().cpu().clone() for k, p in params},
            optimizer=_optimizer_tensors(optimizer, params),
            rng=generator.get_state().clone(),
            loss_history=run.history,
            seconds=(resume.seconds if resume is not None else 0.0) + (time.monotonic() - train_started),
            scaler=scaler.state_dict() if scaler.is_enabled() else None,
        )
        exported = _export(comps.unet, settings)
    # 5. The result: the exported LoRA, its config and the state to resume from.
    final = float(np.mean(run.history[-FINAL_LOSS_WINDOW:])) if run.history else float("nan")
    return LoraResult(
        state_dict=exported,
        config=_result_config(comps, settings, data, run, state, final),
        steps_run=run.step,
        steps_this_call=run.ran,
        final_loss=final,
        loss_history=run.history,
        seconds=time.monotonic() - started,
        done=run.step >= settings.steps,
        state=state,
    )


@dataclass
class _TrainingData:
    """What every step of a training call reads, made once before the first (:func:`_prepare_data`)."""

    device: torch.device
    resolution: int
    precision: str  # the autocast precision (resolve_precision)
    checkpointing: bool
    images: int  # the selfies trained on
    face: np.ndarray | None  # the person's face embedding when the face adapter trains
    fingerprint: str
    latent_stats: tuple[torch.Tensor, torch.Tensor]  # latent mean and std of every crop and mirror image
    time_ids: torch.Tensor
    text: tuple[torch.Tensor, torch.Tensor]  # the caption's embeddings and pooled embedding, fp32


@dataclass
class _Steps:
    """Where the loop stands: the step reached (over all calls), every step's loss, this call's steps."""

    step: int
    history: list[float]
    ran: int = 0


def _prepare_data(
    comps: LoraComponents,
    images: Sequence[Any],
    settings: LoraSettings,
    bboxes: Sequence[Any] | None,
    resume: LoraState | None,
    face_embedding: Any,
) -> _TrainingData:
    """Step 1: the crops' latent statistics and the caption's embeddings, encoded once. Refuses a wrong
    resolution, precision, missing face embedding or foreign resume state before any encoding."""
    dev = comps.unet.device
    resolution = int(settings.resolution or default_resolution(comps.unet, comps.vae))
    _check_resolution(resolution, comps)
    precision = resolve_precision(settings.mixed_precision, comps.unet.dtype)  # refuse before any work
    crops = lora_data.prepare_training_images(
        images, resolution, bboxes=bboxes, zooms=settings.zooms, face_fraction=settings.face_fraction
    )
    face = None
    if settings.face_adapter_scale > 0:
        if face_embedding is None:
            raise InvalidRequest("Training with the face adapter needs the person's face embedding.")
        face = np.asarray(face_embedding, dtype=np.float32).reshape(-1)
    fingerprint = lora_data.fingerprint(crops, resolution, comps.base_model, face)
    if resume is not None:
        _check_resume(resume, settings, fingerprint)
    latent_stats = lora_data.encode_latent_stats(comps.vae, crops, flip=settings.flip, device=dev)
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32)
    embeds, pooled = lora_data.encode_caption(comps, settings.caption, dev)
    checkpointing = settings.gradient_checkpointing
    if checkpointing is None:
        checkpointing = auto_gradient_checkpointing(dev, resolution, settings.batch_size)
    return _TrainingData(
        device=dev,
        resolution=resolution,
        precision=precision,
        checkpointing=bool(checkpointing),
        images=len(crops) // max(1, len(settings.zooms)),
        face=face,
        fingerprint=fingerprint,
        latent_stats=latent_stats,
        time_ids=time_ids.to(dev).repeat(settings.batch_size, 1),
        text=(embeds.float(), pooled.float()),
    )


def _generator(settings: LoraSettings, resume: LoraState | None) -> torch.Generator:
    """The CPU generator every random draw of training comes from: seeded, or where the saved state left it."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(settings.seed))
    if resume is not None:
        generator.set_state(resume.rng.clone())
    return generator


def _peft_config(settings: LoraSettings):
    """peft's ``LoraConfig`` of the training adapter: gaussian init on ``UNET_TARGET_MODULES``."""
    from peft import LoraConfig

    return LoraConfig(
        r=int(settings.rank),
        lora_alpha=float(settings.alpha),
        init_lora_weights="gaussian",
        target_modules=list(UNET_TARGET_MODULES),
        lora_dropout=0.0,
    )


def _set_up_model(
    comps: LoraComponents,
    data: _TrainingData,
    params: list[tuple[str, torch.nn.Parameter]],
    settings: LoraSettings,
    resume: LoraState | None,
) -> tuple[tuple[torch.Tensor, ...], torch.optim.Optimizer, torch.amp.GradScaler]:
    """Step 2, with the adapter attached: the step's conditioning (the caption's, plus the person's face
    when the face adapter trains), the saved adapter weights on a resume, train mode and gradient
    checkpointing, then the optimizer and the gradient scaler (with their saved state on a resume)."""
    unet, dev = comps.unet, data.device
    text: tuple[torch.Tensor, ...] = data.text
    if data.face is not None:
        from headshot.gpu import instantid

        face_embeds = instantid.face_image_embeds(
            data.face, do_classifier_free_guidance=False, device=dev, dtype=torch.float32
        )
        text = (*text, face_embeds)
    if resume is not None:
        _load_adapter_state(unet, params, resume.adapter)
    unet.train()
    if data.checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(
        [p for _, p in params],
        lr=settings.learning_rate,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=settings.weight_decay,
    )
    if resume is not None:
        _load_optimizer_state(optimizer, params, resume.optimizer)
    # The scaler's state (scale, growth tracker) travels in LoraState: an fp16 resume is exact.
    scaler = torch.amp.GradScaler(dev.type, enabled=uses_grad_scaler(data.precision))
    if scaler.is_enabled() and resume is not None and resume.scaler:
        scaler.load_state_dict(resume.scaler)
    return text, optimizer, scaler


def _run_steps(
    comps: LoraComponents,
    data: _TrainingData,
    text: tuple[torch.Tensor, ...],
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    settings: LoraSettings,
    resume: LoraState | None,
    progress: ProgressFn | None,
    started: float,
) -> _Steps:
    """Step 3: train from the saved step (or 0) to ``settings.steps``, stopping early when the next step
    would pass the time budget counted from ``started`` (always one step at least)."""
    run = _Steps(
        step=resume.step if resume is not None else 0,
        history=list(resume.loss_history) if resume is not None else [],
    )
    step_seconds: list[float] = []
    while run.step < settings.steps:
        if settings.time_budget_s is not None and run.ran > 0:
            expected = float(np.mean(step_seconds[-5:]))
            if time.monotonic() - started + expected > settings.time_budget_s:
                break
        tick = time.monotonic()
        loss = _train_step(
            comps,
            generator,
            data.latent_stats,
            data.time_ids,
            text,
            data.precision,
            scaler,
            optimizer,
            settings,
        )
        run.step += 1
        run.ran += 1
        run.history.append(loss)
        step_seconds.append(time.monotonic() - tick)
        if progress is not None:
            progress(run.step, settings.steps, loss)
    return run


def _result_config(
    comps: LoraComponents,
    settings: LoraSettings,
    data: _TrainingData,
    run: _Steps,
    state: LoraState,
    final: float,
) -> dict:
    """The LoRA's config, JSON-serialisable: how it was trained and how renders use it."""
    return {
        "format": STATE_DICT_FORMAT,
        "rank": int(settings.rank),
        "r": int(settings.rank),  # peft's name for it (identity.py checks the tensors against it)
        "alpha": float(settings.alpha),
        "alpha_folded": True,
        "target_modules": list(UNET_TARGET_MODULES),
        "base_model": comps.base_model,
        "token": settings.token,
        "class_word": settings.class_word,
        "instance_prompt": settings.caption,
        "steps": run.step,
        "planned_steps": int(settings.steps),
        "learning_rate": float(settings.learning_rate),
        "resolution": data.resolution,
        "seed": int(settings.seed),
        "images": data.images,
        "final_loss": final if run.history else None,
        "prediction_type": comps.noise_scheduler.config.prediction_type,
        "mixed_precision": data.precision,
        "gradient_checkpointing": data.checkpointing,
        "save_dtype": settings.save_dtype,
        "train_seconds": round(state.seconds, 3),
        "face_adapter_scale": float(settings.face_adapter_scale) if data.face is not None else 0.0,
        "instantid_scales": {
            "identity_strength": float(settings.render_identity_strength),
            "identitynet_strength": float(settings.render_identitynet_strength),
        },
    }


def _train_step(
    comps: LoraComponents,
    generator: torch.Generator,
    latent_stats: tuple[torch.Tensor, torch.Tensor],
    time_ids: torch.Tensor,
    text: tuple[torch.Tensor, ...],  # caption embeddings, pooled, and the face embeds when the adapter trains
    precision: str,
    scaler: torch.amp.GradScaler,
    optimizer: torch.optim.Optimizer,
    settings: LoraSettings,
) -> float:
    """One optimisation step; every random draw comes from ``generator`` (CPU), in a fixed order."""
    batch = settings.batch_size
    scheduler = comps.noise_scheduler
    latent_mean, latent_std = latent_stats
    device = latent_mean.device
    params = optimizer.param_groups[0]["params"]
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
        embeds, pooled = text[:2]
        embeds = embeds.expand(batch, -1, -1).to(unet.dtype)
        pooled = pooled.expand(batch, -1).to(unet.dtype)
        added = {"text_embeds": pooled, "time_ids": time_ids.to(unet.dtype)}
        if len(text) > 2:  # the face adapter is active: the person's face, as at render time
            added["image_embeds"] = [text[2].expand(batch, -1, -1, -1).to(unet.dtype)]
        prediction = unet(
            noisy.to(unet.dtype),
            timesteps,
            encoder_hidden_states=embeds,
            added_cond_kwargs=added,
            return_dict=False,
        )[0]
    loss = F.mse_loss(prediction.float(), target.float(), reduction="mean")
    scaler.scale(loss).backward()  # a disabled scaler (all but fp16) passes everything through
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach().item())


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
    state = {}
    for index, (key, _) in enumerate(params):
        names = {k[len(key) + 1 :] for k in saved if k.startswith(key + ".")}
        entry = {name: saved[f"{key}.{name}"].clone() for name in names if "." not in name}
        if entry:
            state[index] = entry
    if saved and len(state) != len(params):
        raise InvalidRequest("The saved LoRA training state does not match this model's adapter layers.")
    optimizer.load_state_dict({**optimizer.state_dict(), "state": state})
