"""The shared GPU module on the tiny profile (CPU): determinism, isolation between requests, adapters."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from headshot import config, errors, imaging
from headshot.gpu import adapters, lora, models, pipeline, recipe, sizing, tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

D = 128  # the faces-small pack's embedding size
SIZE = 64


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(D).astype(np.float32)
    return v / np.linalg.norm(v)


def keypoints(shift: float = 0.0) -> Image.Image:
    kps = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.41, 0.68], [0.59, 0.68]]) + shift
    return imaging.draw_kps(SIZE, SIZE, kps * SIZE)


def make_request(**changes) -> recipe.RenderRequest:
    base = pipeline.RenderRequest(
        prompt="a studio portrait photo of a person",
        negative_prompt="blurry",
        face_embedding=unit(1),
        control_image=keypoints(),
        width=SIZE,
        height=SIZE,
        num_images=1,
        seed=7,
        steps=3,
        guidance=5.0,
    )
    return dataclasses.replace(base, **changes)


def pixels(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(img, dtype=np.int16) for img in images]


def same(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(pixels(a), pixels(b), strict=True))


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels([a])[0] - pixels([b])[0]).mean())


@pytest.fixture(scope="module")
def loaded():
    return pipeline.ready_models(embedding_size=D)


@pytest.fixture(scope="module")
def plain(loaded) -> list[Image.Image]:
    """The reference render, done before any adapter was ever loaded."""
    return pipeline.render(make_request())


@pytest.fixture(scope="module")
def other(loaded) -> list[Image.Image]:
    return pipeline.render(make_request(face_embedding=unit(2), prompt="an outdoor headshot", seed=11))


# --------------------------------------------------------------------------------------
# Outputs and determinism
# --------------------------------------------------------------------------------------


def test_outputs_are_cpu_pil_images_of_the_right_size(loaded):
    images = pipeline.render(make_request(width=48, height=64, control_image=keypoints(), num_images=2))
    assert len(images) == 2
    for img in images:
        assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (48, 64)
        arr = np.asarray(img)
        assert arr.dtype == np.uint8 and arr.std() > 1.0  # an image, not a flat fill


def test_models_are_loaded_once(loaded):
    assert models.load_models(embedding_size=D) is loaded and loaded.started
    # The fast LoRA is loaded once, at startup, and off until a fast request switches it on.
    assert loaded.fast_loaded and adapters.FAST_ADAPTER in adapters.adapter_names(loaded.pipe)
    assert loaded.profile == "tiny" and loaded.device.type == "cpu" and loaded.dtype == torch.float32
    assert loaded.pipe.unet.dtype == torch.float32 and loaded.embedding_size == D


def test_same_seed_gives_the_same_image(plain):
    assert same(plain, pipeline.render(make_request()))


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 8},
        {"face_embedding": unit(2)},
        {"prompt": "an outdoor headshot"},
        {"control_image": keypoints(0.1)},
    ],
    ids=["seed", "face", "prompt", "keypoints"],
)
def test_another_input_gives_another_image(plain, change):
    changed = pipeline.render(make_request(**change))
    assert mean_diff(plain[0], changed[0]) > 0.05


def test_each_image_is_reproducible_alone(plain):
    pair = pipeline.render(make_request(num_images=2, seed=6))
    assert same(pair[1:], plain)  # image 1 of seed 6 is image 0 of seed 7
    assert not same(pair[:1], plain)


def test_requests_a_b_a_give_a_twice(plain, other):
    a, b, a_again = (
        pipeline.render(make_request()),
        pipeline.render(_other_request()),
        pipeline.render(make_request()),
    )
    assert same(a, plain) and same(a_again, plain) and same(b, other)


def _other_request():
    return make_request(face_embedding=unit(2), prompt="an outdoor headshot", seed=11)


def test_concurrent_renders_equal_sequential_ones(plain, other):
    results: dict[str, list[Image.Image]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name, request):
        try:
            start.wait()
            results[name] = pipeline.render(request)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [
        threading.Thread(target=worker, args=("a", make_request())),
        threading.Thread(target=worker, args=("b", _other_request())),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert same(results["a"], plain) and same(results["b"], other)


def test_zerogpu_splits_long_requests_into_calls_with_the_same_images(loaded, monkeypatch):
    request = make_request(num_images=3, seed=20)
    whole = pipeline.render(request)
    monkeypatch.setattr(config, "on_zerogpu", lambda: True)
    monkeypatch.setattr(config, "ZEROGPU_MAX_DURATION", config.ZEROGPU_BASE_SECONDS + 1)
    full_size = dataclasses.replace(request, width=1024, height=1024)
    plan = sizing.gpu_calls([full_size])
    assert [[(i, p.seed, p.num_images) for i, p in call] for call in plan] == [
        [(0, 20, 1)],
        [(0, 21, 1)],
        [(0, 22, 1)],
    ]
    calls = []
    real = pipeline._render_on_gpu
    monkeypatch.setattr(
        pipeline, "_render_on_gpu", lambda parts: calls.append([p.num_images for p in parts]) or real(parts)
    )
    monkeypatch.setattr(
        sizing,
        "gpu_calls",
        lambda requests: [
            [(0, dataclasses.replace(request, num_images=2))],
            [(0, dataclasses.replace(request, seed=22, num_images=1))],
        ],
    )
    seen: list[float] = []
    split = pipeline.render(request, progress=lambda frac, desc="": seen.append(frac))
    assert calls == [[2], [1]] and same(split, whole)
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_a_pack_is_one_batch_with_the_images_of_each_request(loaded, plain, other):
    """render_all: the same images as each request alone, the LoRA-free and LoRA requests mixed."""
    lora = tiny.random_unet_lora(loaded.pipe.unet, rank=4, seed=3, std=0.2)
    person = {"name": "identity", "state_dict": lora, "scale": 1.0}
    with_lora = make_request(lora=person)
    alone = pipeline.render(with_lora)
    batch = pipeline.render_all(
        [
            make_request(),
            with_lora,
            make_request(face_embedding=unit(2), prompt="an outdoor headshot", seed=11),
            with_lora,
        ]
    )
    assert same(batch[0], plain) and same(batch[1], alone) and same(batch[2], other) and same(batch[3], alone)
    assert not any(name.startswith("request_") for name in adapters.adapter_names(loaded.pipe))


def test_progress_reaches_the_caller(loaded):
    seen: list[tuple[float, str]] = []
    pipeline.render(make_request(num_images=2), progress=lambda frac, desc="": seen.append((frac, desc)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0] < 0.5
    assert any("Image 2 of 2" in desc for _, desc in seen)


# --------------------------------------------------------------------------------------
# InstantID wiring
# --------------------------------------------------------------------------------------


def test_identitynet_sees_the_face(plain):
    """With the face adapter at 0, the face still reaches the image through the IdentityNet only."""
    no_adapter = pipeline.render(make_request(identity_strength=0.0))
    no_adapter_other = pipeline.render(make_request(identity_strength=0.0, face_embedding=unit(2)))
    assert mean_diff(no_adapter[0], no_adapter_other[0]) > 0.05
    neither = pipeline.render(make_request(identity_strength=0.0, identitynet_strength=0.0))
    neither_other = pipeline.render(
        make_request(identity_strength=0.0, identitynet_strength=0.0, face_embedding=unit(2))
    )
    assert same(neither, neither_other)  # no other path for the face


def test_without_guidance_runs(plain):
    images = pipeline.render(make_request(guidance=1.0))
    assert len(images) == 1 and not same(images, plain)


# --------------------------------------------------------------------------------------
# Adapters: fast mode and the identity LoRA never leak
# --------------------------------------------------------------------------------------


def test_fast_mode_runs_and_leaves_nothing_behind(loaded, plain):
    fast = pipeline.render(make_request(fast=True, steps=30))
    assert len(fast) == 1 and mean_diff(fast[0], plain[0]) > 0.5
    assert adapters.FAST_ADAPTER in adapters.adapter_names(loaded.pipe)  # cached for the next fast request
    assert same(pipeline.render(make_request()), plain)
    assert same(pipeline.render(make_request(fast=True, steps=30)), fast)


def test_fast_mode_settings():
    assert recipe.effective_settings(make_request(fast=True, steps=30, guidance=5.0)) == (
        config.FAST_MAX_STEPS,
        config.FAST_GUIDANCE,
    )
    assert recipe.effective_settings(make_request(fast=True, steps=1, guidance=1.2)) == (
        config.FAST_MIN_STEPS,
        1.2,
    )
    assert recipe.effective_settings(make_request(steps=30, guidance=5.0)) == (30, 5.0)


def test_identity_lora_changes_the_image_and_does_not_leak(loaded, plain):
    lora = tiny.random_unet_lora(loaded.pipe.unet, rank=4, seed=3, std=0.2)
    request = make_request(lora={"name": "identity", "state_dict": lora, "scale": 1.0})
    with_lora = pipeline.render(request)
    assert mean_diff(with_lora[0], plain[0]) > 0.05
    assert not any(name.startswith("request_") for name in adapters.adapter_names(loaded.pipe))
    assert same(pipeline.render(make_request()), plain)  # nothing leaks into the next request
    assert same(pipeline.render(request), with_lora)  # and the LoRA render is reproducible
    half = pipeline.render(dataclasses.replace(request, lora={**request.lora, "scale": 0.5}))
    assert not same(half, with_lora)
    both = pipeline.render(dataclasses.replace(request, fast=True))
    assert len(both) == 1
    assert same(pipeline.render(make_request()), plain)


def test_trained_identity_lora_renders_and_training_leaves_the_unet_as_it_was(loaded, plain, face_pack):
    """studio's LoRA path: train on the shared UNet (GPU lock), then render with the result."""
    selfies = [
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (96, 96, 3), np.uint8)) for i in range(3)
    ]
    seen: list[float] = []
    settings = lora.lora_settings(steps=2, rank=4, seed=0)
    result = pipeline.train_identity_lora(
        selfies, None, settings, progress=lambda frac, desc="": seen.append(frac)
    )
    assert result.done and result.steps_run == 2 and seen[-1] == 1.0
    assert same(pipeline.render(make_request()), plain)
    with_lora = pipeline.render(
        make_request(lora={"name": "identity", "state_dict": result.state_dict, "scale": 1.0})
    )
    assert with_lora[0].size == (SIZE, SIZE)


