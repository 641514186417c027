"""Per-render LoRA adapters on the shared UNet: the fast-mode LCM-LoRA and a person's identity LoRA.

:func:`configure` activates exactly one request's adapters at the start of a render and
:func:`release` deletes the request's own adapter and switches the rest off at the end, with
diffusers' public adapter API (``load_lora_weights``, ``set_adapters``, ``delete_adapters``,
``disable_lora``), so nothing leaks into the next render.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import config, errors
from .models import Models, unavailable

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


def configure(models: Models, request: Any, loaded: list[str]) -> None:
    """Activate exactly this request's LoRAs; ``loaded`` collects the ones loaded for it (to remove)."""
    pipe = models.pipe
    active: list[str] = []
    weights: list[float] = []
    if request.fast:
        if not models.fast_loaded:
            try:
                pipe.load_lora_weights(**models.fast_lora, adapter_name=FAST_ADAPTER)
            except Exception as exc:
                if models.profile == "full" and unavailable(exc):
                    raise errors.ModelsUnavailable(
                        f"The fast-mode LoRA ({config.FAST_LORA.repo_id}) could not be downloaded. Turn "
                        "fast mode off, connect to the internet, or set HEADSHOT_PROFILE=tiny to run offline."
                    ) from exc
                raise
            models.fast_loaded = True
        active.append(FAST_ADAPTER)
        weights.append(1.0)
    if request.lora is not None:
        name = _identity_adapter_name(request.lora)
        if name in adapter_names(pipe):
            pipe.delete_adapters(name)  # a leftover from a failed render
        loaded.append(name)
        pipe.load_lora_weights(dict(request.lora["state_dict"]), adapter_name=name)
        active.append(name)
        weights.append(float(request.lora.get("scale", 1.0)))
    if active:
        pipe.enable_lora()
        pipe.set_adapters(active, adapter_weights=weights)
    elif adapter_names(pipe):
        pipe.disable_lora()


def adapter_names(pipe) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def release(models: Models, loaded: Sequence[str]) -> None:
    """Delete the request's own adapters and switch the rest off, so nothing leaks into the next one."""
    pipe = models.pipe
    present = adapter_names(pipe)
    mine = [name for name in loaded if name in present]
    if mine:
        pipe.delete_adapters(mine)
    if adapter_names(pipe):
        pipe.disable_lora()
