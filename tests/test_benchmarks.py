"""The benchmark suite (benchmarks/run.py, likeness.py, gpu_bench.py) and the pipeline's fast-path switches.

Cheap pieces run in-process with reduced repeats; the ones that start the app (or build the reduced
full-size models) are marked slow. Every figure is one JSON line ``{"name", "value", "unit", ...}``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
from unittest.mock import patch

import numpy as np
import pytest
import torch

from benchmarks import likeness
from benchmarks import run as bench
from headshot import errors, pipeline

D = 128  # the faces-small pack's embedding size


@pytest.fixture(autouse=True)
def restore_threads():
    """Benchmarks set one torch thread for the tiny models; give the test session its setting back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def records(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    out = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    for record in out:
        assert {"name", "value", "unit", "machine", "notes"} <= set(record), record
        assert isinstance(record["name"], str) and isinstance(record["unit"], str)
        assert "CPU cores" in record["machine"]
    return out


def by_name(items: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in items}


# --------------------------------------------------------------------------------------
# benchmarks/run.py
# --------------------------------------------------------------------------------------


@pytest.mark.slow  # a whole benchmark run: face analysis on photos and bare vs our renders (~10 s)
def test_validate_and_render_overhead_lines(shared_dir):
    out = io.StringIO()
    argv = ["--only", "validate", "render_overhead", "--data", str(shared_dir)]
    argv += [
        "--validate-repeats",
        "1",
        "--validate-limit",
        "3",
        "--render-repeats",
        "2",
        "--render-steps",
        "3",
    ]
    returned = bench.main(argv, stream=out)
    results = by_name(records(out.getvalue()))
    assert list(results) == ["validate_ms_per_selfie", "render_overhead_ratio"]
    assert returned == list(results.values())
    validate, ratio = results["validate_ms_per_selfie"], results["render_overhead_ratio"]
    assert validate["unit"] == "ms" and 0 < validate["value"] < 10_000
    assert ratio["unit"] == "x" and 0.3 < ratio["value"] < 5  # ours vs bare diffusers on the same modules
    assert "bare diffusers call" in ratio["notes"] and "pipeline.render" in ratio["notes"]


def test_emitter_skips_missing_values_and_rounds():
    out = io.StringIO()
    emit = bench.Emitter(out, machine_text="2 CPU cores (test)")
    assert emit("gpu_peak_memory_gib", None, "GiB") is None  # no GPU: no line
    emit("x_s", 1.23456789, "s", notes="a note")
    (record,) = records(out.getvalue())
    assert record["value"] == 1.2346 and record["notes"].startswith("a note")


def test_quick_selection_and_argument_checks():
    assert bench.selected(bench.parse_args(["--quick"])) == list(bench.CPU_BENCHMARKS)
    assert bench.selected(bench.parse_args(["--quick", "--gpu", "on"]))[-1] == "gpu"
    assert bench.selected(bench.parse_args(["--full-size-cpu-smoke"])) == ["gpu"]
    assert bench.selected(bench.parse_args(["--only", "e2e", "validate"])) == ["validate", "e2e"]
    quick, full = bench.parse_args(["--quick"]), bench.parse_args([])
    assert quick.startup_runs < full.startup_runs and quick.render_repeats < full.render_repeats
    for bad in (["--size", "1001"], ["--render-repeats", "0"], ["--only", "nope"]):
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            bench.parse_args(bad)


@pytest.mark.slow
def test_startup_and_end_to_end_api(shared_dir):
    out = io.StringIO()
    argv = ["--only", "startup", "e2e", "--data", str(shared_dir), "--startup-runs", "1", "--e2e-runs", "2"]
    bench.main(argv, stream=out)
    results = by_name(records(out.getvalue()))
    assert set(results) == {"startup_s", "e2e_api_first_s", "e2e_api_s"}
    assert all(r["unit"] == "s" and 0 < r["value"] < 300 for r in results.values())
    assert "create_identity" in results["e2e_api_s"]["notes"] and "generate" in results["e2e_api_s"]["notes"]


@pytest.mark.slow
def test_full_size_cpu_smoke_runs_the_gpu_code_path():
    out = io.StringIO()
    bench.main(["--full-size-cpu-smoke", "--no-variants"], stream=out)
    results = by_name(records(out.getvalue()))
    for name in (
        "cpu_smoke_baseline_128px_2steps_s",
        "cpu_smoke_instantid_128px_2steps_s",
        "cpu_smoke_instantid_fast_128px_4steps_s",
        "cpu_smoke_baseline_lora_seconds_per_step_128px",
        "cpu_smoke_lora_seconds_per_step_128px",
    ):
        assert results[name]["value"] > 0, name
    assert not any(name.startswith("gpu_") for name in results)


# --------------------------------------------------------------------------------------
# benchmarks/likeness.py
# --------------------------------------------------------------------------------------


def test_identity_is_scored_only_against_held_out_photos(faces_dir, analyzer):
    (person,) = likeness.people(faces_dir / "same_person", analyzer, inputs=3, limit=1)
    assert len(person.inputs) == 3 and person.held_out
    assert not set(person.inputs) & set(person.held_out)
    assert {p.parent for p in person.inputs + person.held_out} == {faces_dir / "same_person" / person.name}
    assert len(person.held_out_embeddings) == len(person.held_out)


@pytest.mark.slow  # a whole benchmark run: identities made and rendered for each method (~11 s)
def test_likeness_quick_lines(capsys, faces_dir, analyzer):
    returned = likeness.main(["--quick", "--faces-dir", str(faces_dir / "same_person")])
    results = by_name(records(capsys.readouterr().out))
    assert list(results) == ["likeness_real_photos", *(f"likeness_{m}" for m in likeness.METHODS)]
    assert returned == list(results.values())
    for name, record in results.items():
        assert record["unit"] == "cosine" and record["identities"] == 1 and record["images"] >= 1
        assert 0.0 <= record["detection_rate"] <= 1.0
        assert (record["value"] is None) == (record["detection_rate"] == 0.0)
        if record["value"] is not None:
            assert -1.0 <= record["value"] <= 1.0
        if name != "likeness_real_photos":
            assert record["seconds_per_image"] > 0 and record["identity_seconds"] > 0
    real = results["likeness_real_photos"]  # held-out photos of the same person: above the threshold
    assert real["detection_rate"] == 1.0 and real["value"] > analyzer.same_person_threshold
    assert "best of 2" in results["likeness_best_of"]["notes"]


def test_likeness_arguments():
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        likeness.parse_args(["--seeds", "3", "1"])
    args = likeness.parse_args(["--quick"])
    assert (args.identities, len(args.styles), args.seeds, args.best_of) == (1, 1, [1], 2)


# --------------------------------------------------------------------------------------
# The fast-path switches (headshot.pipeline.FastPaths)
# --------------------------------------------------------------------------------------


def test_fast_paths_from_environment(monkeypatch):
    for name in ("HEADSHOT_DTYPE", "HEADSHOT_SDPA", "HEADSHOT_COMPILE", "HEADSHOT_AOTI", "HEADSHOT_WARMUP"):
        monkeypatch.delenv(name, raising=False)
    default = pipeline.FastPaths.from_env()
    assert default == pipeline.FastPaths()
    monkeypatch.setenv("HEADSHOT_SDPA", "0")
    monkeypatch.setenv("HEADSHOT_DTYPE", "bf16")
    monkeypatch.setenv("HEADSHOT_COMPILE", "1")
    monkeypatch.setenv("HEADSHOT_VAE_TILING", "on")
    fast = pipeline.FastPaths.from_env()
    assert (fast.sdpa, fast.dtype, fast.vae_tiling) == (False, "bf16", "on")
    assert fast.compile == "max-autotune-no-cudagraphs"
    monkeypatch.setenv("HEADSHOT_COMPILE", "reduce-overhead")
    assert pipeline.FastPaths.from_env().compile == "reduce-overhead"
    monkeypatch.setenv("HEADSHOT_COMPILE", "fastest")
    with pytest.raises(errors.InvalidRequest, match="HEADSHOT_COMPILE"):
        pipeline.FastPaths.from_env()
    monkeypatch.setenv("HEADSHOT_COMPILE", "0")
    monkeypatch.setenv("HEADSHOT_DTYPE", "fp8")
    with pytest.raises(errors.InvalidRequest, match="HEADSHOT_DTYPE"):
        pipeline.FastPaths.from_env()


def test_cpu_never_compiles_and_gpu_defaults():
    wanted = pipeline.FastPaths(compile="max-autotune-no-cudagraphs", aoti=True)
    cpu = wanted.resolved(torch.device("cpu"))
    assert (cpu.compile, cpu.aoti, cpu.channels_last, cpu.warmup) == ("", False, False, False)
    cuda = pipeline.FastPaths(compile="default").resolved(torch.device("cuda"))
    assert (cuda.compile, cuda.channels_last, cuda.warmup) == ("default", True, True)
    assert wanted.resolved(torch.device("cuda")).compile == ""  # AoTI wins over torch.compile
    assert pipeline.select_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert pipeline.select_dtype(torch.device("cuda")) == torch.float16


@pytest.fixture(scope="module")
def own_models(face_pack):
    """Tiny models of our own (not the shared cache), so switching fast paths affects no other test."""
    models = pipeline._load_tiny(D, torch.device("cpu"), torch.float32, pipeline.FastPaths())
    return pipeline.prepare_models(models)


def request(**changes) -> pipeline.RenderRequest:
    from headshot import imaging

    face = np.random.default_rng(3).standard_normal(D).astype(np.float32)
    kps = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.41, 0.68], [0.59, 0.68]]) * 64
    base = pipeline.RenderRequest(
        prompt="a studio portrait photo of a person",
        negative_prompt="blurry",
        face_embedding=face / np.linalg.norm(face),
        control_image=imaging.draw_kps(64, 64, kps),
        width=64,
        height=64,
        steps=3,
        seed=5,
    )
    return dataclasses.replace(base, **changes)


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(img, dtype=np.float32) for img in images])


