"""Headshot Studio's benchmarks: one JSON object per line, ``{"name", "value", "unit", "machine", "notes"}``.

    python benchmarks/run.py --quick                  # the CPU set in a few minutes
    python benchmarks/run.py                          # more repeats; on a CUDA machine also the GPU set
    python benchmarks/run.py --only validate render_overhead
    python benchmarks/run.py --only gpu --aoti        # the full-size GPU set, with AoTI compilation
    python benchmarks/run.py --full-size-cpu-smoke    # the GPU set's code, reduced models, on the CPU

The CPU set runs offline on the ``tiny`` profile with the small face pack and the photos of the shared
test data (``--data``, default ``$HEADSHOT_TEST_DATA`` or ``../shared``):

* ``validate_ms_per_selfie``: median time to validate one selfie (``benchmarks/validate_bench.py``);
* ``render_overhead_ratio``: ``pipeline.render`` over a bare diffusers call on the same tiny modules
  (``benchmarks/render_overhead.py``);
* ``startup_s``: ``python app.py`` in a fresh process until it answers its first HTTP request;
* ``e2e_api_s``: selfies to first image through ``gradio_client`` (validate, create the identity,
  generate one image) on a warm app; ``e2e_api_first_s`` is the first such run after startup.

On a CUDA machine the GPU set (``benchmarks/gpu_bench.py``) adds full-size SDXL + InstantID timings,
each against plain diffusers in the same run. Human-readable progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CPU_BENCHMARKS = ("validate", "render_overhead", "startup", "e2e")
ALL_BENCHMARKS = (*CPU_BENCHMARKS, "gpu")
E2E_STYLE = "corporate-grey"
E2E_PERSON = "obama"  # same_person/<this>: the selfies of the end-to-end run


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def machine() -> str:
    """CPU model and core count, OS, Python and torch versions; the GPU when there is one."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.machine()}"
    text += f", Python {platform.python_version()}, torch {metadata.version('torch')}"
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def load_average() -> str:
    return f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""


class Emitter:
    """Prints each figure as one JSON line on stdout (and keeps them, for callers and tests)."""

    def __init__(self, stream=None, machine_text: str | None = None):
        self.stream = stream or sys.stdout
        self.machine = machine_text or machine()
        self.results: list[dict] = []

    def __call__(self, name: str, value: float | None, unit: str, notes: str | None = None) -> dict | None:
        if value is None:  # e.g. GPU memory on a CPU run
            return None
        record: dict[str, Any] = {"name": name, "value": round(float(value), 4), "unit": unit}
        record["machine"] = self.machine
        record["notes"] = "; ".join(n for n in (notes, load_average()) if n)
        print(json.dumps(record), file=self.stream, flush=True)
        self.results.append(record)
        return record


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _quiet_call(fn: Callable[[list[str]], dict], argv: list[str]) -> tuple[dict, str]:
    """Run another benchmark's ``main(argv)``; its stdout (its own JSON line, prose) is captured."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fn(argv)
    return result, out.getvalue()


# --------------------------------------------------------------------------------------
# CPU set
# --------------------------------------------------------------------------------------


def bench_validate(emit: Emitter, data: Path, repeats: int, limit: int) -> None:
    from benchmarks import validate_bench

    say(f"validate_ms_per_selfie: photos of {data / 'testdata' / 'faces'}, {repeats} repeat(s)")
    result, _ = _quiet_call(
        validate_bench.main, ["--data", str(data), "--repeats", str(repeats), "--limit", str(limit)]
    )
    emit(
        result["name"],
        result["value"],
        result["unit"],
        notes=f"small face pack, median of {repeats} per photo",
    )


def bench_render_overhead(emit: Emitter, repeats: int, steps: int) -> None:
    from benchmarks import render_overhead

    say(f"render_overhead_ratio: {steps} steps, {repeats} alternating repeats")
    result, text = _quiet_call(render_overhead.main, ["--repeats", str(repeats), "--steps", str(steps)])
    lines = [" ".join(line.split()) for line in text.splitlines() if "ms" in line]
    emit(result["name"], result["value"], result["unit"], notes=", ".join(lines))


class App:
    """``python app.py`` on the tiny profile in a fresh process, on a free loopback port."""

    def __init__(self) -> None:
        from tests.e2e import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / ".cache" / f"bench-app-{self.port}.log"

    def start(self, timeout: float = 180.0) -> float:
        """Start it; return the seconds until its first answered HTTP request (``GET /``, polled every 20 ms)."""
        env = {
            **os.environ,
            "HEADSHOT_PROFILE": "tiny",
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "w")  # noqa: SIM115 - kept open while the app runs
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            if time.perf_counter() - started > timeout:
                self.stop()
                raise TimeoutError(f"app.py did not answer within {timeout} s; see {self.log_path}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def e2e_flow(url: str, selfies: Sequence[Path]) -> dict[str, float]:
    """Selfies to first image through ``gradio_client``: the three API calls a user's script makes."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    files = [handle_file(str(p)) for p in selfies]
    steps: dict[str, float] = {}
    started = time.perf_counter()
    report = client.predict(selfies=files, api_name="/validate_selfies")
    steps["validate"] = time.perf_counter() - started
    if not report.get("ready"):
        raise RuntimeError(f"the end-to-end selfies were not accepted: {report}")
    mark = time.perf_counter()
    identity, _summary = client.predict(selfies=files, method="instantid", api_name="/create_identity")
    steps["create_identity"] = time.perf_counter() - mark
    mark = time.perf_counter()
    gallery, info = client.predict(
        identity=handle_file(identity), style=E2E_STYLE, num_images=1, seed=1, api_name="/generate"
    )
    steps["generate"] = time.perf_counter() - mark
    steps["total"] = time.perf_counter() - started
    if len(gallery) != 1 or info.get("seeds") != [1]:
        raise RuntimeError(f"unexpected /generate answer: {gallery!r}, {info!r}")
    return steps


