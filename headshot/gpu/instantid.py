"""InstantID conditioning on top of diffusers' public SDXL ControlNet API.

InstantID conditions SDXL on one face twice: the **face adapter** (``ip-adapter.bin``, loaded as it is
by diffusers' ``load_ip_adapter``) projects the 512-d antelopev2 embedding to 16 face tokens for the
UNet's decoupled cross-attention; the **IdentityNet** (``ControlNetModel/``) takes the five-keypoint
image as its condition and the **face tokens instead of the text** in its cross-attention. diffusers'
SDXL ControlNet pipeline feeds its ControlNet the text, so :class:`FaceTokenControlNet`, a per-request
wrapper around the shared IdentityNet, gives it this request's face tokens (the negative half of CFG
gets the projection of a zero embedding, as InstantID does). No global state.

**Face-region control** (InstantID's demo calls it "enhance non-face region", on there by default): with a
face mask, :class:`FaceTokenControlNet` multiplies the IdentityNet's residuals by the mask (resized to each
residual's size), and :func:`ip_adapter_mask` gives the UNet's face-adapter attention the same mask
(diffusers' ``cross_attention_kwargs={"ip_adapter_masks": [...]}``), so the identity acts on the face and the
prompt keeps the outfit and the backdrop.
"""


from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

__all__ = [
    "ADAPTER_WEIGHT_NAME",
    "CONTROLNET_SUBFOLDER",
    "FaceTokenControlNet",
    "adapter_embedding_size",
    "face_image_embeds",
    "face_tokens",
    "identitynet_for_request",
    "ip_adapter_mask",
    "load_face_adapter",
    "load_identitynet",
    "mask_tensor",
]

CONTROLNET_SUBFOLDER = "ControlNetModel"
ADAPTER_WEIGHT_NAME = "ip-adapter.bin"


def load_identitynet(
    source: str | Path,
    *,
    subfolder: str | None = CONTROLNET_SUBFOLDER,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
) -> ControlNetModel:
    """Load the IdentityNet ControlNet from a Hub repository id or a local folder."""
    return ControlNetModel.from_pretrained(
        str(source), subfolder=subfolder, revision=revision, dtype=dtype, **kwargs
    )


def load_face_adapter(
    pipe,
    source: str | Path,
    *,
    weight_name: str = ADAPTER_WEIGHT_NAME,
    revision: str | None = None,
    **kwargs: Any,
) -> None:
    """Load InstantID's face adapter into ``pipe.unet`` with diffusers' IP-Adapter loader.

    There is no CLIP image encoder: the adapter's input is the face-recognition embedding, passed per
    request as ``ip_adapter_image_embeds``.
    """
    pipe.load_ip_adapter(
        str(source),
        subfolder="",
        weight_name=weight_name,
        image_encoder_folder=None,
        revision=revision,
        **kwargs,
    )


def _projection(unet) -> torch.nn.Module:
    proj = getattr(unet, "encoder_hid_proj", None)
    if proj is None or getattr(unet.config, "encoder_hid_dim_type", None) != "ip_image_proj":
        raise RuntimeError("The face adapter is not loaded into this UNet (call load_face_adapter first).")
    return proj


def adapter_embedding_size(unet) -> int:
    """The face-embedding size the loaded adapter expects (512 for InstantID's antelopev2)."""
    layer = _projection(unet).image_projection_layers[0]
    return int(layer.proj_in.in_features)


