"""The LoRA's training data: face-centred crops of the selfies (zooms, mirrored), encoded once.

:func:`prepare_training_images` cuts the square crops (around the face box when given, see
``imaging.crop_around_face``); :func:`encode_latent_stats` runs the VAE once per crop and mirror image
(a training latent is then ``mean + std * noise``); :func:`encode_caption` encodes the instance caption
with both SDXL text encoders; :func:`fingerprint` ties a saved training state to its crops, size, base
model and face. ``lora`` trains on them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from headshot import imaging
from headshot.errors import InvalidRequest, NotEnoughSelfies

__all__ = ["encode_caption", "encode_latent_stats", "fingerprint", "prepare_training_images"]


def _as_pairs(images: Sequence[Any], bboxes: Sequence[Any] | None) -> list[tuple[Image.Image, Any]]:
    """Normalise the inputs to (image, face box or None) pairs.

    Items may be PIL images (already face-centred crops, or selfies when ``bboxes`` gives their face
    boxes), ``(image, bbox)`` tuples, or objects with ``.image`` and ``.face.bbox`` (accepted selfies).
    """
    if bboxes is not None and len(bboxes) != len(images):
        raise InvalidRequest("Give one face box per selfie (or none at all).")
    pairs: list[tuple[Image.Image, Any]] = []
    for i, item in enumerate(images):
        if isinstance(item, Image.Image):
            image, bbox = item, None
        elif isinstance(item, tuple) and len(item) == 2:
            image, bbox = item
        elif hasattr(item, "image") and hasattr(item, "face"):
            image, bbox = item.image, item.face.bbox
        else:
            raise InvalidRequest(f"Training image {i + 1} is not an image.")
        if bboxes is not None:
            bbox = bboxes[i]
        if not isinstance(image, Image.Image):
            raise InvalidRequest(f"Training image {i + 1} is not an image.")
        pairs.append((image.convert("RGB"), None if bbox is None else np.asarray(bbox, dtype=np.float32)))
    return pairs


def _centre_crop(image: Image.Image, resolution: int, zoom: float) -> Image.Image:
    width, height = image.size
    side = min(width, height) / zoom
    x0, y0 = (width - side) / 2.0, (height - side) / 2.0
    box = tuple(round(v) for v in (x0, y0, x0 + side, y0 + side))
    return image.crop(box).resize((resolution, resolution), Image.Resampling.LANCZOS)


def prepare_training_images(
    images: Sequence[Any],
    resolution: int,
    *,
    bboxes: Sequence[Any] | None = None,
    zooms: Sequence[float] = (1.0,),
    face_fraction: float = 0.4,
) -> list[Image.Image]:
    """Square crops at ``resolution``, one per (image, zoom), in input order (flips are added later).

    With a face box the crop is a head-and-shoulders frame around the face (``imaging.crop_around_face``,
    the face taking ``face_fraction * zoom`` of the side); without one the image is taken as an
    already face-centred crop and cut to a centred square, ``zoom`` times closer.
    """
    pairs = _as_pairs(images, bboxes)
    if not pairs:
        raise NotEnoughSelfies("LoRA training needs at least one accepted selfie.")
    crops = []
    for image, bbox in pairs:
        for zoom in zooms:
            if bbox is None:
                crops.append(_centre_crop(image, resolution, zoom))
            else:
                crop = imaging.crop_around_face(
                    image, bbox, (resolution, resolution), min(0.95, face_fraction * zoom)
                )
                crops.append(crop.convert("RGB"))
    return crops


def fingerprint(
    crops: Sequence[Image.Image], resolution: int, base_model: str, face: np.ndarray | None = None
) -> str:
    digest = hashlib.sha256(f"{resolution}|{base_model}|{len(crops)}".encode())
    for crop in crops:
        digest.update(crop.tobytes())
    if face is not None:  # training with the face adapter: the face embedding is part of the data
        digest.update(np.asarray(face, dtype=np.float32).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _vae_for_encoding(vae: Any) -> Iterator[torch.dtype]:
    """Upcast a float16 VAE that asks for it (SDXL's stock VAE overflows in fp16), then put it back."""
    original = vae.dtype
    upcast = original == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        yield vae.dtype
    finally:
        if upcast:
            vae.to(original)


@torch.no_grad()
def encode_latent_stats(
    vae: Any, crops: Sequence[Image.Image], *, flip: bool, device: torch.device, batch: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled latent mean and std of every crop (and of its mirror image when ``flip``): fp32 tensors.

    Returned in the order crop0, crop0-mirrored, crop1, ... A training latent is ``mean + std * noise``:
    the VAE runs once per variant, never inside the training loop.
    """
    variants: list[Image.Image] = []
    for crop in crops:
        variants.append(crop)
        if flip:
            variants.append(ImageOps.mirror(crop))
    from diffusers.image_processor import VaeImageProcessor

    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    means, stds = [], []
    processor = VaeImageProcessor(do_resize=False)  # PIL to NCHW in [-1, 1]
    with _vae_for_encoding(vae) as dtype:
        for start in range(0, len(variants), batch):
            pixels = processor.preprocess(variants[start : start + batch]).to(device=device, dtype=dtype)
            dist = vae.encode(pixels).latent_dist
            means.append((dist.mean.float() - shift) * scale)
            stds.append(dist.std.float() * scale)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def encode_caption(components: Any, caption: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL text conditioning (``components``: a ``lora.LoraComponents``): both encoders' penultimate hidden states side by side, and the pooled
    projection of the second encoder (the text encoders stay frozen: this runs once per training)."""
    hidden = []
    pooled = None
    for tokenizer, encoder in (
        (components.tokenizer, components.text_encoder),
        (components.tokenizer_2, components.text_encoder_2),
    ):
        ids = tokenizer(
            caption,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        out = encoder(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0]  # CLIPTextModelWithProjection: text_embeds (the last encoder's counts)
    return torch.cat(hidden, dim=-1), pooled
