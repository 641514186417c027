"""The shared GPU module: models loaded once per process, ``render(request) -> images``.

Profiles (``config.profile()``):

* ``full``: a photoreal SDXL checkpoint (``config.SDXL_BASE``, with the fp16-safe VAE on fp16),
  InstantID's IdentityNet and face adapter (``config.INSTANTID_*``) and, for the fast mode, LCM-LoRA
  (``config.FAST_LORA``), each at a pinned revision from the Hugging Face Hub;
* ``tiny``: the tiny random repositories ``tiny.py`` builds on disk, loaded by the same code.

Precision and device: float16 on CUDA and mps, float32 on CPU (``HEADSHOT_DEVICE`` overrides the
device). Attention runs on PyTorch's scaled-dot-product kernels (diffusers' default with torch 2),
the UNet and IdentityNet use channels-last memory on CUDA, and the VAE decodes in tiles above
``config.VAE_TILING_ABOVE`` pixels.

Fast paths (:class:`FastPaths`): each speed-up has a switch, so ``benchmarks/run.py`` can measure it
before and after. ``HEADSHOT_DTYPE`` (``auto``: float16 on GPUs, float32 on the CPU; or ``fp16``,
``bf16``, ``fp32``); ``HEADSHOT_SDPA=0`` (diffusers' classic attention instead of PyTorch's
scaled-dot-product kernels); ``HEADSHOT_FP16_VAE=0`` (the stock VAE kept in float32 instead of the
fp16-safe VAE in half precision); ``HEADSHOT_CHANNELS_LAST`` (``auto``: on CUDA); ``HEADSHOT_VAE_TILING``
(``auto``: above ``config.VAE_TILING_ABOVE``, or ``on`` / ``off``); ``HEADSHOT_WARMUP`` (``auto``: a
short render right after loading on a CUDA GPU, so the first request does not pay for kernel
selection or compilation); ``HEADSHOT_COMPILE`` (off by default; ``1`` compiles the UNet and the
IdentityNet with ``torch.compile(mode="max-autotune-no-cudagraphs")``, or give a mode name; CUDA only,
never on ZeroGPU, where compiled code does not survive between GPU calls;
``HEADSHOT_COMPILE_SCOPE=regional`` compiles only the repeated transformer blocks, which compiles in a
fraction of the time); ``HEADSHOT_AOTI=1`` (ahead-of-time compilation with the ``spaces`` package's
AoTI helpers, for ZeroGPU, also usable on a plain CUDA GPU: see :func:`aoti_compile_models`);
``HEADSHOT_CPU_THREADS`` (torch threads; default one for the tiny profile on a CPU).
The CFG-free few-step mode is ``RenderRequest.fast``. Face analysis never runs here: ``studio`` detects
and embeds faces before calling :func:`render`, so GPU time goes to denoising only.

Concurrency: one module-level lock serialises the GPU work (renders and LoRA training share the
UNet); every per-request setting (scheduler, adapter scale, LoRA adapters, VAE tiling) is set at the
start of each render and LoRA adapters are removed or disabled afterwards, so a request never sees
another's settings. The face conditioning of a request travels in its own objects (see
``instantid.FaceTokenControlNet``), not in shared state.

ZeroGPU: ``render`` checks the request and loads the models (in the main process, where ZeroGPU
keeps them), then runs ``_render_on_gpu`` under ``@spaces.GPU`` with a duration estimated from the
request. Off ZeroGPU ``spaces.GPU`` returns the function unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import spaces  # ZeroGPU: imported before torch (it must come before CUDA is initialised)
import torch
from PIL import Image

# instantid (and with it diffusers, transformers and peft) is imported where it is used: importing this
# module stays cheap, so the app starts serving in seconds and loads the diffusion stack on first use.
from headshot import config, errors, tiny

__all__ = [
    "FastPaths",
    "Models",
    "RenderRequest",
    "aoti_compile_models",
    "aoti_release",
    "base_model_id",
    "device_summary",
    "estimate_duration",
    "load_models",
    "prepare_models",
    "render",
    "render_on",
    "select_device",
    "start_preload",
    "train_identity_lora",
    "warm_up",
]

log = logging.getLogger(__name__)

Progress = Callable[..., Any]  # progress(fraction, desc=...) like gr.Progress

FULL_EMBEDDING_SIZE = 512  # antelopev2's recognizer; InstantID's adapter takes this size
FAST_ADAPTER = "fast"
TINY_BASE_MODEL = f"headshot/tiny-sdxl-v{tiny.TINY_FORMAT}"
# Compute per denoising step for one 1024x1024 image, counted with torch.utils.flop_counter on the
# SDXL base UNet and an IdentityNet of the same width (meta tensors, batch 1).
SDXL_UNET_TFLOP_1024 = 6.76
IDENTITYNET_TFLOP_1024 = 2.99
LORA_LOAD_SECONDS = 5  # loading a LoRA into the UNet (peft injection), for the ZeroGPU estimate


@dataclasses.dataclass
class RenderRequest:
    """One render: prompts, the face and its keypoint image, sizes and scales.

    ``face_embedding`` is the identity's (normalised) face embedding; ``control_image`` the keypoint
    image (``imaging.draw_kps``), resized to ``width`` x ``height`` if it differs. Image ``i`` uses the
    seed ``seed + i``, so any image can be rendered again alone. ``fast`` uses the few-step LoRA with
    ``config.FAST_MIN_STEPS``..``FAST_MAX_STEPS`` steps. ``lora`` is an identity LoRA
    ``{"name", "state_dict", "scale", "config"}`` whose state dict is in diffusers' SDXL format
    (``"unet.<module>.lora_A.weight"``...) with its alpha/rank scaling folded into the weights.
    """

    prompt: str
    negative_prompt: str
    face_embedding: np.ndarray
    control_image: Image.Image
    width: int
    height: int
    num_images: int = 1
    seed: int = 0
    steps: int = 30
    guidance: float = 5.0
    identity_strength: float = 0.8
    identitynet_strength: float = 0.8
    fast: bool = False
    lora: dict | None = None


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DTYPES = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}
DTYPES |= {"fp32": "float32", "float32": "float32"}


def _env_choice(name: str, choices: Sequence[str], default: str) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise errors.InvalidRequest(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _env_switch(name: str) -> bool | None:
    """``1``/``on``/``true`` -> True, ``0``/``off``/``false`` -> False, unset or ``auto`` -> None."""
    value = _env_choice(name, ("auto", "1", "0", "on", "off", "true", "false", "yes", "no"), "auto")
    return None if value == "auto" else value in ("1", "on", "true", "yes")


@dataclasses.dataclass(frozen=True)
class FastPaths:
    """The speed-ups of a loaded pipeline, each switchable (``HEADSHOT_*``, see the module docstring).

    ``None`` means "decide by device" (:meth:`resolved`); ``dtype="auto"`` is float16 on GPUs and
    float32 on the CPU when loading, and keeps the current precision in :func:`prepare_models`.
    ``compile`` is ``""`` (off) or a ``torch.compile`` mode; ``compile_scope`` is ``"full"`` (the whole
    UNet and IdentityNet) or ``"regional"`` (only their repeated transformer blocks).
    """

    dtype: str = "auto"
    sdpa: bool = True
    fp16_vae: bool = True
    channels_last: bool | None = None
    vae_tiling: str = "auto"
    warmup: bool | None = None
    compile: str = ""
    compile_scope: str = "full"
    aoti: bool = False

    @classmethod
    def from_env(cls) -> FastPaths:
        """The switches from the ``HEADSHOT_*`` environment variables."""
        compile_value = os.environ.get("HEADSHOT_COMPILE", "").strip().lower()
        if compile_value in ("", "0", "off", "false", "no"):
            compile_mode = ""
        elif compile_value in ("1", "on", "true", "yes"):
            compile_mode = "max-autotune-no-cudagraphs"
        elif compile_value in COMPILE_MODES:
            compile_mode = compile_value
        else:
            raise errors.InvalidRequest(
                f"HEADSHOT_COMPILE must be 0, 1 or one of {', '.join(COMPILE_MODES)}, not {compile_value!r}."
            )
        return cls(
            dtype=_env_choice("HEADSHOT_DTYPE", ("auto", *DTYPES), "auto"),
            sdpa=_env_switch("HEADSHOT_SDPA") is not False,
            fp16_vae=_env_switch("HEADSHOT_FP16_VAE") is not False,
            channels_last=_env_switch("HEADSHOT_CHANNELS_LAST"),
            vae_tiling=_env_choice("HEADSHOT_VAE_TILING", ("auto", "on", "off"), "auto"),
            warmup=_env_switch("HEADSHOT_WARMUP"),
            compile=compile_mode,
            compile_scope=_env_choice("HEADSHOT_COMPILE_SCOPE", ("full", "regional"), "full"),
            aoti=bool(_env_switch("HEADSHOT_AOTI")),
        )

    def resolved(self, device: torch.device) -> FastPaths:
        """The switches for ``device``: "auto" decided, and the ones that cannot apply there off.

        ``torch.compile`` runs on plain CUDA GPUs only (the CPU and the tiny profile never compile; on
        ZeroGPU each call runs in a fresh process, so ahead-of-time compilation replaces it); AoTI needs
        CUDA and wins over ``torch.compile`` when both are set.
        """
        cuda = device.type == "cuda"
        aoti = self.aoti and cuda
        compile_mode = self.compile if cuda and not config.on_zerogpu() and not aoti else ""
        if self.compile and not compile_mode:
            log.info("HEADSHOT_COMPILE ignored on %s%s", device, " (ZeroGPU or AoTI)" if cuda else "")
        return dataclasses.replace(
            self,
            channels_last=cuda if self.channels_last is None else self.channels_last,
            warmup=(cuda and not config.on_zerogpu()) if self.warmup is None else self.warmup,
            compile=compile_mode,
            aoti=aoti,
        )


@dataclasses.dataclass
class Models:
    """The loaded models of one profile/device/embedding size (shared by every render)."""

    pipe: Any  # StableDiffusionXLControlNetPipeline with the face adapter loaded
    identitynet: Any  # ControlNetModel
    device: torch.device
    dtype: torch.dtype
    profile: str
    embedding_size: int
    base_model: str
    fast_lora: dict  # load_lora_weights arguments for the fast-mode LoRA
    fast_loaded: bool = False
    fast_paths: FastPaths = dataclasses.field(default_factory=FastPaths)  # as applied (resolved)
    prepared: bool = False  # prepare_models has run
    warm_up_seconds: float | None = None  # the warm-up render, once done
    aoti: dict = dataclasses.field(default_factory=dict)  # module name -> _AotiProgram
    aoti_gate: bool = False  # set per render: may this request use the AoTI programs?


# peft's notes on what this module does on purpose: several named adapters on one UNet, and deleting
# the request's adapter after each render.
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)
warnings.filterwarnings(
    "ignore", message=r"Adapter \S+ was active which is now deleted", category=UserWarning
)

_LOAD_LOCK = threading.Lock()
_GPU_LOCK = threading.Lock()  # one GPU: renders and training run one at a time
_MODELS: dict[tuple, Models] = {}


# --------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def select_device() -> torch.device:
    """``HEADSHOT_DEVICE`` if set, else CUDA, then Apple's mps, then the CPU."""
    wanted = config.device_override()
    if wanted:
        if wanted not in ("cuda", "mps", "cpu"):
            raise errors.InvalidRequest(f"HEADSHOT_DEVICE must be cuda, mps or cpu, not {wanted!r}.")
        if wanted == "cuda" and not torch.cuda.is_available():
            raise errors.InvalidRequest("HEADSHOT_DEVICE=cuda, but PyTorch sees no CUDA GPU.")
        if wanted == "mps" and not _mps_available():
            raise errors.InvalidRequest("HEADSHOT_DEVICE=mps, but PyTorch's mps backend is not available.")
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def select_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """float16 on GPUs (SDXL's standard inference precision), float32 on the CPU; or ``requested``."""
    if requested != "auto":
        return getattr(torch, DTYPES[requested])
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


