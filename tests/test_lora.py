"""Quick LoRA (headshot.lora) on the tiny SDXL models, CPU, with real selfies.

Training runs are a few steps at the tiny size (64 px); each test states the property it checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headshot.errors import InvalidRequest
from headshot.faces import identity
from headshot.gpu import adapters, lora, lora_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

EMBEDDING_SIZE = 128  # the faces-small pack; only the SDXL repository is used here


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_repo() -> Path:
    from headshot.gpu.tiny import ensure_tiny_models

    return ensure_tiny_models(EMBEDDING_SIZE)["sdxl"]


def load_components(tiny_repo, dtype=None, device="cpu") -> lora.LoraComponents:
    """A pipeline's modules (UNet and text encoders in ``dtype``, the VAE in float32) on ``device``."""
    from diffusers import StableDiffusionXLPipeline

    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_repo, dtype=dtype or torch.float32).to(device)
    pipeline.vae.to(torch.float32)
    return lora.LoraComponents.from_pipeline(pipeline)


@pytest.fixture(scope="module")
def components(tiny_repo) -> lora.LoraComponents:
    return load_components(tiny_repo)


@pytest.fixture(scope="module")
def selfies(faces_dir) -> list[Image.Image]:
    """Three real selfies of one person, downsized (the training crops are 64 px anyway)."""
    paths = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))[:3]
    assert len(paths) == 3
    images = []
    for path in paths:
        with Image.open(path) as img:
            image = img.convert("RGB")
        image.thumbnail((160, 160))
        images.append(image)
    return images


@pytest.fixture(scope="module")
def pipe(tiny_repo):
    from diffusers import StableDiffusionXLPipeline

    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_repo)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def small(**overrides) -> lora.LoraSettings:
    """Quick settings for the tiny models: rank 4, one zoom, 32 px crops, a handful of steps."""
    values = {
        "rank": 4,
        "alpha": 4.0,
        "steps": 6,
        "learning_rate": 3e-3,
        "zooms": (1.0,),
        "seed": 7,
        "resolution": 32,
    }
    values.update(overrides)
    return lora.LoraSettings(**values)


