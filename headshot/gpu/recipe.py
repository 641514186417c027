"""One render, as numbered steps: check the request, configure, encode, denoise, decode.

:class:`RenderRequest` is everything one render needs (prompts, the face embedding and its keypoint
image, sizes, scales, an optional identity LoRA); :func:`check_request` refuses anything out of range
with a readable message; :func:`render_images` is the recipe on loaded :class:`models.Models`. The
face conditioning of a request travels in its own objects (``instantid.FaceTokenControlNet``), and
every per-request setting (adapters, face-adapter scale, scheduler, VAE tiling) is set at the top of a
render and removed at the end, so renders never see each other's settings. No ``spaces``, model cache
or lock here: the caller (``pipeline``) holds the GPU lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from headshot import config, errors
from headshot.gpu import adapters
from headshot.gpu.models import AOTI_IP_SCALE, Models, vae_tiling

Progress = Callable[..., Any]  # progress(fraction, desc), positionally, like gr.Progress


@dataclasses.dataclass
class RenderRequest:
    """One render: prompts, the face and its keypoint image, sizes and scales.

    ``face_embedding`` is the identity's (normalised) face embedding; ``control_image`` the keypoint
    image (``imaging.draw_kps``), resized to ``width`` x ``height`` if it differs. Image ``i`` uses the
    seed ``seed + i``, so any image can be rendered again alone. ``fast`` uses the few-step LoRA with
    ``config.FAST_MIN_STEPS``..``FAST_MAX_STEPS`` steps. ``lora`` is an identity LoRA
    ``{"name", "state_dict", "scale", "config"}`` whose state dict is in diffusers' SDXL format
    (``"unet.<module>.lora_A.weight"``...) with its alpha/rank scaling folded into the weights.
    ``face_mask`` (a PIL image, white on the face region, resized to ``width`` x ``height`` if it
    differs) limits the face adapter and the IdentityNet to that region (``instantid.FaceTokenControlNet``
    and diffusers' ``ip_adapter_masks``), so the prompt alone decides the outfit and the backdrop;
    ``None`` lets both act on the whole image.

    ``init_image`` (a PIL image, resized to ``width`` x ``height`` if it differs) makes the render
    image-to-image: it starts from that picture noised to ``strength`` (``config.MIN_IMG2IMG_STRENGTH``
    ..``MAX_IMG2IMG_STRENGTH``) and runs only the last ``int(steps x strength)`` steps (at least one:
    see :func:`img2img_steps`), with the same prompt, face and keypoint conditioning. ``None``:
    text-to-image (``strength`` is not used).
    """

    prompt: str
    negative_prompt: str
    face_embedding: np.ndarray
    control_image: Image.Image
    width: int
    height: int
    num_images: int = 1
    seed: int = 0
    steps: int = 30
    guidance: float = 5.0
    identity_strength: float = 0.8
    identitynet_strength: float = 0.8
    fast: bool = False
    lora: dict | None = None
    face_mask: Image.Image | None = None
    init_image: Image.Image | None = None
    strength: float = 1.0


def _finite_in(value: Any, low: float, high: float, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise errors.InvalidRequest(f"{what} must be a number, not {value!r}.") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise errors.InvalidRequest(f"{what} must be between {low} and {high}, not {value}.")
    return number


def check_request(request: RenderRequest) -> None:
    """Raise :class:`errors.InvalidRequest` with a readable message for anything out of range."""
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        raise errors.InvalidRequest("The prompt is empty.")
    if not isinstance(request.negative_prompt, str):
        raise errors.InvalidRequest("The negative prompt must be text.")
    for text, what in ((request.prompt, "prompt"), (request.negative_prompt, "negative prompt")):
        if len(text) > config.MAX_RENDER_PROMPT_CHARS:
            raise errors.InvalidRequest(
                f"The {what} is longer than {config.MAX_RENDER_PROMPT_CHARS} characters."
            )
    emb = np.asarray(request.face_embedding)
    if (
        emb.ndim != 1
        or emb.size == 0
        or not np.issubdtype(emb.dtype, np.number)
        or not np.isfinite(emb).all()
    ):
        raise errors.InvalidRequest("The face embedding must be a vector of finite numbers.")
    if not np.any(emb):
        raise errors.InvalidRequest("The face embedding is all zeros.")
    if not isinstance(request.control_image, Image.Image):
        raise errors.InvalidRequest("The control image must be a PIL image.")
    if request.face_mask is not None and not isinstance(request.face_mask, Image.Image):
        raise errors.InvalidRequest("The face mask must be a PIL image (or None for the whole image).")
    if request.init_image is not None:
        if not isinstance(request.init_image, Image.Image):
            raise errors.InvalidRequest("The starting image must be a PIL image (or None for text-to-image).")
        if not all(
            config.RENDER_MIN_SIDE <= side <= config.RENDER_MAX_SIDE for side in request.init_image.size
        ):
            raise errors.InvalidRequest(
                f"The starting image must be from {config.RENDER_MIN_SIDE} to {config.RENDER_MAX_SIDE} px on "
                f"each side, not {request.init_image.width}x{request.init_image.height}."
            )
        _finite_in(
            request.strength,
            config.MIN_IMG2IMG_STRENGTH,
            config.MAX_IMG2IMG_STRENGTH,
            "The image-to-image strength",
        )
    for side, what in ((request.width, "Width"), (request.height, "Height")):
        if not isinstance(side, (int, np.integer)) or not (
            config.RENDER_MIN_SIDE <= side <= config.RENDER_MAX_SIDE
        ):
            raise errors.InvalidRequest(
                f"{what} must be a whole number of pixels from {config.RENDER_MIN_SIDE} to "
                f"{config.RENDER_MAX_SIDE}, not {side!r}."
            )
        if side % 8:
            raise errors.InvalidRequest(f"{what} must be a multiple of 8, not {side}.")
    if not isinstance(request.num_images, (int, np.integer)) or not (
        config.MIN_IMAGES <= request.num_images <= config.MAX_PACK_IMAGES
    ):
        raise errors.InvalidRequest(
            f"The number of images must be from {config.MIN_IMAGES} to {config.MAX_PACK_IMAGES}."
        )
    if not isinstance(request.seed, (int, np.integer)) or not (0 <= request.seed <= config.MAX_SEED):
        raise errors.InvalidRequest(f"The seed must be a whole number from 0 to {config.MAX_SEED}.")
    if not isinstance(request.steps, (int, np.integer)) or not (
        config.MIN_STEPS <= request.steps <= config.MAX_STEPS
    ):
        raise errors.InvalidRequest(
            f"Steps must be a whole number from {config.MIN_STEPS} to {config.MAX_STEPS}."
        )
    scales = (config.MIN_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE)
    _finite_in(request.guidance, config.MIN_GUIDANCE, config.MAX_GUIDANCE, "Guidance")
    _finite_in(request.identity_strength, *scales, "Identity strength")
    _finite_in(request.identitynet_strength, *scales, "IdentityNet strength")
    if request.lora is not None:
        lora = request.lora
        if (
            not isinstance(lora, Mapping)
            or not isinstance(lora.get("state_dict"), Mapping)
            or not lora["state_dict"]
        ):
            raise errors.InvalidRequest("The identity LoRA must be a dict with a non-empty 'state_dict'.")
        if not all(torch.is_tensor(v) for v in lora["state_dict"].values()):
            raise errors.InvalidRequest("The identity LoRA's state dict must hold tensors.")
        _finite_in(lora.get("scale", 1.0), *scales, "LoRA strength")


def effective_settings(request: RenderRequest) -> tuple[int, float]:
    """(steps, guidance) the render uses: the request's, or the fast mode's few-step range."""
    if not request.fast:
        return int(request.steps), float(request.guidance)
    steps = min(max(int(request.steps), config.FAST_MIN_STEPS), config.FAST_MAX_STEPS)
    guidance = float(request.guidance)
    if not (1.0 <= guidance <= config.FAST_MAX_GUIDANCE):
        guidance = config.FAST_GUIDANCE
    return steps, guidance


def img2img_steps(request: RenderRequest) -> tuple[int, int]:
    """(steps asked of the scheduler, steps that run) for an image-to-image request.

    diffusers runs the last ``int(steps x strength)`` of the schedule; where that would be none (2 steps
    at strength 0.3) the schedule is lengthened until one step runs. Text-to-image: (steps, steps).
    """
    steps, _ = effective_settings(request)
    if request.init_image is None:
        return steps, steps
    strength = float(request.strength)
    while int(steps * strength) < 1:
        steps += 1
    return steps, min(int(steps * strength), steps)


def check_for_models(models: Models, request: RenderRequest) -> None:
    size = int(np.asarray(request.face_embedding).size)
    if size != models.embedding_size:
        raise errors.InvalidRequest(
            f"This identity's face embedding has {size} values but the face adapter takes "
            f"{models.embedding_size}: it was made with other face models."
        )
    if request.lora is not None:
        adapters.check_lora_for_unet(request.lora["state_dict"], models.pipe.unet)


@contextlib.contextmanager
def compiled_modes(models: Models, request: RenderRequest | None):
    """This request's use of compiled code: the AoTI gate (with the LoRA the UNet program runs fused), and
    eager mode for identity LoRAs under ``torch.compile``.

    The AoTI programs take every request but fast mode (the fast LoRA is not fused): a person's LoRA runs
    in the UNet program with fused weights (``aoti.AotiForward``) and the face-adapter scale is folded
    into its mask input (:func:`face_adapter_inputs`). ``request=None`` (LoRA training) runs everything
    eagerly.
    """
    lora = request is None or request.lora is not None
    eager = models.fast_paths.compile and lora
    models.aoti_gate = bool(models.aoti and request is not None and not request.fast)
    models.aoti_lora = request.lora if models.aoti_gate and request is not None else None
    try:
        with torch.compiler.set_stance("force_eager") if eager else contextlib.nullcontext():
            yield
    finally:
        models.aoti_gate, models.aoti_lora = False, None


def face_adapter_inputs(
    models: Models, request: RenderRequest, mask: torch.Tensor | None
) -> tuple[float, dict | None]:
    """(face-adapter scale, the UNet's ``cross_attention_kwargs``) for this request and face mask.

    Eager: the request's scale, the mask as it is. Under the AoTI gate the UNet program's own scale
    (``AOTI_IP_SCALE``, baked in) and the request's folded into the mask: diffusers adds ``scale x
    (adapter output x resized mask)``, the resize (bicubic) linear in the mask, so a mask times
    ``strength / AOTI_IP_SCALE`` gives the request's strength; no face region is an all-ones mask. The
    eager fallback of a call the program does not take gets the same inputs, and the same image.
    """
    from headshot.gpu import instantid  # diffusers: imported on first use

    strength = float(request.identity_strength)
    if not models.aoti_gate:
        return strength, None if mask is None else {"ip_adapter_masks": instantid.ip_adapter_mask(mask)}
    if mask is None:
        mask = torch.ones(1, 1, request.height, request.width, device=models.device, dtype=models.dtype)
    return AOTI_IP_SCALE, {"ip_adapter_masks": instantid.ip_adapter_mask(mask * (strength / AOTI_IP_SCALE))}


def warm_up_request(models: Models, size: tuple[int, int], steps: int = 2) -> RenderRequest:
    face = np.zeros(models.embedding_size, dtype=np.float32)
    face[0] = 1.0
    width, height = size
    return RenderRequest(
        prompt="a studio headshot photo of a person",
        negative_prompt="blurry",
        face_embedding=face,
        control_image=Image.new("RGB", (width, height)),
        width=width,
        height=height,
        steps=steps,
        guidance=5.0,
    )


def render_images(models: Models, request: RenderRequest, progress: Progress | None) -> list[Image.Image]:
    """The recipe for one request: ``request.num_images`` PIL images, image ``i`` from ``seed + i``."""
    return render_batch(models, [request], progress)[0]


def render_batch(
    models: Models, requests: Sequence[RenderRequest], progress: Progress | None
) -> list[list[Image.Image]]:
    """The recipe for several requests (a pack), the images of each in CPU memory.

    Adapters shared by the requests (a person's LoRA) are loaded once for all of them. The caller has
    checked the requests and holds the GPU lock.
    """
    total = sum(int(r.num_images) for r in requests)
    results: list[list[Image.Image]] = []
    loaded: dict[str, int] = {}
    try:
        for request in requests:
            with compiled_modes(models, request):
                done = sum(len(images) for images in results)
                results.append(_render_request(models, request, loaded, progress, done, total))
        return results
    finally:
        adapters.release(models, loaded)


def _render_request(
    models: Models,
    request: RenderRequest,
    loaded: dict[str, int],
    progress: Progress | None,
    done: int,
    total: int,
) -> list[Image.Image]:
    """The numbered steps for one request; ``done`` images of the ``total`` are rendered already."""
    # 1. Check inputs (done by the caller) and resolve the settings this render uses.
    steps, guidance = effective_settings(request)
    do_cfg = guidance > 1.0
    # 2. Configure every per-request setting: adapters, VAE tiling (the face-adapter scale: 4.).
    _configure(models, request, loaded)
    # 3. Encode the prompt (once for all images of the request).
    text = _encode_prompt(models, request, do_cfg)
    # 4. Encode the face: adapter input for the UNet, face tokens for the IdentityNet.
    identitynet, face = _encode_face(models, request, do_cfg)
    # 5. Prepare the control image (the keypoints at the output size), and the starting picture.
    images_in = _images_in(request)
    if request.init_image is not None:  # image-to-image: only the last steps run
        steps = img2img_steps(request)[0]
    images = []
    for index in range(int(request.num_images)):
        # 6. Denoise: a fresh scheduler and a generator seeded for this image alone
        #    (image-to-image: from the starting picture, noised to the request's strength).
        run = _request_pipeline(
            models.pipe,
            identitynet,
            _scheduler(models.pipe.scheduler.config, request.fast),
            img2img=request.init_image is not None,
        )
        result = run(
            **text,
            **images_in,
            **face,
            width=request.width,
            height=request.height,
            num_inference_steps=steps,
            guidance_scale=guidance,
            controlnet_conditioning_scale=[float(request.identitynet_strength)],
            generator=torch.Generator("cpu").manual_seed(int(request.seed) + index),
            output_type="latent",
            callback_on_step_end=_step_callback(progress, done + index, total),
        )
        # 7. Decode to a PIL image in CPU memory.
        images.append(_decode(models.pipe, result.images))
    return images


def _configure(models: Models, request: RenderRequest, loaded: dict[str, int]) -> None:
    """Step 2: the request's adapters (loaded once per batch, in ``loaded``) and VAE tiling."""
    adapters.configure(models, request, loaded)
    if vae_tiling(models, request.width, request.height):
        models.pipe.vae.enable_tiling()
    else:
        models.pipe.vae.disable_tiling()


def _encode_prompt(models: Models, request: RenderRequest, do_cfg: bool) -> dict[str, torch.Tensor]:
    """Step 3: the prompt's embeddings, as the pipeline's keyword arguments."""
    prompt_embeds, negative_embeds, pooled, negative_pooled = models.pipe.encode_prompt(
        prompt=request.prompt,
        device=models.device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=do_cfg,
        negative_prompt=request.negative_prompt or None,
    )
    return {
        "prompt_embeds": prompt_embeds,
        "negative_prompt_embeds": negative_embeds,
        "pooled_prompt_embeds": pooled,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def _encode_face(models: Models, request: RenderRequest, do_cfg: bool) -> tuple[Any, dict[str, Any]]:
    """Step 4: the request's IdentityNet (face tokens) and the face adapter's pipeline arguments.

    With a face mask both act on the face region only (the same mask for each); the face-adapter scale
    goes with the mask (:func:`face_adapter_inputs`) and is set on the pipeline here.
    """
    from headshot.gpu import instantid  # diffusers: imported on first use, so the app starts serving at once

    pipe, device, dtype = models.pipe, models.device, models.dtype
    image_embeds = instantid.face_image_embeds(
        request.face_embedding, do_classifier_free_guidance=do_cfg, device=device, dtype=dtype
    )
    mask = None
    if request.face_mask is not None:
        mask = instantid.mask_tensor(request.face_mask, request.width, request.height)
        mask = mask.to(device=device, dtype=dtype)
    identitynet = instantid.identitynet_for_request(models.identitynet, pipe.unet, image_embeds, mask)
    ip_scale, attention_kwargs = face_adapter_inputs(models, request, mask)
    pipe.set_ip_adapter_scale(ip_scale)
    return identitynet, {
        "ip_adapter_image_embeds": [image_embeds],
        "cross_attention_kwargs": attention_kwargs,
    }


def _images_in(request: RenderRequest) -> dict[str, Any]:
    """Step 5: the keypoint image at the output size, and for image-to-image the picture to start from
    and its strength, as the pipeline's keyword arguments."""
    size = (request.width, request.height)
    control = request.control_image.convert("RGB")
    if control.size != size:
        control = control.resize(size, Image.BILINEAR)
    if request.init_image is None:
        return {"image": [control]}
    init = request.init_image.convert("RGB")
    if init.size != size:
        init = init.resize(size, Image.LANCZOS)
    return {"image": init, "control_image": [control], "strength": float(request.strength)}


def _scheduler(scheduler_config: Mapping[str, Any], fast: bool):
    """DPM++ 2M Karras normally; the LCM scheduler for the few-step LoRA."""
    from diffusers import DPMSolverMultistepScheduler, LCMScheduler

    if fast:
        return LCMScheduler.from_config(scheduler_config)
    return DPMSolverMultistepScheduler.from_config(
        scheduler_config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )


def _request_pipeline(pipe, identitynet, scheduler, img2img: bool = False):
    """A pipeline object for one image: the shared modules, this request's IdentityNet and scheduler;
    diffusers' SDXL ControlNet image-to-image pipeline around the same modules for ``img2img``."""
    components = {**pipe.components, "controlnet": identitynet, "scheduler": scheduler}
    kind = type(pipe)
    if img2img:
        from diffusers import StableDiffusionXLControlNetImg2ImgPipeline as kind
    run = kind(
        **components,
        force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt,
        add_watermarker=False,
    )
    run.set_progress_bar_config(disable=True)
    return run


def _step_callback(progress: Progress | None, index: int, count: int):
    def on_step_end(run, step: int, timestep, tensors: dict) -> dict:
        if progress is not None:
            total = max(1, run.num_timesteps)
            progress((index + (step + 1) / total) / count, f"Image {index + 1} of {count}")
        return {}

    return on_step_end


def _decode(pipe, latents: torch.Tensor) -> Image.Image:
    vae = pipe.vae
    latents = latents.to(vae.dtype)
    mean = getattr(vae.config, "latents_mean", None)
    std = getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        latents = latents * std_t / vae.config.scaling_factor + mean_t
    else:
        latents = latents / vae.config.scaling_factor
    decoded = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")[0]
