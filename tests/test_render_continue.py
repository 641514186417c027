"""A generate or pack cut short by ZeroGPU loses nothing it paid for (issue 21's leftover).

On the emulated ZeroGPU a long request runs as several GPU calls; here the calls are sized (the duration limit
between one call's estimate and two's) so each style, or each image, is one call, and the quota admits the
first call but not the next, or the second call is stopped. The images of the earlier calls are scored,
written (signed), recorded in the session and returned, with ``info["incomplete"]`` saying how many of how many,
the refusal and when GPU time returns; Continue renders the rest with the seeds it would have had, so both
parts together are the uninterrupted run, pixel for pixel. Then the same through the endpoint and the page's
callbacks (no browser).
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from headshot import config, credentials, errors, results, sessions, studio
from headshot.gpu import pipeline, sizing, zerogpu
from headshot.paused import paused_render
from headshot.web import callbacks, endpoints

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

STYLES = ["corporate-grey", "classic-bw"]
ENDPOINT = re.compile(r"/?\b(?:continue_headshots|continue_identity|generate_pack|generate)\b")


@pytest.fixture(scope="module")
def identity(obama, analyzer):
    return studio.create_identity(obama[:3], "instantid", analyzer=analyzer).identity


def _calls_of(monkeypatch, requests, *, per: str) -> list[list]:
    """Size ZeroGPU's duration limit so each request (``per="style"``) or each image (``per="image"``) is a
    call of its own, as a long run on the real models is; returns the plan."""
    if per == "style":
        one, two = sizing.estimate_seconds(requests[:1]), sizing.estimate_seconds(requests[:2])
    else:
        first = requests[0]
        one = sizing.estimate_seconds([dataclasses.replace(first, num_images=1)])
        two = sizing.estimate_seconds([dataclasses.replace(first, num_images=2)])
    assert one < two
    monkeypatch.setattr(config, "ZEROGPU_MAX_DURATION", (one + two) / 2)
    return sizing.gpu_calls(requests)


def _room_for_one_call(monkeypatch, requests) -> zerogpu.Quota:
    """A quota that admits the first call (its requested duration, as the platform asks it) but, once that
    call is charged the seconds it ran, not the next."""
    first = sizing.gpu_calls(requests)[0]
    quota = zerogpu.Quota(zerogpu.requested_quota(sizing.estimate_duration([part for _, part in first])))
    monkeypatch.setattr(zerogpu, "_quota", quota)
    return quota


def _pixels(shots) -> dict[tuple[str, int], bytes]:
    return {(h.style, h.seed): np.asarray(h.image).tobytes() for h in shots}


def _pack_requests(identity, options, per_style):
    return [studio.build_request(identity, studio.get_style(s), options, options.seed, per_style) for s in STYLES]


def test_a_pack_refused_on_its_second_call_keeps_the_first_and_continue_makes_the_rest(
    identity, analyzer, emulated, monkeypatch
):
    options = studio.GenerateOptions(seed=7, steps=2)
    plan = _calls_of(monkeypatch, _pack_requests(identity, options, 2), per="style")
    assert [[i for i, _ in call] for call in plan] == [[0], [1]]
    whole = studio.generate_pack(identity, STYLES, 2, options, analyzer=analyzer)  # never stopped

    _room_for_one_call(monkeypatch, _pack_requests(identity, options, 2))
    own, someone_else = sessions.Session(), sessions.Session()
    try:
        cut = studio.generate_pack(identity, STYLES, 2, options, analyzer=analyzer, session=own)
        # The first call's images: scored, ranked, written signed, in the session and its gallery.
        assert [h.style for h in cut.headshots] == ["corporate-grey"] * 2
        assert cut.headshots == studio.rank(cut.headshots) and all(h.verdict for h in cut.headshots)
        for shot in cut.headshots:
            assert own.owns(shot.path) and str(shot.path) in own.files
            assert credentials.verify(shot.path)["status"] == "valid"
        assert {i.path for i in results.session_gallery(own, analyzer)} == {h.path for h in cut.headshots}
        with zipfile.ZipFile(cut.zip_path) as archive:
            assert sorted(archive.namelist()) == sorted([h.path.name for h in cut.headshots] + ["info.json"])
        incomplete = cut.info["incomplete"]
        assert (incomplete["made"], incomplete["requested"], incomplete["left"]) == (2, 4, 2)
        assert incomplete["code"] == "gpu_quota" and incomplete["can_continue"] is True
        assert incomplete["gpu_seconds_requested"] > incomplete["gpu_seconds_left"] >= 0
        assert 0 < incomplete["retry_after_s"] <= zerogpu.DAY_SECONDS and incomplete["gpu_back_at"].endswith("Z")
        assert "2 of 4 headshots" in incomplete["message"] and "GPU time is yours again in" in incomplete["message"]
        assert "continue_headshots" in incomplete["message"]  # what a program does next
        assert paused_render(own) == {"kind": "pack", "made": 2, "requested": 4}
        assert paused_render(someone_else) is None
        with pytest.raises(errors.InvalidRequest, match="no headshots left to finish"):
            studio.continue_headshots(someone_else, analyzer=analyzer)
        # Still no GPU time: Continue is refused as any first call is, and the rest stays saved.
        with pytest.raises(errors.GpuQuotaExceeded):
            studio.continue_headshots(own, analyzer=analyzer)
        assert paused_render(own) == {"kind": "pack", "made": 2, "requested": 4}

        monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))  # the next day
        rest = studio.continue_headshots(own, analyzer=analyzer)
        assert [h.style for h in rest.headshots] == ["classic-bw"] * 2
        assert "incomplete" not in rest.info and rest.info["continued"] == {"part": 2, "headshots_before": 2}
        assert paused_render(own) is None
        assert _pixels([*cut.headshots, *rest.headshots]) == _pixels(whole.headshots)
        with zipfile.ZipFile(rest.zip_path) as archive:  # the finished pack's ZIP holds all of it
            assert len([n for n in archive.namelist() if n.endswith(".png")]) == 4
        assert len(results.session_gallery(own, analyzer)) == 4
    finally:
        own.delete()


def test_a_generate_stopped_on_its_second_call_continues_now_to_the_same_images(
    identity, analyzer, emulated, monkeypatch
):
    options = studio.GenerateOptions(seed=11, steps=2, num_images=3)
    request = studio.build_request(identity, studio.get_style("corporate-grey"), options, 11, 3)
    assert [[p.seed for _, p in call] for call in _calls_of(monkeypatch, [request], per="image")] == [[11], [12], [13]]
    whole = studio.generate(identity, "corporate-grey", options, analyzer=analyzer)
    calls = {"n": 0}
    real = pipeline._render_on_gpu

    def abort_second(parts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise errors.GpuAborted("The GPU step ran past the 11 s it asked for and was stopped.")
        return real(parts)

    monkeypatch.setattr(pipeline, "_render_on_gpu", abort_second)
    own = sessions.Session()
    try:
        cut = studio.generate(identity, "corporate-grey", options, analyzer=analyzer, session=own)
        assert [h.seed for h in cut.headshots] == [11]
        incomplete = cut.info["incomplete"]
        assert (incomplete["made"], incomplete["left"], incomplete["code"]) == (1, 2, "gpu_aborted")
        assert incomplete["retry_after_s"] is None and "from this session now" in incomplete["message"]
        rest = studio.continue_headshots(own, analyzer=analyzer)
        assert sorted(h.seed for h in rest.headshots) == [12, 13] and rest.zip_path is None
        assert _pixels([*cut.headshots, *rest.headshots]) == _pixels(whole.headshots)
        assert paused_render(own) is None
    finally:
        own.delete()
    assert paused_render(own) is None


def test_best_of_keeps_a_style_once_its_candidates_are_all_made(identity, analyzer, emulated, monkeypatch):
    """Best of 2: refused after one candidate, no headshot is handed out yet (the best is not known), the
    candidate is saved, and Continue keeps the same best one as an uninterrupted run."""
    options = studio.GenerateOptions(seed=5, steps=2, num_images=1, best_of=2)
    request = studio.build_request(identity, studio.get_style("corporate-grey"), options, 5, 2)
    assert len(_calls_of(monkeypatch, [request], per="image")) == 2
    whole = studio.generate(identity, "corporate-grey", options, analyzer=analyzer)
    _room_for_one_call(monkeypatch, [request])
    own = sessions.Session()
    try:
        cut = studio.generate(identity, "corporate-grey", options, analyzer=analyzer, session=own)
        assert cut.headshots == [] and cut.info["incomplete"]["candidates_saved"] == 1
        assert "No headshot is finished yet" in callbacks.incomplete_notice(cut.info["incomplete"])
        monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))
        rest = studio.continue_headshots(own, analyzer=analyzer)
        assert _pixels(rest.headshots) == _pixels(whole.headshots) and len(rest.headshots) == 1
    finally:
        own.delete()


def test_without_a_session_the_run_still_returns_what_it_made(identity, analyzer, emulated, monkeypatch):
    options = studio.GenerateOptions(seed=3, steps=2)
    requests = _pack_requests(identity, options, 1)
    _calls_of(monkeypatch, requests, per="style")
    _room_for_one_call(monkeypatch, requests)
    cut = studio.generate_pack(identity, STYLES, 1, options, analyzer=analyzer)
    assert len(cut.headshots) == 1 and cut.headshots[0].path.is_file()
    assert cut.info["incomplete"]["can_continue"] is False and "seed 3" in cut.info["incomplete"]["message"]


def test_the_endpoint_and_the_page_show_the_notice_and_continue(obama, analyzer, emulated, monkeypatch):
    """Browser-free: the page's callbacks (generate_pack_page, continue_headshots_page) and /continue_headshots,
    in one session; the notice names no endpoint, Continue shows until the pack is whole."""
    state: dict = {}
    identity_path, _ = endpoints.create_identity([str(p) for p in obama[:3]], "instantid", session=state)
    identity = studio.open_identity(identity_path)
    requests = _pack_requests(identity, studio.GenerateOptions(seed=7), 2)  # the pack's: the styles' steps
    _calls_of(monkeypatch, requests, per="style")
    _room_for_one_call(monkeypatch, requests)
    try:
        pack_zip, gallery, _, info, notice, button = callbacks.generate_pack_page(
            identity_path, STYLES, 2, "", "", 7, linkedin=False, session=state
        )
        assert Path(pack_zip).suffix == ".zip" and len(gallery) == 2 and info["incomplete"]["made"] == 2
        assert notice.startswith("**GPU time ran out partway.** 2 of 4 headshots were made")
        assert "GPU time returns in about" in notice and "Continue headshots" in notice
        assert not ENDPOINT.search(notice), notice
        assert button["visible"] is True and button["value"] == "Continue headshots (2 of 4 made)"

        # The endpoint: no GPU time yet, so a refusal for programs; the page: a notice, Continue stays.
        with pytest.raises(endpoints.gr.Error, match="GPU time"):
            endpoints.continue_headshots(session=state)
        _, again, _, _, refused, still = callbacks.continue_headshots_page(session=state)
        assert len(again) == 2 and "Nothing more was made" in refused and still["visible"] is True
        assert not ENDPOINT.search(refused), refused

        monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))
        zip_path, shown, done = endpoints.continue_headshots(session=state)
        assert len(shown) == 2 and "incomplete" not in done and done["continued"]["part"] == 2
        with zipfile.ZipFile(zip_path) as archive:
            assert len([n for n in archive.namelist() if n.endswith(".png")]) == 4
        everything, _, _, quiet, hidden = callbacks.generate_page(
            identity_path, "corporate-grey", "", "", 1, 7, 2, session=state
        )
        assert len(everything) == 5 and quiet == "" and hidden["visible"] is False
    finally:
        state["files"].delete()


def test_variations_cut_short_keep_the_ones_made(identity, analyzer, emulated, monkeypatch):
    """More like this (new seeds each time, so nothing to continue): the variations of the earlier calls are
    written, recorded and returned, with info.incomplete and the page's notice saying to ask again."""
    own = sessions.Session()
    try:
        source = studio.generate(identity, "corporate-grey", studio.GenerateOptions(seed=2, steps=2), analyzer=analyzer,
                                 session=own).headshots[0].path  # fmt: skip
        monkeypatch.setattr(sizing, "gpu_calls", lambda requests: [
            [(i, dataclasses.replace(r, seed=r.seed + k, num_images=1))]
            for i, r in enumerate(requests) for k in range(r.num_images)
        ])  # fmt: skip  (one call per image, as on the full models)
        _room_for_one_call(monkeypatch, [studio.build_request(identity, studio.get_style("corporate-grey"),
                                                              studio.GenerateOptions(steps=2), 0, 1)])  # fmt: skip
        cut = results.more_like_this(identity, source, 3, session=own, analyzer=analyzer)
        assert len(cut.headshots) == 1 and own.owns(cut.headshots[0].path)
        incomplete = cut.info["incomplete"]
        assert (incomplete["made"], incomplete["requested"], incomplete["can_continue"]) == (1, 3, False)
        notice = callbacks.incomplete_notice(incomplete)
        assert "1 of 3 headshots was made" in notice and "same button again" in notice
        assert "Continue" not in notice and paused_render(own) is None
    finally:
        own.delete()