# --------------------------------------------------------------------------------------
# Loading (once per process)
# --------------------------------------------------------------------------------------


def base_model_id() -> str:
    """The base-model id identity files record (and are checked against)."""
    return TINY_BASE_MODEL if config.profile() == "tiny" else config.SDXL_BASE.repo_id


def _analyzer_embedding_size() -> int:
    from headshot import faces

    return int(faces.get_analyzer().embedding_size)


def load_models(embedding_size: int | None = None) -> Models:
    """Load (once) and return the models of the current profile and device.

    ``embedding_size`` sizes the tiny profile's face adapter (default: the face analyzer's); the
    full profile's adapter is InstantID's and takes 512-d antelopev2 embeddings.
    """
    profile = config.profile()
    device = select_device()
    fast = FastPaths.from_env().resolved(device)
    dtype = select_dtype(device, fast.dtype)
    if profile == "tiny":
        size = int(embedding_size) if embedding_size else _analyzer_embedding_size()
        key = (profile, str(device), dtype, size, str(config.cache_dir()), fast)
    else:
        size = FULL_EMBEDDING_SIZE
        key = (profile, str(device), dtype, size, fast)
    models = _MODELS.get(key)
    if models is None:
        with _LOAD_LOCK:
            models = _MODELS.get(key)
            if models is None:
                started = time.perf_counter()
                _set_cpu_threads(profile, device)
                if profile == "tiny":
                    models = _load_tiny(size, device, dtype, fast)
                else:
                    models = _load_full(device, dtype, fast)
                prepare_models(models)
                _MODELS[key] = models  # before the GPU calls below: a ZeroGPU worker finds it by key
                log.info("loaded %s models on %s in %.1f s", profile, device, time.perf_counter() - started)
                if fast.aoti:
                    try:
                        aoti_compile_models(models)
                    except Exception:  # an optimisation: serve eagerly rather than not at all
                        log.exception("AoTI compilation failed; the models run eagerly")
                        aoti_release(models)
                if fast.warmup:
                    warm_up(models)
    return models


