"""A person's LoRA in the AoTI-compiled UNet program (``aoti.AotiForward``, ``adapters.fused_lora_weights``).

``spaces.aoti_compile`` packages a program without its weights and loads them, user managed, from a
constants map; a LoRA render runs a second compiled model over the same archive whose map has the LoRA's
layers fused. ``spaces`` needs a CUDA build of torch, so :class:`StandInCompiled` does that job on the
CPU with the same constructor (``archive_file``, ``weights`` holding ``constants_map``): the exported
program, saved to bytes, run with the weights of its map swapped in (``torch.func.functional_call``),
recording the map of every call. The slow test compiles the UNet for real (Inductor, the CPU, spaces'
settings) and loads the fused map into it as ``spaces`` does.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from headshot import adapters, aoti, models, pipeline, tiny
from tests.test_aoti import _capture, _face_mask
from tests.test_models import D, pixels, request

CALLS: list[dict] = []  # the constants map of every StandInCompiled call, in order


class StandInWeights:
    """``spaces``' ``ZeroGPUWeights``: the constants by name."""

    def __init__(self, constants_map: dict[str, torch.Tensor]):
        self.constants_map = constants_map


class StandInCompiled:
    """``spaces``' ``ZeroGPUCompiledModel(archive_file, weights)`` on the CPU: runs with its map's weights."""

    def __init__(self, archive_file: io.BytesIO, weights: StandInWeights):
        self.archive_file, self.weights, self.module = archive_file, weights, None

    @classmethod
    def compile(cls, exported: torch.export.ExportedProgram) -> StandInCompiled:
        """What ``spaces.aoti_compile(exported)`` returns: the program and, apart, its weights."""
        buffer = io.BytesIO()
        torch.export.save(exported, buffer)
        return cls(buffer, StandInWeights({**exported.state_dict, **exported.constants}))

    def __call__(self, *args, **kwargs):
        CALLS.append(self.weights.constants_map)
        if self.module is None:  # each instance loads the package, as each spaces compiled model does
            self.module = torch.export.load(io.BytesIO(self.archive_file.getvalue())).module()
        return torch.func.functional_call(self.module, self.weights.constants_map, args, kwargs)


def _person(unet, seed: int = 3, scale: float = 1.0) -> dict:
    return {"name": "person", "state_dict": tiny.random_unet_lora(unet, rank=4, seed=seed, std=0.2), "scale": scale}


def test_fused_weights_replace_only_the_lora_layers():
    """``W + scale x B @ A`` on each targeted layer (peft's ``base_layer`` name too); the rest the same tensors."""
    generator = torch.Generator().manual_seed(0)
    weights = {
        "down_blocks.0.attn1.to_q.weight": torch.randn(6, 5, generator=generator),
        "down_blocks.0.attn1.to_k.base_layer.weight": torch.randn(6, 5, generator=generator).half(),
        "down_blocks.0.attn1.to_v.weight": torch.randn(6, 5, generator=generator),
        "conv_in.weight": torch.randn(3, 3, generator=generator),
    }
    lora = {
        "unet.down_blocks.0.attn1.to_q.lora_A.weight": torch.randn(2, 5, generator=generator),
        "unet.down_blocks.0.attn1.to_q.lora_B.weight": torch.randn(6, 2, generator=generator),
        "unet.down_blocks.0.attn1.to_k.lora_A.weight": torch.randn(2, 5, generator=generator),
        "unet.down_blocks.0.attn1.to_k.lora_B.weight": torch.randn(6, 2, generator=generator),
    }
    fused = adapters.fused_lora_weights(weights, lora, 0.5)
    assert fused is not None and fused.keys() == weights.keys()
    for name, module in (("to_q.weight", "to_q"), ("to_k.base_layer.weight", "to_k")):
        name, prefix = f"down_blocks.0.attn1.{name}", f"unet.down_blocks.0.attn1.{module}"
        expected = weights[name].float() + 0.5 * lora[f"{prefix}.lora_B.weight"] @ lora[f"{prefix}.lora_A.weight"]
        assert fused[name].dtype == weights[name].dtype
        tolerance = 1e-2 if weights[name].dtype == torch.float16 else 1e-6  # rounded to the weight's dtype
        assert torch.allclose(fused[name].float(), expected, atol=tolerance)
    assert fused["down_blocks.0.attn1.to_v.weight"] is weights["down_blocks.0.attn1.to_v.weight"]
    assert fused["conv_in.weight"] is weights["conv_in.weight"]
    # A layer the program does not hold, or another shape: this program cannot run the LoRA.
    assert adapters.fused_lora_weights({"conv_in.weight": weights["conv_in.weight"]}, lora, 1.0) is None
    bad = {**lora, "unet.down_blocks.0.attn1.to_q.lora_B.weight": torch.randn(7, 2)}
    assert adapters.fused_lora_weights(weights, bad, 1.0) is None


