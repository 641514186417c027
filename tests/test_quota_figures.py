"""What a visitor's daily ZeroGPU quota buys: every GPU call asks what it needs and fits the smallest
tier, and the README's headshots-a-day table is what ``benchmarks/zerogpu_quota.py`` computes from the
estimates (a change of estimate without the README fails here)."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

from headshot import config
from headshot.gpu import sizing, zerogpu

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("zerogpu_quota", ROOT / "benchmarks" / "zerogpu_quota.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_no_call_asks_more_than_the_smallest_tier_can_admit():
    smallest = min(config.ZEROGPU_QUOTA_SECONDS.values())
    assert zerogpu.requested_quota(config.ZEROGPU_MAX_DURATION) <= smallest
    assert sizing.lora_steps_per_call() * config.ZEROGPU_LORA_SECONDS_PER_STEP > 0
    pack = [dataclasses.replace(bench.default_request(4), seed=s) for s in (0, 100)]  # a 2-style pack
    for call in sizing.gpu_calls(pack):
        asked = sizing.estimate_duration([part for _, part in call])
        assert zerogpu.requested_quota(asked) <= smallest
    for asked, _ in bench.train_calls(config.ZEROGPU_LORA_STEPS):
        assert zerogpu.requested_quota(asked) <= smallest


def test_a_call_asks_for_its_work_and_is_charged_less_than_it_asks():
    """Durations follow the work (not a flat maximum); the expected charge is under the duration asked."""
    asked = [bench.render_calls(bench.default_request(n))[0][0] for n in (1, 2, 3)]
    assert asked[0] < asked[1] < asked[2] < config.ZEROGPU_MAX_DURATION
    for n in (1, 4):
        for duration, charge in bench.render_calls(bench.default_request(n)):
            assert config.ZEROGPU_CALL_SECONDS < charge < duration
    steps = [duration for duration, _ in bench.train_calls(config.ZEROGPU_LORA_STEPS)]
    assert len(steps) == 2 and steps[0] == config.ZEROGPU_MAX_DURATION > steps[1]  # the rest asks less


def test_more_quota_more_headshots():
    rows = {row["tier"]: row for row in bench.figures()}
    assert rows["unauthenticated"]["headshots_1_at_a_time"] >= 5  # a visitor can try the app
    for key in ("headshots_1_at_a_time", "headshots_4_at_a_time", "fast_headshots", "lora_trainings"):
        assert rows["unauthenticated"][key] <= rows["free"][key] <= rows["pro"][key]
    assert rows["pro"]["fast_headshots"] > rows["pro"]["headshots_1_at_a_time"]


def test_the_readme_table_is_the_benchmarks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    printed = bench.table(bench.figures())
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(config.ZEROGPU_QUOTA_SECONDS)  # the header and a row per tier
    for line in [printed.splitlines()[0], *rows]:
        assert line in readme, f"README.md lacks this line of `python benchmarks/zerogpu_quota.py`:\n{line}"
    assert re.search(r"python benchmarks/zerogpu_quota\.py", readme)
