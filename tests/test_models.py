"""The fast-path switches (``models.FastPaths``): read from the environment, resolved per device, and
switching kernels changes how an image is computed, not the image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from headshot import errors, imaging
from headshot.gpu import models, pipeline
from headshot.gpu.recipe import RenderRequest

D = 128  # the faces-small pack's embedding size


def test_fast_paths_from_environment(monkeypatch):
    for name in ("HEADSHOT_DTYPE", "HEADSHOT_SDPA", "HEADSHOT_COMPILE", "HEADSHOT_AOTI", "HEADSHOT_WARMUP"):
        monkeypatch.delenv(name, raising=False)
    default = models.FastPaths.from_env()
    assert default == models.FastPaths()
    monkeypatch.setenv("HEADSHOT_SDPA", "0")
    monkeypatch.setenv("HEADSHOT_DTYPE", "bf16")
    monkeypatch.setenv("HEADSHOT_COMPILE", "1")
    monkeypatch.setenv("HEADSHOT_VAE_TILING", "on")
    fast = models.FastPaths.from_env()
    assert (fast.sdpa, fast.dtype, fast.vae_tiling) == (False, "bf16", "on")
    assert fast.compile == "max-autotune-no-cudagraphs"
    monkeypatch.setenv("HEADSHOT_COMPILE", "reduce-overhead")
    assert models.FastPaths.from_env().compile == "reduce-overhead"
    monkeypatch.setenv("HEADSHOT_COMPILE", "fastest")
    with pytest.raises(errors.InvalidRequest, match="HEADSHOT_COMPILE"):
        models.FastPaths.from_env()
    monkeypatch.setenv("HEADSHOT_COMPILE", "0")
    monkeypatch.setenv("HEADSHOT_DTYPE", "fp8")
    with pytest.raises(errors.InvalidRequest, match="HEADSHOT_DTYPE"):
        models.FastPaths.from_env()


def test_cpu_never_compiles_and_gpu_defaults():
    wanted = models.FastPaths(compile="max-autotune-no-cudagraphs", aoti=True)
    cpu = wanted.resolved(torch.device("cpu"))
    assert (cpu.compile, cpu.aoti, cpu.channels_last, cpu.warmup) == ("", False, False, False)
    cuda = models.FastPaths(compile="default").resolved(torch.device("cuda"))
    assert (cuda.compile, cuda.channels_last, cuda.warmup) == ("default", True, True)
    assert wanted.resolved(torch.device("cuda")).compile == ""  # AoTI wins over torch.compile
    assert models.select_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert models.select_dtype(torch.device("cuda")) == torch.float16


@pytest.fixture(scope="module")
def own_models(face_pack):
    """Tiny models of our own (not the shared cache), so switching fast paths affects no other test."""
    loaded = models._load_tiny(D, torch.device("cpu"), torch.float32, models.FastPaths())
    return models.prepare_models(loaded)


def request(**changes) -> RenderRequest:
    face = np.random.default_rng(3).standard_normal(D).astype(np.float32)
    kps = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.41, 0.68], [0.59, 0.68]]) * 64
    base = RenderRequest(
        prompt="a studio portrait photo of a person",
        negative_prompt="blurry",
        face_embedding=face / np.linalg.norm(face),
        control_image=imaging.draw_kps(64, 64, kps),
        width=64,
        height=64,
        steps=3,
        seed=5,
    )
    return dataclasses.replace(base, **changes)


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(img, dtype=np.float32) for img in images])


def test_switches_change_the_kernels_not_the_image(own_models):
    from diffusers.models.attention_processor import AttnProcessor, IPAdapterAttnProcessor

    torch.set_num_threads(1)
    reference = pixels(pipeline.render_on(own_models, request()))
    try:
        models.prepare_models(own_models, models.FastPaths(sdpa=False, channels_last=True))
        kinds = {type(p) for p in own_models.pipe.unet.attn_processors.values()}
        assert kinds == {AttnProcessor, IPAdapterAttnProcessor}
        assert own_models.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        switched = pixels(pipeline.render_on(own_models, request()))
        assert np.abs(switched - reference).max() <= 2.0  # the same image, up to float rounding
    finally:
        models.prepare_models(own_models, models.FastPaths())
    assert not any(isinstance(p, AttnProcessor) for p in own_models.pipe.unet.attn_processors.values())
    assert np.array_equal(pixels(pipeline.render_on(own_models, request())), reference)


def test_vae_tiles_only_where_memory_needs_it(monkeypatch):
    class Vae:
        dtype = torch.float16

    def fake(device: str, mode: str = "auto") -> models.Models:
        pipe = type("Pipe", (), {"vae": Vae()})()
        return models.Models(
            pipe,
            None,
            torch.device(device),
            torch.float16,
            "full",
            512,
            "x",
            {},
            fast_paths=models.FastPaths(vae_tiling=mode),
        )

    assert not models.vae_tiling(fake("cpu"), 2048, 2048)  # system memory: never on the CPU
    assert models.vae_tiling(fake("cpu", "on"), 64, 64) and not models.vae_tiling(
        fake("cuda", "off"), 4096, 4096
    )
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * gib, 48 * gib))
    assert not models.vae_tiling(fake("cuda"), 1024, 1280)  # 5.6 GiB fits a 48 GB card
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * gib, 48 * gib))
    assert models.vae_tiling(fake("cuda"), 1024, 1024)  # 4.5 GiB does not fit in 80% of 4 GiB
