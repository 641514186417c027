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
import os
import types

import numpy as np
import pytest
import torch
from packaging import version

from headshot.gpu import adapters, aoti, models, pipeline, tiny
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


class Toy(torch.nn.Module):
    """Two attention-named projections: a UNet's LoRA layers in small."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down_blocks = torch.nn.ModuleList([torch.nn.ModuleDict({"to_q": torch.nn.Linear(4, 4)})])
        self.down_blocks[0]["to_k"] = torch.nn.Linear(4, 3)
        self.conv_in = torch.nn.Linear(3, 3)

    def forward(self, sample):
        block = self.down_blocks[0]
        return (self.conv_in(block["to_k"](block["to_q"](sample))),)


def test_forward_routes_lora_calls_to_fused_weights_and_base_calls_to_the_base_ones():
    """The stand-in counts every call and records its weights map: with the request's LoRA the program gets
    the fused map (and the LoRA's output), the next base call the base map (and the base output)."""
    toy, x = Toy().eval(), torch.randn(2, 4)
    compiled = StandInCompiled.compile(torch.export.export(toy, (x,)))
    leaves, spec = torch.utils._pytree.tree_flatten(((x,), {}))
    described = [(tuple(v.shape), v.dtype, v.device) for v in leaves]
    state = types.SimpleNamespace(aoti_gate=True, aoti_lora=None)  # what recipe sets per render
    forward = aoti.AotiForward(toy.forward, aoti.AotiProgram(compiled, spec, described, {}, gated=True), state)
    base_map = compiled.weights.constants_map
    generator = torch.Generator().manual_seed(1)
    lora = {f"unet.down_blocks.0.{m}.lora_{k}.weight": torch.randn(*shape, generator=generator)
            for m, shapes in (("to_q", {"A": (2, 4), "B": (4, 2)}), ("to_k", {"A": (2, 4), "B": (3, 2)}))
            for k, shape in shapes.items()}  # fmt: skip
    person = {"name": "person", "state_dict": lora, "scale": 0.5}

    def with_lora(sample):  # peft's LoRA forward: W x + b + scale x B (A x), layer by layer
        for name in ("to_q", "to_k"):
            layer, prefix = toy.down_blocks[0][name], f"unet.down_blocks.0.{name}"
            sample = layer(sample) + 0.5 * sample @ lora[f"{prefix}.lora_A.weight"].T @ lora[f"{prefix}.lora_B.weight"].T
        return toy.conv_in(sample)

    with torch.no_grad():
        CALLS.clear()
        assert torch.equal(forward(x)[0], toy(x)[0]) and len(CALLS) == 1 and CALLS[0] is base_map
        state.aoti_lora = person
        out = forward(x)[0]
        assert torch.allclose(out, with_lora(x), atol=1e-5) and not torch.allclose(out, toy(x)[0], atol=1e-3)
        fused = CALLS[-1]
        assert fused is not base_map and forward.calls == {"aoti": 2, "lora": 1, "eager": 0}
        assert {n for n in fused if fused[n] is not base_map[n]} == {
            "down_blocks.0.to_q.weight", "down_blocks.0.to_k.weight"}  # fmt: skip
        state.aoti_lora = None  # the next request, without a LoRA: the base weights, the base output
        assert torch.equal(forward(x)[0], toy(x)[0]) and CALLS[-1] is base_map
        state.aoti_lora = {**person, "state_dict": {k: v.clone() for k, v in lora.items()}}  # equal values
        forward(x)
        assert CALLS[-1] is fused and len(forward.fused) == 1  # kept, not fused again
        state.aoti_lora = {**person, "scale": 1.0}  # another strength: other weights
        forward(x)
        assert CALLS[-1] is not fused and CALLS[-1] is not base_map and len(forward.fused) == aoti.AOTI_FUSED_MAPS
        state.aoti_gate = False  # fast mode (or no programs): eager
        assert torch.equal(forward(x)[0], toy(x)[0]) and forward.calls["eager"] == 1
    # A program that is not gated (the IdentityNet) never takes the LoRA.
    state.aoti_gate = True
    ungated = aoti.AotiForward(toy.forward, aoti.AotiProgram(compiled, spec, described, {}, gated=False), state)
    with torch.no_grad():
        ungated(x)
    assert CALLS[-1] is base_map and ungated.calls["lora"] == 0


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


@pytest.mark.slow
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


@pytest.mark.slow
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


class CpuCompiled(StandInCompiled):
    """``spaces``' ``ZeroGPUCompiledModel`` on the CPU: its call, the package loaded and its constants
    loaded user managed from the weights map (the CUDA-only parts left out)."""

    def __call__(self, *args, **kwargs):
        CALLS.append(self.weights.constants_map)
        if self.module is None:
            self.module = torch._inductor.aoti_load_package(self.archive_file)
            constants = {name: self.weights.constants_map[name] for name in self.module.get_constant_fqns()}
            self.module.load_constants(constants, check_full_update=True, user_managed=True)
        return self.module(*args, **kwargs)


def _inductor_compile(exported: torch.export.ExportedProgram):
    """``spaces.aoti_compile`` on the CPU for the UNet (Inductor with spaces' settings: the weights apart,
    kept by name); the IdentityNet's program stays a :class:`StandInCompiled` (it takes no LoRA)."""
    if not any(name.startswith("up_blocks.") for name in exported.state_dict):
        return StandInCompiled.compile(exported)
    from torch._inductor.package.package import package_aoti
    from torch.export.pt2_archive._package_weights import Weights

    options = {  # spaces.zero.torch.aoti.INDUCTOR_CONFIGS_OVERRIDES (torch 2.10+; 2.8 and 2.9 differ)
        "aot_inductor.package_constants_in_so": False,
        "aot_inductor.package": True,
        "always_keep_tensor_constants": True,
        "joint_graph_constant_folding": False,
    }
    if version.parse(version.parse(torch.__version__).base_version) >= version.parse("2.10"):
        options["aot_inductor.package_constants_on_disk_format"] = "pickle_weights"
    else:
        options["aot_inductor.package_constants_on_disk"] = True
    args, kwargs = exported.example_inputs
    artifacts = torch._inductor.aot_compile(exported.module(), args, kwargs, options=options)
    (weights,) = [a for a in artifacts if isinstance(a, Weights)]
    archive = io.BytesIO()
    package_aoti(archive, [a for a in artifacts if isinstance(a, str)])
    return CpuCompiled(archive, StandInWeights({name: weights.get_weight(name)[0] for name in weights}))


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("HEADSHOT_TEST_INDUCTOR") != "1",
    reason="compiles the UNet with Inductor (about 3-4 min on 2 cores): set HEADSHOT_TEST_INDUCTOR=1",
)
def test_inductor_compiled_unet_with_fused_weights_equals_the_eager_lora_render(face_pack):
    """A real AoTI program (Inductor on the CPU, weights not packaged, loaded user managed by name): the
    LoRA render with the fused map loaded equals the eager LoRA render, and the base render after it the
    base one. About 3 minutes on 2 CPU cores, mostly Inductor's C++ compile, so it runs where
    HEADSHOT_TEST_INDUCTOR=1 (before a change to aoti.py or adapters.fused_lora_weights lands), not in CI's
    slow tier, which would pass 15 minutes with it."""
    torch.set_num_threads(1)
    loaded = models._load_tiny(D, torch.device("cpu"), torch.float32, models.FastPaths())
    models.prepare_models(loaded)
    adapters.load_fast(loaded)
    base_request = request(face_mask=_face_mask(64, 64))
    lora_request = request(
        face_mask=_face_mask(64, 64), identity_strength=0.5, identitynet_strength=0.6, lora=_person(loaded.pipe.unet)
    )
    eager_base = pixels(pipeline.render_on(loaded, base_request))
    eager_lora = pixels(pipeline.render_on(loaded, lora_request))
    with torch.no_grad():
        programs = aoti.build_programs(loaded, _capture, _inductor_compile)
    aoti.install(loaded, programs)
    try:
        unet_forward = loaded.pipe.unet.forward
        assert isinstance(programs["unet"].compiled, CpuCompiled)
        compiled_lora = pixels(pipeline.render_on(loaded, lora_request))
        assert unet_forward.calls["lora"] == lora_request.steps and unet_forward.calls["eager"] == 0
        assert isinstance(unet_forward.fused[-1].compiled, CpuCompiled)
        assert np.abs(compiled_lora - eager_lora).max() <= 2.0
        compiled_base = pixels(pipeline.render_on(loaded, base_request))
        assert unet_forward.calls["eager"] == 0
        assert np.abs(compiled_base - eager_base).max() <= 2.0
        assert np.abs(compiled_lora - compiled_base).max() > 2.0  # the LoRA changed the image
    finally:
        aoti.release(loaded)
