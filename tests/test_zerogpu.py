"""The emulated ZeroGPU (``HEADSHOT_ZEROGPU_EMULATE=1``) and the GPU paths it exposes, in-process.

Every GPU call runs in a forked worker with pickled arguments and results, past its duration it is
killed, and beyond the quota it is refused: the app's flows must work under those rules, report
progress across the boundary, and lose no LoRA training when a call is refused.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import types
from datetime import timedelta
from importlib.resources import files

import numpy as np
import pytest
import torch

from headshot import config, errors, sessions, studio
from headshot.gpu import lora, models, pipeline, sizing, zerogpu
from headshot.paused import paused_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def identity(obama, analyzer):
    return studio.create_identity(obama[:3], "instantid", analyzer=analyzer).identity


# --------------------------------------------------------------------------------------
# The platform's rules
# --------------------------------------------------------------------------------------


def _in_worker(value):
    yield ("result", (os.getpid(), value))


def _sleeps(seconds):
    time.sleep(seconds)
    yield ("result", "too late")


def _fails():
    raise errors.InvalidRequest("refused inside the worker")
    yield  # pragma: no cover - a generator function


def _drain(events):
    return pipeline._drain(events, None)


def test_a_call_runs_in_another_process_and_crosses_by_pickle(emulated):
    pid, value = _drain(zerogpu.gpu(5)(_in_worker)({"a": np.arange(3)}))
    assert pid != os.getpid() and value["a"].tolist() == [0, 1, 2]
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        _drain(zerogpu.gpu(5)(_in_worker)(lambda: None))  # a closure cannot cross, as on ZeroGPU


def test_errors_in_the_worker_reach_the_caller(emulated):
    with pytest.raises(errors.InvalidRequest, match="refused inside the worker"):
        _drain(zerogpu.gpu(5)(_fails)())


def test_a_call_past_its_duration_is_stopped(emulated, monkeypatch):
    monkeypatch.setattr(zerogpu, "GRACE_SECONDS", 0.2)
    started = time.monotonic()
    with pytest.raises(errors.GpuAborted, match="ran past the 1 s"):
        _drain(zerogpu.gpu(1)(_sleeps)(30))
    assert time.monotonic() - started < 10


def test_admission_on_the_requested_duration_the_charge_on_the_effective_time():
    """As ZeroGPU: admitted while the requested duration (x1.5 on a half GPU) fits in what is left,
    reserved while it runs, then charged the seconds it ran; all of it back a window after first use."""
    quota = zerogpu.Quota(100, window=0.5)
    assert zerogpu.requested_quota(60) == 90 and zerogpu.requested_quota(60, "xlarge") == 120
    first = quota.admit(60)  # asks 90 of 100
    assert quota.left() == 10  # reserved while it runs
    assert quota.settle(first, 3.5) == 3.5 and quota.left() == 96.5  # charged what it ran
    second = quota.admit(64)  # 96 <= 96.5: admitted
    with pytest.raises(zerogpu.PlatformError, match=r"\(2s requested vs\. 0s left\)") as refused:
        quota.admit(1)
    assert refused.value.title == "ZeroGPU quota exceeded"
    quota.settle(second, 10)
    assert quota.charges == [(90, 3.5), (96, 10.0)]
    time.sleep(0.6)
    assert quota.left() == 100 and quota.wait() == 0


def test_xlarge_costs_twice_and_a_call_bigger_than_the_quota_is_illegal():
    quota = zerogpu.Quota(300)
    ticket = quota.admit(40, "xlarge")
    assert quota.left() == 220
    assert quota.settle(ticket, 45, "xlarge") == 90  # "a 45s effective task duration consumes 90s of quota"
    with pytest.raises(zerogpu.PlatformError, match=r"The requested GPU duration \(450s\) is larger") as refused:
        quota.admit(300)
    assert refused.value.title == "ZeroGPU illegal duration"


def test_quota_settings(monkeypatch):
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA", "pro")
    assert (zerogpu.Quota.from_env().seconds, zerogpu.Quota.from_env().auth) == (2400, "pro")
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA", "free")
    assert (zerogpu.Quota.from_env().seconds, zerogpu.Quota.from_env().auth) == (300, "regular")
    monkeypatch.delenv("HEADSHOT_ZEROGPU_QUOTA")
    assert (zerogpu.Quota.from_env().seconds, zerogpu.Quota.from_env().auth) == (120, None)
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA", "45")
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA_WINDOW", "30")
    quota = zerogpu.Quota.from_env()
    assert (quota.seconds, quota.window) == (45, 30)
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA", "plenty")
    with pytest.raises(errors.InvalidRequest, match="HEADSHOT_ZEROGPU_QUOTA"):
        zerogpu.Quota.from_env()


# The platform's own words: spaces 0.51.3's schedule() with its API answered by a stand-in


class _Headers(dict):  # spaces reads gradio's request headers (an object with a __dict__)
    pass


def _spaces_refusal(monkeypatch, *, left, wait, auth, duration, size="large", api_call=True):
    """The exception ``spaces.zero.client.schedule`` raises when its API answers "over quota", on the
    docs' hardware (RTX Pro 6000: ``large`` asks 1.5x its duration)."""
    client = pytest.importorskip("spaces.zero.client")
    from spaces.zero.api import QuotaInfos, ScheduleMetadata

    rtx = next(c for c in json.loads(files("spaces.zero").joinpath("configs.json").read_text()) if "RTX" in c["model"])
    asked = {}

    class Api:
        def schedule(self, **params):
            asked.update(params)
            return QuotaInfos(left=left, wait=wait), ScheduleMetadata(auth=auth, approve_result="quota-exceeded")

    monkeypatch.setattr(client, "api_client", Api)
    monkeypatch.setattr(client.config, "get_config", lambda: rtx)
    monkeypatch.setattr(client.utils, "self_cgroup_device_path", lambda: "/cgroup")
    monkeypatch.setattr(client, "_is_api_call", lambda request: api_call)
    request = types.SimpleNamespace(headers=_Headers({"x-ip-token": "a-visitor"}))
    with pytest.warns(UserWarning), pytest.raises(Exception) as raised:  # the token is no JWT: a warning
        client.schedule(task_id=1, request=request, duration=timedelta(seconds=duration), gpu_size=size)
    return raised.value, asked