@pytest.fixture(scope="module")
def compiled_models(face_pack):
    """Tiny models (with the fast LoRA loaded, as at startup), eager LoRA references, then the programs."""
    torch.set_num_threads(1)
    loaded = models._load_tiny(D, torch.device("cpu"), torch.float32, models.FastPaths())
    models.prepare_models(loaded)
    adapters.load_fast(loaded)  # startup loads it before compiling: the program's names carry base_layer
    unet = loaded.pipe.unet
    people = {"a": _person(unet, seed=3), "b": _person(unet, seed=4, scale=0.7)}
    # The render people get with a LoRA: face region on, InstantID at the LoRA's own (lower) strength.
    lora_request = request(face_mask=_face_mask(64, 64), identity_strength=0.5, identitynet_strength=0.6)
    eager = {
        "base": pixels(pipeline.render_on(loaded, request(face_mask=_face_mask(64, 64)))),
        "a": pixels(pipeline.render_on(loaded, dataclasses.replace(lora_request, lora=people["a"]))),
        "b": pixels(pipeline.render_on(loaded, dataclasses.replace(lora_request, lora=people["b"]))),
    }
    with torch.no_grad():
        programs = aoti.build_programs(loaded, _capture, StandInCompiled.compile)
    aoti.install(loaded, programs)
    yield loaded, people, lora_request, eager
    aoti.release(loaded)


def test_lora_render_runs_the_program_with_fused_weights_and_the_next_base_render_the_base_ones(compiled_models):
    loaded, people, lora_request, eager = compiled_models
    unet_forward = loaded.pipe.unet.forward
    program = loaded.aoti["unet"]
    base_map = program.compiled.weights.constants_map
    assert any(name.endswith(".base_layer.weight") for name in base_map)  # peft-wrapped names, as exported
    unet_forward.fused.clear()

    calls, counted = dict(unet_forward.calls), len(CALLS)
    images = pixels(pipeline.render_on(loaded, dataclasses.replace(lora_request, lora=people["a"])))
    lora_maps = [m for m in CALLS[counted:] if m.keys() == base_map.keys()]  # the UNet's calls
    assert unet_forward.calls["eager"] == calls["eager"]  # every UNet call compiled, one a step (CFG batched)
    assert unet_forward.calls["lora"] - calls["lora"] == lora_request.steps == len(lora_maps)
    assert all(m is lora_maps[0] and m is not base_map for m in lora_maps)
    fused = lora_maps[0]
    assert fused.keys() == base_map.keys()
    changed = {name for name in fused if fused[name] is not base_map[name]}
    targets = {f"{path}.base_layer.weight" for path in adapters.lora_target_shapes(loaded.pipe.unet)}
    assert changed == targets and all(not torch.equal(fused[n], base_map[n]) for n in changed)
    assert np.abs(images - eager["a"]).max() <= 2.0  # the eager LoRA render's image

    # The next person's base render: the base weights, the base image; nothing of the LoRA is left.
    counted = len(CALLS)
    base = pixels(pipeline.render_on(loaded, request(face_mask=_face_mask(64, 64))))
    unet_maps = [m for m in CALLS[counted:] if m.keys() == base_map.keys()]
    assert unet_maps and all(m is base_map for m in unet_maps)
    assert np.abs(base - eager["base"]).max() <= 2.0
    assert loaded.aoti_lora is None and not loaded.aoti_gate

    # The same LoRA again (a new request, other tensor objects, equal values): the kept fused program.
    again = {**people["a"], "state_dict": {k: v.clone() for k, v in people["a"]["state_dict"].items()}}
    kept = unet_forward.fused[-1].compiled
    pipeline.render_on(loaded, dataclasses.replace(lora_request, lora=again))
    assert unet_forward.fused[-1].compiled is kept and len(unet_forward.fused) == aoti.AOTI_FUSED_MAPS
    # Another person: their own fused weights (the first person's dropped), their own image.
    counted = len(CALLS)
    other = pixels(pipeline.render_on(loaded, dataclasses.replace(lora_request, lora=people["b"])))
    assert all(m is not fused for m in CALLS[counted:])
    assert unet_forward.fused[-1].compiled is not kept and len(unet_forward.fused) == aoti.AOTI_FUSED_MAPS
    assert np.abs(other - eager["b"]).max() <= 2.0
    assert np.abs(other - eager["a"]).max() > 2.0  # and not the first person's


def test_a_lora_the_program_cannot_hold_runs_eagerly(compiled_models):
    """A program whose weights are not loaded from a map (no swap possible): the LoRA render runs the UNet
    eagerly, with the person's LoRA (the same image as before the programs)."""
    loaded, people, lora_request, eager = compiled_models
    unet_forward = loaded.pipe.unet.forward
    program = unet_forward.program
    try:
        unet_forward.program = dataclasses.replace(program, compiled=lambda *a, **k: program.compiled(*a, **k))
        unet_forward.fused.clear()
        calls = dict(unet_forward.calls)
        images = pixels(pipeline.render_on(loaded, dataclasses.replace(lora_request, lora=people["a"])))
        assert unet_forward.calls["lora"] == calls["lora"] and unet_forward.calls["eager"] > calls["eager"]
        assert np.abs(images - eager["a"]).max() <= 2.0
    finally:
        unet_forward.program = program
