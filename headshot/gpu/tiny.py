"""Tiny random-weight model repositories for the offline ``tiny`` profile and the tests.

``ensure_tiny_models(embedding_size)`` writes, once per build spec, folders laid out exactly like the
Hub repositories the ``full`` profile downloads: ``sdxl/`` (an SDXL pipeline in diffusers layout),
``instantid/`` (``ControlNetModel/``, the IdentityNet built from the tiny UNet, and ``ip-adapter.bin``
in InstantID's layout, sized to the face pack's embedding) and ``fast-lora/`` (a small random LoRA
standing in for the LCM-LoRA). ``models.py`` loads them through the same ``from_pretrained`` /
``load_ip_adapter`` / ``load_lora_weights`` calls as the real models. Every weight is random
(seeded): the images are noise, but deterministic noise.
"""


from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from headshot import config

__all__ = ["TINY_FORMAT", "build_spec", "ensure_tiny_models", "random_unet_lora"]

TINY_FORMAT = 1  # bump when the layout or the construction below changes
SEED = 20240601

# Dimensions. The adapter keeps InstantID's depth 4, head size 64 and feed-forward ratio 4 (what
# diffusers' IP-Adapter converter assumes) and shrinks the rest.
TEXT_HIDDEN = 32
TEXT_PROJECTION = 32
CROSS_ATTENTION_DIM = 2 * TEXT_HIDDEN  # SDXL concatenates the hidden states of both text encoders
ADDITION_TIME_EMBED_DIM = 8
RESAMPLER_DIM = 64
RESAMPLER_DEPTH = 4
RESAMPLER_HEAD_DIM = 64
RESAMPLER_FF_MULT = 4
NUM_FACE_TOKENS = 16
LORA_RANK = 4

_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def build_spec(embedding_size: int) -> dict[str, Any]:
    """Everything that determines the built files; its hash names the cache folder."""
    return {
        "format": TINY_FORMAT,
        "seed": SEED,
        "embedding_size": int(embedding_size),
        "unet": {
            "sample_size": 32,
            "in_channels": 4,
            "out_channels": 4,
            "layers_per_block": 1,
            "block_out_channels": [32, 64],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "attention_head_dim": [2, 4],
            "transformer_layers_per_block": [1, 1],
            "use_linear_projection": True,
            "cross_attention_dim": CROSS_ATTENTION_DIM,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": ADDITION_TIME_EMBED_DIM,
            "projection_class_embeddings_input_dim": 6 * ADDITION_TIME_EMBED_DIM + TEXT_PROJECTION,
            "norm_num_groups": 32,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "block_out_channels": [32, 64],
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "sample_size": 128,
            "scaling_factor": 0.13025,
            "force_upcast": False,
        },
        "text_encoder": {
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "projection_dim": TEXT_PROJECTION,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
        },
        # What a real SDXL repository ships; the pipeline builds its own schedulers from this config.
        "scheduler": {
            "class": "EulerDiscreteScheduler",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "timestep_spacing": "leading",
            "steps_offset": 1,
        },
        "identitynet": {"conditioning_embedding_out_channels": [16, 32], "residual_std": 0.3},
        "adapter": {
            "embedding_size": int(embedding_size),
            "dim": RESAMPLER_DIM,
            "depth": RESAMPLER_DEPTH,
            "head_dim": RESAMPLER_HEAD_DIM,
            "ff_mult": RESAMPLER_FF_MULT,
            "num_queries": NUM_FACE_TOKENS,
            "output_dim": CROSS_ATTENTION_DIM,
        },
        "fast_lora": {"rank": LORA_RANK, "std": 0.05},
        "libraries": {name: metadata.version(name) for name in ("diffusers", "transformers", "torch")},
    }