@pytest.mark.parametrize(
    "tier, auth, left, wait, duration, size, api_call",
    [
        ("unauthenticated", None, 17, timedelta(hours=23, minutes=59, seconds=3), 40, "large", True),
        ("free", "regular", 120, timedelta(hours=3, seconds=5), 90, "large", True),
        ("pro", "pro", 30, timedelta(days=1, seconds=1), 40, "xlarge", False),
    ],
)
def test_the_emulation_refuses_in_spaces_words_and_the_app_reads_them(
    monkeypatch, tier, auth, left, wait, duration, size, api_call
):
    """The emulation's refusal is, word for word, what spaces raises for the same answer; the app turns
    both into a GpuQuotaExceeded with requested, left and when GPU time returns, in plain words."""
    platform, asked = _spaces_refusal(
        monkeypatch, left=left, wait=wait, auth=auth, duration=duration, size=size, api_call=api_call
    )
    assert type(platform).__name__ == "Error" and platform.title == zerogpu.QUOTA_TITLE  # gradio.Error
    requested = zerogpu.requested_quota(duration, size)
    assert asked["duration_seconds"] * (2 if size == "xlarge" else 1) == requested
    emulated = zerogpu.quota_message(requested, left, wait, auth, api_call)
    assert platform.message == emulated

    quota = zerogpu.Quota(requested + left, tier=tier, api_call=api_call)
    quota.settle(quota.admit(duration, size), requested / (2 if size == "xlarge" else 1), size)  # uses all but left
    quota.started = time.monotonic() - (quota.window - wait.total_seconds())  # first used a while ago
    with pytest.raises(zerogpu.PlatformError) as refused:
        quota.admit(duration, size)
    assert refused.value.message == emulated

    for raised in (platform, refused.value):
        with pytest.raises(errors.GpuQuotaExceeded) as mapped:
            pipeline._drain(_refused_by(raised), None)
        error = mapped.value
        assert (error.requested, error.left) == (requested, left)
        assert error.retry_after == pytest.approx(wait.total_seconds(), abs=1)
        text = error.message
        assert f"needs {requested} s" in text and f"{left} s are left" in text and "again in about" in text
        assert "/" not in text.replace(" UTC)", "") and "ZeroGPU" not in text  # no links, no jargon


def _refused_by(exc):
    raise exc
    yield  # pragma: no cover - a generator function, as the GPU functions are


@pytest.mark.parametrize(
    "words, kind, requested",
    [
        ("The requested GPU duration (180s) is larger than the maximum allowed", errors.GpuQuotaExceeded, 180),
        ("You have exceeded your ZeroGPU runs limit. ", errors.GpuQuotaExceeded, None),
        ("Space app has reached its GPU limit. Try re-running outside of examples", errors.GpuQuotaExceeded, None),
        ("No GPU was available after 60s. Retry later", errors.GpuAborted, None),
        ("GPU task aborted", errors.GpuAborted, None),
    ],
)
def test_the_platforms_other_refusals_read_as_plain_errors(words, kind, requested):
    error = zerogpu.user_error(zerogpu.PlatformError(words))
    assert type(error) is kind and error.message and "ZeroGPU" not in error.message
    assert getattr(error, "requested", None) == requested and getattr(error, "retry_after", None) is None
    assert zerogpu.user_error(ValueError("unrelated quota words")) is None