def test_a_bad_lora_is_refused_before_rendering(loaded):
    lora = tiny.random_unet_lora(loaded.pipe.unet, rank=4, seed=3)
    key = next(iter(lora))
    broken = {**lora, key: torch.full_like(lora[key], float("nan"))}
    with pytest.raises(errors.HeadshotError):
        pipeline.render(make_request(lora={"name": "identity", "state_dict": broken, "scale": 1.0}))


# --------------------------------------------------------------------------------------
# Request checks, estimates, device summary, profiles
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"width": 60},
        {"height": 4096},
        {"face_embedding": np.zeros(D, np.float32)},
        {"face_embedding": np.full(D, np.nan, np.float32)},
        {"num_images": 0},
        {"steps": config.MAX_STEPS + 1},
        {"guidance": float("nan")},
        {"identity_strength": -1.0},
        {"seed": -1},
        {"prompt": ""},
        {"prompt": "x" * (config.MAX_RENDER_PROMPT_CHARS + 1)},
        {"control_image": "not an image"},
        {"lora": {"name": "x", "state_dict": {}}},
        {"init_image": "not an image"},
        {"init_image": Image.new("RGB", (SIZE, SIZE)), "strength": 0.0},
        {"init_image": Image.new("RGB", (SIZE, SIZE)), "strength": float("nan")},
        {"init_image": Image.new("RGB", (SIZE, SIZE)), "strength": 1.5},
        {"init_image": Image.new("RGB", (4096, 8))},
    ],
    ids=lambda c: "-".join(f"{k}={v!r}"[:40] for k, v in c.items()),
)
def test_invalid_requests_are_refused(change):
    with pytest.raises(errors.InvalidRequest):
        recipe.check_request(make_request(**change))