def test_switches_change_the_kernels_not_the_image(own_models):
    from diffusers.models.attention_processor import AttnProcessor, IPAdapterAttnProcessor

    torch.set_num_threads(1)
    reference = pixels(pipeline.render_on(own_models, request()))
    try:
        pipeline.prepare_models(own_models, pipeline.FastPaths(sdpa=False, channels_last=True))
        kinds = {type(p) for p in own_models.pipe.unet.attn_processors.values()}
        assert kinds == {AttnProcessor, IPAdapterAttnProcessor}
        assert own_models.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        switched = pixels(pipeline.render_on(own_models, request()))
        assert np.abs(switched - reference).max() <= 2.0  # the same image, up to float rounding
    finally:
        pipeline.prepare_models(own_models, pipeline.FastPaths())
    assert not any(isinstance(p, AttnProcessor) for p in own_models.pipe.unet.attn_processors.values())
    assert np.array_equal(pixels(pipeline.render_on(own_models, request())), reference)


@contextlib.contextmanager
def _capture(module, call_method="forward"):
    """What ``spaces.aoti_capture`` does (its module needs a CUDA build of torch to import)."""

    class Captured(Exception):
        def __init__(self, *args, **kwargs):
            super().__init__()
            self.call = (args, kwargs)

    class Call:
        args: tuple = ()
        kwargs: dict = {}

    call = Call()

    def raise_(*args, **kwargs):
        raise Captured(*args, **kwargs)

    with patch.object(module, call_method, new=raise_):
        try:
            yield call
        except Captured as exc:
            call.args, call.kwargs = exc.call


