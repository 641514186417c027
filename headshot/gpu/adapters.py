"""peft on the shared UNet: a LoRA attached for training, the LoRAs of each render, and their checks.

Training (:func:`training_adapter`) adds a named adapter to the pipeline's own UNet (no second copy on
the GPU) and removes it on the way out, also when training fails, through diffusers' public peft API
(``add_adapter``, then ``unload_lora`` or ``delete_adapters`` + ``set_adapter``); an InstantID face
adapter is suspended meanwhile (or, with ``face_adapter_scale``, suspended only while the LoRA layers are
added, then active at that scale so the LoRA trains alongside it), and train/eval mode, gradient checkpointing and ``requires_grad`` come back.
A render (:func:`configure` / :func:`release`) activates exactly its own adapters (the fast-mode
LCM-LoRA, a person's LoRA) with ``load_lora_weights`` / ``set_adapters`` and deletes or disables them
after, so nothing leaks into the next render. :func:`check_lora_for_unet` is the before-render check:
``identity.check_lora_state_dict``, the one an identity file passes at upload, with this UNet's shapes.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from headshot import config, errors
from headshot.faces import identity
from headshot.gpu.models import Models, unavailable

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
    unet: Any,
    lora_config: Any,
    adapter_name: str,
    *,
    seed: int = 0,
    face_adapter_scale: float | None = None,
) -> Iterator[list[tuple[str, torch.nn.Parameter]]]:
    """Attach a fresh LoRA adapter (a peft ``LoraConfig``) to ``unet`` for training, for the block.

    Yields ``(key, parameter)`` of the adapter in module order (keys as ``get_peft_model_state_dict``
    writes them, ``"<module>.lora_A.weight"``): fp32 (``cast_training_params``), the only parameters
    that require gradients. ``face_adapter_scale=None`` trains the plain text-conditioned UNet (the
    face adapter suspended); a number keeps InstantID's face adapter active at that scale (it must be
    loaded; the caller passes ``image_embeds``), the LoRA layers added while it was suspended so none
    lands on the face projection. On exit the UNet is as it was (see the module docstring).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_restored_modes(unet))
        restore_face_adapter = stack.enter_context(_ip_adapter_suspended(unet))
        stack.enter_context(_attached(unet, lora_config, adapter_name, seed))
        from diffusers.training_utils import cast_training_params

        if face_adapter_scale is not None:
            if not restore_face_adapter():
                raise errors.InvalidRequest(
                    "Training with the face adapter needs InstantID's face adapter loaded."
                )
            stack.enter_context(_ip_adapter_scale(unet, float(face_adapter_scale)))

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
def _ip_adapter_suspended(unet: Any) -> Iterator[Callable[[], bool]]:
    """The plain text-conditioned UNet for the block, even with InstantID's face adapter loaded.

    As diffusers' ``unload_ip_adapter`` does, without losing the weights: the face projection leaves
    and the IP-Adapter attention processors become plain ones; both are put back afterwards. Yields
    ``restore()``, which puts them back early (True; False when no face adapter is loaded).
    """
    if getattr(unet, "encoder_hid_proj", None) is None or unet.config.encoder_hid_dim_type != "ip_image_proj":
        yield lambda: False
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

    def restore() -> bool:
        unet.encoder_hid_proj = projection
        unet.config.encoder_hid_dim_type = "ip_image_proj"
        unet.set_attn_processor(dict(processors))  # diffusers empties the dict it is given
        return True

    try:
        unet.set_attn_processor(plain)
        unet.encoder_hid_proj = None
        unet.config.encoder_hid_dim_type = None
        yield restore
    finally:
        restore()


