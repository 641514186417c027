"""The startup sequence under the emulated ZeroGPU: the AoTI compile and the warm-up run as GPU calls (forked
workers, pickled results), the compiled programs come back to the main process and every later render,
the default one (face region on) included, runs them; and no worker is forked while a render holds the GPU
lock (the worker would start with that lock held and could only time out).

``spaces.aoti_compile`` needs a CUDA build of torch, so a stand-in does its job on the CPU: the exported
program, saved to bytes so it pickles (as ZeroGPU's compiled model does), its weights apart, counting its
calls in memory the forked workers share (a person's LoRA: fused in the worker, the next render unfused).
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
import torch

from headshot.gpu import aoti, models, pipeline, tiny, zerogpu
from tests.test_aoti import _capture, _face_mask
from tests.test_models import D, pixels, request

CALLS = multiprocessing.get_context("fork").Value("i", 0)  # shared with every forked worker
FUSED_CALLS = multiprocessing.get_context("fork").Value("i", 0)  # of which with weights other than compile's


class StandInWeights:
    """``spaces``' ``ZeroGPUWeights``: the constants by name."""

    def __init__(self, constants_map):
        self.constants_map = constants_map


class StandInProgram:
    """``spaces``' ``ZeroGPUCompiledModel(archive_file, weights)`` on the CPU: pickles as bytes and its
    weights, runs with its weights map, counts its calls (those with other weights than :meth:`compile`
    gave it: a LoRA fused in the worker)."""

    def __init__(self, archive_file, weights, compiled_weights: bool = False):
        self.archive_file, self.weights, self.compiled_weights, self._module = archive_file, weights, compiled_weights, None

    @classmethod
    def compile(cls, exported):
        """``spaces.aoti_compile(exported)``: the program and, apart, its weights."""
        buffer = io.BytesIO()
        torch.export.save(exported, buffer)
        return cls(buffer.getvalue(), StandInWeights({**exported.state_dict, **exported.constants}), True)

    def __getstate__(self):
        return {**self.__dict__, "_module": None}

    def __call__(self, *args, **kwargs):
        for counter in (CALLS,) if self.compiled_weights else (CALLS, FUSED_CALLS):
            with counter.get_lock():
                counter.value += 1
        if self._module is None:
            self._module = torch.export.load(io.BytesIO(self.archive_file)).module()
        return torch.func.functional_call(self._module, self.weights.constants_map, args, kwargs)


def _holds_the_gpu_lock():
    with pipeline._GPU_LOCK:  # what every GPU function does in its worker
        yield ("result", os.getpid())


def test_no_fork_while_a_render_holds_the_gpu_lock(monkeypatch):
    """A render in another thread holds the lock (``render_on``): the GPU call waits for it, then forks,
    and its worker takes the lock at once instead of timing out."""
    monkeypatch.setenv("HEADSHOT_ZEROGPU_EMULATE", "1")
    monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))
    monkeypatch.setattr(zerogpu, "GRACE_SECONDS", 0.5)
    outcome: dict = {}

    def call():
        try:
            outcome["pid"] = pipeline._drain(zerogpu.gpu(2)(_holds_the_gpu_lock)(), None)
        except Exception as exc:  # reported below
            outcome["error"] = exc
        outcome["done"] = time.monotonic()

    with pipeline._GPU_LOCK:
        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.0)
        released = time.monotonic()
        assert "done" not in outcome  # waiting for the render, not forked into a held lock
    caller.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["pid"] != os.getpid() and outcome["done"] >= released
    assert pipeline._GPU_LOCK.acquire(timeout=1)  # the main process's lock is free again
    pipeline._GPU_LOCK.release()


@pytest.mark.slow
def test_aoti_compile_and_warm_up_run_as_gpu_calls_and_renders_use_the_programs(monkeypatch, face_pack):
    torch.set_num_threads(1)
    monkeypatch.setenv("HEADSHOT_ZEROGPU_EMULATE", "1")
    monkeypatch.setenv("HEADSHOT_AOTI", "1")
    monkeypatch.setenv("HEADSHOT_WARMUP", "1")
    quota = zerogpu.Quota(100_000)
    monkeypatch.setattr(zerogpu, "_quota", quota)
    resolved = models.FastPaths.resolved

    def on_the_cpu_too(self, device):  # AoTI and the warm-up are CUDA-only: keep them on for this test
        return dataclasses.replace(resolved(self, device), aoti=self.aoti, warmup=self.warmup)

    monkeypatch.setattr(models.FastPaths, "resolved", on_the_cpu_too)
    monkeypatch.setattr(pipeline.spaces, "aoti_capture", _capture, raising=False)
    monkeypatch.setattr(pipeline.spaces, "aoti_compile", StandInProgram.compile, raising=False)
    before = CALLS.value

    loaded = pipeline.ready_models(embedding_size=D)
    key = models.cache_key(loaded)
    try:
        assert loaded.started and loaded.fast_paths.aoti and set(loaded.aoti) == {"identitynet", "unet"}
        assert isinstance(loaded.pipe.unet.forward, aoti.AotiForward)
        # Two GPU calls: the compile (the duration it asks: AOTI_COMPILE_SECONDS), then the warm-up render,
        # which already ran the programs in its worker; each charged the seconds it ran, not what it asked.
        asked = [requested for requested, _ in quota.charges]
        assert len(asked) == 2 and asked[0] == zerogpu.requested_quota(pipeline.AOTI_COMPILE_SECONDS)
        assert all(0 < charged < requested for requested, charged in quota.charges)
        assert loaded.warm_up_seconds is not None and CALLS.value > before

        face_region = request(face_mask=_face_mask(64, 64))  # the default render
        counted = CALLS.value
        compiled = pixels(pipeline.render(face_region))  # a GPU call: a forked worker runs the programs
        assert CALLS.value - counted >= 2 * face_region.steps  # the UNet and the IdentityNet, every step
        counted = CALLS.value
        pipeline.render(request())  # face region off: an all-ones mask, the same programs
        assert CALLS.value - counted >= 2 * face_region.steps
        # A person's LoRA: the worker fuses it into the UNet program's weights; the next render has the base ones.
        person = {"name": "p", "state_dict": tiny.random_unet_lora(loaded.pipe.unet, rank=4, seed=3, std=0.2)}
        with_lora = request(face_mask=_face_mask(64, 64), identity_strength=0.5, lora=person)
        fused = FUSED_CALLS.value
        compiled_lora = pixels(pipeline.render(with_lora))
        assert FUSED_CALLS.value - fused == with_lora.steps  # every UNet call, with the fused weights
        fused, counted = FUSED_CALLS.value, CALLS.value
        assert np.abs(pixels(pipeline.render(face_region)) - compiled).max() <= 2.0
        assert FUSED_CALLS.value == fused and CALLS.value - counted >= 2 * face_region.steps
    finally:
        aoti.release(loaded)
        models._MODELS.pop(key, None)
    monkeypatch.delenv("HEADSHOT_ZEROGPU_EMULATE")
    eager = pixels(pipeline.render_on(loaded, face_region))
    assert np.abs(compiled - eager).max() <= 2.0
    assert np.abs(compiled_lora - pixels(pipeline.render_on(loaded, with_lora))).max() <= 2.0