@pytest.mark.slow
def test_aoti_routing_with_exported_programs(own_models, monkeypatch):
    """The AoTI path on the CPU: capture, export with dynamic sizes, route calls; exported programs
    stand in for the Inductor-compiled ones (``spaces.aoti_compile`` needs CUDA)."""
    torch.set_num_threads(1)
    eager = {
        size: pixels(pipeline.render_on(own_models, request(width=size, height=64))) for size in (64, 48)
    }
    weak_net = request(identitynet_strength=0.3)
    eager_weak_net = pixels(pipeline.render_on(own_models, weak_net))
    monkeypatch.setattr(pipeline.spaces, "aoti_capture", _capture)
    monkeypatch.setattr(pipeline.spaces, "aoti_compile", lambda exported: exported.module())
    try:
        pipeline.aoti_compile_models(own_models)
        unet_calls = own_models.pipe.unet.forward.calls
        net_calls = own_models.identitynet.forward.calls
        for size in (64, 48):  # the captured size and another one (dynamic height/width)
            images = pixels(pipeline.render_on(own_models, request(width=size, height=64)))
            assert np.abs(images - eager[size]).max() <= 2.0
        assert unet_calls["aoti"] > 0 and unet_calls["eager"] == 0
        assert net_calls["aoti"] > 0 and net_calls["eager"] == 0
        # The IdentityNet program is built at scale 1: another strength scales its residuals.
        assert np.abs(pixels(pipeline.render_on(own_models, weak_net)) - eager_weak_net).max() <= 2.0
        # Another face-adapter scale is baked differently: the UNet runs eagerly, the IdentityNet does not.
        before = dict(unet_calls)
        pipeline.render_on(own_models, request(identity_strength=0.5, identitynet_strength=0.3))
        assert unet_calls["aoti"] == before["aoti"] and unet_calls["eager"] > before["eager"]
        assert not own_models.aoti_gate  # reset after every render
    finally:
        pipeline.aoti_release(own_models)
    assert "forward" not in own_models.pipe.unet.__dict__ and not own_models.aoti
    assert math.isclose(pipeline.AOTI_IP_SCALE, request().identity_strength)
