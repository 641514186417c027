"""Seconds per LoRA training step (headshot.lora.train_lora), printed as JSON lines {"name","value","unit"}.

    python benchmarks/lora_bench.py                       # CPU, tiny models, the tiny native size (64 px)
    python benchmarks/lora_bench.py --full-size           # CUDA: a full-size SDXL UNet with random weights,
                                                          # timed at 768 and 1024 px with the default settings

``--full-size`` downloads nothing: it builds the SDXL UNet (2.57 B parameters) and VAE from their
configurations with random weights, and small text encoders of SDXL's widths (768 + 1280, pooled
1280; the text encoders run once per training, never inside the loop, so their depth does not
affect a step). It reports, per resolution: seconds per step (median after warm-up), the fixed
cost of a call (crops, VAE encoding of every variant, caption embedding, export), peak GPU memory,
and the projected time of the default setup (fixed cost + the default step count x seconds per
step), the number to hold against the 90 s target. Full-size runs time every resolution with and
without gradient checkpointing (``_ckpt`` / ``_no_ckpt``) and print which one the default setting
(``gradient_checkpointing=None``, decided by free GPU memory) picks at 1024 px.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from headshot.gpu import lora  # noqa: E402

SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": False,
}


def emit(name: str, value: float, unit: str) -> None:
    print(json.dumps({"name": name, "value": round(float(value), 4), "unit": unit}), flush=True)


def selfies(count: int) -> list[Image.Image]:
    """Real selfies when the shared test data is there, else smooth synthetic images (timing only)."""
    data = Path(os.environ.get("HEADSHOT_TEST_DATA", ROOT.parent / "shared"))
    paths = sorted((data / "testdata" / "faces" / "same_person" / "obama").glob("*.jpg"))[:count]
    if paths:
        return [Image.open(p).convert("RGB") for p in paths]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        base = rng.random((8, 8, 3)) * 255
        out.append(Image.fromarray(base.astype(np.uint8)).resize((768, 960), Image.Resampling.BICUBIC))
    return out


def tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def full_size_components(device: torch.device) -> lora.LoraComponents:
    """SDXL-sized UNet and VAE with random weights on ``device`` (bf16 UNet, fp32 VAE)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET).to(half)
        vae = AutoencoderKL(**SDXL_VAE)

        def text(hidden: int, with_projection: bool):
            cfg = CLIPTextConfig(
                vocab_size=80,
                hidden_size=hidden,
                intermediate_size=hidden * 4,
                num_hidden_layers=2,
                num_attention_heads=hidden // 64,
                max_position_embeddings=77,
                projection_dim=1280,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
            model = CLIPTextModelWithProjection(cfg) if with_projection else CLIPTextModel(cfg)
            return model.to(half)

        text_encoder, text_encoder_2 = text(768, False), text(1280, True)
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval().requires_grad_(False)
    scheduler = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    return lora.LoraComponents(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer(),
        tokenizer_2=tokenizer(),
        noise_scheduler=scheduler,
        base_model="random-sdxl-sized",
    )


def time_steps(
    components: lora.LoraComponents, images, settings: lora.LoraSettings, warmup: int
) -> dict[str, float]:
    """Run ``settings.steps`` steps; per-step seconds from the progress callback (median after warm-up)."""
    stamps: list[float] = []
    device = components.unet.device
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def progress(step: int, total: int, loss: float) -> None:  # loss.item() already synchronised
        stamps.append(time.perf_counter())

    started = time.perf_counter()
    result = lora.train_lora(components, images, settings, progress=progress)
    total = time.perf_counter() - started
    intervals = np.diff(stamps).tolist()
    timed = intervals[warmup:] or intervals
    per_step = statistics.median(timed)
    fixed = max(0.0, total - per_step * len(stamps))
    out = {"per_step": per_step, "fixed": fixed, "total": total, "final_loss": result.final_loss}
    if device.type == "cuda":
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="SDXL-sized random UNet on CUDA")
    parser.add_argument("--resolutions", type=int, nargs="*", help="default: 64 tiny, 768 1024 full-size")
    parser.add_argument(
        "--steps", type=int, help="timed steps per resolution (default 10 tiny, 15 full-size)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the median")
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    images = selfies(args.images)
    defaults = lora.LoraSettings()

    if args.full_size:
        if not torch.cuda.is_available():
            sys.exit("--full-size needs a CUDA GPU")
        device = torch.device("cuda")
        components = full_size_components(device)
        label = torch.cuda.get_device_name(0).replace(" ", "_")
        resolutions = args.resolutions or [768, 1024]
        steps = args.steps or 15
    else:
        from diffusers import StableDiffusionXLPipeline

        from headshot.gpu.tiny import ensure_tiny_models

        repo = ensure_tiny_models(128)["sdxl"]
        components = lora.LoraComponents.from_pipeline(StableDiffusionXLPipeline.from_pretrained(repo))
        label = "cpu_tiny"
        resolutions = args.resolutions or [lora.default_resolution(components.unet, components.vae)]
        steps = args.steps or 10

    if args.full_size:
        auto = lora.auto_gradient_checkpointing(components.unet.device, 1024)
        emit("lora_default_uses_checkpointing_1024px", float(auto), "bool")
        runs = [(res, ckpt) for res in resolutions for ckpt in (True, False)]
    else:
        runs = [(res, None) for res in resolutions]
    for resolution, checkpointing in runs:
        settings = lora.LoraSettings(
            steps=steps + args.warmup, resolution=resolution, gradient_checkpointing=checkpointing
        )
        tag = f"{label}_{resolution}px" + {None: "", True: "_ckpt", False: "_no_ckpt"}[checkpointing]
        try:
            numbers = time_steps(components, images, settings, args.warmup)
        except torch.cuda.OutOfMemoryError:
            emit(f"lora_out_of_memory_{tag}", 1.0, "bool")
            torch.cuda.empty_cache()
            continue
        emit(f"lora_seconds_per_step_{tag}", numbers["per_step"], "s")
        emit(f"lora_fixed_seconds_{tag}", numbers["fixed"], "s")
        emit(
            f"lora_default_setup_projected_{tag}",
            numbers["fixed"] + defaults.steps * numbers["per_step"],
            "s",
        )
        if "peak_gb" in numbers:
            emit(f"lora_peak_memory_{tag}", numbers["peak_gb"], "GiB")


if __name__ == "__main__":
    main()