def test_duration_estimate_follows_the_work():
    full = make_request(width=1024, height=1024, steps=30, num_images=1, control_image=keypoints())

    def est(request):
        return sizing.estimate_duration([request])

    assert est(dataclasses.replace(full, num_images=2)) > est(full)
    assert est(dataclasses.replace(full, steps=40)) > est(full)
    assert est(dataclasses.replace(full, width=512, height=512)) < est(full)
    assert est(dataclasses.replace(full, fast=True)) < est(full)
    assert (
        est(dataclasses.replace(full, num_images=config.MAX_PACK_IMAGES, steps=60))
        == config.ZEROGPU_MAX_DURATION
    )
    assert est(full) >= config.ZEROGPU_BASE_SECONDS


def test_image_to_image_estimate_counts_the_steps_it_runs_and_the_size():
    full = make_request(width=1024, height=1024, steps=30, control_image=keypoints())
    start = Image.new("RGB", (1024, 1024))
    refine = dataclasses.replace(full, width=2048, height=2048, init_image=start, strength=0.3)

    def est(request):
        return sizing.estimate_seconds([request])

    assert recipe.img2img_steps(full) == (30, 30)
    assert recipe.img2img_steps(dataclasses.replace(full, init_image=start, strength=0.3)) == (30, 9)
    assert recipe.img2img_steps(dataclasses.replace(full, steps=2, init_image=start, strength=0.3)) == (4, 1)
    assert est(dataclasses.replace(full, init_image=start, strength=0.3)) < est(full)
    assert est(refine) > est(dataclasses.replace(refine, width=1024, height=1024))
    assert est(dataclasses.replace(refine, strength=0.6)) > est(refine)
    base = config.ZEROGPU_BASE_SECONDS
    # 2048 px costs more than 4x 1024 px per step (self-attention grows with the square of the pixels).
    per_step = (est(dataclasses.replace(full, width=2048, height=2048)) - base) / (est(full) - base)
    assert 4.5 < per_step < 6
    assert sizing.estimate_duration([refine]) < config.ZEROGPU_MAX_DURATION


