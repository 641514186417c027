"""One GPU truth check: full-size SDXL + InstantID against plain diffusers on one CUDA GPU, one table out.

    python benchmarks/gpu_check.py                 # one CUDA GPU, nothing downloaded, < 8 min on an H100
    python benchmarks/gpu_check.py --table gpu.md  # also write the table to a file
    python benchmarks/gpu_check.py --cpu-smoke     # the same code on the CPU with tiny sizes (seconds)
    python benchmarks/gpu_check.py --aoti --budget-s 900  # compiled with AoTI, what ZeroGPU runs

Random-weight modules at their real sizes, built from configurations by ``benchmarks/gpu_bench.py``
(SDXL UNet, IdentityNet, VAE, both text towers, InstantID's face adapter, an LCM-sized LoRA), in the
app's dtype (``HEADSHOT_DTYPE``; float16 by default). Random weights cost the compute of real ones;
the images are noise. In one run, each with its peak GPU memory:

* s/image at 1024x1024, 30 steps, CFG 5: ours (``pipeline.render_on`` on ``models.Models`` assembled
  from the modules), the app's default request (face-region control on: the face mask from the
  keypoints), the same with a person's LoRA (random, the app's rank), against stock diffusers
  ``StableDiffusionXLControlNetPipeline`` on the same modules;
* fast mode s/image (the fast LoRA, LCM, CFG-free, the app's fast step count) against the same in
  stock diffusers;
* LoRA s/step at 1024 px (``lora.train_lora`` with the app's defaults, so autocast to the UNet's dtype)
  against a plain peft training step;
* ours again after ``torch.compile`` (``models.prepare_models`` with ``FastPaths(compile=...)``, what
  ``HEADSHOT_COMPILE`` does; the square size only, compiled at its first render, which is reported),
  where a LoRA render runs eagerly; or, with ``--aoti``, after ZeroGPU's ahead-of-time compile
  (``pipeline.aoti_compile``: the UNet and IdentityNet programs), where the default request and the LoRA
  request (the LoRA fused into the UNet program's weights) both run compiled. A request gets a compiled
  figure only when every UNet call of its renders ran the program (``aoti.AotiForward.calls``).
  LoRA training runs eagerly in the app, so it has no compiled figure. Where nothing was compiled (no
  torch.compile or AoTI on the device, over the budget, ``--no-compile``) the compiled cells say "not
  compiled", never an eager figure.

Each figure is a JSON line on stdout, as the other benchmarks print them; progress and, at the end, one
markdown table (GPU name, date, figures) go to stderr (``--table`` also writes it to a file).

Budget of the default run on an H100-class GPU (an estimate, not yet measured): ~1 min importing and
building, ~2 min eager measuring (one warm-up and 2 repeats each), ~3 min compiling and measuring the
compiled renders (regional scope by default: diffusers' repeated blocks; ``--compile-scope full`` is
``HEADSHOT_COMPILE_SCOPE``'s default and compiles far longer). A compiled phase whose reserve
(``CheckSettings.compile_reserve_s``) would overrun ``--budget-s`` (480 s) is skipped, and the table
says so. Without CUDA it exits with code 2 unless ``--cpu-smoke`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NO_CUDA_EXIT = 2
NO_CUDA_MESSAGE = (
    "gpu_check.py needs a CUDA GPU (torch.cuda.is_available() is False here). "
    "Run it on a machine with one, or use --cpu-smoke to run its code path on the CPU (numbers meaningless)."
)


@dataclasses.dataclass
class CheckSettings:
    """What one check measures: :meth:`gpu` (the default run) or :meth:`smoke` (tiny sizes)."""

    size: int = 1024
    steps: int = 30
    guidance: float = 5.0
    repeats: int = 2
    warmup: int = 1
    lora_steps: int = 8
    lora_warmup: int = 2
    compile: bool = True
    compile_mode: str = "max-autotune-no-cudagraphs"  # HEADSHOT_COMPILE=1
    compile_scope: str = "regional"
    budget_s: float = 480.0  # the whole run's target: a compiled phase starts only if its reserve fits
    compile_reserve_s: float = 200.0  # compiling the square size and rendering it (regional scope, H100)
    aoti: bool = False  # the compiled phase: AoTI (pipeline.aoti_compile) instead of torch.compile
    aoti_reserve_s: float = 420.0  # AoTI-compiling the UNet and IdentityNet and rendering (a guess until measured)
    fast_compile_reserve_s: float = 75.0  # the fast mode's compiled variant
    reduced: bool = False
    prefix: str = "gpu_check"

    @classmethod
    def smoke(cls, **overrides) -> CheckSettings:
        """Reduced modules, 128 px, 2 steps, one repeat and no warm-up: the code path in seconds."""
        values: dict = {"size": 128, "steps": 2, "repeats": 1, "warmup": 0, "lora_steps": 2, "lora_warmup": 0}
        values |= {"compile_mode": "default", "reduced": True, "prefix": "gpu_check_smoke"}
        values.update(overrides)
        return cls(**values)


@dataclasses.dataclass
class Row:
    """One line of the table: eager and compiled seconds with their peak GPU memory (GiB)."""

    what: str
    unit: str
    eager: float | None = None
    eager_peak: float | None = None
    compiled: float | None = None
    compiled_peak: float | None = None
    notes: str = ""
    uncompiled: str = "-"  # the compiled cells of a measure that has a compiled variant but no figure


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if value < 1 else f"{value:.{digits - 1}f}"


def markdown(rows: list[Row], title: str) -> str:
    """One markdown table: what, eager, its peak, compiled, its peak, notes."""
    lines = [
        title,
        "",
        "| measure | unit | eager | peak GiB | compiled | peak GiB | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        compiled = [_fmt(r.compiled), _fmt(r.compiled_peak)] if r.compiled is not None else [r.uncompiled] * 2
        cells = [r.what, r.unit, _fmt(r.eager), _fmt(r.eager_peak), *compiled]
        lines.append("| " + " | ".join([*cells, r.notes]) + " |")
    return "\n".join(lines)


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def check(settings: CheckSettings, emit, device, started: float | None = None) -> list[Row]:
    """Build, measure, ``emit(name, value, unit, notes=...)`` every figure; return the table's rows.

    ``started``: the ``time.perf_counter()`` the time budget counts from (default: now).
    """
    import torch

    from benchmarks import gpu_bench, lora_bench
    from headshot import imaging
    from headshot.gpu import lora, models, pipeline, recipe, tiny

    started = time.perf_counter() if started is None else started
    p, size, steps, reps, warm = settings.prefix, settings.size, settings.steps, settings.repeats, settings.warmup
    base_paths = dataclasses.replace(models.FastPaths.from_env(), warmup=False, compile="", aoti=False)
    dtype = models.select_dtype(device, base_paths.dtype)  # the app's dtype on this device
    dtype_name = str(dtype).removeprefix("torch.")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    configs = gpu_bench.reduced_configs() if settings.reduced else gpu_bench.full_configs()
    say(f"building random-weight SDXL + IdentityNet + face adapter in {dtype_name} on {device}")
    parts = gpu_bench.build_components(device, dtype, configs)
    emit(f"{p}_build_s", time.perf_counter() - started, "s", notes=f"imports and building, {dtype_name}")
    face, control = gpu_bench.face_and_control(size)
    # The render people get: face-region control on (the app's default), its mask from the keypoints.
    face_mask = imaging.face_region_mask(size, size, gpu_bench.face_keypoints(size))
    request = recipe.RenderRequest(
        prompt=gpu_bench.PROMPT, negative_prompt=gpu_bench.NEGATIVE, face_embedding=face,
        control_image=control, width=size, height=size, steps=steps, guidance=settings.guidance,
        face_mask=face_mask,
    )  # fmt: skip
    fast_request = dataclasses.replace(request, fast=True)  # a style's steps: the app's fast step count
    fast_steps, fast_guidance = recipe.effective_settings(fast_request)

    # 1. Stock diffusers on the same modules (before the face adapter changes the UNet).
    plain = gpu_bench.plain_pipeline(parts, fast=False)
    fast_plain = gpu_bench.plain_pipeline(parts, fast=True)

    def run_plain(pipe, n_steps: int, guidance: float):
        return gpu_bench.plain_render(pipe, control, size, n_steps, guidance)

    say(f"diffusers SDXL + ControlNet, {size} px, {steps} steps")
    base = gpu_bench.timed(lambda: run_plain(plain, steps, settings.guidance), device, reps, warm)
    say(f"diffusers fast mode (LCM LoRA, {fast_steps} steps, no CFG)")
    fast_plain.load_lora_weights(dict(parts.lcm_lora), adapter_name="lcm")
    base_fast = gpu_bench.timed(lambda: run_plain(fast_plain, fast_steps, fast_guidance), device, reps, warm)
    fast_plain.unload_lora_weights()
    lora_defaults = lora.LoraSettings()
    say(f"plain peft LoRA steps at {size} px")
    base_lora = gpu_bench.baseline_lora_step(
        parts.unet, size, lora_defaults.rank, settings.lora_steps, max(1, settings.lora_warmup), device
    )

    # 2. Ours, eager: the face adapter loaded, the app's fast paths (HEADSHOT_* switches) but no compile.
    loaded = gpu_bench.instantid_models(parts, device, dtype, "tiny" if settings.reduced else "full")
    models.prepare_models(loaded, base_paths)
    say(f"ours, {size} px, {steps} steps")
    ours = gpu_bench.timed(lambda: pipeline.render_on(loaded, request), device, reps, warm)
    person = {  # a person's LoRA (random, the app's rank)
        "name": "person",
        "state_dict": tiny.random_unet_lora(loaded.pipe.unet, rank=lora_defaults.rank, seed=2),
        "scale": 1.0,
    }
    person_request = dataclasses.replace(request, lora=person)
    say(f"ours with a person's LoRA (rank {lora_defaults.rank}), {size} px, {steps} steps")
    ours_person = gpu_bench.timed(lambda: pipeline.render_on(loaded, person_request), device, reps, warm)
    say(f"ours, fast mode ({fast_steps} steps)")
    ours_fast = gpu_bench.timed(lambda: pipeline.render_on(loaded, fast_request), device, reps, warm)
    say(f"ours, LoRA training steps at {size} px")
    lora_settings = dataclasses.replace(
        lora_defaults, steps=settings.lora_steps + settings.lora_warmup + 1, resolution=size
    )
    components = lora.LoraComponents.from_pipeline(loaded.pipe, base_model="random-sdxl-sized")
    checkpointing = lora.auto_gradient_checkpointing(device, size)  # before training: its free memory
    ours_lora = lora_bench.time_steps(components, lora_bench.selfies(4), lora_settings, settings.lora_warmup)
    lora_precision = lora.resolve_precision(lora_defaults.mixed_precision, loaded.pipe.unet.dtype)
    lora_how = f"{lora_precision} autocast" if lora_precision != "no" else "no autocast"
    lora_how += " + gradient scaler" if lora.uses_grad_scaler(lora_precision) else ""
    lora_how += f", gradient checkpointing {'on' if checkpointing else 'off'}"

    # 3. Ours, compiled (cannot be undone: last), within the time budget.
    compiled = compiled_fast = compiled_person = None
    compile_note = "not asked (--no-compile)"
    if settings.compile and settings.aoti:
        compiled, compiled_person, compile_note = aoti_phase(
            settings, loaded, (request, person_request), device, started, emit, say
        )
    elif settings.compile:
        compiled_paths = dataclasses.replace(
            base_paths, compile=settings.compile_mode, compile_scope=settings.compile_scope
        )
        if not compiled_paths.resolved(device).compile:
            compile_note = f"not compiled: torch.compile does not run on {device.type}"
            compiled_paths = None
        elif time.perf_counter() - started + settings.compile_reserve_s > settings.budget_s:
            compile_note = f"skipped: compiling would not fit the {settings.budget_s:.0f} s budget"
            compiled_paths = None
        else:
            compile_note = f"torch.compile mode={settings.compile_mode}, scope={settings.compile_scope}"
        if compiled_paths is not None:
            models.prepare_models(loaded, compiled_paths)
            say(f"ours compiled ({compile_note}), {size} px, {steps} steps; the first render compiles")
            compiled = gpu_bench.timed(lambda: pipeline.render_on(loaded, request), device, reps, 1)
            emit(f"{p}_compile_first_render_s", compiled["first"], "s", notes=compile_note)
            if time.perf_counter() - started + settings.fast_compile_reserve_s > settings.budget_s:
                compile_note += "; fast mode not compiled: over the time budget"
            else:
                say("ours compiled, fast mode; the first render compiles its variant")
                compiled_fast = gpu_bench.timed(lambda: pipeline.render_on(loaded, fast_request), device, reps, 1)

    def pick(result, key):
        return None if result is None else result[key]

    paths = f"{dtype_name}, sdpa={base_paths.sdpa}, channels_last={loaded.fast_paths.channels_last}"
    first_compile = f"; first compiled render {compiled['first']:.1f} s" if compiled else ""
    rows = [
        Row(f"ours, {size}², {steps} steps, CFG {settings.guidance:g}, face region on", "s/image", ours["median"],
            ours["peak"], pick(compiled, "median"), pick(compiled, "peak"),
            f"x{ours['median'] / base['median']:.2f} of diffusers eager; the app's default request; {paths}"
            f"{first_compile}", uncompiled="not compiled"),
        Row(f"ours with a person's LoRA (rank {lora_defaults.rank}), face region on", "s/image",
            ours_person["median"], ours_person["peak"], pick(compiled_person, "median"), pick(compiled_person, "peak"),
            notes="compiled: AoTI with the LoRA fused into the UNet program's weights (--aoti); torch.compile "
            "runs a LoRA render eagerly", uncompiled="not compiled"),
        Row(f"diffusers SDXL + ControlNet, {size}², {steps} steps", "s/image", base["median"], base["peak"],
            notes="StableDiffusionXLControlNetPipeline, no face adapter"),
        Row(f"ours, fast mode, {fast_steps} steps", "s/image", ours_fast["median"], ours_fast["peak"],
            pick(compiled_fast, "median"), pick(compiled_fast, "peak"),
            f"x{ours_fast['median'] / base_fast['median']:.2f} of diffusers; fast LoRA + LCM, CFG-free, face region "
            "on", uncompiled="not compiled"),
        Row(f"diffusers fast mode, {fast_steps} steps", "s/image", base_fast["median"], base_fast["peak"],
            notes="LCM LoRA + LCMScheduler, no CFG"),
        Row(f"ours, LoRA training, {size} px", "s/step", ours_lora["per_step"], ours_lora.get("peak_gb"),
            notes=f"rank {lora_defaults.rank}, {lora_how}; "
            f"x{ours_lora['per_step'] / base_lora['per_step']:.2f} of plain peft; eager in the app"),
        Row(f"plain peft LoRA step, {size} px", "s/step", base_lora["per_step"], base_lora["peak"],
            notes=f"rank {lora_defaults.rank}, " + (
                "no autocast" if dtype == torch.float32 else f"{dtype_name} autocast, no scaler")),
    ]  # fmt: skip
    keys = ("ours", "ours_person_lora", "baseline", "ours_fast", "baseline_fast", "ours_lora", "baseline_lora")
    for row, key in zip(rows, keys, strict=True):
        emit(f"{p}_{key}_{size}px_s", row.eager, row.unit, notes=row.what)
        emit(f"{p}_{key}_peak_memory_gib", row.eager_peak, "GiB", notes=row.what)
        emit(f"{p}_{key}_compiled_{size}px_s", row.compiled, row.unit, notes=compile_note)
        emit(f"{p}_{key}_compiled_peak_memory_gib", row.compiled_peak, "GiB", notes=compile_note)
    rows.append(Row("whole check", "s", time.perf_counter() - started, notes=compile_note))
    emit(f"{p}_total_s", time.perf_counter() - started, "s", notes=compile_note)
    say("done")
    return rows


def aoti_phase(settings: CheckSettings, loaded, requests, device, started: float, emit, say):
    """AoTI-compile (``pipeline.aoti_compile``, what ZeroGPU runs), then time each request.

    Returns (timing of ``requests[0]``, of ``requests[1]``, note); a request gets None ("not compiled")
    unless every UNet call of its renders ran the program, a LoRA request with its LoRA fused.
    """
    from benchmarks import gpu_bench
    from headshot.gpu import pipeline

    if device.type != "cuda":
        return None, None, f"not compiled: AoTI (spaces.aoti_compile) needs CUDA, not {device.type}"
    if time.perf_counter() - started + settings.aoti_reserve_s > settings.budget_s:
        return None, None, f"skipped: AoTI compiling would not fit the {settings.budget_s:.0f} s budget"
    say("AoTI-compiling the UNet and the IdentityNet (spaces.aoti_compile)")
    begun = time.perf_counter()
    try:
        pipeline.aoti_compile(loaded)
    except Exception as exc:  # reported in the table: the cells say "not compiled"
        return None, None, f"not compiled: AoTI failed ({type(exc).__name__}: {exc})"
    note = f"AoTI (spaces.aoti_compile, {time.perf_counter() - begun:.0f} s to compile)"
    emit(f"{settings.prefix}_aoti_compile_s", time.perf_counter() - begun, "s", notes=note)
    forward, results = loaded.pipe.unet.forward, []
    for request in requests:
        before = dict(forward.calls)
        say(f"ours AoTI-compiled{' with a LoRA' if request.lora else ''}, {settings.size} px")
        result = gpu_bench.timed(
            lambda r=request: pipeline.render_on(loaded, r), device, settings.repeats, settings.warmup
        )
        fused = request.lora is None or forward.calls["lora"] > before["lora"]
        if forward.calls["eager"] > before["eager"] or not fused:
            note += f"; {'the LoRA' if request.lora else 'the default'} request's UNet ran eager: not compiled"
            result = None
        results.append(result)
    return results[0], results[1], note


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: the code path only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes on the GPU (the -m gpu test)")
    parser.add_argument("--no-compile", action="store_true", help="eager figures only")
    parser.add_argument("--aoti", action="store_true", help="compile with AoTI (ZeroGPU's) instead of torch.compile")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode (default: HEADSHOT_COMPILE=1's)")
    parser.add_argument("--compile-scope", choices=("regional", "full"), default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed renders after the warm-up")
    parser.add_argument("--budget-s", type=float, help="target seconds (480); compiling must fit in it")
    parser.add_argument("--table", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def settings_from(args: argparse.Namespace) -> CheckSettings:
    settings = CheckSettings.smoke() if (args.cpu_smoke or args.quick) else CheckSettings()
    overrides = {
        "compile": not args.no_compile,
        "aoti": args.aoti or None,
        "compile_mode": args.compile_mode,
        "compile_scope": args.compile_scope,
        "repeats": args.repeats,
        "budget_s": args.budget_s,
    }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: Sequence[str] | None = None, stream=None) -> int:
    """Run the check; the exit code: 0, or 2 without CUDA (and without ``--cpu-smoke``)."""
    started = time.perf_counter()
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: every module is built here
    import torch

    from benchmarks.run import Emitter

    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # tiny modules: one thread is as fast, and fair on a shared machine
    elif not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE, file=sys.stderr)
        return NO_CUDA_EXIT
    else:
        device = torch.device("cuda")
    settings = settings_from(args)
    emit = Emitter(stream)
    rows = check(settings, emit, device, started)
    today = datetime.date.today().isoformat()
    kind = " (tiny sizes: numbers meaningless)" if settings.reduced else ""
    title = f"**gpu_check.py** on {device_name(device)}, {today}, torch {torch.__version__}{kind}"
    text = markdown(rows, title)
    print("\n" + text, file=sys.stderr, flush=True)
    if args.table:
        args.table.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
