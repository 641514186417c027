"""Headshots a day per ZeroGPU tier, from the duration estimates (no GPU, no models: arithmetic on the app's
own code).

Every GPU call of the app's default render (1024x1024, 30 steps, guidance 5, face region on) is put
through the emulated quota (``zerogpu.Quota``, the platform's rules: admitted when the requested duration
fits in what is left, charged the effective seconds) with the durations ``pipeline`` asks for and the
charges it expects (``sizing.expected_charge``), until the platform would refuse. A request whose calls
are not all admitted renders nothing (its images count for nothing; what ran is charged). The figures are
only as good as the estimates (``config.ZEROGPU_*``), which are not yet measured on ZeroGPU.

    python benchmarks/zerogpu_quota.py            # the markdown table (the README's)
    python benchmarks/zerogpu_quota.py --json     # one JSON line per tier
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image

from headshot import config
from headshot.gpu import lora, sizing, zerogpu
from headshot.gpu.recipe import RenderRequest

STYLE_STEPS, STYLE_GUIDANCE = 30, 5.0  # every style's default but one (styles/*.toml)
LORA_STEPS = config.ZEROGPU_LORA_STEPS


def default_request(num_images: int, fast: bool = False) -> RenderRequest:
    width, height = config.OUTPUT_SIZES["square"]
    return RenderRequest(
        prompt="a studio headshot",
        negative_prompt="",
        face_embedding=np.ones(512, dtype=np.float32),
        control_image=Image.new("RGB", (width, height)),
        width=width,
        height=height,
        num_images=num_images,
        steps=config.FAST_MAX_STEPS if fast else STYLE_STEPS,
        guidance=STYLE_GUIDANCE,
        fast=fast,
        face_mask=Image.new("L", (width, height), 255),
    )


def _admitted(quota: zerogpu.Quota, calls: list[tuple[float, float]]) -> bool:
    """Run a request's calls (asked, charged) through ``quota``; False at the first refused call."""
    for asked, charged in calls:
        try:
            ticket = quota.admit(asked)
        except zerogpu.PlatformError:
            return False
        quota.settle(ticket, charged)
    return True


def render_calls(request: RenderRequest) -> list[tuple[float, float]]:
    """(duration asked, seconds expected to be charged) of each GPU call that renders ``request``."""
    parts = [[part for _, part in call] for call in sizing.gpu_calls([request])]
    return [(sizing.estimate_duration(p), sizing.expected_charge(p)) for p in parts]


def train_calls(steps: int) -> list[tuple[float, float]]:
    settings = lora.lora_settings(steps=steps)
    per_call, calls, done = sizing.lora_steps_per_call(), [], 0
    while done < steps:
        chunk = min(per_call, steps - done)
        settings.steps = done + chunk
        resume = None if done == 0 else type("State", (), {"step": done})()
        calls.append((sizing.train_duration(None, None, settings, resume, steps), sizing.expected_train_charge(chunk)))
        done += chunk
    return calls


def per_day(seconds: float, calls: list[tuple[float, float]], then: list[tuple[float, float]] | None = None) -> int:
    """How many times a day ``calls`` (then ``then``, once they no longer fit) are admitted."""
    quota, count = zerogpu.Quota(seconds), 0
    for each in (calls, then):
        while each is not None and _admitted(quota, each):
            count += 1
    return count


def figures() -> list[dict]:
    one, four = render_calls(default_request(1)), render_calls(default_request(4))
    fast = render_calls(default_request(1, fast=True))
    lora = train_calls(LORA_STEPS)
    rows = []
    for tier, seconds in config.ZEROGPU_QUOTA_SECONDS.items():
        ones = per_day(seconds, one)
        fours = per_day(seconds, four)
        four_then_one = per_day(seconds, four, one) - fours  # the single images after the last 4
        rows.append({
            "tier": tier,
            "quota_s": seconds,
            "headshots_1_at_a_time": ones,
            "headshots_4_at_a_time": 4 * fours + four_then_one,
            "fast_headshots": per_day(seconds, fast),
            "lora_trainings": per_day(seconds, lora),
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    (asked, charged), = render_calls(default_request(1))
    (asked4, charged4), = render_calls(default_request(4))
    lines = [
        f"One default headshot asks {asked:.0f} s ({zerogpu.requested_quota(asked)} s of quota at admission) "
        f"and should be charged {charged:.1f} s; four in one call ask {asked4:.0f} s "
        f"({zerogpu.requested_quota(asked4)} s) and should be charged {charged4:.1f} s.",
        "",
        "| tier | GPU time a day | headshots, 1 at a time | headshots, 4 at a time (then 1) | fast mode | LoRA trainings |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['tier']} | {row['quota_s'] // 60} min | {row['headshots_1_at_a_time']} | "
            f"{row['headshots_4_at_a_time']} | {row['fast_headshots']} | {row['lora_trainings']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON line per tier instead of the table")
    args = parser.parse_args(argv)
    rows = figures()
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(table(rows))
    return rows


if __name__ == "__main__":
    main()
