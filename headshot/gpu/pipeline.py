"""The GPU entry points: the startup sequence, rendering, LoRA training, the ZeroGPU calls.

The only importer of ``spaces``. Startup (:func:`ready_models`): load the models (``models``), load the
fast LoRA (``adapters``), compile ahead of time when ``HEADSHOT_AOTI`` is on (``aoti``), warm up.
:func:`render_all` checks requests and runs the recipe (``recipe``) in GPU calls sized to ZeroGPU's
duration limit; :func:`train_identity_lora` trains a person's LoRA (``lora``) in resumable calls
whose state stays here. GPU functions are generators of data events (progress, then the result), so
nothing but data crosses ZeroGPU's process boundary; ``HEADSHOT_ZEROGPU_EMULATE=1`` runs them under
``zerogpu``'s emulation. One lock serialises the GPU work (renders and training share the UNet). The
durations the calls ask for, their split and their charges are ``sizing``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import spaces  # ZeroGPU: imported before torch (it must come before CUDA is initialised)
import torch
from PIL import Image

from headshot import config, errors
from headshot.gpu import adapters, aoti, models, sizing, zerogpu
from headshot.gpu.models import (
    Models,
    base_model_id,
    device_summary,
    load_models,
)
from headshot.gpu.recipe import (
    Progress,
    RenderRequest,
    check_for_models,
    check_request,
    compiled_modes,
    render_batch,
    render_images,
    warm_up_request,
)

__all__ = [
    "RenderRequest",
    "base_model_id",
    "device_summary",
    "ready_models",
    "render",
    "render_on",
    "start_preload",
    "train_identity_lora",
    "warm_up",
]

log = logging.getLogger(__name__)

AOTI_COMPILE_SECONDS = 1500  # GPU time asked of ZeroGPU for compiling at startup

_GPU_LOCK = threading.Lock()  # one GPU: renders and training run one at a time
zerogpu.guard_forks(_GPU_LOCK)  # the emulation forks its workers only while no render holds it
_START_LOCK = threading.Lock()


def _gpu(duration: int | Callable[..., int]) -> Callable[[Callable[..., Iterator]], Callable[..., Iterator]]:
    """``@spaces.GPU`` (a no-op off ZeroGPU), or the emulated ZeroGPU under ``HEADSHOT_ZEROGPU_EMULATE=1``.

    Every GPU function is a generator of events (``("progress", fraction, desc)``, then
    ``("result", value)``): only data crosses the ZeroGPU boundary, never a callback. The emulation is
    chosen per call, so a test can switch it on.
    """

    def decorate(task: Callable[..., Iterator]) -> Callable[..., Iterator]:
        size = config.ZEROGPU_GPU_SIZE
        real, emulated = spaces.GPU(duration=duration, size=size)(task), zerogpu.gpu(duration, size)(task)

        @functools.wraps(task)
        def call(*args: Any, **kwargs: Any) -> Iterator:
            return (emulated if zerogpu.enabled() else real)(*args, **kwargs)

        return call

    return decorate


# Startup: load -> compile -> warm up (once per loaded models)


def ready_models(embedding_size: int | None = None) -> Models:
    """The loaded models after the startup sequence: the fast LoRA, AoTI compile and warm-up (where on)."""
    loaded = load_models(embedding_size)
    if not loaded.started:
        with _START_LOCK:
            if not loaded.started:
                try:
                    try:  # once, switched off: a fast request switches it on, no GPU call reloads it
                        adapters.load_fast(loaded)
                    except errors.ModelsUnavailable as exc:  # fast mode says so when asked for
                        log.warning("fast mode unavailable: %s", exc.message)
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
            _drain(_render_on_gpu([request]), None)
        else:
            render_on(loaded, request)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    loaded.warm_up_seconds = round(time.perf_counter() - started, 3)
    log.info("warm-up renders %s in %.1f s", list(sizes), loaded.warm_up_seconds)
    return loaded.warm_up_seconds


@_gpu(AOTI_COMPILE_SECONDS)
def _aoti_build_on_gpu(key: tuple) -> Iterator[tuple]:
    with _GPU_LOCK:
        yield (
            "result",
            aoti.build_programs(models.cached_models(key), spaces.aoti_capture, spaces.aoti_compile),
        )


def aoti_compile(loaded: Models) -> dict[str, aoti.AotiProgram]:
    """Compile the UNet and IdentityNet ahead of time and route their calls to the programs.

    On ZeroGPU in one long GPU call at startup; costs a second copy of the compiled weights there.
    """
    models.prepare_models(loaded)
    aoti.release(loaded)  # compiling again: export the eager modules
    key = models.cache_key(loaded)
    started = time.perf_counter()
    if config.on_zerogpu() and key is not None:
        programs = _drain(_aoti_build_on_gpu(key), None)
    else:
        with _GPU_LOCK:
            programs = aoti.build_programs(loaded, spaces.aoti_capture, spaces.aoti_compile)
    aoti.install(loaded, programs)
    log.info("AoTI: compiled the UNet and IdentityNet in %.0f s", time.perf_counter() - started)
    return programs


# Rendering


def render(request: RenderRequest, progress: Progress | None = None) -> list[Image.Image]:
    """Render ``request.num_images`` images; PIL images in CPU memory, image ``i`` from ``seed + i``."""
    return render_all([request], progress)[0]


def render_all(
    requests: Sequence[RenderRequest], progress: Progress | None = None
) -> list[list[Image.Image]]:
    """Render several requests (a pack), in as few GPU calls as ZeroGPU's duration limit allows.

    Safe to call from several threads: renders run one at a time on the GPU. A person's LoRA shared by
    the requests is loaded once per GPU call. On ZeroGPU a long batch runs as several calls of fewer
    images (the same images: each depends only on its own seed). A call refused or stopped after earlier
    calls made images raises :class:`errors.RenderIncomplete` with them, so nothing paid for is lost.
    """
    for request in requests:
        check_request(request)
    loaded = ready_models(embedding_size=int(np.asarray(requests[0].face_embedding).size))
    for request in requests:
        check_for_models(loaded, request)
    calls = sizing.gpu_calls(requests) if config.on_zerogpu() else [[(i, r) for i, r in enumerate(requests)]]
    results: list[list[Image.Image]] = [[] for _ in requests]
    total = sum(r.num_images for r in requests)
    done = 0
    for call in calls:
        count = sum(part.num_images for _, part in call)
        parts = [part for _, part in call]
        try:
            images = _drain(_render_on_gpu(parts), _sub_progress(progress, done, count, total))
        except (errors.GpuQuotaExceeded, errors.GpuAborted) as exc:
            if not done:
                raise
            raise errors.RenderIncomplete(exc, results) from exc
        for (index, _), part_images in zip(call, images, strict=True):
            results[index].extend(part_images)
        done += count
    return results


def render_on(loaded: Models, request: RenderRequest, progress: Progress | None = None) -> list[Image.Image]:
    """:func:`render` with these models, in this process (no ZeroGPU call, no model cache).

    For the warm-up and for benchmarks that assemble their own :class:`Models` (full-size random
    weights); the app calls :func:`render`.
    """
    check_request(request)
    check_for_models(loaded, request)
    models.prepare_models(loaded)
    with _GPU_LOCK, torch.no_grad():
        return render_images(loaded, request, progress)


def _sub_progress(progress: Progress | None, start: int, count: int, total: int) -> Progress | None:
    if progress is None or (start == 0 and count == total):
        return progress

    def scaled(fraction: float, desc: str = "") -> None:
        progress((start + fraction * count) / total, desc)

    return scaled


@_gpu(sizing.estimate_duration)
def _render_on_gpu(requests: list[RenderRequest]) -> Iterator[tuple]:
    """The GPU call: progress events, then ``("result", images per request)``. Arguments pickle."""
    # On ZeroGPU a worker process: the models loaded in the main process are found by their key.
    loaded = load_models(embedding_size=int(np.asarray(requests[0].face_embedding).size))

    def work(progress: Progress) -> list[list[Image.Image]]:
        with _GPU_LOCK, torch.no_grad():
            return render_batch(loaded, requests, progress)

    yield from _streamed(work)


def _streamed(work: Callable[[Progress], Any]) -> Iterator[tuple]:
    """Run ``work(progress)`` in a thread and yield its progress as ``("progress", fraction, desc)``
    events, then ``("result", value)``: the progress crosses the ZeroGPU boundary as data."""
    events: queue.SimpleQueue = queue.SimpleQueue()

    def run() -> None:
        try:
            events.put(("result", work(lambda fraction, desc="": events.put(("progress", fraction, desc)))))
        except BaseException as exc:  # raised again in the GPU function, so the caller sees it
            events.put(("error", exc))

    threading.Thread(target=run, name="headshot-gpu-work", daemon=True).start()
    while True:
        event = events.get()
        if event[0] == "error":
            raise event[1]
        yield event
        if event[0] == "result":
            return


def _drain(events: Iterator[tuple], progress: Progress | None) -> Any:
    """Consume a GPU call's events in the main process: progress to ``progress``, then the result.

    ZeroGPU's refusals (quota, in ``spaces``' words) and aborts become :mod:`errors` a person understands,
    with the seconds requested, left and until GPU time returns (``zerogpu.user_error``).
    """
    try:
        for event in events:
            if event[0] == "progress":
                if progress is not None:
                    progress(event[1], event[2])
            else:
                return event[1]
    except errors.HeadshotError:
        raise
    except Exception as exc:
        mapped = zerogpu.user_error(exc)  # the platform's words (quota, aborts) -> a person's
        if mapped is not None:
            raise mapped from exc
        raise
    raise errors.GpuAborted("The GPU step ended without a result. Try again.")


# Identity LoRA training


def train_identity_lora(
    images: Sequence[Image.Image],
    bboxes: Sequence[Any] | None,
    settings,
    *,
    resume=None,
    progress: Progress | None = None,
    face_embedding: Any = None,
):
    """Train a person's LoRA with ``lora.train_lora`` on the shared UNet; returns ``lora.LoraResult``.

    On ZeroGPU training runs in GPU calls of at most :func:`sizing.lora_steps_per_call` steps, each asking
    for a duration computed from its steps; each call resumes from the state the last one returned,
    which stays here, in the main process. When ZeroGPU refuses a call (quota) or stops it (past its
    duration), :class:`errors.TrainingPaused` carries the last state, so nothing done is lost:
    calling again with ``resume=`` that state continues to the same weights. ``face_embedding`` (the
    identity's) conditions the face adapter when ``settings.face_adapter_scale`` > 0.
    """
    ready_models()
    total = int(settings.steps)
    per_call = sizing.lora_steps_per_call() if config.on_zerogpu() else total
    state = resume
    while True:
        done = 0 if state is None else int(state.step)
        chunk = dataclasses.replace(settings, steps=min(total, done + per_call))
        if config.on_zerogpu():
            chunk.time_budget_s = float(
                sizing.train_duration(images, bboxes, chunk, state, total) - config.ZEROGPU_BASE_SECONDS
            )
        try:
            result = _drain(
                _train_on_gpu(list(images), bboxes, chunk, state, total, face_embedding),
                progress,
            )
        except (errors.GpuQuotaExceeded, errors.GpuAborted) as exc:
            raise errors.TrainingPaused(
                f"{exc.message} Your LoRA training is saved at step {done} of {total}: press Continue "
                "(or call /continue_identity) later to go on from there.",
                state=state,
                steps_done=done,
                steps_total=total,
            ) from exc
        state = result.state
        if result.steps_run >= total:
            return result


@_gpu(sizing.train_duration)
def _train_on_gpu(images, bboxes, settings, resume, total, face_embedding=None) -> Iterator[tuple]:
    """The GPU call: training progress events, then ``("result", lora.LoraResult)``. Arguments pickle."""
    from headshot.gpu import lora

    loaded = load_models()

    def work(progress: Progress):
        def report(step: int, _chunk_total: int, loss: float) -> None:
            progress(step / max(1, total), f"Training the LoRA: step {step} of {total}, loss {loss:.4f}")

        with _GPU_LOCK, compiled_modes(loaded, None):
            if adapters.adapter_names(loaded.pipe):
                loaded.pipe.disable_lora()
            return lora.train_lora(
                loaded.pipe,
                images,
                settings,
                bboxes=bboxes,
                resume=resume,
                progress=report,
                face_embedding=face_embedding,
            )

    yield from _streamed(work)