def face_image_embeds(
    embedding: np.ndarray | torch.Tensor,
    *,
    do_classifier_free_guidance: bool,
    device: torch.device | str,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The face embedding as one ``ip_adapter_image_embeds`` entry for the SDXL pipeline.

    Shape ``(2, 1, 1, D)`` under classifier-free guidance (a zero embedding first, as InstantID's
    negative, then the face) or ``(1, 1, 1, D)`` without; the pipeline repeats it per image.

    InstantID was trained on insightface's raw ``embedding`` (components with std about 1, so a norm of
    about sqrt(D)), not on the unit-length ``normed_embedding`` an identity stores; the direction is
    kept and the length set to sqrt(D).
    """
    vec = torch.as_tensor(np.asarray(embedding, dtype=np.float32)).flatten()
    if vec.numel() == 0 or not torch.isfinite(vec).all():
        raise ValueError("the face embedding must be a non-empty vector of finite numbers")
    norm = vec.norm()
    if norm <= 0:
        raise ValueError("the face embedding must not be all zeros")
    vec = vec * (math.sqrt(vec.numel()) / norm)
    face = vec.view(1, 1, 1, -1)
    embeds = torch.cat([torch.zeros_like(face), face]) if do_classifier_free_guidance else face
    return embeds.to(device=device, dtype=dtype)


def face_tokens(unet, image_embeds: torch.Tensor) -> torch.Tensor:
    """Project ``image_embeds`` (B, 1, 1, D) with the UNet's face adapter to face tokens (B, N, C).

    These are the tokens the UNet's IP-Adapter attention adds to the text, and what the IdentityNet
    attends to instead of the text.
    """
    projected = _projection(unet)([image_embeds])[0]  # (B, 1, N, C)
    return projected.reshape(projected.shape[0], -1, projected.shape[-1])


class FaceTokenControlNet(MultiControlNetModel):
    """The IdentityNet for one request: the shared ControlNet with this request's face tokens.

    It plugs into ``StableDiffusionXLControlNetPipeline`` as a (single-net) ``MultiControlNetModel``,
    so the pipeline passes the control image and scale as one-element lists. Its forward ignores the
    text embeddings the pipeline hands to the ControlNet and gives the IdentityNet the face tokens,
    matched to the batch: both halves under classifier-free guidance, only the conditional half when
    the pipeline runs the ControlNet on the conditional batch alone (guess mode).

    ``mask`` (``(1, 1, H, W)`` in output pixels, 1 on the face; see :func:`mask_tensor`) limits the
    IdentityNet to the face region: every residual it returns is multiplied by the mask, area-resized to
    that residual's size. ``None`` leaves the residuals as they are (the whole image).
    """

    def __init__(self, identitynet: ControlNetModel, tokens: torch.Tensor, mask: torch.Tensor | None = None):
        super().__init__([identitynet])
        self.face_tokens = tokens  # plain attributes: per request, never saved or moved
        self.region_mask = mask
        self._resized: dict[tuple, torch.Tensor] = {}

    def tokens_for_batch(self, batch_size: int) -> torch.Tensor:
        tokens = self.face_tokens
        if tokens.shape[0] == batch_size:
            return tokens
        if tokens.shape[0] == 2 * batch_size:  # conditional batch only: take the face half
            return tokens.chunk(2)[1]
        raise ValueError(f"face tokens for batch {tokens.shape[0]} cannot condition a batch of {batch_size}")

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor, *args, **kwargs):
        tokens = self.tokens_for_batch(sample.shape[0]).to(
            device=sample.device, dtype=encoder_hidden_states.dtype
        )
        down, mid = super().forward(sample, timestep, tokens, *args, **kwargs)
        if self.region_mask is None:
            return down, mid
        return [self._masked(res) for res in down], self._masked(mid)

    def _masked(self, residual: torch.Tensor) -> torch.Tensor:
        key = (tuple(residual.shape[-2:]), residual.device, residual.dtype)
        mask = self._resized.get(key)
        if mask is None:
            mask = F.interpolate(self.region_mask.float(), size=key[0], mode="area")
            mask = self._resized[key] = mask.to(device=residual.device, dtype=residual.dtype)
        return residual * mask


def identitynet_for_request(
    identitynet: ControlNetModel, unet, image_embeds: torch.Tensor, mask: torch.Tensor | None = None
) -> FaceTokenControlNet:
    """Project this request's face once and wrap the IdentityNet with the resulting tokens (and mask)."""
    with torch.no_grad():
        tokens = face_tokens(unet, image_embeds)
    return FaceTokenControlNet(identitynet, tokens, mask)


def mask_tensor(mask, width: int, height: int) -> torch.Tensor:
    """A face mask image (PIL, white on the face) as a ``(1, 1, height, width)`` float tensor of 0 and 1.

    Binarised at half grey, as diffusers' ``IPAdapterMaskProcessor`` does, so the face adapter and the
    IdentityNet see the same region.
    """
    from PIL import Image

    image = mask.convert("L")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    values = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    return (values >= 0.5).float().view(1, 1, height, width)


def ip_adapter_mask(mask: torch.Tensor) -> list[torch.Tensor]:
    """``cross_attention_kwargs["ip_adapter_masks"]`` for the one face adapter: ``[(1, 1, H, W)]``.

    diffusers' IP-Adapter attention resizes it to each attention map and multiplies the adapter's output
    by it (one mask per adapter, one channel per adapter image: InstantID has one of each).
    """
    return [mask]