def test_image_to_image_starts_from_the_image(loaded):
    start = pipeline.render(make_request(seed=3))[0]
    img2img = make_request(init_image=start, strength=0.5, steps=4)
    first = pipeline.render(img2img)
    assert same(first, pipeline.render(img2img)), "deterministic"
    assert first[0].size == (SIZE, SIZE)
    assert not same(first, pipeline.render(dataclasses.replace(img2img, init_image=start.rotate(90))))
    assert not same(first, pipeline.render(dataclasses.replace(img2img, face_embedding=unit(5))))
    bigger = pipeline.render(dataclasses.replace(img2img, width=2 * SIZE, height=2 * SIZE,
                                                 control_image=keypoints().resize((2 * SIZE, 2 * SIZE))))
    assert bigger[0].size == (2 * SIZE, 2 * SIZE)


def test_spaces_gpu_is_a_no_op_off_zerogpu():
    import spaces

    def f(x):
        return x

    assert not config.on_zerogpu()
    assert spaces.GPU(duration=lambda x: 1)(f) is f
    assert not hasattr(pipeline._render_on_gpu, "zerogpu")


def test_device_summary_tiny():
    summary = pipeline.device_summary()
    assert summary["profile"] == "tiny" and summary["device"] == "cpu" and summary["gpu"] is False
    assert summary["dtype"] == "float32" and "noise" in summary["note"]
    assert pipeline.base_model_id().startswith("headshot/tiny-sdxl")


def test_device_summary_full_cpu_tells_the_cost(monkeypatch):
    monkeypatch.setenv("HEADSHOT_PROFILE", "full")
    monkeypatch.setenv("HEADSHOT_DEVICE", "cpu")
    summary = pipeline.device_summary()
    assert summary["gpu"] is False and summary["note"].startswith(
        "No GPU: a 1024x1024 image at 30 steps takes"
    )
    assert "minutes" in summary["note"] or "hours" in summary["note"]
    assert pipeline.base_model_id() == config.SDXL_BASE.repo_id
    slow = models.estimate_cpu_seconds(steps=30, cfg=True)
    assert slow > models.estimate_cpu_seconds(steps=6, cfg=False) > 0


def test_full_profile_offline_says_how_to_run_offline(monkeypatch):
    import huggingface_hub.constants

    if not huggingface_hub.constants.HF_HUB_OFFLINE:  # never start a multi-gigabyte download in a test
        pytest.skip("needs HF_HUB_OFFLINE=1 (tests/conftest.py sets it)")
    monkeypatch.setenv("HEADSHOT_PROFILE", "full")
    monkeypatch.setenv("HEADSHOT_DEVICE", "cpu")
    with pytest.raises(errors.ModelsUnavailable, match="HEADSHOT_PROFILE=tiny"):
        models.load_models()


def test_unknown_device_is_refused(monkeypatch):
    monkeypatch.setenv("HEADSHOT_DEVICE", "tpu")
    with pytest.raises(errors.InvalidRequest):
        models.select_device()
