"""peft on the shared UNet: a LoRA adapter attached for training and taken away afterwards.

Training adds a named adapter to the pipeline's own UNet (no second multi-gigabyte copy on the GPU)
and removes it on the way out, also when training fails, through diffusers' public peft API:
``unet.add_adapter`` (initialised under a seeded ``torch.random.fork_rng``), then ``unet.unload_lora``
when no other adapter was loaded, else ``unet.delete_adapters`` and ``set_adapter`` back to the
previous active adapters with their enabled flags. An InstantID face adapter is suspended meanwhile
(its projection and attention processors would demand face embeddings); train/eval mode, gradient
checkpointing and every ``requires_grad`` flag come back. Callers must not render with the UNet while
training runs (the app runs one GPU job at a time).

:func:`check_lora_for_unet` is the before-render LoRA check: :func:`identity.check_lora_state_dict`,
the same check an identity file passes at upload, with this UNet's layer shapes. No module state.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from . import identity

# Where a UNet LoRA may sit: the attention projections of the denoising blocks (not the face projection).
_UNET_BLOCKS = ("down_blocks.", "mid_block.", "up_blocks.")


def lora_target_shapes(unet: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """``{module path: (in_features, out_features)}`` of every layer a LoRA of this app may target."""
    shapes = {}
    for path, module in unet.named_modules():
        name = path.removesuffix(".base_layer")  # a layer that already carries peft adapters
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name or not name.startswith(_UNET_BLOCKS):
            continue
        if name.rsplit(".", 1)[-1] in identity.LORA_TARGET_MODULES or name.endswith(".to_out.0"):
            shapes[name] = (module.in_features, module.out_features)
    return shapes


def check_lora_for_unet(state_dict: Mapping[str, Any], unet: torch.nn.Module) -> dict[str, int]:
    """Refuse a LoRA that is not in the app's format or does not fit ``unet`` (``IdentityFileError``)."""
    return identity.check_lora_state_dict(state_dict, lora_target_shapes(unet))


def has_adapters(model: torch.nn.Module) -> bool:
    """Whether peft adapters are loaded into ``model``."""
    return bool(getattr(model, "peft_config", None))


def _tuner_layers(model: torch.nn.Module) -> dict[str, Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


@contextlib.contextmanager
def training_adapter(
    unet: Any, lora_config: Any, adapter_name: str, *, seed: int = 0
) -> Iterator[list[tuple[str, torch.nn.Parameter]]]:
    """Attach a fresh LoRA adapter (a peft ``LoraConfig``) to ``unet`` for training, for the block.

    Yields ``(key, parameter)`` of the adapter in module order (keys as ``get_peft_model_state_dict``
    writes them, ``"<module>.lora_A.weight"``): fp32 (``cast_training_params``), the only parameters
    that require gradients. On exit the UNet is as it was (see the module docstring).
    """
    with _restored_modes(unet), _ip_adapter_suspended(unet), _attached(unet, lora_config, adapter_name, seed):
        from diffusers.training_utils import cast_training_params

        unet.requires_grad_(False)
        marker = f".{adapter_name}."
        params = []
        for name, param in unet.named_parameters():
            if marker in name and (".lora_A." in name or ".lora_B." in name):
                param.requires_grad_(True)
                params.append((name.replace(marker, "."), param))
        cast_training_params(unet, dtype=torch.float32)
        yield params


@contextlib.contextmanager
def _attached(unet: Any, lora_config: Any, adapter_name: str, seed: int) -> Iterator[None]:
    prior = has_adapters(unet)
    if prior and adapter_name in unet.peft_config:
        raise RuntimeError(f"adapter {adapter_name!r} is already loaded")
    prior_active = list(unet.active_adapters()) if prior else []
    prior_enabled = {name: not layer.disable_adapters for name, layer in _tuner_layers(unet).items()}
    grad_flags = {name: p.requires_grad for name, p in unet.named_parameters()}
    devices = [unet.device] if unet.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*peft_config.*multiple adapters", category=UserWarning
            )
            torch.manual_seed(seed)
            unet.add_adapter(lora_config, adapter_name=adapter_name)
        unet.enable_adapters()  # the pipeline may have disabled its LoRAs (pipe.disable_lora())
        yield
    finally:
        if prior:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*was active which is now deleted", category=UserWarning
                )
                unet.delete_adapters(adapter_name)
            for name, layer in _tuner_layers(unet).items():
                if name not in prior_enabled:  # wrapped for this adapter only: put the plain layer back
                    parent, _, leaf = name.rpartition(".")
                    setattr(unet.get_submodule(parent), leaf, layer.get_base_layer())
            unet.set_adapter(prior_active)
            for name, layer in _tuner_layers(unet).items():
                layer.enable_adapters(prior_enabled[name])
        else:
            unet.unload_lora()
        for name, param in unet.named_parameters():
            if name in grad_flags:
                param.requires_grad_(grad_flags[name])


@contextlib.contextmanager
def _ip_adapter_suspended(unet: Any) -> Iterator[None]:
    """The plain text-conditioned UNet for the block, even with InstantID's face adapter loaded.

    As diffusers' ``unload_ip_adapter`` does, without losing the weights: the face projection leaves
    and the IP-Adapter attention processors become plain ones; both are put back afterwards.
    """
    if getattr(unet, "encoder_hid_proj", None) is None or unet.config.encoder_hid_dim_type != "ip_image_proj":
        yield
        return
    from diffusers.models.attention_processor import (
        AttnProcessor2_0,
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
    )

    processors = dict(unet.attn_processors)  # includes the face projection's own attention layers
    ip_types = (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)
    plain = {name: AttnProcessor2_0() if isinstance(p, ip_types) else p for name, p in processors.items()}
    projection = unet.encoder_hid_proj
    try:
        unet.set_attn_processor(plain)
        unet.encoder_hid_proj = None
        unet.config.encoder_hid_dim_type = None
        yield
    finally:
        unet.encoder_hid_proj = projection
        unet.config.encoder_hid_dim_type = "ip_image_proj"
        unet.set_attn_processor(processors)


@contextlib.contextmanager
def _restored_modes(unet: Any) -> Iterator[None]:
    """Put back the UNet's train/eval mode and gradient checkpointing afterwards."""
    training = unet.training
    checkpointing = bool(getattr(unet, "is_gradient_checkpointing", False))
    try:
        yield
    finally:
        unet.train(training)
        if bool(getattr(unet, "is_gradient_checkpointing", False)) != checkpointing:
            if checkpointing:
                unet.enable_gradient_checkpointing()
            else:
                unet.disable_gradient_checkpointing()