# --------------------------------------------------------------------------------------
# The app's GPU entry points under those rules
# --------------------------------------------------------------------------------------


def test_each_gpu_entry_points_real_arguments_pickle(identity, obama, analyzer, monkeypatch):
    """The arguments studio really passes to each GPU function (from real requests) pickle, and so do
    the results; the request holds no callback."""
    seen: dict[str, tuple] = {}
    for name in ("_render_on_gpu", "_train_on_gpu"):
        real = getattr(pipeline, name)

        def spy(*args, _name=name, _real=real, **kwargs):
            seen[_name] = (args, kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(pipeline, name, spy)
    options = studio.GenerateOptions(seed=4, steps=2, lora_strength=0.8)
    person = studio.create_identity(obama[:3], "lora", lora_steps=2, analyzer=analyzer).identity
    studio.generate_pack(person, ["corporate-grey", "classic-bw"], 1, options, analyzer=analyzer)
    assert set(seen) == {"_render_on_gpu", "_train_on_gpu"}
    for args in seen.values():
        restored = pickle.loads(pickle.dumps(args))
        assert len(restored[0]) == len(args[0])
    requests = seen["_render_on_gpu"][0][0]
    assert len(requests) == 2 and requests[0].lora["state_dict"] is requests[1].lora["state_dict"]
    key = models.cache_key(pipeline.ready_models(embedding_size=int(identity.embedding.size)))
    assert key is not None and pickle.loads(pickle.dumps(key)) == key  # _aoti_build_on_gpu's argument


def test_generate_and_pack_under_emulation_equal_the_plain_renders(identity, analyzer, emulated):
    options = studio.GenerateOptions(num_images=2, seed=9, steps=2)
    seen: list[tuple[float, str]] = []
    result = studio.generate(
        identity, "corporate-grey", options, analyzer=analyzer, progress=lambda f, d="": seen.append((f, d))
    )
    assert len(result.headshots) == 2
    assert any("Image 2 of 2" in desc for _, desc in seen) and seen[-1][0] == 1.0
    emulated_pixels = sorted(np.asarray(h.image).tobytes() for h in result.headshots)
    os.environ.pop("HEADSHOT_ZEROGPU_EMULATE")
    plain = studio.generate(identity, "corporate-grey", options, analyzer=analyzer)
    assert emulated_pixels == sorted(np.asarray(h.image).tobytes() for h in plain.headshots)


def test_fast_mode_under_emulation(identity, analyzer, emulated):
    options = studio.GenerateOptions(seed=2, fast=True)
    assert len(studio.generate(identity, "tech-casual", options, analyzer=analyzer).headshots) == 1


@pytest.mark.forks_training
def test_lora_training_streams_its_steps_and_chunks_by_steps_left(obama, analyzer, emulated, monkeypatch):
    monkeypatch.setenv("HEADSHOT_LORA_STEPS_PER_CALL", "3")
    asked: list[float] = []
    real_admit = zerogpu.Quota.admit
    monkeypatch.setattr(zerogpu.Quota, "admit", lambda self, s, *size: asked.append(s) or real_admit(self, s, *size))
    seen: list[str] = []
    result = studio.create_identity(
        obama[:3], "lora", lora_steps=7, analyzer=analyzer, progress=lambda f, d="": seen.append(d)
    )
    assert result.summary["steps_run"] == 7
    assert len(asked) == 3 and asked[0] == asked[1] > asked[2]  # 3 + 3 + 1 steps: the last asks less
    assert any("step 7 of 7, loss" in desc for desc in seen)


@pytest.mark.forks_training
def test_a_refused_chunk_loses_nothing_and_continues_to_the_same_weights(
    obama, analyzer, emulated, monkeypatch
):
    monkeypatch.setenv("HEADSHOT_LORA_STEPS_PER_CALL", "3")
    whole = studio.create_identity(obama[:3], "lora", lora_steps=7, seed=5, analyzer=analyzer).identity.lora

    per_call = sizing.train_duration(None, None, lora.lora_settings(steps=3), None, 7)
    monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(per_call * 1.5))  # room for one call only
    mine, someone_else = sessions.Session(), sessions.Session()
    with pytest.raises(errors.TrainingPaused, match="saved at step 3 of 7") as paused:
        studio.create_identity(obama[:3], "lora", lora_steps=7, seed=5, analyzer=analyzer, session=mine)
    assert "GPU time" in paused.value.message
    assert paused_training(mine) == {"steps_done": 3, "steps_total": 7}
    assert paused_training(someone_else) is None
    with pytest.raises(errors.InvalidRequest, match="no paused"):
        studio.continue_identity(someone_else)

    monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))  # the next day
    finished = studio.continue_identity(mine)
    assert finished.summary["steps_run"] == 7 and paused_training(mine) is None
    assert mine.owns(finished.path)  # the identity file is the session's, deleted with it
    assert finished.identity.lora.keys() == whole.keys()
    assert all(torch.equal(finished.identity.lora[k], whole[k]) for k in whole)