def _e2e_note(steps: dict[str, float], count: int) -> str:
    parts = " + ".join(f"{k} {v:.2f} s" for k, v in steps.items() if k != "total")
    return f"{parts}; {count} selfies, tiny profile, 1 image of {E2E_STYLE}"


def bench_app(emit: Emitter, data: Path, startup_runs: int, e2e_runs: int, which: set[str]) -> None:
    """``startup_s`` (median of fresh starts) and the end-to-end API runs on the first started app."""
    selfies = sorted((data / "testdata" / "faces" / "same_person" / E2E_PERSON).glob("*.jpg"))
    if "e2e" in which and not selfies:
        raise FileNotFoundError(f"no selfies in {data}/testdata/faces/same_person/{E2E_PERSON}")
    _ensure_tiny_models()  # the app's first render must not build them (it is timed)
    startups: list[float] = []
    runs = max(1, startup_runs if "startup" in which else 1)
    for index in range(runs):
        app = App()
        try:
            say(f"startup_s: fresh python app.py, run {index + 1} of {runs}")
            startups.append(app.start())
            if index == 0 and "e2e" in which:
                flows = []
                for run_index in range(max(2, e2e_runs)):
                    say(f"e2e_api_s: run {run_index + 1} of {max(2, e2e_runs)}")
                    flows.append(e2e_flow(app.url, selfies))
                emit("e2e_api_first_s", flows[0]["total"], "s", notes=_e2e_note(flows[0], len(selfies)))
                warm = flows[1:]
                middle = sorted(warm, key=lambda f: f["total"])[len(warm) // 2]
                note = _e2e_note(middle, len(selfies)) + f", median of {len(warm)} runs on a warm app"
                emit("e2e_api_s", statistics.median(f["total"] for f in warm), "s", notes=note)
        finally:
            app.stop()
    if "startup" in which:
        listed = ", ".join(f"{s:.2f}" for s in startups)
        emit(
            "startup_s",
            statistics.median(startups),
            "s",
            notes=f"median of {len(startups)} fresh starts ({listed})",
        )


def _ensure_tiny_models() -> None:
    from headshot.faces import analyzer
    from headshot.gpu import tiny

    tiny.ensure_tiny_models(analyzer.get_analyzer().embedding_size)


# --------------------------------------------------------------------------------------
# GPU set
# --------------------------------------------------------------------------------------


def bench_gpu(emit: Emitter, args: argparse.Namespace, smoke: bool) -> None:
    import torch

    from benchmarks import gpu_bench

    if smoke:
        settings = gpu_bench.Settings.for_cpu_smoke()
        settings.variants = not args.no_variants
        device = torch.device("cpu")
        torch.set_num_threads(1)  # reduced models: one thread is as fast, and fair on a shared machine
    else:
        settings = gpu_bench.Settings(
            size=args.size,
            steps=args.steps,
            fast_steps=tuple(args.fast_steps),
            repeats=args.repeats,
            lora_steps=args.lora_steps,
            variants=not args.no_variants,
            compile=not args.no_compile,
            compile_mode=args.compile_mode,
            compile_scope=args.compile_scope,
            aoti=args.aoti,
        )
        device = torch.device("cuda")
    say(f"GPU set on {device}: {settings}")
    gpu_bench.run(settings, emit, device)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CPU set with few repeats (a few minutes)")
    parser.add_argument("--only", nargs="+", choices=ALL_BENCHMARKS, help="run only these benchmarks")
    parser.add_argument(
        "--data", type=Path, help="shared test data (default: $HEADSHOT_TEST_DATA or ../shared)"
    )
    cpu = parser.add_argument_group("CPU set (defaults: --quick / full)")
    cpu.add_argument("--validate-repeats", type=int, help="per photo (2 / 3)")
    cpu.add_argument("--validate-limit", type=int, default=0, help="at most this many photos (0: all)")
    cpu.add_argument("--render-repeats", type=int, help="alternating repeats (5 / 9)")
    cpu.add_argument("--render-steps", type=int, default=20)
    cpu.add_argument("--startup-runs", type=int, help="fresh starts, median reported (2 / 3)")
    cpu.add_argument("--e2e-runs", type=int, help="API runs incl. the first, cold one (2 / 4)")
    gpu = parser.add_argument_group("GPU set (CUDA)")
    gpu.add_argument(
        "--gpu", choices=("auto", "on", "off"), default="auto", help="auto: on CUDA, not with --quick"
    )
    gpu.add_argument(
        "--full-size-cpu-smoke", action="store_true", help="the GPU set's code, reduced, on the CPU"
    )
    gpu.add_argument("--size", type=int, default=1024)
    gpu.add_argument("--steps", type=int, default=30)
    gpu.add_argument("--fast-steps", type=int, nargs="+", default=[4, 8])
    gpu.add_argument("--repeats", type=int, default=3)
    gpu.add_argument("--lora-steps", type=int, default=10)
    gpu.add_argument("--no-variants", action="store_true", help="skip the fast-path before/after variants")
    gpu.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    gpu.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    gpu.add_argument("--compile-scope", choices=("full", "regional"), default="full")
    gpu.add_argument("--aoti", action="store_true", help="also AoTI-compile (spaces' helpers)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "validate_repeats": (2, 3),
        "render_repeats": (5, 9),
        "startup_runs": (2, 3),
        "e2e_runs": (2, 4),
    }
    for name, (quick_value, full_value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick_value if quick else full_value)
    for name in (
        "validate_repeats",
        "render_repeats",
        "startup_runs",
        "e2e_runs",
        "steps",
        "repeats",
        "size",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.size % 8:
        parser.error("--size must be a multiple of 8")
    return args


def selected(args: argparse.Namespace) -> list[str]:
    """The benchmarks this run does, in order."""
    if args.full_size_cpu_smoke:
        return list(args.only or ["gpu"])
    if args.only:
        return [b for b in ALL_BENCHMARKS if b in args.only]
    names = list(CPU_BENCHMARKS)
    if args.gpu == "on" or (args.gpu == "auto" and not args.quick and _cuda_available()):
        names.append("gpu")
    return names


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None, stream=None) -> list[dict]:
    args = parse_args(argv)
    # The CPU set runs offline on the tiny profile (the GPU set builds its own full-size modules).
    os.environ.setdefault("HEADSHOT_PROFILE", "tiny")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    data = (args.data or Path(os.environ.get("HEADSHOT_TEST_DATA", ROOT.parent / "shared"))).resolve()
    pack = data / "models" / "faces-small"
    if pack.is_dir():
        os.environ.setdefault("HEADSHOT_FACE_MODELS", str(pack))
    names = selected(args)
    emit = Emitter(stream)
    say(f"benchmarks {names} on {emit.machine}")
    if "validate" in names:
        bench_validate(emit, data, args.validate_repeats, args.validate_limit)
    if "render_overhead" in names:
        bench_render_overhead(emit, args.render_repeats, args.render_steps)
    app_set = {"startup", "e2e"} & set(names)
    if app_set:
        bench_app(emit, data, args.startup_runs, args.e2e_runs, app_set)
    if "gpu" in names:
        if not args.full_size_cpu_smoke and not _cuda_available():
            raise SystemExit("the GPU set needs CUDA (or use --full-size-cpu-smoke)")
        bench_gpu(emit, args, smoke=args.full_size_cpu_smoke)
    return emit.results


if __name__ == "__main__":
    main()
