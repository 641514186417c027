"""The benchmark suite (benchmarks/run.py, likeness.py, gpu_bench.py, gpu_check.py).

Cheap pieces run in-process with reduced repeats; the ones that start the app (or build the reduced
full-size models) are marked slow. Every figure is one JSON line ``{"name", "value", "unit", ...}``.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from benchmarks import gpu_check, likeness
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
        assert record["unit"] == "ratio" and record["identities"] == 1 and record["images"] >= 1
        assert record["judge"] == likeness.JUDGE_NAME
        assert 0.0 <= record["detection_rate"] <= 1.0 and 0.0 <= record["judge_detection_rate"] <= 1.0
        assert (record["value"] is None) == (record["judge_detection_rate"] == 0.0)
        assert (record["pack_similarity"] is None) == (record["detection_rate"] == 0.0)
        for key in ("judge_copy_paste", "pack_copy_paste"):
            assert record[key] is None or -1.5 <= record[key] <= 1.5
        if name != "likeness_real_photos":
            assert record["seconds_per_image"] > 0 and record["identity_seconds"] > 0
    real = results["likeness_real_photos"]  # the selfies against held-out photos of the same person
    assert real["detection_rate"] == 1.0 and real["value"] == pytest.approx(1.0)
    assert real["pack_similarity"] > analyzer.same_person_threshold and real["judge_match_rate"] == 1.0
    assert "best of 2" in results["likeness_best_of"]["notes"]
    assert "scored by the judge" in results["likeness_best_of"]["notes"]


def test_likeness_arguments():
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        likeness.parse_args(["--seeds", "3", "1"])
    args = likeness.parse_args(["--quick"])
    assert (args.identities, len(args.styles), args.seeds, args.best_of) == (1, 1, [1], 2)


# --------------------------------------------------------------------------------------
# benchmarks/gpu_check.py
# --------------------------------------------------------------------------------------

GPU_CHECK_KEYS = ("ours", "ours_person_lora", "baseline", "ours_fast", "baseline_fast", "ours_lora", "baseline_lora")


def test_gpu_check_refuses_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == gpu_check.NO_CUDA_EXIT == 2
    captured = capsys.readouterr()
    assert "needs a CUDA GPU" in captured.err and "--cpu-smoke" in captured.err
    assert captured.out == ""  # no figures


def test_gpu_check_settings_and_table():
    default = gpu_check.settings_from(gpu_check.parse_args([]))
    assert (default.size, default.steps, default.compile, default.reduced) == (1024, 30, True, False)
    assert default.compile_mode == "max-autotune-no-cudagraphs"  # what HEADSHOT_COMPILE=1 means
    assert default.compile_reserve_s + default.fast_compile_reserve_s < default.budget_s <= 480
    smoke = gpu_check.settings_from(gpu_check.parse_args(["--cpu-smoke", "--no-compile", "--repeats", "3"]))
    assert smoke.reduced and smoke.size == 128 and not smoke.compile and smoke.repeats == 3
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        gpu_check.parse_args(["--repeats", "0"])
    aoti = gpu_check.settings_from(gpu_check.parse_args(["--aoti", "--budget-s", "900"]))
    assert aoti.aoti and not default.aoti and aoti.aoti_reserve_s < aoti.budget_s
    on_cpu = gpu_check.aoti_phase(aoti, None, (), torch.device("cpu"), 0.0, None, None)
    assert on_cpu[:2] == (None, None) and on_cpu[2].startswith("not compiled: AoTI")  # never an eager figure
    rows = [gpu_check.Row("ours", "s/image", 4.25, 11.5, 3.1, 11.9, "x1.05"), gpu_check.Row("other", "s"),
            gpu_check.Row("ours, fast", "s/image", 1.5, uncompiled="not compiled")]  # fmt: skip
    text = gpu_check.markdown(rows, "**title**")
    lines = text.splitlines()
    assert lines[0] == "**title**" and lines[2].startswith("| measure |")
    assert lines[4] == "| ours | s/image | 4.25 | 11.50 | 3.10 | 11.90 | x1.05 |"
    assert lines[5] == "| other | s | - | - | - | - |  |"
    assert lines[6] == "| ours, fast | s/image | 1.50 | - | not compiled | not compiled |  |"


def check_gpu_check_output(text: str, table: str, prefix: str, gpu: bool) -> dict[str, dict]:
    results = by_name(records(text))
    for key in GPU_CHECK_KEYS:
        assert results[f"{prefix}_{key}_128px_s"]["value"] > 0, key
        assert (f"{prefix}_{key}_peak_memory_gib" in results) is gpu, key
    assert results[f"{prefix}_total_s"]["value"] > 0
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(GPU_CHECK_KEYS) + 1  # header, a row per measure, the whole check
    assert "tiny sizes: numbers meaningless" in table.splitlines()[0]
    return results


def test_gpu_check_cpu_smoke_runs_its_code_path(tmp_path):
    """The whole check with reduced modules on the CPU (about 10 s): every figure, one table."""
    out = io.StringIO()
    table_file = tmp_path / "table.md"
    assert gpu_check.main(["--cpu-smoke", "--table", str(table_file)], stream=out) == 0
    table = table_file.read_text()
    results = check_gpu_check_output(out.getvalue(), table, "gpu_check_smoke", gpu=False)
    assert "compile_first_render_s" not in " ".join(results)  # nothing compiled: no compiled figures
    assert results.get("gpu_check_smoke_ours_compiled_128px_s", {}).get("value") is None  # no eager figure
    assert "not compiled: torch.compile does not run on cpu" in table
    ours = next(line for line in table.splitlines() if line.startswith("| ours, 128²"))
    assert "face region on" in ours
    assert "| not compiled | not compiled |" in ours
    assert "CPU" in table.splitlines()[0]


@pytest.mark.gpu
def test_gpu_check_quick_on_cuda(tmp_path):
    """``--quick``: the check's code on the GPU with reduced modules, compiled with mode "default"."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    out = io.StringIO()
    table_file = tmp_path / "table.md"
    assert gpu_check.main(["--quick", "--table", str(table_file)], stream=out) == 0
    table = table_file.read_text()
    results = check_gpu_check_output(out.getvalue(), table, "gpu_check_smoke", gpu=True)
    assert torch.cuda.get_device_name(0) in table.splitlines()[0]
    assert results["gpu_check_smoke_ours_compiled_128px_s"]["value"] > 0
    from headshot.gpu import lora, models

    app_dtype = models.select_dtype(torch.device("cuda"), models.FastPaths.from_env().dtype)
    precision = lora.resolve_precision(None, app_dtype)  # fp16 (+ scaler) for the default float16
    assert "| ours, LoRA training, 128 px | s/step |" in table and f"{precision} autocast" in table
