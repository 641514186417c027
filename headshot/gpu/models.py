"""The models of one process: device and precision, loading once per profile, fast paths, compile.

Profiles (``config.profile()``): ``full`` loads a photoreal SDXL checkpoint, InstantID's IdentityNet and
face adapter and the fast-mode LCM-LoRA, each at a pinned Hub revision; ``tiny`` loads the random
repositories ``tiny.py`` builds on disk through the same ``from_pretrained`` code.
:class:`FastPaths` are the switchable speed-ups (``HEADSHOT_DTYPE``, ``_SDPA``, ``_FP16_VAE``,
``_CHANNELS_LAST``, ``_VAE_TILING``, ``_WARMUP``, ``_COMPILE``, ``_COMPILE_SCOPE``, ``_AOTI``); the
catalogue and what each one gains is in ``benchmarks/README.md``. This module never renders: the
startup sequence (load, AoTI compile, warm-up) is ``pipeline``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch

from headshot import config, errors
from headshot.gpu import tiny

log = logging.getLogger(__name__)

FULL_EMBEDDING_SIZE = 512  # antelopev2's recognizer; InstantID's adapter takes this size
TINY_BASE_MODEL = f"headshot/tiny-sdxl-v{tiny.TINY_FORMAT}"
# Compute per denoising step for one 1024x1024 image, counted with torch.utils.flop_counter on the
# SDXL base UNet and an IdentityNet of the same width (meta tensors, batch 1).
SDXL_UNET_TFLOP_1024 = 6.76
IDENTITYNET_TFLOP_1024 = 2.99
AOTI_IP_SCALE = 0.8  # the face-adapter scale baked into the AoTI-compiled UNet (most styles use it)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DTYPES = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}
DTYPES |= {"fp32": "float32", "float32": "float32"}


def _env_choice(name: str, choices: Sequence[str], default: str) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise errors.InvalidRequest(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def env_switch(name: str) -> bool | None:
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
            sdpa=env_switch("HEADSHOT_SDPA") is not False,
            fp16_vae=env_switch("HEADSHOT_FP16_VAE") is not False,
            channels_last=env_switch("HEADSHOT_CHANNELS_LAST"),
            vae_tiling=_env_choice("HEADSHOT_VAE_TILING", ("auto", "on", "off"), "auto"),
            warmup=env_switch("HEADSHOT_WARMUP"),
            compile=compile_mode,
            compile_scope=_env_choice("HEADSHOT_COMPILE_SCOPE", ("full", "regional"), "full"),
            aoti=bool(env_switch("HEADSHOT_AOTI")),
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
    aoti: dict = dataclasses.field(default_factory=dict)  # module name -> aoti.AotiProgram
    aoti_gate: bool = False  # set per render: may this request use the AoTI programs?
    aoti_lora: dict | None = None  # set per render: the request's LoRA, which the UNet program runs fused
    started: bool = False  # pipeline's startup sequence (AoTI compile, warm-up) has run



_LOAD_LOCK = threading.Lock()
_MODELS: dict[tuple, Models] = {}


# Device and precision


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


# Loading (once per process)


def base_model_id() -> str:
    """The base-model id identity files record (and are checked against)."""
    return TINY_BASE_MODEL if config.profile() == "tiny" else config.SDXL_BASE.repo_id


def _analyzer_embedding_size() -> int:
    from headshot.faces import analyzer

    return int(analyzer.get_analyzer().embedding_size)


def load_models(embedding_size: int | None = None) -> Models:
    """Load (once per process) and return the models of the current profile and device, prepared.

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
                _MODELS[key] = models
                log.info("loaded %s models on %s in %.1f s", profile, device, time.perf_counter() - started)
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


def cache_key(models: Models) -> tuple | None:
    """The key ``models`` is cached under (a ZeroGPU worker finds the models by it), or None."""
    return next((key for key, cached in _MODELS.items() if cached is models), None)


