"""Full-size GPU benchmarks: SDXL + InstantID with random weights against plain diffusers, side by side.

Nothing is downloaded: the UNet (SDXL base's configuration, 2.6 B parameters), the IdentityNet
(``ControlNetModel.from_unet``, as InstantID's is), the VAE, both text encoders (CLIP ViT-L and
OpenCLIP bigG text towers at their real sizes), InstantID's face adapter (Resampler 512 -> 2048,
16 tokens, depth 4, plus ``to_k_ip`` / ``to_v_ip`` for every cross-attention) and an LCM-style LoRA
are built from configurations written here. Random weights cost the same compute as real ones, so
the timings are those of the real models; the images are noise.

In one run (``benchmarks/run.py`` on a CUDA machine, or ``--only gpu``), at 1024x1024 by default:

* the plain diffusers baseline: ``StableDiffusionXLControlNetPipeline`` on the same modules (no face
  adapter), 30 steps with CFG; the same with an LCM LoRA, LCMScheduler and no CFG (fast mode); a plain
  peft LoRA training step on the same UNet;
* ours (``headshot.pipeline.render_on`` on the same modules with the face adapter loaded): the first
  render without warm-up (cold), then seconds per image at 30 steps, in fast mode (4 and 8 steps, the
  fast LoRA, CFG-free), seconds per LoRA training step (``benchmarks/lora_bench.py`` on the shared
  UNet), and peak GPU memory of each;
* every fast path before and after (:class:`headshot.models.FastPaths`): without SDPA attention,
  without channels-last, with the VAE in float32 instead of the fp16-safe VAE, bf16 and fp32 instead
  of fp16, VAE decoding at 1536 px with and without tiling, ``torch.compile`` (and, with ``--aoti``,
  ahead-of-time compilation through ``spaces``' AoTI helpers).

``--full-size-cpu-smoke`` runs the same code with reduced configurations on the CPU (2 steps at 128 px):
the numbers mean nothing, the construction and measuring paths are exercised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from benchmarks import lora_bench
from headshot import imaging
from headshot.gpu import aoti, lora, models, pipeline, recipe, tiny

EMBEDDING_SIZE = models.FULL_EMBEDDING_SIZE  # antelopev2, InstantID's face embedding
NUM_FACE_TOKENS = 16
PROMPT = "professional studio headshot photo of a person, grey backdrop, soft light"
NEGATIVE = "blurry, lowres, cartoon, deformed"
Emit = Callable[..., None]

# SDXL's text towers: CLIP ViT-L/14 (hidden states) and OpenCLIP ViT-bigG/14 (hidden + pooled projection).
CLIP_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
CLIP_BIGG = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
# InstantID's face Resampler (ip-adapter.bin "image_proj"): 512-d embedding -> 16 tokens of 2048.
RESAMPLER = {"dim": 1280, "depth": 4, "head_dim": 64, "ff_mult": 4, "num_queries": NUM_FACE_TOKENS}
LCM_LORA_RANK = 64  # latent-consistency/lcm-lora-sdxl


def reduced_configs() -> dict[str, dict]:
    """Small configurations with SDXL's structure (3 UNet levels, 4 VAE levels, 2 text towers)."""
    text1 = {**CLIP_L, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    text1 |= {"num_attention_heads": 2, "projection_dim": 32}
    text2 = {**CLIP_BIGG, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    text2 |= {"num_attention_heads": 2, "projection_dim": 32}
    unet = {
        **lora_bench.SDXL_UNET,
        "sample_size": 16,
        "block_out_channels": (32, 64, 64),
        "transformer_layers_per_block": (1, 1, 2),
        "attention_head_dim": (2, 4, 4),
        "cross_attention_dim": text1["hidden_size"] + text2["hidden_size"],
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + text2["projection_dim"],
    }
    vae = {**lora_bench.SDXL_VAE, "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1}
    vae |= {"sample_size": 64}
    resampler = {**RESAMPLER, "dim": 64}
    return {"unet": unet, "vae": vae, "text1": text1, "text2": text2, "resampler": resampler}


def full_configs() -> dict[str, dict]:
    return {
        "unet": dict(lora_bench.SDXL_UNET),
        "vae": dict(lora_bench.SDXL_VAE),  # force_upcast False: the fp16-safe VAE's setting
        "text1": dict(CLIP_L),
        "text2": dict(CLIP_BIGG),
        "resampler": dict(RESAMPLER),
    }


@dataclasses.dataclass
class Components:
    unet: Any
    controlnet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    adapter: dict  # InstantID's ip-adapter.bin layout: {"image_proj": ..., "ip_adapter": ...}
    lcm_lora: dict  # diffusers "unet.*" LoRA keys


def build_components(device: torch.device, dtype: torch.dtype, configs: dict[str, dict]) -> Components:
    """Random-weight SDXL + InstantID modules of the given configurations on ``device`` in ``dtype``."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    special = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}  # lora_bench.tokenizer()'s ids
    with torch.device(device):
        unet = UNet2DConditionModel(**configs["unet"])
        controlnet = ControlNetModel.from_unet(unet)
        vae = AutoencoderKL(**configs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text1"], **special))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**configs["text2"], **special))
    adapter = {
        "image_proj": tiny._resampler_state_dict(
            embedding_size=EMBEDDING_SIZE, output_dim=unet.config.cross_attention_dim, **configs["resampler"]
        ),
        "ip_adapter": tiny._ip_attention_state_dict(unet),
    }
    lcm_lora = tiny.random_unet_lora(unet, rank=LCM_LORA_RANK if device.type == "cuda" else 4, seed=1)
    for module in (unet, controlnet, vae, text_encoder, text_encoder_2):
        module.to(dtype=dtype).eval().requires_grad_(False)
    return Components(
        unet,
        controlnet,
        vae,
        text_encoder,
        text_encoder_2,
        lora_bench.tokenizer(),
        lora_bench.tokenizer(),
        adapter,
        lcm_lora,
    )


def scheduler_config() -> dict:
    """SDXL base's scheduler configuration (the pipeline derives DPM++ 2M Karras and LCM from it)."""
    from diffusers import EulerDiscreteScheduler

    return dict(
        EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            num_train_timesteps=1000,
            timestep_spacing="leading",
            steps_offset=1,
        ).config
    )


def plain_pipeline(parts: Components, fast: bool | None):
    """Stock diffusers SDXL + ControlNet on the shared modules (no face adapter).

    ``fast``: the LCM scheduler (True), DPM++ 2M Karras (False, what our renders use), or SDXL's own
    Euler scheduler (None: what a checkpoint repository ships, from which our renders derive theirs).
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLControlNetPipeline

    if fast is None:
        scheduler = EulerDiscreteScheduler.from_config(scheduler_config())
    else:
        scheduler = recipe._scheduler(scheduler_config(), fast)

    pipe = StableDiffusionXLControlNetPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer,
        tokenizer_2=parts.tokenizer_2,
        unet=parts.unet,
        controlnet=parts.controlnet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_render(pipe, control, size: int, n_steps: int, guidance: float):
    """One bare diffusers SDXL + ControlNet render: the baseline our renders are measured against."""
    return pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE if guidance > 1 else None,
        image=control,
        width=size,
        height=size,
        num_inference_steps=n_steps,
        guidance_scale=guidance,
        controlnet_conditioning_scale=0.8,
        generator=torch.Generator("cpu").manual_seed(0),
    ).images


def instantid_models(parts: Components, device: torch.device, dtype: torch.dtype, profile: str):
    """Our pipeline on the shared modules: face adapter loaded, wrapped as ``models.Models``."""
    pipe = plain_pipeline(parts, fast=None)
    pipe.load_ip_adapter(parts.adapter, subfolder="", weight_name="ip-adapter.bin", image_encoder_folder=None)
    fast_lora = {"pretrained_model_name_or_path_or_dict": dict(parts.lcm_lora)}
    return models.Models(
        pipe,
        parts.controlnet,
        device,
        dtype,
        profile,
        EMBEDDING_SIZE,
        "random-sdxl-sized",
        fast_lora,
        fast_paths=models.FastPaths(warmup=False),
    )


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """``{"gib": peak GPU memory allocated inside the block}`` (None off CUDA)."""
    out: dict[str, float | None] = {"gib": None}
    if device.type == "cuda":
        sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield out
    if device.type == "cuda":
        sync(device)
        out["gib"] = torch.cuda.max_memory_allocated(device) / 2**30


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Wall seconds of ``fn`` (GPU synchronised): ``first`` (cold call), ``median`` after warm-up."""
    times = []
    with peak_memory(device) as peak:
        for _ in range(warmup + repeats):
            sync(device)
            started = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - started)
    return {"first": times[0], "median": statistics.median(times[warmup:]), "all": times, "peak": peak["gib"]}


def face_keypoints(size: int) -> np.ndarray:
    """Five keypoints of a frontal face in a square of ``size`` px (eyes, nose, mouth corners)."""
    return np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.41, 0.68], [0.59, 0.68]]) * size


