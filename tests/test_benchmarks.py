"""The benchmark suite (benchmarks/run.py, likeness.py, gpu_bench.py).

Cheap pieces run in-process with reduced repeats; the ones that start the app (or build the reduced
full-size models) are marked slow. Every figure is one JSON line ``{"name", "value", "unit", ...}``.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from benchmarks import likeness
from benchmarks import run as bench

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