def spec_hash(spec: dict[str, Any]) -> str:
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_tiny_models(embedding_size: int, root: Path | None = None) -> dict[str, Path]:
    """Build the tiny repositories once and return their folders.

    Returns ``{"sdxl": ..., "instantid": ..., "fast_lora": ...}``. They live under
    ``<root or config.cache_dir()/tiny>/<hash of the build spec>``. The build happens in a temporary
    folder that is renamed into place, so a reader never sees a half-written repository and two
    processes racing to build it both end up using one complete copy.
    """
    if int(embedding_size) <= 0:
        raise ValueError(f"embedding_size must be positive, not {embedding_size!r}")
    spec = build_spec(embedding_size)
    base = Path(root) if root is not None else config.cache_dir() / "tiny"
    final = base / spec_hash(spec)
    if not (final / "spec.json").is_file():
        base.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(base)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-{uuid.uuid4().hex[:8]}-", dir=base))
        try:
            _build(spec, tmp)
            (tmp / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
            try:
                os.rename(tmp, final)
            except OSError:
                # Another process finished first (the target exists and is not empty): use theirs.
                if not (final / "spec.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "sdxl": final / "sdxl",
        "instantid": final / "instantid",
        "fast_lora": final / "fast-lora",
    }


def _remove_stale_builds(base: Path, older_than_s: float = 3600.0) -> None:
    """Temporary build folders left by a process that died mid-build."""
    now = time.time()
    for leftover in base.glob(".build-*"):
        try:
            if now - leftover.stat().st_mtime > older_than_s:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


def _build(spec: dict[str, Any], out: Path) -> None:
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        unet = UNet2DConditionModel(**spec["unet"])
        vae = AutoencoderKL(**spec["vae"])
        tokenizer = _write_tokenizer(out / "_tokenizer_src")
        text_cfg = CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **spec["text_encoder"],
        )
        text_encoder = CLIPTextModel(text_cfg)
        text_encoder_2 = CLIPTextModelWithProjection(text_cfg)
        sched_cfg = {k: v for k, v in spec["scheduler"].items() if k != "class"}
        scheduler = EulerDiscreteScheduler(**sched_cfg)

        sdxl = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
            add_watermarker=False,
        )
        sdxl.save_pretrained(out / "sdxl")
        shutil.rmtree(out / "_tokenizer_src")

        # IdentityNet: a ControlNet copied from the UNet. Its output convolutions start at zero in
        # diffusers (a no-op ControlNet); a trained IdentityNet's are not, so give them small weights.
        net_spec = spec["identitynet"]
        identitynet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=tuple(net_spec["conditioning_embedding_out_channels"])
        )
        zero_init = [*identitynet.controlnet_down_blocks, identitynet.controlnet_mid_block]
        zero_init.append(identitynet.controlnet_cond_embedding.conv_out)
        for module in zero_init:
            for param in module.parameters():
                torch.nn.init.normal_(param, std=net_spec["residual_std"])
        identitynet.save_pretrained(out / "instantid" / "ControlNetModel")

        adapter = {
            "image_proj": _resampler_state_dict(**spec["adapter"]),
            "ip_adapter": _ip_attention_state_dict(unet),
        }
        torch.save(adapter, out / "instantid" / "ip-adapter.bin")

        lora_spec = spec["fast_lora"]
        lora = random_unet_lora(unet, rank=lora_spec["rank"], seed=spec["seed"] + 1, std=lora_spec["std"])
        StableDiffusionXLPipeline.save_lora_weights(
            out / "fast-lora",
            unet_lora_layers={k.removeprefix("unet."): v for k, v in lora.items()},
            weight_name="pytorch_lora_weights.safetensors",
        )


def _write_tokenizer(folder: Path):
    """A CLIP BPE tokenizer over a small byte-level vocabulary, written as vocab.json + merges.txt."""
    from transformers import CLIPTokenizer

    # CLIP's byte-to-unicode table: printable bytes map to themselves, the rest to code points >= 256.
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = [chr(b) for b in printable]
    chars += [chr(256 + i) for i in range(256 - len(printable))]
    words = ["photo", "portrait", "headshot", "person", "studio", "light", "the", "of", "and", "a"]
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    for word in words:  # merge each word's characters left to right so common words become one token
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            right = ch + "</w>" if i == len(word) - 1 else ch
            merges.append(f"{current} {right}")
            current = current + right
            vocab.setdefault(current, len(vocab))
    for token in _SPECIAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77
    )