def face_and_control(size: int) -> tuple[np.ndarray, Any]:
    rng = np.random.default_rng(0)
    face = rng.standard_normal(EMBEDDING_SIZE).astype(np.float32)
    face /= np.linalg.norm(face)
    return face, imaging.draw_kps(size, size, face_keypoints(size))


def baseline_lora_step(
    unet, resolution: int, rank: int, steps: int, warmup: int, device: torch.device
) -> dict:
    """A plain peft LoRA training step on ``unet`` (what diffusers' SDXL LoRA scripts do per step).

    Same rank and target modules as ``headshot.lora``; fp32 LoRA weights, autocast to the UNet's
    half dtype on CUDA; random latents and text embeddings (encoding is not part of a step). The
    adapter is removed afterwards.
    """
    from diffusers import DDPMScheduler
    from diffusers.utils.peft_utils import recurse_remove_peft_layers
    from peft import LoraConfig

    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights="gaussian",
            target_modules=list(lora.UNET_TARGET_MODULES),
        ),
        adapter_name="baseline",
    )
    params = [p for name, p in unet.named_parameters() if "lora_" in name]
    for param in params:
        param.data = param.data.float()
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scheduler = DDPMScheduler.from_config(scheduler_config())
    half = unet.dtype
    latent = resolution // 8
    cfg = unet.config
    x0 = torch.randn(1, cfg.in_channels, latent, latent, device=device, dtype=half)
    context = torch.randn(1, 77, cfg.cross_attention_dim, device=device, dtype=half)
    pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    added = {
        "text_embeds": torch.randn(1, pooled, device=device, dtype=half),
        "time_ids": torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device),
    }
    autocast = torch.autocast(device.type, dtype=half) if half != torch.float32 else contextlib.nullcontext()
    unet.train()
    stamps = []
    try:
        with peak_memory(device) as peak:
            for _ in range(warmup + steps):
                noise = torch.randn_like(x0)
                t = torch.randint(0, scheduler.config.num_train_timesteps, (1,), device=device)
                noisy = scheduler.add_noise(x0, noise, t)
                with autocast:
                    pred = unet(noisy, t, context, added_cond_kwargs=added).sample
                loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss.item()  # synchronises
                stamps.append(time.perf_counter())
    finally:
        unet.eval()
        recurse_remove_peft_layers(unet)
        if hasattr(unet, "peft_config"):
            del unet.peft_config
        unet.requires_grad_(False)
    per_step = statistics.median(np.diff(stamps)[max(0, warmup - 1) :].tolist() or [0.0])
    return {"per_step": per_step, "peak": peak["gib"]}


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
    """What one run measures (``for_cuda`` / ``for_cpu_smoke`` give the defaults)."""

    size: int = 1024
    steps: int = 30
    fast_steps: tuple[int, ...] = (4, 8)
    repeats: int = 3
    lora_steps: int = 10
    lora_warmup: int = 3
    tiling_size: int = 1536
    variants: bool = True
    compile_mode: str = "max-autotune-no-cudagraphs"
    compile_scope: str = "full"
    compile: bool = True
    aoti: bool = False
    prefix: str = "gpu"
    reduced: bool = False

    @classmethod
    def for_cpu_smoke(cls) -> Settings:
        return cls(
            size=128,
            steps=2,
            fast_steps=(4,),
            repeats=1,
            lora_steps=2,
            lora_warmup=1,
            tiling_size=256,
            compile=False,
            prefix="cpu_smoke",
            reduced=True,
        )


