"""The page's words and its dead ends (issue 23), without a browser: a GPU refusal becomes a notice in its
step (what is saved, when GPU time returns, Continue only when there is something to continue), the
session gallery keeps every run, the selfie cards read without an emoji font, refusals are one log line,
prompts that fit log no tokenizer warnings, and an offline machine is told so on load."""

from __future__ import annotations

import logging
import re

import gradio as gr
import pytest

from headshot import results, sessions, studio, styles
from headshot.errors import GpuAborted, GpuQuotaExceeded, InvalidRequest, TrainingPaused
from headshot.gpu import zerogpu
from headshot.web import callbacks, cards, endpoints

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

ENDPOINT = re.compile(r"/(?:continue_identity|create_identity|generate|generate_pack|refine|more_like_this|"
                      r"regenerate|validate_selfies|delete_my_data|favourite)\b")
EMOJI = re.compile("[\u2600-\u27bf\U0001f000-\U0001faff\ufe0f]")


def _paused(done: int, total: int = 6, retry: float | None = 25.0) -> TrainingPaused:
    """A TrainingPaused as pipeline raises it: caused by the platform's refusal."""
    refusal = GpuQuotaExceeded("You have exceeded your ZeroGPU quota (20s requested vs. 10s left). Try again in "
                               "0:00:25.", requested=20, left=10, retry_after=retry)
    paused = TrainingPaused(
        f"{refusal.message} Your LoRA training is saved at step {done} of {total}: press Continue (or call "
        "/continue_identity) later to go on from there.",
        steps_done=done,
        steps_total=total,
    )
    paused.__cause__ = refusal
    return paused


def test_when_gpu_time_returns_in_words():
    assert callbacks.when_back(25) == "in about 25 s"
    assert callbacks.when_back(0.2) == "in about 1 s"
    long = callbacks.when_back(3 * 3600 + 20 * 60, now=0)
    assert long == "in about 3 h 20 min (around 03:20 UTC)"
    assert callbacks.when_back(600, now=0) == "in about 10 min (around 00:10 UTC)"
    assert "did not say" in callbacks.when_back(None)


def test_retry_after_is_read_from_the_refusal_behind_a_paused_training():
    assert callbacks.retry_after(_paused(3, retry=42.0)) == 42.0
    assert callbacks.retry_after(_paused(3, retry=None)) is None
    assert callbacks.retry_after(GpuAborted("stopped")) is None


def test_the_emulated_quota_says_when_gpu_time_returns():
    quota = zerogpu.Quota(30, window=100)
    quota.settle(quota.admit(10), 20)  # asks 15 s of quota at admission, charged the 20 s it ran
    with pytest.raises(zerogpu.PlatformError) as refused:
        quota.admit(10)
    error = zerogpu.user_error(refused.value)  # the platform's words, read back as the page needs them
    assert isinstance(error, GpuQuotaExceeded)
    assert (error.requested, error.left) == (zerogpu.requested_quota(10), 10)
    assert 90 < error.retry_after <= 100


def test_a_training_paused_partway_names_the_saved_step_the_time_and_continue():
    text = callbacks.gpu_notice(_paused(3), "identity")
    assert "saved at step 3 of 6" in text and "in about 25 s" in text and "Continue LoRA training" in text
    assert not ENDPOINT.search(text), text  # the platform's words and the API's stay out of the page


def test_a_training_refused_before_its_first_step_offers_no_continue():
    text = callbacks.gpu_notice(_paused(0), "identity")
    assert "in about 25 s" in text and "Create my identity" in text and "nothing to continue" in text
    assert "Continue LoRA training" not in text and not ENDPOINT.search(text)


def test_a_refused_render_says_the_gallery_is_kept_and_an_abort_says_try_now():
    quota = callbacks.gpu_notice(GpuQuotaExceeded("used up", retry_after=3600), "headshots")
    assert "GPU time returns in about 1 h" in quota and "still in the gallery" in quota
    aborted = callbacks.gpu_notice(GpuAborted("ran past its time"), "refine")
    assert "try again now" in aborted and "High resolution" in aborted


