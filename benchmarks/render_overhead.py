"""What ``pipeline.render`` costs on top of a bare diffusers call, side by side.

Both sides use the same loaded tiny models (``HEADSHOT_PROFILE=tiny``, built on first use), the same
size, steps, guidance and scheduler (DPM++ 2M Karras), one image per call:

* ``render``: ``headshot.pipeline.render(request)`` (request checks, per-request configuration,
  prompt and face encoding, the InstantID IdentityNet wrapper, denoising, decoding);
* ``bare``: one ``StableDiffusionXLControlNetPipeline.__call__`` on the same modules with the same
  face embedding as ``ip_adapter_image_embeds`` (its ControlNet gets the text, as stock diffusers does).

Calls alternate (bare, render, bare, render, ...) after a warm-up so drift hits both alike; the
ratio of the medians is printed last as JSON: ``{"name": "render_overhead_ratio", "value": ..., "unit": "x"}``.

    python benchmarks/render_overhead.py [--steps 20] [--size 64] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HEADSHOT_PROFILE", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from headshot import imaging
from headshot.gpu import instantid, pipeline, recipe

EMBEDDING_SIZE = 128


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave the default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    models = pipeline.ready_models(embedding_size=EMBEDDING_SIZE)
    rng = np.random.default_rng(0)
    face = rng.standard_normal(EMBEDDING_SIZE).astype(np.float32)
    face /= np.linalg.norm(face)
    kps = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.41, 0.68], [0.59, 0.68]]) * args.size
    control = imaging.draw_kps(args.size, args.size, kps)
    request = recipe.RenderRequest(
        prompt="a studio portrait photo of a person",
        negative_prompt="blurry",
        face_embedding=face,
        control_image=control,
        width=args.size,
        height=args.size,
        num_images=1,
        seed=1,
        steps=args.steps,
        guidance=5.0,
    )

    pipe = models.pipe
    bare = type(pipe)(
        **{**pipe.components, "scheduler": recipe._scheduler(pipe.scheduler.config, fast=False)},
        add_watermarker=False,
    )
    bare.set_progress_bar_config(disable=True)
    embeds = instantid.face_image_embeds(
        face, do_classifier_free_guidance=True, device=models.device, dtype=models.dtype
    )

    def run_bare():
        return bare(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            image=control,
            width=args.size,
            height=args.size,
            num_inference_steps=args.steps,
            guidance_scale=request.guidance,
            controlnet_conditioning_scale=request.identitynet_strength,
            ip_adapter_image_embeds=[embeds],
            generator=torch.Generator("cpu").manual_seed(request.seed),
        ).images

    def run_render():
        return pipeline.render(request)

    timings: dict[str, list[float]] = {"bare": [], "render": []}
    for _ in range(2):  # warm-up
        run_bare()
        run_render()
    for _ in range(args.repeats):
        for name, fn in (("bare", run_bare), ("render", run_render)):
            started = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - started)

    bare_s, render_s = statistics.median(timings["bare"]), statistics.median(timings["render"])
    print(
        f"tiny profile, {args.size}x{args.size}, {args.steps} steps, CFG, {torch.get_num_threads()} thread(s), "
        f"median of {args.repeats}"
    )
    print(f"  bare diffusers call : {bare_s * 1000:8.1f} ms")
    print(f"  pipeline.render     : {render_s * 1000:8.1f} ms")
    result = {"name": "render_overhead_ratio", "value": round(render_s / bare_s, 4), "unit": "x"}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