def run(settings: Settings, emit: Emit, device: torch.device | None = None) -> None:
    """Build the modules, measure everything, ``emit(name, value, unit, notes=...)`` each figure."""
    device = device or torch.device("cuda")
    half = torch.float16 if device.type == "cuda" else torch.float32
    configs = reduced_configs() if settings.reduced else full_configs()
    p, size, steps = settings.prefix, settings.size, settings.steps
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    started = time.perf_counter()
    parts = build_components(device, half, configs)
    params = sum(x.numel() for x in parts.unet.parameters()) / 1e6
    net_params = sum(x.numel() for x in parts.controlnet.parameters()) / 1e6
    emit(
        f"{p}_build_s",
        time.perf_counter() - started,
        "s",
        notes=f"UNet {params:,.0f} M parameters, ControlNet {net_params:,.0f} M",
    )
    face, control = face_and_control(size)

    # 1. Plain diffusers SDXL + ControlNet (before the face adapter changes the UNet).
    plain = plain_pipeline(parts, fast=False)

    def run_plain(n_steps: int, guidance: float, pipe=plain):
        return plain_render(pipe, control, size, n_steps, guidance)

    base = timed(lambda: run_plain(steps, 5.0), device, settings.repeats)
    emit(
        f"{p}_baseline_{size}px_{steps}steps_s",
        base["median"],
        "s",
        notes="diffusers SDXL + ControlNet, CFG 5",
    )
    emit(f"{p}_baseline_peak_memory_gib", base["peak"], "GiB")
    fast_plain = plain_pipeline(parts, fast=True)
    fast_plain.load_lora_weights(dict(parts.lcm_lora), adapter_name="lcm")
    base_fast = {}
    for n in settings.fast_steps:
        base_fast[n] = timed(lambda n=n, pipe=fast_plain: run_plain(n, 1.0, pipe), device, settings.repeats)
        emit(f"{p}_baseline_fast_{size}px_{n}steps_s", base_fast[n]["median"], "s", notes="LCM LoRA, no CFG")
    fast_plain.unload_lora_weights()
    lora_rank = lora.LoraSettings().rank
    base_lora = baseline_lora_step(
        parts.unet, size, lora_rank, settings.lora_steps, settings.lora_warmup, device
    )
    emit(
        f"{p}_baseline_lora_seconds_per_step_{size}px",
        base_lora["per_step"],
        "s",
        notes=f"plain peft, rank {lora_rank}",
    )
    if base_lora["peak"] is not None:
        emit(f"{p}_baseline_lora_peak_memory_gib", base_lora["peak"], "GiB")

    # 2. Ours: the face adapter loaded, every fast path on (no warm-up yet: the first render is cold).
    loaded = instantid_models(parts, device, half, "full" if not settings.reduced else "tiny")
    models.prepare_models(loaded)
    request = recipe.RenderRequest(
        prompt=PROMPT, negative_prompt=NEGATIVE, face_embedding=face, control_image=control,
        width=size, height=size, steps=steps, guidance=5.0,
    )  # fmt: skip
    ours = timed(lambda: pipeline.render_on(loaded, request), device, settings.repeats)
    emit(
        f"{p}_instantid_first_render_cold_s",
        ours["first"],
        "s",
        notes="no warm-up: what a warm-up at startup saves",
    )
    emit(f"{p}_instantid_{size}px_{steps}steps_s", ours["median"], "s", notes=_paths_note(loaded))
    emit(f"{p}_instantid_vs_baseline_ratio", ours["median"] / base["median"], "x")
    emit(f"{p}_instantid_peak_memory_gib", ours["peak"], "GiB")
    for n in settings.fast_steps:
        fast_request = dataclasses.replace(request, fast=True, steps=n, guidance=1.0)
        res = timed(lambda r=fast_request: pipeline.render_on(loaded, r), device, settings.repeats)
        emit(f"{p}_instantid_fast_{size}px_{n}steps_s", res["median"], "s", notes="fast LoRA + LCM, CFG-free")
        emit(f"{p}_instantid_fast_{n}steps_vs_baseline_ratio", res["median"] / base_fast[n]["median"], "x")
        emit(f"{p}_instantid_fast_peak_memory_gib", res["peak"], "GiB")

    # 3. Each fast path before/after: the same render with one switch changed.
    if settings.variants:
        half_name = "fp16" if half == torch.float16 else "fp32"
        default = dataclasses.replace(loaded.fast_paths, dtype=half_name)
        variants = {
            "no_sdpa": models.FastPaths(dtype=half_name, sdpa=False),
            "no_channels_last": models.FastPaths(dtype=half_name, channels_last=False),
            "fp32_vae": models.FastPaths(dtype=half_name, fp16_vae=False),
            "bf16": models.FastPaths(dtype="bf16"),
            "fp32": models.FastPaths(dtype="fp32"),
        }
        for name, fast_paths in variants.items():
            models.prepare_models(loaded, dataclasses.replace(fast_paths, warmup=False))
            res = timed(lambda: pipeline.render_on(loaded, request), device, settings.repeats)
            emit(
                f"{p}_fastpath_{name}_{size}px_{steps}steps_s", res["median"], "s", notes=_paths_note(loaded)
            )
            emit(f"{p}_fastpath_{name}_peak_memory_gib", res["peak"], "GiB")
        models.prepare_models(loaded, default)
        _tiling(loaded, settings, emit, device)

    # 4. LoRA training on the shared UNet (headshot.lora via benchmarks/lora_bench.py).
    components = lora.LoraComponents.from_pipeline(loaded.pipe, base_model="random-sdxl-sized")
    lora_settings = lora.LoraSettings(
        steps=settings.lora_steps + settings.lora_warmup,
        resolution=size,
        mixed_precision=None if device.type == "cuda" else "no",
    )
    numbers = lora_bench.time_steps(components, lora_bench.selfies(4), lora_settings, settings.lora_warmup)
    emit(f"{p}_lora_seconds_per_step_{size}px", numbers["per_step"], "s", notes=f"rank {lora_settings.rank}")
    emit(f"{p}_lora_vs_baseline_ratio", numbers["per_step"] / base_lora["per_step"], "x")
    projected = numbers["fixed"] + lora.LoraSettings().steps * numbers["per_step"]
    emit(f"{p}_lora_default_setup_projected_s", projected, "s", notes=f"{lora.LoraSettings().steps} steps")
    if "peak_gb" in numbers:
        emit(f"{p}_lora_peak_memory_gib", numbers["peak_gb"], "GiB")

    # 5. Compilation last (it cannot be undone): AoTI (spaces' helpers), then torch.compile.
    if settings.aoti and device.type == "cuda":
        started = time.perf_counter()
        pipeline.aoti_compile(loaded)
        emit(f"{p}_aoti_compile_s", time.perf_counter() - started, "s")
        res = timed(lambda: pipeline.render_on(loaded, request), device, settings.repeats)
        calls = loaded.pipe.unet.forward.calls
        emit(f"{p}_instantid_aoti_{size}px_{steps}steps_s", res["median"], "s", notes=f"UNet calls {calls}")
        aoti.release(loaded)
    if settings.compile and device.type == "cuda":
        compiled = dataclasses.replace(
            loaded.fast_paths, compile=settings.compile_mode, compile_scope=settings.compile_scope
        )
        models.prepare_models(loaded, compiled)
        res = timed(lambda: pipeline.render_on(loaded, request), device, settings.repeats)
        note = f"torch.compile mode={settings.compile_mode} scope={settings.compile_scope}"
        emit(f"{p}_compile_first_render_s", res["first"], "s", notes=note + ", compiles")
        emit(f"{p}_instantid_compiled_{size}px_{steps}steps_s", res["median"], "s", notes=note)