def test_the_page_shows_a_refusal_in_the_step_and_continue_only_with_something_saved(monkeypatch):
    """create_identity_page: no exception (no error badge); the notice, and Continue when steps are saved."""
    state: dict = {}
    for done, visible in ((3, True), (0, False)):
        monkeypatch.setattr(endpoints.studio, "create_identity", lambda *a, _d=done, **k: (_ for _ in ()).throw(_paused(_d)))
        monkeypatch.setattr(callbacks, "paused_training", lambda s, _d=done: {"steps_done": _d, "steps_total": 6})
        file, summary, notice, button = callbacks.create_identity_page([], "lora", session=state)
        assert file == gr.update() and summary == gr.update()  # the identity shown before stays
        assert "GPU time is used up" in notice
        assert button["visible"] is visible
    # Any other refusal is still an error message.
    monkeypatch.setattr(endpoints.studio, "create_identity", lambda *a, **k: (_ for _ in ()).throw(InvalidRequest("No.")))
    with pytest.raises(gr.Error, match=r"No\."):
        callbacks.create_identity_page([], "lora", session=state)


def test_a_refusal_is_one_log_line_with_its_code(caplog):
    caplog.set_level(logging.WARNING, logger="headshot")
    with pytest.raises(gr.Error) as stopped:
        callbacks.require_consent(False)
    assert stopped.value.print_exception is False  # Gradio prints no traceback for it
    lines = [r.getMessage() for r in caplog.records if r.name == "headshot"]
    assert len(lines) == 1 and lines[0].startswith("refused [consent_missing]") and "\n" not in lines[0]


def test_the_selfie_cards_read_without_an_emoji_font(faces_dir, analyzer):
    obama = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))[0]
    eagle = faces_dir / "no_face" / "dlib_eagle.jpg"
    state: dict = {}
    report = endpoints.validate_selfies([str(obama), str(eagle)], "", state)
    html, readiness = cards.selfie_cards_view([str(obama), str(eagle)], report, state)
    assert html.count("<figure") == 2 and html.count("<svg") == 2  # drawn marks
    assert "Accepted" in html and "Refused" in html and "dlib_eagle.jpg" in html and obama.name in html
    assert "No face found" in html  # the short line
    whole = next(i["message"] for s in report["selfies"] for i in s["issues"] if s["file"] == "dlib_eagle.jpg")
    assert cards.html.escape(whole) in html  # the whole reason, a tap away
    assert not EMOJI.search(html) and not EMOJI.search(readiness), readiness
    assert "1 of 2 selfies accepted" in readiness and "dlib_eagle.jpg" in readiness
    state["files"].delete()


def test_card_reasons_fall_back_to_the_message_for_codes_they_do_not_know():
    entry = {"accepted": False, "issues": [
        {"code": "new_rule", "severity": "error", "message": "Something new: explained at length."},
        {"code": "blurry", "severity": "error", "message": "Blurry."},
    ]}
    assert cards.card_reason(entry) == ("Something new (+1 more)", "Something new: explained at length. Blurry.")
    note = {"accepted": True, "issues": [{"code": "too_dark", "severity": "warning", "message": "Dark."}]}
    assert cards.card_reason(note) == ("Note: Too dark", "Dark.")
    assert cards.card_reason({"accepted": True, "issues": []}) == ("", "")


def test_the_style_blurb_follows_the_backdrop_and_outfit():
    plain = styles.style_blurb("corporate-grey")
    assert plain == studio.get_style("corporate-grey").description
    chosen = styles.style_blurb("corporate-grey", "office", "blazer")
    assert "Blazer" in chosen and "office" in chosen.lower() and "suit" not in chosen and "grey backdrop" not in chosen
    assert styles.style_blurb("nope") == ""