def cached_models(key: tuple) -> Models:
    return _MODELS[key]


def output_sizes(models: Models) -> dict[str, tuple[int, int]]:
    return config.OUTPUT_SIZES if models.profile == "full" else config.TINY_OUTPUT_SIZES


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

    from headshot.gpu import instantid

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
    quiet_long_negative(pipe)
    return pipe, identitynet


# transformers' warning for a text longer than the tokenizer's window (once per tokenizer and process).
LONG_TEXT_WARNING = "sequence-length-is-longer-than-the-specified-maximum"


def quiet_long_negative(pipe) -> None:
    """No "Token indices sequence length is longer ..." in the log for the negative prompt: it is long by
    design (``styles.negative_prompt``: the safety words first, so CLIP's 77-token window cuts only its tail),
    and diffusers' textual-inversion check tokenizes it whole. The positive prompt keeps diffusers' own
    warning ("The following part of your input was truncated"), which names the words lost."""
    for tokenizer in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)):
        warnings = getattr(tokenizer, "deprecation_warnings", None)
        if isinstance(warnings, dict):
            warnings[LONG_TEXT_WARNING] = True


def _load_tiny(embedding_size: int, device: torch.device, dtype: torch.dtype, fast: FastPaths) -> Models:
    from headshot.gpu import instantid

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
    _quiet_tiny_truncation(pipe)
    fast_lora = {
        "pretrained_model_name_or_path_or_dict": str(paths["fast_lora"]),
        "weight_name": "pytorch_lora_weights.safetensors",
    }
    return Models(
        pipe, identitynet, device, dtype, "tiny", embedding_size, TINY_BASE_MODEL, fast_lora, fast_paths=fast
    )


TRUNCATION_NOTICE = "The following part of your input was truncated"  # diffusers' encode_prompt


class _TinyTruncation(logging.Filter):
    """Drops diffusers' "... was truncated because CLIP can only handle sequences up to 77 tokens": the
    tiny tokenizer spells most words letter by letter (a small vocabulary, ``tiny._write_tokenizer``), so
    every style's prompt, which fits CLIP's real 77 tokens, runs past 77 tiny tokens. Not a fact about the
    prompt; the full profile keeps the warning, where it names words a render really lost."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TRUNCATION_NOTICE)


def _quiet_tiny_truncation(pipe) -> None:
    """Install :class:`_TinyTruncation` on the logger of the pipeline's module (once)."""
    logger = logging.getLogger(type(pipe).__module__)
    if not any(isinstance(f, _TinyTruncation) for f in logger.filters):
        logger.addFilter(_TinyTruncation())


def unavailable(exc: BaseException) -> bool:
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
    from headshot.gpu import instantid

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
        if not unavailable(exc):
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


# Fast paths: applied once per loaded pipeline

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


VAE_DECODE_GIB_1024 = 4.5  # extra memory of an untiled SDXL VAE decode at 1024x1024 in half precision


def vae_tiling(models: Models, width: int, height: int) -> bool:
    """Decode this size in tiles? ``HEADSHOT_VAE_TILING`` on/off, else only where memory needs it.

    On CUDA: when the untiled decode (about ``VAE_DECODE_GIB_1024`` GiB at 1024x1024 in half precision,
    scaling with the pixel count) would not fit in 80% of the free GPU memory. On the CPU: never.
    On mps (memory shared with the system): above ``config.VAE_TILING_ABOVE`` px.
    """
    mode = models.fast_paths.vae_tiling
    if mode != "auto":
        return mode == "on"
    if models.device.type == "cuda":
        need = VAE_DECODE_GIB_1024 * 2**30 * width * height / 1024**2
        need *= 2 if models.pipe.vae.dtype == torch.float32 else 1
        free, _ = torch.cuda.mem_get_info(models.device)
        return need > 0.8 * free
    if models.device.type == "mps":
        return max(width, height) > config.VAE_TILING_ABOVE
    return False


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


# What the user is told about the machine


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