@pytest.mark.forks_training
def test_an_aborted_chunk_pauses_too(obama, analyzer, emulated, monkeypatch):
    monkeypatch.setenv("HEADSHOT_LORA_STEPS_PER_CALL", "3")
    calls = {"n": 0}
    real = pipeline._train_on_gpu

    def abort_second(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise errors.GpuAborted("The GPU step ran past the 20 s it asked for and was stopped.")
        return real(*args)

    monkeypatch.setattr(pipeline, "_train_on_gpu", abort_second)
    session = sessions.Session()
    with pytest.raises(errors.TrainingPaused, match="saved at step 3 of 7"):
        studio.create_identity(obama[:3], "lora", lora_steps=7, analyzer=analyzer, session=session)
    assert paused_training(session) is not None
    session.delete()  # Delete my data drops the paused training (selfie crops, weights) too
    assert paused_training(session) is None


def test_a_pack_reports_style_n_of_m_and_a_time_left_from_the_gpu_estimate(identity, analyzer, emulated):
    """Under ZeroGPU's rules the first report already says how long: the estimate the GPU call asks for."""
    options = studio.GenerateOptions(seed=3, steps=2)
    seen: list[tuple[float, str]] = []
    studio.generate_pack(
        identity, ["corporate-grey", "classic-bw"], 2, options, analyzer=analyzer,
        progress=lambda f, d="": seen.append((f, d)),
    )
    texts = [d for _, d in seen]
    assert texts[0].startswith("Starting: 4 images to render · about ") and texts[0].endswith(" s left")
    assert any(t.startswith("Style 1 of 2, ") and "image 2 of 2" in t for t in texts)
    assert any(t.startswith("Style 2 of 2, ") for t in texts)
    assert all(" left" in t or "almost done" in t for t in texts[:-2])
    assert texts[-2:] == ["Checking the likeness of each headshot", "4 headshots ready"]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # the bar never goes back


def test_a_free_visitors_flow_leaves_quota_and_is_charged_the_time_its_calls_ran(
    obama, analyzer, emulated, monkeypatch
):
    """The free tier (5 min a day): InstantID, 4 headshots, a 2-style pack leave quota; each call is charged
    the time it ran (timed here around each GPU call), not the duration it asked; once the day is used, the
    refusal says what the step needs, what is left and when GPU time returns."""
    quota = zerogpu.Quota(300, tier="free")
    monkeypatch.setattr(zerogpu, "_quota", quota)
    ran: list[float] = []
    real = zerogpu._call_in_worker

    def timed(*args):
        started = time.monotonic()
        try:
            yield from real(*args)
        finally:
            ran.append(time.monotonic() - started)

    monkeypatch.setattr(zerogpu, "_call_in_worker", timed)
    person = studio.create_identity(obama[:3], "instantid", analyzer=analyzer).identity
    options = studio.GenerateOptions(num_images=4, seed=1, steps=2)
    assert len(studio.generate(person, "corporate-grey", options, analyzer=analyzer).headshots) == 4
    studio.generate_pack(person, ["corporate-grey", "classic-bw"], 1, options, analyzer=analyzer)
    charged = [charge for _, charge in quota.charges]
    assert len(charged) == len(ran) >= 2
    for charge, seconds in zip(charged, ran, strict=True):
        assert seconds - 0.5 <= charge <= seconds  # the time it ran (less the admission and the fork)
    assert all(charge < requested for requested, charge in quota.charges)  # not what it asked
    assert quota.left() == pytest.approx(300 - sum(charged)) and quota.left() > 200

    quota.used = 295  # the day is used but for 5 s
    with pytest.raises(errors.GpuQuotaExceeded) as refused:
        studio.generate(person, "corporate-grey", options, analyzer=analyzer)
    error = refused.value
    assert error.requested == zerogpu.requested_quota(sizing.estimate_duration([_tiny_request(4)])) > 5
    assert error.left == 5 and 0 < error.retry_after <= zerogpu.DAY_SECONDS
    assert f"needs {error.requested:.0f} s of GPU time and 5 s are left" in error.message
    assert "again in about 24 h" in error.message and "PRO" in error.message


def _tiny_request(num_images):
    from headshot.gpu.recipe import RenderRequest

    size = config.TINY_OUTPUT_SIZES["square"]
    return RenderRequest(
        prompt="p", negative_prompt="", face_embedding=np.ones(4), control_image=None, width=size[0],
        height=size[1], num_images=num_images, steps=2,
    )  # fmt: skip