def _tiling(loaded, settings: Settings, emit: Emit, device: torch.device) -> None:
    """VAE decoding of a large image with and without tiling: time and peak memory."""
    vae = loaded.pipe.vae
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    side = settings.tiling_size // factor
    latents = torch.randn(1, vae.config.latent_channels, side, side, device=device, dtype=loaded.dtype)
    p, size = settings.prefix, settings.tiling_size
    try:
        for tiled in (False, True):
            vae.enable_tiling() if tiled else vae.disable_tiling()
            name = "tiled" if tiled else "untiled"
            try:
                with torch.no_grad():
                    res = timed(lambda: recipe._decode(loaded.pipe, latents), device, settings.repeats)
            except torch.OutOfMemoryError:
                emit(f"{p}_vae_decode_{size}px_{name}_out_of_memory", 1, "bool")
                continue
            emit(f"{p}_vae_decode_{size}px_{name}_s", res["median"], "s")
            emit(f"{p}_vae_decode_{size}px_{name}_peak_memory_gib", res["peak"], "GiB")
    finally:
        vae.disable_tiling()


def _paths_note(loaded) -> str:
    fast = loaded.fast_paths
    return (
        f"{str(loaded.dtype).removeprefix('torch.')}, sdpa={fast.sdpa}, fp16_vae={fast.fp16_vae}, "
        f"channels_last={fast.channels_last}, compile={fast.compile or 'off'}"
    )