def _resampler_state_dict(
    *,
    embedding_size: int,
    dim: int,
    depth: int,
    head_dim: int,
    ff_mult: int,
    num_queries: int,
    output_dim: int,
) -> dict[str, torch.Tensor]:
    """Random weights in the key layout of InstantID's face Resampler (``image_proj`` of ip-adapter.bin)."""
    inner = head_dim * max(1, dim // head_dim)

    def linear(out_f: int, in_f: int) -> torch.Tensor:
        return torch.randn(out_f, in_f) * in_f**-0.5

    sd: dict[str, torch.Tensor] = {
        "latents": torch.randn(1, num_queries, dim) / dim**0.5,
        "proj_in.weight": linear(dim, embedding_size),
        "proj_in.bias": torch.zeros(dim),
        "proj_out.weight": linear(output_dim, dim),
        "proj_out.bias": torch.zeros(output_dim),
        "norm_out.weight": torch.ones(output_dim),
        "norm_out.bias": torch.zeros(output_dim),
    }
    for i in range(depth):
        attn, ff = f"layers.{i}.0", f"layers.{i}.1"
        sd |= {
            f"{attn}.norm1.weight": torch.ones(dim),
            f"{attn}.norm1.bias": torch.zeros(dim),
            f"{attn}.norm2.weight": torch.ones(dim),
            f"{attn}.norm2.bias": torch.zeros(dim),
            f"{attn}.to_q.weight": linear(inner, dim),
            f"{attn}.to_kv.weight": linear(2 * inner, dim),
            f"{attn}.to_out.weight": linear(dim, inner),
            f"{ff}.0.weight": torch.ones(dim),
            f"{ff}.0.bias": torch.zeros(dim),
            f"{ff}.1.weight": linear(dim * ff_mult, dim),
            f"{ff}.3.weight": linear(dim, dim * ff_mult),
        }
    return sd


def _ip_attention_state_dict(unet) -> dict[str, torch.Tensor]:
    """Random ``to_k_ip`` / ``to_v_ip`` weights for every cross-attention of the UNet.

    IP-Adapter checkpoints number the UNet's attention processors in order; the cross-attention ones
    (``attn2``) carry the weights, which gives the odd keys 1, 3, 5, ...
    """
    cross_dim = unet.config.cross_attention_dim
    sd: dict[str, torch.Tensor] = {}
    for index, name in enumerate(unet.attn_processors.keys()):
        if name.endswith("attn1.processor"):
            continue
        hidden = _block_width(unet, name)
        for key in ("to_k_ip", "to_v_ip"):
            sd[f"{index}.{key}.weight"] = torch.randn(hidden, cross_dim) * cross_dim**-0.5
    return sd


def _block_width(unet, processor_name: str) -> int:
    channels = list(unet.config.block_out_channels)
    if processor_name.startswith("mid_block"):
        return channels[-1]
    block_id = int(processor_name.split(".")[1])
    if processor_name.startswith("up_blocks"):
        return list(reversed(channels))[block_id]
    return channels[block_id]


def random_unet_lora(unet, *, rank: int = 4, seed: int = 0, std: float = 0.05) -> dict[str, torch.Tensor]:
    """A random LoRA for every attention projection of ``unet``, in diffusers' ``unet.*`` key format.

    Keys look like ``unet.<module path>.lora_A.weight`` / ``lora_B.weight`` (what diffusers saves for a
    peft-trained UNet LoRA); ``pipe.load_lora_weights(state_dict, adapter_name=...)`` accepts them.
    ``unet`` is only inspected (module names and shapes), never modified.
    """
    generator = torch.Generator().manual_seed(seed)
    targets = ("to_q", "to_k", "to_v", "to_out.0")
    sd: dict[str, torch.Tensor] = {}
    for path, module in unet.named_modules():
        name = path.removesuffix(".base_layer")  # a layer that already carries peft adapters
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name or not name.endswith(targets):
            continue
        if not name.startswith(("down_blocks", "mid_block", "up_blocks")):  # not the face projection
            continue
        sd[f"unet.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * std
        sd[f"unet.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * std
    return sd
