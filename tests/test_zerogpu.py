"""The emulated ZeroGPU (``HEADSHOT_ZEROGPU_EMULATE=1``) and the GPU paths it exposes, in-process.

Every GPU call runs in a forked worker with pickled arguments and results, past its duration it is
killed, and beyond the quota it is refused: the app's flows must work under those rules, report
progress across the boundary, and lose no LoRA training when a call is refused.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from headshot import errors, models, pipeline, sessions, studio, zerogpu

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture
def emulated(monkeypatch):
    """ZeroGPU's rules for this test, with a generous quota (each test sets its own when it matters)."""
    monkeypatch.setenv("HEADSHOT_ZEROGPU_EMULATE", "1")
    monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))
    return zerogpu


@pytest.fixture(scope="module")
def obama(faces_dir) -> list[Path]:
    return sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))


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


def test_the_quota_is_charged_on_the_requested_duration_and_comes_back():
    quota = zerogpu.Quota(100, window=0.5)
    quota.admit(60)
    with pytest.raises(errors.GpuQuotaExceeded, match="40 s left, this step needs 61 s"):
        quota.admit(61)
    quota.admit(40)  # exactly what is left
    assert quota.left() == 0
    time.sleep(0.6)
    assert quota.left() == 100


def test_quota_settings(monkeypatch):
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA", "pro")
    assert zerogpu.Quota.from_env().seconds == 2400
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA", "45")
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA_WINDOW", "30")
    quota = zerogpu.Quota.from_env()
    assert (quota.seconds, quota.window) == (45, 30)
    monkeypatch.setenv("HEADSHOT_ZEROGPU_QUOTA", "plenty")
    with pytest.raises(errors.InvalidRequest, match="HEADSHOT_ZEROGPU_QUOTA"):
        zerogpu.Quota.from_env()


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


def test_lora_training_streams_its_steps_and_chunks_by_steps_left(obama, analyzer, emulated, monkeypatch):
    monkeypatch.setenv("HEADSHOT_LORA_STEPS_PER_CALL", "3")
    asked: list[float] = []
    real_admit = zerogpu.Quota.admit
    monkeypatch.setattr(zerogpu.Quota, "admit", lambda self, s: asked.append(s) or real_admit(self, s))
    seen: list[str] = []
    result = studio.create_identity(
        obama[:3], "lora", lora_steps=7, analyzer=analyzer, progress=lambda f, d="": seen.append(d)
    )
    assert result.summary["steps_run"] == 7
    assert len(asked) == 3 and asked[0] == asked[1] > asked[2]  # 3 + 3 + 1 steps: the last asks less
    assert any("step 7 of 7, loss" in desc for desc in seen)


def test_a_refused_chunk_loses_nothing_and_continues_to_the_same_weights(
    obama, analyzer, emulated, monkeypatch
):
    monkeypatch.setenv("HEADSHOT_LORA_STEPS_PER_CALL", "3")
    whole = studio.create_identity(obama[:3], "lora", lora_steps=7, seed=5, analyzer=analyzer).identity.lora

    per_call = pipeline._train_duration(None, None, pipeline.lora_settings(steps=3), None, 7)
    monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(per_call * 1.5))  # room for one call only
    mine, someone_else = sessions.Session(), sessions.Session()
    with pytest.raises(errors.TrainingPaused, match="saved at step 3 of 7") as paused:
        studio.create_identity(obama[:3], "lora", lora_steps=7, seed=5, analyzer=analyzer, session=mine)
    assert "GPU time" in paused.value.message
    assert studio.paused_training(mine) == {"steps_done": 3, "steps_total": 7}
    assert studio.paused_training(someone_else) is None
    with pytest.raises(errors.InvalidRequest, match="no paused"):
        studio.continue_identity(someone_else)

    monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))  # the next day
    finished = studio.continue_identity(mine)
    assert finished.summary["steps_run"] == 7 and studio.paused_training(mine) is None
    assert mine.owns(finished.path)  # the identity file is the session's, deleted with it
    assert finished.identity.lora.keys() == whole.keys()
    assert all(torch.equal(finished.identity.lora[k], whole[k]) for k in whole)


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
    assert studio.paused_training(session) is not None
    session.delete()  # Delete my data drops the paused training (selfie crops, weights) too
    assert studio.paused_training(session) is None


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
