"""The GPU entry points: the startup sequence, ``render``, LoRA training, ZeroGPU durations and chunks.

The only importer of ``spaces``. Startup (:func:`ready_models`): load the models (``models``), compile
them ahead of time when ``HEADSHOT_AOTI`` is on (``aoti``), then warm them up with short renders.
:func:`render` checks a request, then runs the recipe (``recipe``) under ``@spaces.GPU`` with a
duration estimated from the request, in as many GPU calls as ZeroGPU's duration limit needs;
:func:`train_identity_lora` trains a person's LoRA (``lora``) in time-bounded GPU calls that resume
from one another. One lock serialises the GPU work (renders and training share the UNet). Off
ZeroGPU ``spaces.GPU`` returns the function unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import spaces  # ZeroGPU: imported before torch (it must come before CUDA is initialised)
import torch
from PIL import Image

from . import adapters, aoti, config, errors, models, recipe
from .models import (
    IDENTITYNET_TFLOP_1024,
    SDXL_UNET_TFLOP_1024,
    Models,
    base_model_id,
    device_summary,
    load_models,
)
from .recipe import (
    Progress,
    RenderRequest,
    check_for_models,
    check_request,
    compiled_modes,
    render_images,
    warm_up_request,
)

__all__ = [
    "RenderRequest",
    "base_model_id",
    "device_summary",
    "estimate_duration",
    "ready_models",
    "render",
    "render_on",
    "start_preload",
    "train_identity_lora",
    "warm_up",
]

log = logging.getLogger(__name__)

LORA_LOAD_SECONDS = 5  # loading a LoRA into the UNet (peft injection), for the ZeroGPU estimate
AOTI_COMPILE_SECONDS = 1500  # GPU time asked of ZeroGPU for compiling at startup

_GPU_LOCK = threading.Lock()  # one GPU: renders and training run one at a time
_START_LOCK = threading.Lock()


# Startup: load -> compile -> warm up (once per loaded models)


def ready_models(embedding_size: int | None = None) -> Models:
    """The loaded models, after the startup sequence (AoTI compile and warm-up, where switched on)."""
    loaded = load_models(embedding_size)
    if not loaded.started:
        with _START_LOCK:
            if not loaded.started:
                try:
                    if loaded.fast_paths.aoti:
                        try:
                            aoti_compile(loaded)
                        except Exception:  # an optimisation: serve eagerly rather than not at all
                            log.exception("AoTI compilation failed; the models run eagerly")
                            aoti.release(loaded)
                    if loaded.fast_paths.warmup:
                        warm_up(loaded)
                finally:  # once: a failed warm-up is not retried by every request
                    loaded.started = True
    return loaded


def start_preload(background: bool | None = None) -> threading.Thread | None:
    """Load (and warm up, compile) the models at startup on a CUDA GPU, so no user waits for it.

    Elsewhere (CPU, mps, the tiny profile on a CPU) it does nothing and returns None: models load on
    first use. ``HEADSHOT_PRELOAD=1`` forces it, ``0`` turns it off. Off ZeroGPU the work runs in a
    daemon thread (returned; the app serves meanwhile and a request waits for the load); on ZeroGPU it
    runs before returning, in the main process, where ZeroGPU wants the models loaded (and the AoTI
    compilation, when switched on, runs in one GPU call).
    """
    wanted = models.env_switch("HEADSHOT_PRELOAD")
    try:
        device = models.select_device()
    except errors.HeadshotError as exc:
        log.warning("not preloading the models: %s", exc.message)
        return None
    if wanted is False or (wanted is None and device.type != "cuda"):
        return None

    def preload() -> None:
        try:
            loaded = ready_models()
            log.info("models preloaded (warm-up %s s)", loaded.warm_up_seconds)
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


def warm_up(loaded: Models, sizes: Sequence[tuple[int, int]] | None = None) -> float:
    """Short renders (2 steps, with CFG) so the first request finds kernels chosen and code compiled.

    ``sizes`` defaults to the square output size, plus the 4:5 one when ``torch.compile`` is on (its
    second size makes the compiled code shape-dynamic). Returns the seconds it took (also kept in
    ``models.warm_up_seconds``). On ZeroGPU the renders run as GPU calls.
    """
    if sizes is None:
        all_sizes = models.output_sizes(loaded)
        sizes = [all_sizes["square"]] + ([all_sizes["4:5"]] if loaded.fast_paths.compile else [])
    started = time.perf_counter()
    for size in sizes:
        request = warm_up_request(loaded, size)
        if config.on_zerogpu() and models.cache_key(loaded) is not None:
            _render_on_gpu(request)
        else:
            render_on(loaded, request)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    loaded.warm_up_seconds = round(time.perf_counter() - started, 3)
    log.info("warm-up renders %s in %.1f s", list(sizes), loaded.warm_up_seconds)
    return loaded.warm_up_seconds


@spaces.GPU(duration=AOTI_COMPILE_SECONDS)
def _aoti_build_on_gpu(key: tuple) -> dict[str, aoti.AotiProgram]:
    with _GPU_LOCK:
        return aoti.build_programs(models.cached_models(key), spaces.aoti_capture, spaces.aoti_compile)


def aoti_compile(loaded: Models) -> dict[str, aoti.AotiProgram]:
    """Compile the UNet and IdentityNet ahead of time and route their calls to the programs.

    On ZeroGPU in one long GPU call at startup; costs a second copy of the compiled weights there.
    """
    models.prepare_models(loaded)
    aoti.release(loaded)  # compiling again: export the eager modules
    key = models.cache_key(loaded)
    started = time.perf_counter()
    if config.on_zerogpu() and key is not None:
        programs = _aoti_build_on_gpu(key)
    else:
        with _GPU_LOCK:
            programs = aoti.build_programs(loaded, spaces.aoti_capture, spaces.aoti_compile)
    aoti.install(loaded, programs)
    log.info("AoTI: compiled the UNet and IdentityNet in %.0f s", time.perf_counter() - started)
    return programs


# Rendering


def render(request: RenderRequest, progress: Progress | None = None) -> list[Image.Image]:
    """Render ``request.num_images`` images; PIL images in CPU memory, image ``i`` from ``seed + i``.

    Safe to call from several threads: renders run one at a time on the GPU. On ZeroGPU a request
    whose estimate exceeds ``config.ZEROGPU_MAX_DURATION`` runs as several GPU calls of fewer images
    (the same images: each depends only on its own seed).
    """
    check_request(request)
    loaded = ready_models(embedding_size=int(np.asarray(request.face_embedding).size))
    check_for_models(loaded, request)
    chunks = _gpu_chunks(request) if config.on_zerogpu() else [(0, request.num_images)]
    images: list[Image.Image] = []
    for start, count in chunks:
        part = dataclasses.replace(request, seed=request.seed + start, num_images=count)
        images += _render_on_gpu(part, _sub_progress(progress, start, count, request.num_images))
    return images


def render_on(loaded: Models, request: RenderRequest, progress: Progress | None = None) -> list[Image.Image]:
    """:func:`render` with these models, in this process (no ZeroGPU call, no model cache).

    For the warm-up and for benchmarks that assemble their own :class:`Models` (full-size random
    weights); the app calls :func:`render`.
    """
    check_request(request)
    check_for_models(loaded, request)
    models.prepare_models(loaded)
    with _GPU_LOCK, torch.no_grad(), compiled_modes(loaded, request):
        return render_images(loaded, request, progress)


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
    steps, guidance = recipe.effective_settings(request)
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
    # On ZeroGPU a worker process: the models loaded in the main process are found by their key.
    loaded = load_models(embedding_size=int(np.asarray(request.face_embedding).size))
    with _GPU_LOCK, torch.no_grad(), compiled_modes(loaded, request):
        return render_images(loaded, request, progress)


# Identity LoRA training


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
    from . import lora

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
    ready_models()
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
    from . import lora

    loaded = load_models()

    def report(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(step / max(1, total), desc=f"Training the LoRA: step {step} of {total}, loss {loss:.4f}")

    with _GPU_LOCK, compiled_modes(loaded, None):
        if adapters.adapter_names(loaded.pipe):
            loaded.pipe.disable_lora()
        return lora.train_lora(loaded.pipe, images, settings, bboxes=bboxes, resume=resume, progress=report)