def _set_cpu_threads(profile: str, device: torch.device) -> None:
    """``HEADSHOT_CPU_THREADS`` torch threads; one for the tiny profile on a CPU, else torch's default.

    The tiny models are too small to gain from several threads, and on a busy shared machine
    (a free CPU Space, CI) OpenMP threads that wait for each other make a render 10x slower.
    """
    threads = config.env_int("HEADSHOT_CPU_THREADS", 0)
    if threads < 0:
        raise errors.InvalidRequest(f"HEADSHOT_CPU_THREADS must be 0 (default) or more, not {threads}.")
    if not threads and profile == "tiny" and device.type == "cpu":
        threads = 1
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _cache_key(models: Models) -> tuple | None:
    return next((key for key, cached in _MODELS.items() if cached is models), None)


def start_preload(background: bool | None = None) -> threading.Thread | None:
    """Load (and warm up, compile) the models at startup on a CUDA GPU, so no user waits for it.

    Elsewhere (CPU, mps, the tiny profile on a CPU) it does nothing and returns None: models load on
    first use. ``HEADSHOT_PRELOAD=1`` forces it, ``0`` turns it off. Off ZeroGPU the work runs in a
    daemon thread (returned; the app serves meanwhile and a request waits for the load); on ZeroGPU it
    runs before returning, in the main process, where ZeroGPU wants the models loaded (and the AoTI
    compilation, when switched on, runs in one GPU call).
    """
    wanted = _env_switch("HEADSHOT_PRELOAD")
    try:
        device = select_device()
    except errors.HeadshotError as exc:
        log.warning("not preloading the models: %s", exc.message)
        return None
    if wanted is False or (wanted is None and device.type != "cuda"):
        return None

    def preload() -> None:
        try:
            models = load_models()
            log.info("models preloaded (warm-up %s s)", models.warm_up_seconds)
        except Exception:  # the first request raises the same error, with its user-facing message
            log.exception("preloading the models failed")

    if background is None:
        background = not config.on_zerogpu()
    if not background:
        preload()
        return None
    thread = threading.Thread(target=preload, name="headshot-preload", daemon=True)
    thread.start()
    return thread


def _from_pretrained(cls, source: str, **kwargs):
    """``cls.from_pretrained``; on fp16 the fp16 weight files when the repository has them."""
    if kwargs.get("variant"):
        try:
            return cls.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            if "variant" not in str(exc):
                raise
            log.info("no %s weight files in %s; loading the default ones", kwargs["variant"], source)
            kwargs.pop("variant")
    return cls.from_pretrained(source, **kwargs)


def _assemble(
    *,
    base: str,
    base_revision: str | None,
    controlnet: str,
    controlnet_subfolder: str | None,
    adapter: str,
    adapter_weight: str,
    instantid_revision: str | None,
    vae: str | None,
    vae_revision: str | None,
    dtype: torch.dtype,
) -> tuple[Any, Any]:
    """The one loading recipe both profiles use: IdentityNet, SDXL (+ VAE), face adapter.

    The modules stay on the CPU: :func:`prepare_models` moves them and applies the fast paths.
    """
    from diffusers import AutoencoderKL, StableDiffusionXLControlNetPipeline

    from headshot import instantid

    identitynet = instantid.load_identitynet(
        controlnet, subfolder=controlnet_subfolder, revision=instantid_revision, dtype=dtype
    )
    extra: dict[str, Any] = {}
    if vae is not None:
        extra["vae"] = AutoencoderKL.from_pretrained(vae, revision=vae_revision, dtype=dtype)
    pipe = _from_pretrained(
        StableDiffusionXLControlNetPipeline,
        base,
        revision=base_revision,
        controlnet=identitynet,
        dtype=dtype,
        variant="fp16" if dtype == torch.float16 and base_revision else None,
        add_watermarker=False,
        **extra,
    )
    instantid.load_face_adapter(pipe, adapter, weight_name=adapter_weight, revision=instantid_revision)
    pipe.set_progress_bar_config(disable=True)
    return pipe, identitynet


def _load_tiny(embedding_size: int, device: torch.device, dtype: torch.dtype, fast: FastPaths) -> Models:
    from headshot import instantid

    paths = tiny.ensure_tiny_models(embedding_size)
    pipe, identitynet = _assemble(
        base=str(paths["sdxl"]),
        base_revision=None,
        controlnet=str(paths["instantid"]),
        controlnet_subfolder=instantid.CONTROLNET_SUBFOLDER,
        adapter=str(paths["instantid"]),
        adapter_weight=instantid.ADAPTER_WEIGHT_NAME,
        instantid_revision=None,
        vae=None,
        vae_revision=None,
        dtype=dtype,
    )
    fast_lora = {
        "pretrained_model_name_or_path_or_dict": str(paths["fast_lora"]),
        "weight_name": "pytorch_lora_weights.safetensors",
    }
    return Models(
        pipe, identitynet, device, dtype, "tiny", embedding_size, TINY_BASE_MODEL, fast_lora, fast_paths=fast
    )


def _unavailable(exc: BaseException) -> bool:
    """True for the errors a missing download raises (offline, no cache, Hub unreachable)."""
    import huggingface_hub.errors as hub_errors

    kinds: tuple[type[BaseException], ...] = (
        OSError,
        hub_errors.HfHubHTTPError,
        hub_errors.LocalEntryNotFoundError,
    )
    try:
        import httpx

        kinds += (httpx.HTTPError,)
    except ImportError:  # pragma: no cover - httpx comes with huggingface_hub
        pass
    return isinstance(exc, kinds)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _load_full(device: torch.device, dtype: torch.dtype, fast: FastPaths) -> Models:
    from headshot import instantid

    base, vae = config.SDXL_BASE, config.SDXL_VAE_FP16
    net, adapter = config.INSTANTID_CONTROLNET, config.INSTANTID_ADAPTER
    try:
        pipe, identitynet = _assemble(
            base=base.repo_id,
            base_revision=base.revision,
            controlnet=net.repo_id,
            controlnet_subfolder=net.subfolder,
            adapter=adapter.repo_id,
            adapter_weight=adapter.filename or instantid.ADAPTER_WEIGHT_NAME,
            instantid_revision=net.revision,
            # fp16 overflows in the stock SDXL VAE: the fp16-fix VAE, or (switched off) the stock one
            # kept in float32 by prepare_models
            vae=vae.repo_id if dtype == torch.float16 and fast.fp16_vae else None,
            vae_revision=vae.revision,
            dtype=dtype,
        )
    except Exception as exc:
        if not _unavailable(exc):
            raise
        raise errors.ModelsUnavailable(
            f"The diffusion models ({base.repo_id}, {net.repo_id}) are not in the local cache and "
            f"could not be downloaded from the Hugging Face Hub ({_first_line(exc)}). Connect to the "
            "internet once to download them, or set HEADSHOT_PROFILE=tiny to run offline with tiny test "
            "models."
        ) from exc
    fast_lora = {
        "pretrained_model_name_or_path_or_dict": config.FAST_LORA.repo_id,
        "weight_name": config.FAST_LORA.filename,
        "revision": config.FAST_LORA.revision,
    }
    return Models(
        pipe,
        identitynet,
        device,
        dtype,
        "full",
        FULL_EMBEDDING_SIZE,
        base.repo_id,
        fast_lora,
        fast_paths=fast,
    )


# --------------------------------------------------------------------------------------
# Fast paths: applied once per loaded pipeline
# --------------------------------------------------------------------------------------