@contextlib.contextmanager
def _ip_adapter_scale(unet: Any, scale: float) -> Iterator[None]:
    """The face adapter's attention at ``scale`` for the block (as ``pipe.set_ip_adapter_scale``), then back."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    processors = [
        p
        for p in unet.attn_processors.values()
        if isinstance(p, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0))
    ]
    before = [p.scale for p in processors]
    try:
        for p in processors:
            p.scale = [scale] * len(p.scale)
        yield
    finally:
        for p, value in zip(processors, before, strict=True):
            p.scale = value


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


# The LoRAs of one render

FAST_ADAPTER = "fast"

# peft's notes on what this module does on purpose: several named adapters on one UNet, and deleting
# the request's adapter after each render.
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)
warnings.filterwarnings(
    "ignore", message=r"Adapter \S+ was active which is now deleted", category=UserWarning
)


def _identity_adapter_name(lora: Mapping[str, Any]) -> str:
    """A per-request adapter name that can never clash with the fast-mode adapter."""
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(lora.get("name") or "identity"))
    return f"request_{name[:64]}"


def load_fast(models: Models) -> None:
    """Load the fast-mode LCM-LoRA once (at startup), switched off until a fast request switches it on."""
    if models.fast_loaded:
        return
    try:
        models.pipe.load_lora_weights(**models.fast_lora, adapter_name=FAST_ADAPTER)
    except Exception as exc:
        if models.profile == "full" and unavailable(exc):
            raise errors.ModelsUnavailable(
                f"The fast-mode LoRA ({config.FAST_LORA.repo_id}) could not be downloaded. Turn "
                "fast mode off, connect to the internet, or set HEADSHOT_PROFILE=tiny to run offline."
            ) from exc
        raise
    models.fast_loaded = True
    models.pipe.disable_lora()


def configure(models: Models, request: Any, loaded: dict[str, int]) -> None:
    """Activate exactly this request's LoRAs.

    ``loaded`` maps the adapters loaded for this batch of requests to the ``id`` of their state dict:
    a person's LoRA shared by the requests of one batch (a pack) is loaded once, then re-activated.
    """
    pipe = models.pipe
    active: list[str] = []
    weights: list[float] = []
    if request.fast:
        load_fast(models)
        active.append(FAST_ADAPTER)
        weights.append(1.0)
    if request.lora is not None:
        name = _identity_adapter_name(request.lora)
        state_dict = request.lora["state_dict"]
        if loaded.get(name) != id(state_dict):
            if name in adapter_names(pipe):
                pipe.delete_adapters(name)  # another person's LoRA of this batch, or a failed render's
            pipe.load_lora_weights(dict(state_dict), adapter_name=name)
            loaded[name] = id(state_dict)
        active.append(name)
        weights.append(float(request.lora.get("scale", 1.0)))
    if active:
        pipe.enable_lora()
        pipe.set_adapters(active, adapter_weights=weights)
    elif adapter_names(pipe):
        pipe.disable_lora()


def adapter_names(pipe) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def release(models: Models, loaded: Mapping[str, int]) -> None:
    """Delete the request's own adapters and switch the rest off, so nothing leaks into the next one."""
    pipe = models.pipe
    present = adapter_names(pipe)
    mine = [name for name in loaded if name in present]
    if mine:
        pipe.delete_adapters(mine)
    if adapter_names(pipe):
        pipe.disable_lora()


def fused_lora_weights(
    weights: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], scale: float
) -> dict[str, torch.Tensor] | None:
    """``weights`` (a compiled UNet program's constants by name) with a person's LoRA fused in.

    Every layer the LoRA targets gets a new tensor ``W + scale x B @ A`` (computed in float32 where ``W``
    is, then cast to its dtype: what peft adds at run time, ``scale`` being the adapter weight and the
    app's alpha/rank folded into the LoRA); every other entry is the very same tensor, not a copy. A
    layer's weight is ``<module>.weight``, or ``<module>.base_layer.weight`` where peft wrapped the module
    before the program was exported (the fast LoRA). None when a targeted layer has no weight there, or
    another shape: that program cannot run this LoRA.
    """
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        path, _, kind = key.removeprefix("unet.").removesuffix(".weight").rpartition(".")
        pairs.setdefault(path, {})[kind] = tensor
    fused = dict(weights)
    for path, pair in pairs.items():
        name = next((n for n in (f"{path}.weight", f"{path}.base_layer.weight") if n in weights), None)
        if name is None or set(pair) != {"lora_A", "lora_B"}:
            return None
        base, down, up = weights[name], pair["lora_A"], pair["lora_B"]
        if up.dim() != 2 or down.dim() != 2 or (up.shape[0], down.shape[1]) != tuple(base.shape):
            return None
        delta = up.to(base.device, torch.float32) @ down.to(base.device, torch.float32)
        fused[name] = (base.float() + float(scale) * delta).to(base.dtype)
    return fused