def test_the_session_gallery_keeps_every_run_newest_first(faces_dir, analyzer):
    """Two generates and a pack: all of them stay, the newest run first; filters by run and by style."""
    obama = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))[:1]
    own = sessions.Session()
    try:
        identity = studio.create_identity(obama, analyzer=analyzer, session=own).identity
        options = studio.GenerateOptions(seed=3, steps=1, num_images=1)
        first = studio.generate(identity, "corporate-grey", options, analyzer=analyzer, session=own)
        second = studio.generate(identity, "classic-bw", options, analyzer=analyzer, session=own)
        pack = studio.generate_pack(identity, ["corporate-grey", "tech-casual"], 1, options, analyzer=analyzer,
                                    session=own)
        items = results.session_gallery(own, analyzer)
        paths = [i.path for i in items]
        assert set(paths[:2]) == {h.path for h in pack.headshots}  # the newest run first
        assert paths[2:] == [second.headshots[0].path, first.headshots[0].path]
        assert all("seed" not in i.caption and i.style not in i.caption for i in items)  # names, not ids
        assert items[2].caption.endswith("· " + studio.get_style("classic-bw").name)
        choices = results.gallery_filters(own, analyzer)
        assert choices[0] == ("All your headshots (4)", "all")
        runs = [v for _, v in choices if v.startswith("run:")]
        assert len(runs) == 3 and next(label for label, v in choices if v == runs[0]).startswith("Run 3: Pack")
        assert [i.path for i in results.session_gallery(own, analyzer, show=runs[-1])] == [first.headshots[0].path]
        by_style = results.session_gallery(own, analyzer, show="style:corporate-grey")
        assert len(by_style) == 2 and all(i.style == "corporate-grey" for i in by_style)
        assert first.headshots[0].path in {i.path for i in by_style}
    finally:
        own.delete()
    assert results.session_gallery(own, analyzer) == []


def test_encoding_a_style_prompt_logs_no_tokenizer_warning(capfd, analyzer):
    """A style's prompt with options (about 65 CLIP tokens) and the long-by-design negative prompt: no
    "Token indices sequence length" and no "was truncated" in the log (tiny profile; see models.py)."""
    from headshot import styles
    from headshot.gpu import models

    loaded = models.load_models(analyzer.embedding_size)
    style = styles.get_style("corporate-grey")
    prompt, negative = styles.compose(style, "a person", "", backdrop="office", outfit="blazer", hints="smile")
    capfd.readouterr()
    for _ in range(2):  # the second call too: transformers warns once per tokenizer, diffusers every time
        loaded.pipe.encode_prompt(prompt=prompt, device="cpu", num_images_per_prompt=1,
                                  do_classifier_free_guidance=True,
                                  negative_prompt=styles.negative_prompt(style, "", negative))
    logged = "".join(capfd.readouterr())
    assert "Token indices sequence length" not in logged and "was truncated" not in logged, logged


def test_an_offline_machine_is_told_on_load(monkeypatch):
    monkeypatch.setattr(studio, "_models_notice", [])
    monkeypatch.setattr(studio, "missing_models", lambda: ["the diffusion models"])
    monkeypatch.setattr(studio, "hub_reachable", lambda timeout=3.0: False)
    note = callbacks.device_note()
    assert note.startswith("> **The models cannot be reached.**") and "HEADSHOT_PROFILE=tiny" in note
    monkeypatch.setattr(studio, "_models_notice", [])
    monkeypatch.setattr(studio, "hub_reachable", lambda timeout=3.0: True)
    assert "cannot be reached" not in callbacks.device_note()
    monkeypatch.setattr(studio, "_models_notice", [])
    monkeypatch.setattr(studio, "missing_models", lambda: [])
    monkeypatch.setattr(studio, "hub_reachable", lambda timeout=3.0: pytest.fail("no network check needed"))
    assert "cannot be reached" not in callbacks.device_note()


def test_the_page_css_has_no_stray_control_characters():
    """A CSS escape written once-escaped in Python ("\\25B8" as "\25B8") becomes a control character and
    the card's triangle an empty box."""
    from headshot.web import ui

    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", ui.CSS)


def test_every_issue_code_has_a_short_card_line():
    from headshot.faces import rules

    assert set(rules.ISSUE_CODES) <= set(cards.SHORT_REASONS), set(rules.ISSUE_CODES) - set(cards.SHORT_REASONS)