RECOMPILE_LIMIT = 64  # torch.compile variants kept per function (sizes x CFG x face-adapter scales)


def prepare_models(models: Models, fast_paths: FastPaths | None = None) -> Models:
    """Apply the fast paths and move the modules to ``models.device``; returns ``models``.

    Precision, VAE precision, attention kernels, device, memory format and ``torch.compile``.
    :func:`load_models` calls it once with ``models.fast_paths``; benchmarks that assemble their own
    :class:`Models` (full-size random weights) call it too, and again with other ``fast_paths`` to
    measure each switch before and after. ``torch.compile`` and AoTI cannot be switched back off.
    """
    if models.prepared and fast_paths is None:
        return models
    fast = (fast_paths or models.fast_paths).resolved(models.device)
    if models.prepared and (models.fast_paths.compile or models.aoti) and fast != models.fast_paths:
        raise ValueError("compiled models cannot be prepared again with other fast paths")
    pipe = models.pipe
    dtype = models.dtype if fast.dtype == "auto" else select_dtype(models.device, fast.dtype)
    if dtype != models.dtype:
        pipe.to(dtype=dtype)  # the IdentityNet is the pipeline's controlnet: cast with it
        models.dtype = dtype
    # The stock SDXL VAE overflows in float16: without the fp16-safe VAE it decodes in float32.
    vae_dtype = torch.float32 if models.dtype == torch.float16 and not fast.fp16_vae else models.dtype
    if pipe.vae.dtype != vae_dtype:
        pipe.vae.to(dtype=vae_dtype)
    _set_attention(pipe.unet, fast.sdpa)
    _set_attention(models.identitynet, fast.sdpa)
    pipe.to(models.device)
    if fast.channels_last or (models.prepared and models.fast_paths.channels_last):
        memory_format = torch.channels_last if fast.channels_last else torch.contiguous_format
        pipe.unet.to(memory_format=memory_format)
        models.identitynet.to(memory_format=memory_format)
    compiled = models.prepared and bool(models.fast_paths.compile)
    models.fast_paths = fast
    if fast.compile and not compiled:
        _compile(models)
    models.prepared = True
    return models


def _set_attention(model: torch.nn.Module, sdpa: bool) -> None:
    """PyTorch's scaled-dot-product attention (``sdpa``) or diffusers' classic processors."""
    from diffusers.models.attention_processor import (
        AttnProcessor,
        AttnProcessor2_0,
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
    )

    wanted: dict[str, Any] = {}
    changed = False
    for name, proc in model.attn_processors.items():
        if isinstance(proc, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)):
            cls = IPAdapterAttnProcessor2_0 if sdpa else IPAdapterAttnProcessor
            if type(proc) is not cls:
                new = cls(
                    hidden_size=proc.hidden_size,
                    cross_attention_dim=proc.cross_attention_dim,
                    num_tokens=proc.num_tokens,
                    scale=proc.scale,
                )
                new.load_state_dict(proc.state_dict())
                weight = next(proc.parameters())
                proc = new.to(device=weight.device, dtype=weight.dtype)
                changed = True
        elif isinstance(proc, (AttnProcessor, AttnProcessor2_0)):
            cls = AttnProcessor2_0 if sdpa else AttnProcessor
            if type(proc) is not cls:
                proc = cls()
                changed = True
        wanted[name] = proc
    if changed:
        model.set_attn_processor(wanted)


def _compile(models: Models) -> None:
    """``torch.compile`` the UNet and the IdentityNet in place (the modules keep their type and weights).

    ``compile_scope="regional"`` compiles only the repeated transformer blocks (diffusers' regional
    compilation: a fraction of the compile time for most of the gain). New sizes, the CFG-free batch,
    another face-adapter scale or the fast-mode LoRA each compile a variant on first use (the warm-up
    compiles the square size with CFG); requests with an identity LoRA run eagerly (see
    ``_compiled_modes``) instead of recompiling for every person's adapter.
    """
    import torch._dynamo

    fast = models.fast_paths
    dynamo_config = torch._dynamo.config
    limit_name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    setattr(dynamo_config, limit_name, max(getattr(dynamo_config, limit_name), RECOMPILE_LIMIT))
    blocks = set(getattr(models.pipe.unet, "_repeated_blocks", None) or ("BasicTransformerBlock",))
    for module in (models.pipe.unet, models.identitynet):
        if fast.compile_scope == "regional":
            for sub in module.modules():
                if type(sub).__name__ in blocks:
                    sub.compile(mode=fast.compile)
        else:
            module.compile(mode=fast.compile)
    log.info("torch.compile(mode=%r, scope=%s) on the UNet and IdentityNet", fast.compile, fast.compile_scope)


@contextlib.contextmanager
def _compiled_modes(models: Models, request: RenderRequest | None):
    """This request's use of compiled code: the AoTI gate, and eager mode for identity LoRAs.

    ``request=None`` (LoRA training) runs everything eagerly.
    """
    lora = request is None or request.lora is not None
    eager = models.fast_paths.compile and lora
    models.aoti_gate = bool(
        models.aoti
        and request is not None
        and not request.fast
        and request.lora is None
        and math.isclose(float(request.identity_strength), AOTI_IP_SCALE, abs_tol=1e-6)
    )
    try:
        with torch.compiler.set_stance("force_eager") if eager else contextlib.nullcontext():
            yield
    finally:
        models.aoti_gate = False


def _output_sizes(models: Models) -> dict[str, tuple[int, int]]:
    return config.OUTPUT_SIZES if models.profile == "full" else config.TINY_OUTPUT_SIZES