def render(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    return pipe(
        "a photo of ohwx person",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=generator,
        output_type="np",
    ).images[0]


def unet_snapshot(unet) -> dict:
    return {
        "tensors": {k: v.detach().clone() for k, v in unet.state_dict().items()},
        "types": [(name, type(m).__name__) for name, m in unet.named_modules()],
        "grad": {k: p.requires_grad for k, p in unet.named_parameters()},
        "training": unet.training,
        "checkpointing": unet.is_gradient_checkpointing,
        "peft": dict(getattr(unet, "peft_config", {}) or {}),
    }


def assert_same_unet(before: dict, after: dict) -> None:
    assert after["types"] == before["types"]
    assert after["tensors"].keys() == before["tensors"].keys()
    for key, value in before["tensors"].items():
        assert torch.equal(after["tensors"][key], value), key
    assert after["grad"] == before["grad"]
    assert after["training"] == before["training"]
    assert after["checkpointing"] == before["checkpointing"]
    assert after["peft"].keys() == before["peft"].keys()


def same_state_dict(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def evaluation_loss(comps: lora.LoraComponents, selfies, state_dict=None, samples: int = 8) -> float:
    """Noise-prediction MSE on the selfies at fixed noise and spread timesteps, with or without a LoRA."""
    unet, scheduler = comps.unet, comps.noise_scheduler
    crops = lora_data.prepare_training_images(selfies, 32)
    latents, _ = lora_data.encode_latent_stats(comps.vae, crops, flip=False, device=unet.device)
    embeds, pooled = lora_data.encode_caption(comps, "a photo of ohwx person", unet.device)
    generator = torch.Generator().manual_seed(1234)
    timesteps = torch.linspace(50, 950, samples).long()
    time_ids = torch.tensor([[32.0, 32, 0, 0, 32, 32]])
    if state_dict is not None:
        unet_part = {k.removeprefix("unet."): v for k, v in state_dict.items()}
        unet.load_lora_adapter(unet_part, prefix=None, adapter_name="measured")
    losses = []
    try:
        with torch.no_grad():
            for i, t in enumerate(timesteps):
                latent = latents[i % latents.shape[0]].unsqueeze(0)
                noise = torch.randn(latent.shape, generator=generator)
                noisy = scheduler.add_noise(latent, noise, t.reshape(1))
                cond = {"text_embeds": pooled, "time_ids": time_ids}
                prediction = unet(noisy, t.reshape(1), embeds, added_cond_kwargs=cond).sample
                losses.append(torch.nn.functional.mse_loss(prediction, noise).item())
    finally:
        if state_dict is not None:
            unet.unload_lora()
    return float(np.mean(losses))


def test_training_lowers_the_loss_on_the_selfies(components, selfies):
    before = evaluation_loss(components, selfies)
    result = lora.train_lora(components, selfies, small(steps=12))
    after = evaluation_loss(components, selfies, result.state_dict)
    assert after < before
    assert result.done and result.steps_run == 12 and len(result.loss_history) == 12
    assert np.isfinite(result.final_loss)
    assert result.final_loss == pytest.approx(np.mean(result.loss_history))
    # An untrained adapter (lora_B = 0) changes nothing: the evaluation really loads the LoRA.
    zeros = {k: (torch.zeros_like(v) if ".lora_B." in k else v) for k, v in result.state_dict.items()}
    assert evaluation_loss(components, selfies, zeros) == pytest.approx(before, abs=1e-6)


def test_result_format_and_config(components, selfies):
    progress = []
    result = lora.train_lora(
        components,
        selfies,
        small(steps=2, resolution=None),  # the UNet's native size: 64 px for the tiny models
        progress=lambda s, n, loss: progress.append((s, n, loss)),
    )
    assert [(s, n) for s, n, _ in progress] == [(1, 2), (2, 2)]
    assert [loss for _, _, loss in progress] == result.loss_history
    keys = list(result.state_dict)
    assert keys and all(
        k.startswith("unet.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys
    )
    targets = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in keys}
    assert targets == {"to_q", "to_k", "to_v", "0"}  # to_out.0
    assert all(v.device.type == "cpu" and v.dtype == torch.float16 for v in result.state_dict.values())
    cfg = result.config
    assert cfg["rank"] == 4 and cfg["token"] == "ohwx" and cfg["class_word"] == "person"
    assert cfg["instance_prompt"] == "a photo of ohwx person"
    assert cfg["steps"] == 2 and cfg["resolution"] == 64 and cfg["images"] == 3
    assert cfg["base_model"] == components.base_model
    import json

    json.dumps(cfg)  # JSON-serialisable: it goes into the identity file's metadata


def test_same_seed_same_lora_other_seed_other_lora(components, selfies):
    a = lora.train_lora(components, selfies, small(steps=3))
    b = lora.train_lora(components, selfies, small(steps=3))
    c = lora.train_lora(components, selfies, small(steps=3, seed=8))
    assert same_state_dict(a.state_dict, b.state_dict)
    assert a.loss_history == b.loss_history
    assert not same_state_dict(a.state_dict, c.state_dict)


def test_resume_equals_one_run_bit_for_bit(components, selfies):
    settings = small(steps=6)
    whole = lora.train_lora(components, selfies, settings)
    first = lora.train_lora(components, selfies, small(steps=3))  # the step count may grow on resume
    assert first.done and first.steps_run == 3 and first.steps_this_call == 3
    carried = lora.LoraState.from_bytes(first.state.to_bytes())  # as between two ZeroGPU calls
    rest = lora.train_lora(components, selfies, settings, resume=carried)
    assert rest.done and rest.steps_run == 6 and rest.steps_this_call == 3
    assert rest.loss_history == whole.loss_history
    assert same_state_dict(rest.state_dict, whole.state_dict)
    assert same_state_dict(rest.state.adapter, whole.state.adapter)
    assert same_state_dict(rest.state.optimizer, whole.state.optimizer)


def test_time_budget_stops_early_and_resume_finishes(components, selfies):
    settings = small(steps=3, time_budget_s=1e-6)
    chunk = lora.train_lora(components, selfies, settings)
    assert not chunk.done and chunk.steps_run == 1  # at least one step per call, then the budget stops it
    state = chunk.state
    for _ in range(5):
        chunk = lora.train_lora(components, selfies, settings, resume=state)
        state = chunk.state
        if chunk.done:
            break
    assert chunk.done and chunk.steps_run == 3
    assert same_state_dict(chunk.state_dict, lora.train_lora(components, selfies, small(steps=3)).state_dict)


def test_resume_refuses_other_selfies_or_settings(components, selfies):
    first = lora.train_lora(components, selfies, small(steps=1))
    with pytest.raises(InvalidRequest, match="other selfies"):
        lora.train_lora(components, selfies[:2], small(steps=2), resume=first.state)
    with pytest.raises(InvalidRequest, match="learning_rate"):
        lora.train_lora(components, selfies, small(steps=2, learning_rate=1e-3), resume=first.state)
    with pytest.raises(InvalidRequest, match="cannot be read"):
        lora.LoraState.from_bytes(b"not a state" * 10)


def test_training_leaves_the_shared_unet_unchanged(components, selfies):
    before = unet_snapshot(components.unet)
    lora.train_lora(components, selfies, small(steps=2, gradient_checkpointing=True))
    assert_same_unet(before, unet_snapshot(components.unet))
    assert not hasattr(components.unet, "peft_config")


def test_training_next_to_a_disabled_adapter_on_fewer_layers(components, selfies):
    """Another adapter on only some layers, disabled (as the pipeline does before training): afterwards
    the same layers are wrapped, it is still the active one and still disabled."""
    from peft import LoraConfig

    unet = components.unet
    unet.add_adapter(LoraConfig(r=2, target_modules=["attn1.to_q"], init_lora_weights="gaussian"), "other")
    try:
        unet.disable_adapters()
        before = unet_snapshot(unet)
        lora.train_lora(components, selfies, small(steps=2))
        assert_same_unet(before, unet_snapshot(unet))
        assert unet.active_adapters() == ["other"]
        layers = [m for m in unet.modules() if hasattr(m, "disable_adapters") and hasattr(m, "base_layer")]
        assert layers and all(m.disable_adapters for m in layers)
    finally:
        unet.unload_lora()


# Every UNet dtype the app can load (HEADSHOT_DTYPE: fp16, bf16, fp32), the precision training picks for
# it and whether a gradient scaler runs. The CPU runs all three: torch 2.13's CPU autocast has float16.
DTYPE_PAIRS = [
    (torch.float16, "fp16", True),
    (torch.bfloat16, "bf16", False),
    (torch.float32, "no", False),
]


def test_precision_follows_the_unets_dtype():
    """The choice on any device (CUDA included: it does not depend on the device), without running."""
    for dtype, precision, scaled in DTYPE_PAIRS:
        assert lora.resolve_precision(None, dtype) == precision
        assert lora.resolve_precision(precision, dtype) == precision
        assert lora.uses_grad_scaler(precision) is scaled
    for requested in ("bf16", "fp16", "no"):  # a float32 UNet may autocast to either half type
        assert lora.resolve_precision(requested, torch.float32) == requested
    # A half UNet under the other half type's autocast crashes inside torch: refused with a reason.
    for dtype, requested in ((torch.float16, "bf16"), (torch.bfloat16, "fp16"), (torch.float16, "no")):
        with pytest.raises(InvalidRequest, match="leave mixed precision unset"):
            lora.resolve_precision(requested, dtype)


@pytest.mark.parametrize(("dtype", "precision", "scaled"), DTYPE_PAIRS, ids=["fp16", "bf16", "fp32"])
def test_training_in_each_unet_dtype(tiny_repo, selfies, dtype, precision, scaled):
    """The UNet (and text encoders) in ``dtype``, LoRA weights in float32: finite losses, the adapter
    learns, the export passes the identity file's check and fits the UNet, the UNet is left as it was."""
    comps = load_components(tiny_repo, dtype)
    before = unet_snapshot(comps.unet)
    result = lora.train_lora(comps, selfies, small(steps=3))
    assert result.config["mixed_precision"] == precision
    assert np.isfinite(result.loss_history).all() and len(result.loss_history) == 3
    assert any(v.abs().sum() > 0 for k, v in result.state_dict.items() if ".lora_B." in k)  # it learned
    assert all(v.dtype == torch.float32 for v in result.state.adapter.values())
    assert all(torch.isfinite(v).all() for v in result.state.adapter.values())
    assert identity.check_lora_state_dict(result.state_dict, rank=4)["rank"] == 4
    adapters.check_lora_for_unet(result.state_dict, comps.unet)
    assert (result.state.scaler is not None) is scaled
    if scaled:  # the scaler ran: a finite scale, and no step was skipped for an overflow here
        assert math.isfinite(result.state.scaler["scale"]) and result.state.scaler["scale"] > 0
    assert_same_unet(before, unet_snapshot(comps.unet))
    assert comps.unet.dtype == dtype


def test_fp16_resume_is_exact_with_the_scaler_state(tiny_repo, selfies):
    """fp16 with its gradient scaler: 2 steps + 2 resumed steps (through bytes) equal 4 steps, bit for bit."""
    comps = load_components(tiny_repo, torch.float16)
    whole = lora.train_lora(comps, selfies, small(steps=4))
    first = lora.train_lora(comps, selfies, small(steps=2))
    carried = lora.LoraState.from_bytes(first.state.to_bytes())
    assert carried.scaler == first.state.scaler and carried.scaler is not None
    rest = lora.train_lora(comps, selfies, small(steps=4), resume=carried)
    assert rest.loss_history == whole.loss_history
    assert same_state_dict(rest.state.adapter, whole.state.adapter)
    assert same_state_dict(rest.state.optimizer, whole.state.optimizer)
    assert rest.state.scaler == whole.state.scaler


def test_a_half_unet_refuses_the_other_half_precision(tiny_repo, selfies):
    """An fp16 UNet under bf16 autocast used to crash in torch; now it is a readable refusal."""
    comps = load_components(tiny_repo, torch.float16)
    with pytest.raises(InvalidRequest, match="float16"):
        lora.train_lora(comps, selfies, small(steps=1, mixed_precision="bf16"))


@pytest.mark.gpu
@pytest.mark.parametrize(("dtype", "precision", "scaled"), DTYPE_PAIRS[:2], ids=["fp16", "bf16"])
def test_training_on_cuda(tiny_repo, selfies, dtype, precision, scaled):
    """The CUDA half-precision paths (fp16 + scaler, bf16): 2 steps, then an exact resume."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    comps = load_components(tiny_repo, dtype, device="cuda")
    before = unet_snapshot(comps.unet)
    result = lora.train_lora(comps, selfies, small(steps=2))
    assert result.config["mixed_precision"] == precision and np.isfinite(result.loss_history).all()
    assert (result.state.scaler is not None) is scaled
    assert any(v.abs().sum() > 0 for k, v in result.state_dict.items() if ".lora_B." in k)
    assert all(v.device.type == "cpu" for v in result.state_dict.values())
    adapters.check_lora_for_unet(result.state_dict, comps.unet)
    assert_same_unet(before, unet_snapshot(comps.unet))
    first = lora.train_lora(comps, selfies, small(steps=1))
    carried = lora.LoraState.from_bytes(first.state.to_bytes())
    again = lora.train_lora(comps, selfies, small(steps=2), resume=carried)
    assert again.done and again.steps_run == 2
    assert again.loss_history[0] == result.loss_history[0]


def test_training_with_the_pipelines_own_modules_keeps_its_adapters(pipe, selfies, tiny_repo):
    """A pipeline with a LoRA already loaded (the fast mode's) and InstantID's IP-adapter: training
    uses its modules, then both adapters work as before and the images are unchanged."""
    from headshot.gpu.tiny import ensure_tiny_models

    folders = ensure_tiny_models(EMBEDDING_SIZE)
    pipe.load_lora_weights(folders["fast_lora"], adapter_name="fast")
    pipe.load_ip_adapter(
        str(folders["instantid"]), subfolder="", weight_name="ip-adapter.bin", image_encoder_folder=None
    )
    try:
        pipe.set_ip_adapter_scale(0.0)  # renders need no face embedding; the processors stay in place
        processors = {k: type(v).__name__ for k, v in pipe.unet.attn_processors.items()}
        assert any("IPAdapter" in name for name in processors.values())
        before = unet_snapshot(pipe.unet)
        result = lora.train_lora(pipe, selfies, small(steps=2))
        assert result.steps_run == 2 and np.isfinite(result.final_loss)
        assert_same_unet(before, unet_snapshot(pipe.unet))
        assert pipe.unet.active_adapters() == ["fast"]
        assert {k: type(v).__name__ for k, v in pipe.unet.attn_processors.items()} == processors
        assert pipe.unet.encoder_hid_proj is not None
        assert pipe.unet.config.encoder_hid_dim_type == "ip_image_proj"
    finally:
        pipe.unload_ip_adapter()
        pipe.unload_lora_weights()
    assert not hasattr(pipe.unet, "peft_config")


# --------------------------------------------------------------------------------------
# Using the LoRA in a pipeline
# --------------------------------------------------------------------------------------


def test_state_dict_loads_into_the_pipeline_and_changes_its_output(pipe, selfies, tmp_path):
    result = lora.train_lora(pipe, selfies, small(steps=4, learning_rate=5e-3))
    original = render(pipe)
    pipe.load_lora_weights(result.state_dict, adapter_name="identity")
    pipe.set_adapters(["identity"], adapter_weights=[1.0])
    with_lora = render(pipe)
    assert np.isfinite(with_lora).all()
    assert not np.array_equal(with_lora, original)
    assert np.array_equal(render(pipe), with_lora)  # deterministic
    pipe.delete_adapters("identity")
    assert np.array_equal(render(pipe), original)

    # The SDXL LoRA file layout (for other tools) loads to the same adapter.
    unet_layers = {k.removeprefix("unet."): v for k, v in result.state_dict.items()}
    type(pipe).save_lora_weights(tmp_path / "lora", unet_lora_layers=unet_layers)
    path = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    assert path.is_file()
    pipe.load_lora_weights(str(path.parent), adapter_name="from_file")
    try:
        assert np.array_equal(render(pipe), with_lora)
    finally:
        pipe.delete_adapters("from_file")


def test_exported_weights_reproduce_the_trained_adapter_with_alpha_folded(components, selfies, pipe):
    """alpha != rank: the trained adapter (peft, lora_alpha=8) and the exported one loaded by diffusers
    (which assumes alpha = rank) give the same UNet output."""
    from peft import LoraConfig, set_peft_model_state_dict

    result = lora.train_lora(components, selfies, small(steps=2, alpha=8.0, save_dtype="float32"))
    unet = pipe.unet
    gen = torch.Generator().manual_seed(3)
    sample = torch.randn(1, 4, 32, 32, generator=gen)
    embeds = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen)
    cond = {
        "text_embeds": torch.randn(1, 32, generator=gen),
        "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]]),
    }

    def output():
        with torch.no_grad():
            return unet(sample, 500, encoder_hidden_states=embeds, added_cond_kwargs=cond).sample

    trained_cfg = LoraConfig(r=4, lora_alpha=8, target_modules=list(lora.UNET_TARGET_MODULES))
    unet.add_adapter(trained_cfg, adapter_name="trained")
    unfolded = {k.removeprefix("unet."): v for k, v in result.state.adapter.items()}
    set_peft_model_state_dict(unet, unfolded, adapter_name="trained")
    reference = output()
    unet.delete_adapters("trained")
    pipe.load_lora_weights(result.state_dict, adapter_name="exported")
    try:
        torch.testing.assert_close(output(), reference, rtol=1e-5, atol=1e-6)
    finally:
        pipe.unload_lora_weights()


# --------------------------------------------------------------------------------------
# The exported LoRA passes the one LoRA check (identity file and before a render)
# --------------------------------------------------------------------------------------


def test_trained_lora_is_accepted_by_the_identity_file_and_the_render_check(components, selfies):
    from PIL import Image as PILImage

    result = lora.train_lora(components, selfies, small(steps=2))
    assert identity.check_lora_state_dict(result.state_dict, rank=4)["rank"] == 4
    summary = adapters.check_lora_for_unet(result.state_dict, components.unet)
    assert summary == {"rank": 4, "layers": len(result.state_dict) // 2}
    embedding = np.ones(16, np.float32) / 4.0
    person = identity.Identity(
        embedding=embedding,
        keypoints=np.full((5, 2), 0.5, np.float32),
        reference=PILImage.new("RGB", (64, 64)),
        method="lora",
        face_pack="pack",
        base_model="base",
        selfie_count=3,
        lora=result.state_dict,
        lora_config=result.config,
    )
    back = identity.load_identity(identity.identity_to_bytes(person), face_pack="pack", base_model="base")
    assert back.lora.keys() == result.state_dict.keys()
    assert adapters.check_lora_for_unet(back.lora, components.unet) == summary


# --------------------------------------------------------------------------------------
# Inputs and settings
# --------------------------------------------------------------------------------------


def test_crops_from_selfies_with_face_boxes(selfies):
    from headshot import imaging

    image = selfies[0]
    w, h = image.size
    box = np.array([w * 0.35, h * 0.25, w * 0.65, h * 0.6], dtype=np.float32)
    crops = lora_data.prepare_training_images([image], 64, bboxes=[box], zooms=(1.0, 1.12), face_fraction=0.4)
    assert [c.size for c in crops] == [(64, 64), (64, 64)]
    expected = imaging.crop_around_face(image, box, (64, 64), 0.4)
    assert np.array_equal(np.asarray(crops[0]), np.asarray(expected))
    assert not np.array_equal(np.asarray(crops[0]), np.asarray(crops[1]))  # the zoomed variant differs
    # Accepted-selfie-like objects and (image, bbox) tuples give the same crops.
    from types import SimpleNamespace

    selfie = SimpleNamespace(image=image, face=SimpleNamespace(bbox=box))
    assert np.array_equal(np.asarray(lora_data.prepare_training_images([selfie], 64)[0]), np.asarray(expected))
    assert np.array_equal(
        np.asarray(lora_data.prepare_training_images([(image, box)], 64)[0]), np.asarray(expected)
    )


def test_latents_are_cached_once_per_variant(components, selfies, monkeypatch):
    calls = []
    original = type(components.vae).encode

    def counting(self, x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(type(components.vae), "encode", counting)
    lora.train_lora(components, selfies, small(steps=4, zooms=(1.0, 1.1)))
    assert sum(calls) == len(selfies) * 2 * 2  # images x zooms x flips, however many steps


def test_settings_are_checked():
    for bad in ({"rank": 0}, {"learning_rate": -1.0}, {"steps": 0}, {"token": "a b"}, {"zooms": (0.5,)}):
        with pytest.raises(InvalidRequest):
            lora.LoraSettings(**bad).check()
    tiny = lora.LoraSettings.for_profile("tiny", seed=3)
    assert tiny.steps < 20 and tiny.seed == 3 and tiny.resolution is None  # native tiny size
    assert lora.LoraSettings.for_profile("full") == lora.LoraSettings()
    assert lora.LoraSettings.for_profile() == lora.LoraSettings.for_profile("tiny")  # the tests' profile
    settings = lora.LoraSettings(token="zxq", class_word="woman")
    assert settings.caption == "a photo of zxq woman" and settings.subject == "zxq woman"
    assert lora.LoraSettings.from_dict(settings.to_dict()) == settings
    old = {**settings.to_dict(), "train_text_encoder": False}  # a state saved before that option went
    assert lora.LoraSettings.from_dict(old) == settings


def test_resolution_must_fit_the_model(components, selfies):
    with pytest.raises(InvalidRequest, match="multiple of"):
        lora.train_lora(components, selfies, small(resolution=70))
