"""InstantID conditioning on top of diffusers' public SDXL ControlNet API.

InstantID conditions SDXL on one face twice: the **face adapter** (``ip-adapter.bin``, loaded as it is
by diffusers' ``load_ip_adapter``) projects the 512-d antelopev2 embedding to 16 face tokens for the
UNet's decoupled cross-attention; the **IdentityNet** (``ControlNetModel/``) takes the five-keypoint
image as its condition and the **face tokens instead of the text** in its cross-attention. diffusers'
SDXL ControlNet pipeline feeds its ControlNet the text, so :class:`FaceTokenControlNet`, a per-request
wrapper around the shared IdentityNet, gives it this request's face tokens (the negative half of CFG
gets the projection of a zero embedding, as InstantID does). No global state.
"""


from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
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
    "load_face_adapter",
    "load_identitynet",
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
    """

    def __init__(self, identitynet: ControlNetModel, tokens: torch.Tensor):
        super().__init__([identitynet])
        self.face_tokens = tokens  # a plain attribute: per request, never saved or moved

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
        return super().forward(sample, timestep, tokens, *args, **kwargs)


def identitynet_for_request(
    identitynet: ControlNetModel, unet, image_embeds: torch.Tensor
) -> FaceTokenControlNet:
    """Project this request's face once and wrap the IdentityNet with the resulting tokens."""
    with torch.no_grad():
        tokens = face_tokens(unet, image_embeds)
    return FaceTokenControlNet(identitynet, tokens)