def _warm_up_request(models: Models, size: tuple[int, int], steps: int = 2) -> RenderRequest:
    face = np.zeros(models.embedding_size, dtype=np.float32)
    face[0] = 1.0
    width, height = size
    return RenderRequest(
        prompt="a studio headshot photo of a person",
        negative_prompt="blurry",
        face_embedding=face,
        control_image=Image.new("RGB", (width, height)),
        width=width,
        height=height,
        steps=steps,
        guidance=5.0,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(models: Models, sizes: Sequence[tuple[int, int]] | None = None) -> float:
    """Short renders (2 steps, with CFG) so the first request finds kernels chosen and code compiled.

    ``sizes`` defaults to the square output size, plus the 4:5 one when ``torch.compile`` is on (its
    second size makes the compiled code shape-dynamic). Returns the seconds it took (also kept in
    ``models.warm_up_seconds``). On ZeroGPU the renders run as GPU calls.
    """
    if sizes is None:
        all_sizes = _output_sizes(models)
        sizes = [all_sizes["square"]] + ([all_sizes["4:5"]] if models.fast_paths.compile else [])
    started = time.perf_counter()
    for size in sizes:
        request = _warm_up_request(models, size)
        if config.on_zerogpu() and _cache_key(models) is not None:
            _render_on_gpu(request)
        else:
            render_on(models, request)
    _synchronize(models.device)
    models.warm_up_seconds = round(time.perf_counter() - started, 3)
    log.info("warm-up renders %s in %.1f s", list(sizes), models.warm_up_seconds)
    return models.warm_up_seconds


# --------------------------------------------------------------------------------------
# Ahead-of-time compilation (ZeroGPU; spaces' AoTI helpers)
# --------------------------------------------------------------------------------------

AOTI_IP_SCALE = 0.8  # the face-adapter scale baked into the compiled UNet (most styles use it)
AOTI_COMPILE_SECONDS = 1500  # GPU time asked of ZeroGPU for compiling at startup
AOTI_MIN_LATENT_UNITS = 2  # latent side / UNet down-sampling factor: the dynamic range of the programs


@dataclasses.dataclass
class _AotiProgram:
    """An AoTI-compiled module call and the calls it accepts (the captured structure and shapes)."""

    compiled: Any  # spaces' ZeroGPUCompiledModel: called like the module's forward, tensors only
    spec: Any  # pytree structure of the captured (args, kwargs)
    leaves: list  # captured leaves: (shape, dtype, device) for tensors, the value otherwise
    dynamic: dict[int, dict[int, tuple[int, int, int]]]  # leaf -> dim -> (multiple, low, high)
    gated: bool  # honours Models.aoti_gate (the UNet: LoRA and face-adapter scale are baked in)
    scale_kwarg: str | None = None  # the IdentityNet: built at scale 1, outputs scaled per call

    def _leaf_ok(self, index: int, captured: Any, value: Any) -> bool:
        if not torch.is_tensor(value):
            return not isinstance(captured, tuple) and value == captured
        if not isinstance(captured, tuple):
            return False
        shape, dtype, device = captured
        if value.dtype != dtype or value.device != device or value.dim() != len(shape):
            return False
        dims = self.dynamic.get(index, {})
        for dim, size in enumerate(value.shape):
            if dim in dims:
                multiple, low, high = dims[dim]
                if size % multiple or not low <= size // multiple <= high:
                    return False
            elif size != shape[dim]:
                return False
        return True

    def accepts(self, gate: bool, args: tuple, kwargs: dict) -> bool:
        if self.gated and not gate:
            return False
        if self.scale_kwarg is not None:
            kwargs = {**kwargs, self.scale_kwarg: 1.0}
        leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
        return spec == self.spec and all(
            self._leaf_ok(i, c, v) for i, (c, v) in enumerate(zip(self.leaves, leaves, strict=True))
        )

    def __call__(self, args: tuple, kwargs: dict) -> Any:
        if self.scale_kwarg is None:
            return self.compiled(*args, **kwargs)
        scale = float(kwargs[self.scale_kwarg])
        out = self.compiled(*args, **{**kwargs, self.scale_kwarg: 1.0})
        return torch.utils._pytree.tree_map(lambda t: t * scale if torch.is_tensor(t) else t, out)


class _AotiForward:
    """Installed as a module's ``forward``: its AoTI program for the calls it accepts, else eager."""

    def __init__(self, eager: Callable[..., Any], program: _AotiProgram, models: Models):
        self.eager, self.program, self.models = eager, program, models
        self.calls = {"aoti": 0, "eager": 0}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.program.accepts(self.models.aoti_gate, args, kwargs):
            self.calls["aoti"] += 1
            return self.program(args, kwargs)
        self.calls["eager"] += 1
        return self.eager(*args, **kwargs)


def _aoti_capture(models: Models, module: torch.nn.Module, request: RenderRequest) -> tuple[tuple, dict]:
    """The inputs of ``module``'s first call in a render (``spaces.aoti_capture`` stops the render there)."""
    with spaces.aoti_capture(module) as call:
        with _GPU_LOCK, torch.no_grad():
            _render_images(models, request, None)
    if not call.args and not call.kwargs:
        raise RuntimeError(f"{type(module).__name__} was not called during the capture render")
    return tuple(call.args), dict(call.kwargs)


def _aoti_dynamic_shapes(module, args: tuple, kwargs: dict, latent: tuple[int, int], factor: int, high: int):
    """``torch.export`` dynamic shapes: every spatial dimension a multiple of the latent height/width.

    ``latent`` is the captured latent (height, width) and ``factor`` the UNet's down-sampling factor:
    the latent, the residuals at each resolution and the control image (8x the latent) all follow
    two symbols ``h``, ``w`` (latent side / factor), so one program serves every output size.
    Returns (dynamic_shapes by argument name, leaf index -> dim -> (multiple, low, high)).
    """
    import inspect

    from torch.export import Dim

    low = AOTI_MIN_LATENT_UNITS
    symbols = (Dim("h", min=low, max=high), Dim("w", min=low, max=high))
    base = (latent[0] // factor, latent[1] // factor)

    def spec(value: Any) -> dict | None:
        if not torch.is_tensor(value) or value.dim() != 4:
            return None
        multiples = [value.shape[2 + i] / base[i] for i in range(2)]
        if not all(m.is_integer() and m >= 1 for m in multiples):
            return None
        return {2 + i: symbols[i] * int(m) if m > 1 else symbols[i] for i, m in enumerate(multiples)}

    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    shapes = {name: torch.utils._pytree.tree_map(spec, value) for name, value in bound.arguments.items()}
    dynamic: dict[int, dict[int, tuple[int, int, int]]] = {}
    for index, leaf in enumerate(torch.utils._pytree.tree_leaves((args, kwargs))):
        dims = spec(leaf)
        if dims:
            dynamic[index] = {d: (leaf.shape[d] // base[d - 2], low, high) for d in dims}
    return shapes, dynamic


def _aoti_program(models: Models, module, call: tuple[tuple, dict], *, gated: bool, scale_kwarg=None):
    args, kwargs = call
    if scale_kwarg is not None:
        kwargs = {**kwargs, scale_kwarg: 1.0}
    sample = args[0] if args else kwargs["sample"]
    factor = 2 ** (len(models.pipe.unet.config.block_out_channels) - 1)
    vae_factor = 2 ** (len(models.pipe.vae.config.block_out_channels) - 1)
    high = max(AOTI_MIN_LATENT_UNITS, config.RENDER_MAX_SIDE // vae_factor // factor)
    shapes, dynamic = _aoti_dynamic_shapes(module, args, kwargs, tuple(sample.shape[2:]), factor, high)
    exported = torch.export.export(module, args=args, kwargs=kwargs, dynamic_shapes=shapes)
    compiled = spaces.aoti_compile(exported)
    leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
    described = [(tuple(v.shape), v.dtype, v.device) if torch.is_tensor(v) else v for v in leaves]
    return _AotiProgram(compiled, spec, described, dynamic, gated, scale_kwarg)


def _aoti_build(models: Models) -> dict[str, _AotiProgram]:
    """Capture, export and compile the IdentityNet and the UNet (the GPU work of the compilation)."""
    size = _output_sizes(models)["square"]
    request = dataclasses.replace(
        _warm_up_request(models, size), identity_strength=AOTI_IP_SCALE, identitynet_strength=1.0
    )
    net, unet = models.identitynet, models.pipe.unet
    net_call = _aoti_capture(models, net, request)
    unet_call = _aoti_capture(models, unet, request)
    with torch.no_grad():
        return {
            "identitynet": _aoti_program(
                models, net, net_call, gated=False, scale_kwarg="conditioning_scale"
            ),
            "unet": _aoti_program(models, unet, unet_call, gated=True),
        }


@spaces.GPU(duration=AOTI_COMPILE_SECONDS)
def _aoti_build_on_gpu(key: tuple) -> dict[str, _AotiProgram]:
    return _aoti_build(_MODELS[key])


def aoti_compile_models(models: Models) -> dict[str, _AotiProgram]:
    """Compile the UNet and IdentityNet ahead of time with ``spaces``' AoTI helpers and route calls to them.

    The recipe of ZeroGPU's AoTI: ``spaces.aoti_capture`` records a module's inputs in a short render,
    ``torch.export`` exports the module with the latent height and width dynamic (so the square, 4:5
    and 3:4 outputs share one program), ``spaces.aoti_compile`` compiles it with Inductor into a package
    ZeroGPU can ship between processes; on ZeroGPU this runs in one long GPU call at startup. Instead of
    ``spaces.aoti_apply``, which drains the module's parameters, a small forward wrapper routes each
    call: the eager modules stay for what the programs were not built for (LoRA adapters: the fast
    mode, identity LoRAs and their training; a face-adapter scale other than ``AOTI_IP_SCALE``, which is
    a Python float in diffusers' IP-Adapter processors and so baked into the UNet program; other
    batch sizes). The IdentityNet program is built at conditioning scale 1 and its residuals are scaled
    per call (they are linear in the scale). Costs a second copy of the compiled weights on ZeroGPU.
    """
    prepare_models(models)
    aoti_release(models)  # compiling again: export the eager modules
    key = _cache_key(models)
    started = time.perf_counter()
    programs = _aoti_build_on_gpu(key) if config.on_zerogpu() and key is not None else _aoti_build(models)
    for name, module in (("identitynet", models.identitynet), ("unet", models.pipe.unet)):
        module.forward = _AotiForward(module.forward, programs[name], models)
    models.aoti = programs
    log.info("AoTI: compiled the UNet and IdentityNet in %.0f s", time.perf_counter() - started)
    return programs


def aoti_release(models: Models) -> None:
    """Route every call back to the eager modules and drop the AoTI programs."""
    for module in (models.identitynet, models.pipe.unet):
        if isinstance(module.__dict__.get("forward"), _AotiForward):
            del module.forward
    models.aoti = {}


# --------------------------------------------------------------------------------------
# Step 1: checking a request
# --------------------------------------------------------------------------------------


def _finite_in(value: Any, low: float, high: float, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise errors.InvalidRequest(f"{what} must be a number, not {value!r}.") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise errors.InvalidRequest(f"{what} must be between {low} and {high}, not {value}.")
    return number


def check_request(request: RenderRequest) -> None:
    """Raise :class:`errors.InvalidRequest` with a readable message for anything out of range."""
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        raise errors.InvalidRequest("The prompt is empty.")
    if not isinstance(request.negative_prompt, str):
        raise errors.InvalidRequest("The negative prompt must be text.")
    for text, what in ((request.prompt, "prompt"), (request.negative_prompt, "negative prompt")):
        if len(text) > config.MAX_RENDER_PROMPT_CHARS:
            raise errors.InvalidRequest(
                f"The {what} is longer than {config.MAX_RENDER_PROMPT_CHARS} characters."
            )
    emb = np.asarray(request.face_embedding)
    if (
        emb.ndim != 1
        or emb.size == 0
        or not np.issubdtype(emb.dtype, np.number)
        or not np.isfinite(emb).all()
    ):
        raise errors.InvalidRequest("The face embedding must be a vector of finite numbers.")
    if not np.any(emb):
        raise errors.InvalidRequest("The face embedding is all zeros.")
    if not isinstance(request.control_image, Image.Image):
        raise errors.InvalidRequest("The control image must be a PIL image.")
    for side, what in ((request.width, "Width"), (request.height, "Height")):
        if not isinstance(side, (int, np.integer)) or not (
            config.RENDER_MIN_SIDE <= side <= config.RENDER_MAX_SIDE
        ):
            raise errors.InvalidRequest(
                f"{what} must be a whole number of pixels from {config.RENDER_MIN_SIDE} to "
                f"{config.RENDER_MAX_SIDE}, not {side!r}."
            )
        if side % 8:
            raise errors.InvalidRequest(f"{what} must be a multiple of 8, not {side}.")
    if not isinstance(request.num_images, (int, np.integer)) or not (
        config.MIN_IMAGES <= request.num_images <= config.MAX_PACK_IMAGES
    ):
        raise errors.InvalidRequest(
            f"The number of images must be from {config.MIN_IMAGES} to {config.MAX_PACK_IMAGES}."
        )
    if not isinstance(request.seed, (int, np.integer)) or not (0 <= request.seed <= config.MAX_SEED):
        raise errors.InvalidRequest(f"The seed must be a whole number from 0 to {config.MAX_SEED}.")
    if not isinstance(request.steps, (int, np.integer)) or not (
        config.MIN_STEPS <= request.steps <= config.MAX_STEPS
    ):
        raise errors.InvalidRequest(
            f"Steps must be a whole number from {config.MIN_STEPS} to {config.MAX_STEPS}."
        )
    scales = (config.MIN_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE)
    _finite_in(request.guidance, config.MIN_GUIDANCE, config.MAX_GUIDANCE, "Guidance")
    _finite_in(request.identity_strength, *scales, "Identity strength")
    _finite_in(request.identitynet_strength, *scales, "IdentityNet strength")
    if request.lora is not None:
        lora = request.lora
        if (
            not isinstance(lora, Mapping)
            or not isinstance(lora.get("state_dict"), Mapping)
            or not lora["state_dict"]
        ):
            raise errors.InvalidRequest("The identity LoRA must be a dict with a non-empty 'state_dict'.")
        if not all(torch.is_tensor(v) for v in lora["state_dict"].values()):
            raise errors.InvalidRequest("The identity LoRA's state dict must hold tensors.")
        _finite_in(lora.get("scale", 1.0), *scales, "LoRA strength")


def effective_settings(request: RenderRequest) -> tuple[int, float]:
    """(steps, guidance) the render uses: the request's, or the fast mode's few-step range."""
    if not request.fast:
        return int(request.steps), float(request.guidance)
    steps = min(max(int(request.steps), config.FAST_MIN_STEPS), config.FAST_MAX_STEPS)
    guidance = float(request.guidance)
    if not (1.0 <= guidance <= config.FAST_MAX_GUIDANCE):
        guidance = config.FAST_GUIDANCE
    return steps, guidance


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def render(request: RenderRequest, progress: Progress | None = None) -> list[Image.Image]:
    """Render ``request.num_images`` images; PIL images in CPU memory, image ``i`` from ``seed + i``.

    Safe to call from several threads: renders run one at a time on the GPU. On ZeroGPU a request
    whose estimate exceeds ``config.ZEROGPU_MAX_DURATION`` runs as several GPU calls of fewer images
    (the same images: each depends only on its own seed).
    """
    check_request(request)
    models = load_models(embedding_size=int(np.asarray(request.face_embedding).size))
    _check_for_models(models, request)
    chunks = _gpu_chunks(request) if config.on_zerogpu() else [(0, request.num_images)]
    images: list[Image.Image] = []
    for start, count in chunks:
        part = dataclasses.replace(request, seed=request.seed + start, num_images=count)
        images += _render_on_gpu(part, _sub_progress(progress, start, count, request.num_images))
    return images


def _check_for_models(models: Models, request: RenderRequest) -> None:
    size = int(np.asarray(request.face_embedding).size)
    if size != models.embedding_size:
        raise errors.InvalidRequest(
            f"This identity's face embedding has {size} values but the face adapter takes "
            f"{models.embedding_size}: it was made with other face models."
        )
    if request.lora is not None:
        from headshot import lora

        lora.validate_lora_state_dict(request.lora["state_dict"], models.pipe)


def render_on(models: Models, request: RenderRequest, progress: Progress | None = None) -> list[Image.Image]:
    """:func:`render` with these models, in this process (no ZeroGPU call, no model cache).

    For the warm-up and for benchmarks that assemble their own :class:`Models` (full-size random
    weights); the app calls :func:`render`.
    """
    check_request(request)
    _check_for_models(models, request)
    prepare_models(models)
    with _GPU_LOCK, torch.no_grad():
        return _render(models, request, progress)


def _gpu_chunks(request: RenderRequest) -> list[tuple[int, int]]:
    """(first image, image count) per GPU call, each call within ZeroGPU's duration limit."""
    per_call = request.num_images
    while per_call > 1 and _estimate_seconds(dataclasses.replace(request, num_images=per_call)) > (
        config.ZEROGPU_MAX_DURATION
    ):
        per_call -= 1
    return [
        (start, min(per_call, request.num_images - start)) for start in range(0, request.num_images, per_call)
    ]


def _sub_progress(progress: Progress | None, start: int, count: int, total: int) -> Progress | None:
    if progress is None or (start == 0 and count == total):
        return progress

    def scaled(fraction: float, desc: str = "") -> None:
        progress((start + fraction * count) / total, desc=desc)

    return scaled


def estimate_duration(request: RenderRequest, progress: Progress | None = None) -> int:
    """Seconds of GPU time to ask ZeroGPU for: a fixed cost plus the denoising compute (capped)."""
    return int(min(config.ZEROGPU_MAX_DURATION, math.ceil(_estimate_seconds(request))))


def _estimate_seconds(request: RenderRequest) -> float:
    steps, guidance = effective_settings(request)
    megapixel_ratio = request.width * request.height / 1024**2
    tflop_per_step = (
        (SDXL_UNET_TFLOP_1024 + IDENTITYNET_TFLOP_1024) * megapixel_ratio * (2 if guidance > 1 else 1)
    )
    seconds = config.ZEROGPU_BASE_SECONDS + 1.25 * request.num_images * steps * tflop_per_step / (
        config.ZEROGPU_EFFECTIVE_TFLOPS
    )
    if request.lora is not None:
        seconds += LORA_LOAD_SECONDS
    if request.fast:
        seconds += LORA_LOAD_SECONDS
    return seconds


@spaces.GPU(duration=estimate_duration)
def _render_on_gpu(request: RenderRequest, progress: Progress | None = None) -> list[Image.Image]:
    models = load_models(embedding_size=int(np.asarray(request.face_embedding).size))
    with _GPU_LOCK, torch.no_grad():
        return _render(models, request, progress)


def _render(models: Models, request: RenderRequest, progress: Progress | None) -> list[Image.Image]:
    """The recipe in this request's compiled-code mode. The caller holds the GPU lock."""
    with _compiled_modes(models, request):
        return _render_images(models, request, progress)


def _render_images(models: Models, request: RenderRequest, progress: Progress | None) -> list[Image.Image]:
    """The recipe. The caller holds the GPU lock."""
    from headshot import instantid

    pipe, device, dtype = models.pipe, models.device, models.dtype

    # 1. Check inputs (done by render) and resolve the settings this render uses.
    steps, guidance = effective_settings(request)
    do_cfg = guidance > 1.0
    count = int(request.num_images)

    # 2. Configure every per-request setting: adapters, face-adapter scale, VAE tiling.
    loaded: list[str] = []
    try:
        _configure_adapters(models, request, loaded)
        pipe.set_ip_adapter_scale(float(request.identity_strength))
        tiling = models.fast_paths.vae_tiling
        if tiling == "on" or (
            tiling == "auto" and max(request.width, request.height) > config.VAE_TILING_ABOVE
        ):
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()

        # 3. Encode the prompt (once for all images).
        prompt_embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=request.prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=do_cfg,
            negative_prompt=request.negative_prompt or None,
        )

        # 4. Encode the face: adapter input for the UNet, face tokens for the IdentityNet.
        image_embeds = instantid.face_image_embeds(
            request.face_embedding, do_classifier_free_guidance=do_cfg, device=device, dtype=dtype
        )
        identitynet = instantid.identitynet_for_request(models.identitynet, pipe.unet, image_embeds)

        # 5. Prepare the control image (the keypoints at the output size).
        control = request.control_image.convert("RGB")
        if control.size != (request.width, request.height):
            control = control.resize((request.width, request.height), Image.BILINEAR)

        images = []
        for index in range(count):
            # 6. Denoise: a fresh scheduler and a generator seeded for this image alone.
            run = _request_pipeline(pipe, identitynet, _scheduler(pipe.scheduler.config, request.fast))
            result = run(
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_embeds,
                pooled_prompt_embeds=pooled,
                negative_pooled_prompt_embeds=negative_pooled,
                image=[control],
                width=request.width,
                height=request.height,
                num_inference_steps=steps,
                guidance_scale=guidance,
                controlnet_conditioning_scale=[float(request.identitynet_strength)],
                ip_adapter_image_embeds=[image_embeds],
                generator=torch.Generator("cpu").manual_seed(int(request.seed) + index),
                output_type="latent",
                callback_on_step_end=_step_callback(progress, index, count),
            )
            # 7. Decode to a PIL image in CPU memory.
            images.append(_decode(pipe, result.images))
        return images
    finally:
        _release_adapters(models, loaded)


def _scheduler(scheduler_config: Mapping[str, Any], fast: bool):
    """DPM++ 2M Karras normally; the LCM scheduler for the few-step LoRA."""
    from diffusers import DPMSolverMultistepScheduler, LCMScheduler

    if fast:
        return LCMScheduler.from_config(scheduler_config)
    return DPMSolverMultistepScheduler.from_config(
        scheduler_config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )


def _request_pipeline(pipe, identitynet, scheduler):
    """A pipeline object for one image: the shared modules, this request's IdentityNet and scheduler."""
    components = {**pipe.components, "controlnet": identitynet, "scheduler": scheduler}
    run = type(pipe)(
        **components,
        force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt,
        add_watermarker=False,
    )
    run.set_progress_bar_config(disable=True)
    return run


def _step_callback(progress: Progress | None, index: int, count: int):
    def on_step_end(run, step: int, timestep, tensors: dict) -> dict:
        if progress is not None:
            total = max(1, run.num_timesteps)
            progress((index + (step + 1) / total) / count, desc=f"Image {index + 1} of {count}")
        return {}

    return on_step_end


def _decode(pipe, latents: torch.Tensor) -> Image.Image:
    vae = pipe.vae
    latents = latents.to(vae.dtype)
    mean = getattr(vae.config, "latents_mean", None)
    std = getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        latents = latents * std_t / vae.config.scaling_factor + mean_t
    else:
        latents = latents / vae.config.scaling_factor
    decoded = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")[0]


# --------------------------------------------------------------------------------------
# LoRA adapters (per request)
# --------------------------------------------------------------------------------------


def _identity_adapter_name(lora: Mapping[str, Any]) -> str:
    """A per-request adapter name that can never clash with the fast-mode adapter."""
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(lora.get("name") or "identity"))
    return f"request_{name[:64]}"


def _configure_adapters(models: Models, request: RenderRequest, loaded: list[str]) -> None:
    """Activate exactly this request's LoRAs; ``loaded`` collects the ones loaded for it (to remove)."""
    pipe = models.pipe
    active: list[str] = []
    weights: list[float] = []
    if request.fast:
        if not models.fast_loaded:
            try:
                pipe.load_lora_weights(**models.fast_lora, adapter_name=FAST_ADAPTER)
            except Exception as exc:
                if models.profile == "full" and _unavailable(exc):
                    raise errors.ModelsUnavailable(
                        f"The fast-mode LoRA ({config.FAST_LORA.repo_id}) could not be downloaded. Turn "
                        "fast mode off, connect to the internet, or set HEADSHOT_PROFILE=tiny to run offline."
                    ) from exc
                raise
            models.fast_loaded = True
        active.append(FAST_ADAPTER)
        weights.append(1.0)
    if request.lora is not None:
        name = _identity_adapter_name(request.lora)
        if name in _adapter_names(pipe):
            pipe.delete_adapters(name)  # a leftover from a failed render
        loaded.append(name)
        pipe.load_lora_weights(dict(request.lora["state_dict"]), adapter_name=name)
        active.append(name)
        weights.append(float(request.lora.get("scale", 1.0)))
    if active:
        pipe.enable_lora()
        pipe.set_adapters(active, adapter_weights=weights)
    elif _adapter_names(pipe):
        pipe.disable_lora()


def _adapter_names(pipe) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def _release_adapters(models: Models, loaded: Sequence[str]) -> None:
    """Delete the request's own adapters and switch the rest off, so nothing leaks into the next one."""
    pipe = models.pipe
    present = _adapter_names(pipe)
    mine = [name for name in loaded if name in present]
    if mine:
        pipe.delete_adapters(mine)
    if _adapter_names(pipe):
        pipe.disable_lora()


# --------------------------------------------------------------------------------------
# Identity LoRA training (GPU work, so it lives here with the shared UNet and the GPU lock)
# --------------------------------------------------------------------------------------


def train_identity_lora(
    images: Sequence[Image.Image],
    bboxes: Sequence[Any] | None = None,
    *,
    steps: int | None = None,
    rank: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
):
    """Train a quick identity LoRA on the selfies with ``lora.train_lora`` on the shared UNet.

    Returns ``lora.LoraResult``. On ZeroGPU training runs in time-bounded GPU calls that resume from
    one another; elsewhere in one call.
    """
    from headshot import lora

    settings = lora.LoraSettings.for_profile(seed=int(seed))
    if steps is not None:
        settings.steps = int(steps)
    if rank is not None:
        settings.rank = int(rank)
        settings.alpha = float(rank)
    if learning_rate is not None:
        settings.learning_rate = float(learning_rate)
    if config.on_zerogpu():
        settings.time_budget_s = float(config.ZEROGPU_MAX_DURATION - 2 * config.ZEROGPU_BASE_SECONDS)
    settings.check()
    load_models()
    result = None
    while result is None or not result.done:
        result = _train_on_gpu(
            list(images), bboxes, settings, None if result is None else result.state, progress
        )
    return result


def _train_duration(images, bboxes, settings, resume=None, progress=None) -> int:
    budget = settings.time_budget_s or config.ZEROGPU_MAX_DURATION
    return int(min(config.ZEROGPU_MAX_DURATION, budget + 2 * config.ZEROGPU_BASE_SECONDS))


@spaces.GPU(duration=_train_duration)
def _train_on_gpu(images, bboxes, settings, resume=None, progress: Progress | None = None):
    from headshot import lora

    models = load_models()

    def report(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(step / max(1, total), desc=f"Training the LoRA: step {step} of {total}, loss {loss:.4f}")

    with _GPU_LOCK, _compiled_modes(models, None):
        if _adapter_names(models.pipe):
            models.pipe.disable_lora()
        return lora.train_lora(models.pipe, images, settings, bboxes=bboxes, resume=resume, progress=report)


# --------------------------------------------------------------------------------------
# What the user is told about the machine
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _cpu_tflops() -> float:
    """Measured float32 convolution throughput of this CPU (a 320-channel 3x3 convolution)."""
    conv = torch.nn.Conv2d(320, 320, 3, padding=1)
    x = torch.randn(1, 320, 48, 48)
    flop = 2 * 320 * 320 * 9 * 48 * 48
    with torch.inference_mode():
        conv(x)
        started = time.perf_counter()
        runs = 3
        for _ in range(runs):
            conv(x)
        elapsed = time.perf_counter() - started
    return runs * flop / max(elapsed, 1e-9) / 1e12


def estimate_cpu_seconds(width: int = 1024, height: int = 1024, steps: int = 30, cfg: bool = True) -> float:
    """Rough seconds for one full-size render on this CPU (denoising compute / measured throughput)."""
    tflop = (SDXL_UNET_TFLOP_1024 + IDENTITYNET_TFLOP_1024) * (2 if cfg else 1) * width * height / 1024**2
    return steps * tflop / _cpu_tflops()


def _duration_words(seconds: float) -> str:
    if seconds >= 90 * 60:
        return f"about {seconds / 3600:.0f} hours"
    if seconds >= 90:
        return f"about {seconds / 60:.0f} minutes"
    return f"about {max(1, round(seconds))} seconds"


def device_summary() -> dict:
    """Where renders run and what that means for the user (cheap: loads no model)."""
    profile = config.profile()
    try:
        device = select_device()
        dtype = select_dtype(device, FastPaths.from_env().dtype)
    except errors.HeadshotError as exc:
        return {"device": "unavailable", "dtype": None, "gpu": False, "profile": profile, "note": exc.message}
    summary = {
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "gpu": device.type in ("cuda", "mps"),
        "profile": profile,
    }
    if profile == "tiny":
        summary["note"] = (
            "Tiny test profile (HEADSHOT_PROFILE=tiny): the models are random, so the images are noise. "
            "Everything else (selfie checks, identities, styles, the API) works as in the full app."
        )
    elif device.type == "cuda":
        name = "ZeroGPU" if config.on_zerogpu() else torch.cuda.get_device_name(0)
        summary["note"] = f"GPU ({name}, {summary['dtype']}): a 1024x1024 headshot takes seconds."
    elif device.type == "mps":
        summary["note"] = "Apple GPU (mps, float16): a 1024x1024 headshot takes a minute or more."
    else:
        full = estimate_cpu_seconds(steps=30, cfg=True)
        fast = estimate_cpu_seconds(steps=config.FAST_MIN_STEPS + 2, cfg=False)
        summary["note"] = (
            f"No GPU: a 1024x1024 image at 30 steps takes {_duration_words(full)} on this CPU "
            f"(fast mode: {_duration_words(fast)}). A CUDA GPU or a ZeroGPU Space renders one in seconds."
        )
    return summary
