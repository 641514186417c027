"""Ahead-of-time compiled UNet and IdentityNet (ZeroGPU's AoTI recipe, also usable on a plain CUDA GPU).

A short render records each module's inputs (``capture``), ``torch.export`` exports the module with the
latent height and width dynamic (so the square, 4:5 and 3:4 outputs share one program) and ``compile``
builds an Inductor package. ``capture`` and ``compile`` are ``spaces.aoti_capture`` and
``spaces.aoti_compile``, passed in by ``pipeline`` (the only importer of ``spaces``). A forward wrapper
routes each call to its program when the call matches what was compiled and to the eager module
otherwise (fast mode, other batch sizes); the IdentityNet program is built at conditioning scale 1 and
its residuals scaled per call (they are linear in the scale); the face-adapter scale is folded into the
UNet's mask input by ``recipe``.

A person's LoRA runs in the same UNet program: ``spaces.aoti_compile`` packages the program without its
weights and loads them, user managed, from ``compiled.weights.constants_map``; a second compiled model
of the same class over the same archive, with a map where the LoRA's layers are fused
(``adapters.fused_lora_weights``: ``W + scale x B @ A``, every other entry the same tensor), runs the
LoRA render. It is built at the first UNet call of a LoRA render (in the GPU call, on the GPU) and kept
for the next render with the same LoRA (compared by value, at most ``AOTI_FUSED_MAPS``); the base
program's weights are never changed, so no LoRA reaches another person's render.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from headshot import config
from headshot.gpu import adapters
from headshot.gpu.models import AOTI_IP_SCALE, Models, output_sizes
from headshot.gpu.recipe import render_images, warm_up_request

AOTI_MIN_LATENT_UNITS = 2  # latent side / UNet down-sampling factor: the dynamic range of the programs
# Fused LoRA weight maps kept per UNet program: each holds a copy of every layer a LoRA targets, in the
# model's dtype (SDXL: the 560 attention projections of the denoising blocks, 955 M values, 1.9 GB in fp16).
AOTI_FUSED_MAPS = 1


@dataclasses.dataclass
class AotiProgram:
    """An AoTI-compiled module call and the calls it accepts (the captured structure and shapes)."""

    compiled: Any  # spaces' ZeroGPUCompiledModel: called like the module's forward, tensors only
    spec: Any  # pytree structure of the captured (args, kwargs)
    leaves: list  # captured leaves: (shape, dtype, device) for tensors, the value otherwise
    dynamic: dict[int, dict[int, tuple[int, int, int]]]  # leaf -> dim -> (multiple, low, high)
    gated: bool  # honours Models.aoti_gate and runs Models.aoti_lora fused (the UNet)
    scale_kwarg: str | None = None  # the IdentityNet: built at scale 1, outputs scaled per call

    def _leaf_ok(self, index: int, captured: Any, value: Any) -> bool:
        if not torch.is_tensor(value):
            return not isinstance(captured, tuple) and value == captured
        if not isinstance(captured, tuple):
            return False
        shape, dtype, device = captured
        if value.dtype != dtype or value.device != device or value.dim() != len(shape):
            return False
        dims = self.dynamic.get(index, {})
        for dim, size in enumerate(value.shape):
            if dim in dims:
                multiple, low, high = dims[dim]
                if size % multiple or not low <= size // multiple <= high:
                    return False
            elif size != shape[dim]:
                return False
        return True

    def accepts(self, gate: bool, args: tuple, kwargs: dict) -> bool:
        if self.gated and not gate:
            return False
        if self.scale_kwarg is not None:
            kwargs = {**kwargs, self.scale_kwarg: 1.0}
        leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
        return spec == self.spec and all(
            self._leaf_ok(i, c, v) for i, (c, v) in enumerate(zip(self.leaves, leaves, strict=True))
        )

    def __call__(self, args: tuple, kwargs: dict, compiled: Any = None) -> Any:
        """The program on these inputs: ``compiled`` (the same program with other weights) or its own."""
        compiled = self.compiled if compiled is None else compiled
        if self.scale_kwarg is None:
            return compiled(*args, **kwargs)
        scale = float(kwargs[self.scale_kwarg])
        out = compiled(*args, **{**kwargs, self.scale_kwarg: 1.0})
        return torch.utils._pytree.tree_map(lambda t: t * scale if torch.is_tensor(t) else t, out)

    def with_weights(self, weights: dict[str, torch.Tensor]) -> Any:
        """The same compiled program loading ``weights`` (name -> tensor) in place of its own: spaces'
        ``ZeroGPUCompiledModel(archive_file, ZeroGPUWeights(map))``, over the same archive."""
        return type(self.compiled)(self.compiled.archive_file, type(self.compiled.weights)(weights))

    def weights(self) -> dict[str, torch.Tensor] | None:
        """The program's own weights by name, where its compiled form loads them from a map (spaces')."""
        held = getattr(getattr(self.compiled, "weights", None), "constants_map", None)
        return held if isinstance(held, dict) and hasattr(self.compiled, "archive_file") else None


@dataclasses.dataclass
class FusedProgram:
    """A UNet program with one LoRA fused into its weights, and that LoRA (to compare by value)."""

    state_dict: dict[str, torch.Tensor]
    scale: float
    compiled: Any
    seen: Any = None  # the state dict last found equal: a render's own object, compared once

    def matches(self, lora: dict) -> bool:
        state_dict = lora["state_dict"]
        if float(lora.get("scale", 1.0)) != self.scale:
            return False
        if state_dict is self.seen or state_dict is self.state_dict:
            return True
        if state_dict.keys() == self.state_dict.keys() and all(
            _same(state_dict[k], v) for k, v in self.state_dict.items()
        ):
            self.seen = state_dict
            return True
        return False


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b.to(a.device))


class AotiForward:
    """Installed as a module's ``forward``: its AoTI program for the calls it accepts, else eager.

    ``calls`` counts them: ``aoti`` (compiled, of which ``lora`` with a LoRA fused) and ``eager``.
    """

    def __init__(self, eager: Callable[..., Any], program: AotiProgram, models: Models):
        self.eager, self.program, self.models = eager, program, models
        self.calls = {"aoti": 0, "lora": 0, "eager": 0}
        self.fused: list[FusedProgram] = []  # newest last, at most AOTI_FUSED_MAPS
        self.unfit: Any = None  # the state dict last found not to fit the program (not fused again)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.program.accepts(self.models.aoti_gate, args, kwargs):
            lora = self.models.aoti_lora if self.program.gated else None
            compiled = self.program.compiled if lora is None else self.fused_program(lora)
            if compiled is not None:
                self.calls["aoti"] += 1
                self.calls["lora"] += lora is not None
                return self.program(args, kwargs, compiled)
        self.calls["eager"] += 1
        return self.eager(*args, **kwargs)

    def fused_program(self, lora: dict) -> Any:
        """The program with ``lora`` fused into its weights (kept for the next render); None where the
        program cannot take it (its weights are not loaded from a map, or the LoRA's layers are not in it)."""
        for entry in self.fused:
            if entry.matches(lora):
                return entry.compiled
        base = self.program.weights()
        if base is None or lora["state_dict"] is self.unfit:
            return None
        del self.fused[: max(0, len(self.fused) - AOTI_FUSED_MAPS + 1)]  # the oldest goes first (memory)
        scale = float(lora.get("scale", 1.0))
        with torch.no_grad():
            weights = adapters.fused_lora_weights(base, lora["state_dict"], scale)
        if weights is None:
            self.unfit = lora["state_dict"]
            return None
        self.fused.append(FusedProgram(dict(lora["state_dict"]), scale, self.program.with_weights(weights)))
        return self.fused[-1].compiled


def _capture(models: Models, module: torch.nn.Module, request, capture: Callable) -> tuple[tuple, dict]:
    """The inputs of ``module``'s first call in a render (``capture`` stops the render there)."""
    with capture(module) as call, torch.no_grad():
        render_images(models, request, None)
    if not call.args and not call.kwargs:
        raise RuntimeError(f"{type(module).__name__} was not called during the capture render")
    return tuple(call.args), dict(call.kwargs)


def _dynamic_shapes(module, args: tuple, kwargs: dict, latent: tuple[int, int], factor: int, high: int):
    """``torch.export`` dynamic shapes: every spatial dimension a multiple of the latent height/width.

    ``latent`` is the captured latent (height, width) and ``factor`` the UNet's down-sampling factor:
    the latent, the residuals at each resolution and the control image (8x the latent) all follow
    two symbols ``h``, ``w`` (latent side / factor), so one program serves every output size.
    Returns (dynamic_shapes by argument name, leaf index -> dim -> (multiple, low, high)).
    """
    from torch.export import Dim

    low = AOTI_MIN_LATENT_UNITS
    symbols = (Dim("h", min=low, max=high), Dim("w", min=low, max=high))
    base = (latent[0] // factor, latent[1] // factor)

    def spec(value: Any) -> dict | None:
        if not torch.is_tensor(value) or value.dim() != 4:
            return None
        multiples = [value.shape[2 + i] / base[i] for i in range(2)]
        if not all(m.is_integer() and m >= 1 for m in multiples):
            return None
        return {2 + i: symbols[i] * int(m) if m > 1 else symbols[i] for i, m in enumerate(multiples)}

    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    shapes = {name: torch.utils._pytree.tree_map(spec, value) for name, value in bound.arguments.items()}
    dynamic: dict[int, dict[int, tuple[int, int, int]]] = {}
    for index, leaf in enumerate(torch.utils._pytree.tree_leaves((args, kwargs))):
        dims = spec(leaf)
        if dims:
            dynamic[index] = {d: (leaf.shape[d] // base[d - 2], low, high) for d in dims}
    return shapes, dynamic


def _program(models: Models, module, call: tuple[tuple, dict], compile: Callable, *, gated: bool, scale_kwarg=None):
    args, kwargs = call
    if scale_kwarg is not None:
        kwargs = {**kwargs, scale_kwarg: 1.0}
    sample = args[0] if args else kwargs["sample"]
    factor = 2 ** (len(models.pipe.unet.config.block_out_channels) - 1)
    vae_factor = 2 ** (len(models.pipe.vae.config.block_out_channels) - 1)
    high = max(AOTI_MIN_LATENT_UNITS, config.RENDER_MAX_SIDE // vae_factor // factor)
    shapes, dynamic = _dynamic_shapes(module, args, kwargs, tuple(sample.shape[2:]), factor, high)
    exported = torch.export.export(module, args=args, kwargs=kwargs, dynamic_shapes=shapes)
    compiled = compile(exported)
    leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
    described = [(tuple(v.shape), v.dtype, v.device) if torch.is_tensor(v) else v for v in leaves]
    return AotiProgram(compiled, spec, described, dynamic, gated, scale_kwarg)


def build_programs(models: Models, capture: Callable, compile: Callable) -> dict[str, AotiProgram]:
    """Capture, export and compile the IdentityNet and the UNet (the GPU work; the caller holds the lock)."""
    size = output_sizes(models)["square"]
    request = dataclasses.replace(  # with a face mask: the default render's UNet call carries one
        warm_up_request(models, size),
        identity_strength=AOTI_IP_SCALE,
        identitynet_strength=1.0,
        face_mask=Image.new("L", size, 255),
    )
    net, unet = models.identitynet, models.pipe.unet
    net_call = _capture(models, net, request, capture)
    unet_call = _capture(models, unet, request, capture)
    with torch.no_grad():
        return {
            "identitynet": _program(
                models, net, net_call, compile, gated=False, scale_kwarg="conditioning_scale"
            ),
            "unet": _program(models, unet, unet_call, compile, gated=True),
        }


def install(models: Models, programs: dict[str, AotiProgram]) -> None:
    """Route the UNet's and the IdentityNet's calls through their programs (eager for the rest)."""
    for name, module in (("identitynet", models.identitynet), ("unet", models.pipe.unet)):
        module.forward = AotiForward(module.forward, programs[name], models)
    models.aoti = programs


def release(models: Models) -> None:
    """Route every call back to the eager modules and drop the AoTI programs."""
    for module in (models.identitynet, models.pipe.unet):
        if isinstance(module.__dict__.get("forward"), AotiForward):
            del module.forward
    models.aoti = {}
