"""How much GPU time the work asks for: ZeroGPU durations, the split into calls, charges and ETAs.

A render's cost is its denoising compute (``models``' TFLOP figures per UNet and IdentityNet step, scaled
by pixel count with self-attention's square term) at ZeroGPU's effective speed, plus a fixed margin and
LoRA loading; LoRA training costs its steps at ``config.ZEROGPU_LORA_SECONDS_PER_STEP``. From these:
the duration each GPU call asks ZeroGPU for (:func:`estimate_duration`, :func:`train_duration`), the
split of a pack into calls within ZeroGPU's limit (:func:`gpu_calls`, :func:`lora_steps_per_call`),
the quota a visitor pays (:func:`expected_charge`, :func:`expected_train_charge`) and the first ETA a
person sees (:func:`expected_seconds`, :func:`expected_train_seconds`). ``pipeline`` makes the calls.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from headshot import config, errors
from headshot.gpu import models, recipe
from headshot.gpu.models import IDENTITYNET_TFLOP_1024, SDXL_UNET_TFLOP_1024
from headshot.gpu.recipe import RenderRequest

__all__ = [
    "ATTENTION_SHARE_1024",
    "LORA_LOAD_SECONDS",
    "estimate_duration",
    "estimate_seconds",
    "estimates_apply",
    "expected_charge",
    "expected_seconds",
    "expected_train_charge",
    "expected_train_seconds",
    "gpu_calls",
    "lora_steps_per_call",
    "train_duration",
]

LORA_LOAD_SECONDS = 5  # loading a LoRA into the UNet (peft injection), for the ZeroGPU estimate
# The share of a 1024 px UNet step spent in self-attention scores (QK^T and AV): 4 x N^2 x C per
# transformer block, N = 4096 tokens at C = 640 (10 blocks) and 1024 at C = 1280 (60 blocks): ~0.75 of
# its 6.76 TFLOP.
ATTENTION_SHARE_1024 = 0.11


# Rendering


def gpu_calls(requests: Sequence[RenderRequest]) -> list[list[tuple[int, RenderRequest]]]:
    """The requests split into GPU calls (parts of fewer images where needed), each within ZeroGPU's limit:
    ``(index of the request, part)`` pairs, a part's images starting at its own seed."""
    parts: list[tuple[int, RenderRequest]] = []
    for index, request in enumerate(requests):
        per_call = request.num_images
        while per_call > 1 and estimate_seconds([dataclasses.replace(request, num_images=per_call)]) > (
            config.ZEROGPU_MAX_DURATION
        ):
            per_call -= 1
        for start in range(0, request.num_images, per_call):
            count = min(per_call, request.num_images - start)
            parts.append((index, dataclasses.replace(request, seed=request.seed + start, num_images=count)))
    calls: list[list[tuple[int, RenderRequest]]] = []
    for part in parts:
        if calls and estimate_seconds([p for _, p in calls[-1]] + [part[1]]) <= config.ZEROGPU_MAX_DURATION:
            calls[-1].append(part)
        else:
            calls.append([part])
    return calls


def estimate_duration(requests: Sequence[RenderRequest]) -> int:
    """Seconds of GPU time to ask ZeroGPU for one call: a fixed cost plus the denoising compute (capped)."""
    return int(min(config.ZEROGPU_MAX_DURATION, math.ceil(estimate_seconds(requests))))


def estimate_seconds(requests: Sequence[RenderRequest]) -> float:
    """The duration a call asks: a fixed margin plus 1.25x the denoising compute, plus LoRA loading."""
    denoise, loras = _work_seconds(requests)
    return config.ZEROGPU_BASE_SECONDS + 1.25 * denoise + LORA_LOAD_SECONDS * loras


def estimates_apply() -> bool:
    """The GPU estimates describe this machine: ZeroGPU (or its emulation) and CUDA GPUs, not a CPU."""
    if config.on_zerogpu():
        return True
    try:
        return models.select_device().type == "cuda"
    except errors.HeadshotError:
        return False


def expected_seconds(requests: Sequence[RenderRequest]) -> float | None:
    """Seconds the renders should take, from the estimate their GPU calls ask ZeroGPU for (the first ETA
    a person sees; ``progress.Eta`` then corrects it from the measured pace). None on a CPU or mps."""
    if not requests or not estimates_apply():
        return None
    if config.on_zerogpu():
        return float(sum(estimate_duration([part for _, part in call]) for call in gpu_calls(requests)))
    return estimate_seconds(requests)


def expected_charge(requests: Sequence[RenderRequest]) -> float:
    """GPU seconds ZeroGPU should charge for rendering ``requests`` (its calls' effective time, by the same
    estimate as their durations without the margins): what a visitor's daily quota pays."""
    total = 0.0
    for call in gpu_calls(requests):
        denoise, loras = _work_seconds([part for _, part in call])
        total += config.ZEROGPU_CALL_SECONDS + denoise + LORA_LOAD_SECONDS * loras
    return total


def _work_seconds(requests: Sequence[RenderRequest]) -> tuple[float, int]:
    """(seconds of denoising compute at ZeroGPU's effective speed, distinct LoRAs to load)."""
    seconds = 0.0
    loras = set()
    for request in requests:
        _, guidance = recipe.effective_settings(request)
        steps = recipe.img2img_steps(request)[1]  # image-to-image runs int(steps x strength) of them
        megapixel_ratio = request.width * request.height / 1024**2
        # Self-attention grows with the square of the pixel count, the rest linearly: 2048 px costs
        # about 5.3x 1024 px, not 4x.
        size_factor = (1 - ATTENTION_SHARE_1024) * megapixel_ratio + ATTENTION_SHARE_1024 * megapixel_ratio**2
        tflop_per_step = (
            (SDXL_UNET_TFLOP_1024 + IDENTITYNET_TFLOP_1024) * size_factor * (2 if guidance > 1 else 1)
        )
        seconds += request.num_images * steps * tflop_per_step / config.ZEROGPU_EFFECTIVE_TFLOPS
        if request.lora is not None:
            loras.add(id(request.lora["state_dict"]))
    return seconds, len(loras)


# LoRA training


def lora_steps_per_call() -> int:
    """LoRA steps one ZeroGPU call may ask for (``HEADSHOT_LORA_STEPS_PER_CALL`` overrides)."""
    fixed = config.env_int("HEADSHOT_LORA_STEPS_PER_CALL", 0)
    if fixed > 0:
        return fixed
    room = config.ZEROGPU_MAX_DURATION - config.ZEROGPU_BASE_SECONDS - config.ZEROGPU_LORA_PREP_SECONDS
    return max(1, int(room / (config.ZEROGPU_LORA_SECONDS_PER_STEP * config.ZEROGPU_LORA_MARGIN)))


def train_duration(
    images: Any, bboxes: Any, settings: Any, resume: Any, total: int, face_embedding: Any = None
) -> int:
    """GPU seconds for one training call: from the steps it has left, not a flat maximum.

    The arguments are the training call's own (``pipeline``'s GPU function): only ``settings.steps`` and
    ``resume.step`` count."""
    steps = int(settings.steps) - (0 if resume is None else int(resume.step))
    seconds = (
        config.ZEROGPU_BASE_SECONDS
        + config.ZEROGPU_LORA_PREP_SECONDS
        + steps * config.ZEROGPU_LORA_SECONDS_PER_STEP * config.ZEROGPU_LORA_MARGIN
    )
    return int(min(config.ZEROGPU_MAX_DURATION, math.ceil(seconds)))


def expected_train_seconds(steps_left: int) -> float | None:
    """Seconds ``steps_left`` LoRA steps should take, from the figures the training calls' durations use;
    None on a CPU or mps."""
    if not estimates_apply():
        return None
    calls = math.ceil(max(1, steps_left) / lora_steps_per_call()) if config.on_zerogpu() else 1
    base = config.ZEROGPU_BASE_SECONDS if config.on_zerogpu() else 0
    return (
        calls * (base + config.ZEROGPU_LORA_PREP_SECONDS) + steps_left * config.ZEROGPU_LORA_SECONDS_PER_STEP
    )


def expected_train_charge(steps: int) -> float:
    """GPU seconds ZeroGPU should charge for ``steps`` LoRA steps in calls of :func:`lora_steps_per_call`."""
    calls = math.ceil(max(1, steps) / lora_steps_per_call())
    return calls * (config.ZEROGPU_CALL_SECONDS + config.ZEROGPU_LORA_PREP_SECONDS) + (
        steps * config.ZEROGPU_LORA_SECONDS_PER_STEP
    )
