"""The page's own callbacks: what the steps show around the endpoints (``endpoints``, the API and MCP
surface), never an endpoint themselves (every one is wired ``api_visibility="private"`` in ``ui``).

The consent stop, Next and Continue buttons, the identity's picture, the style's words and the backdrop
preview, the chosen headshot and its star; what the steps show after a GPU refusal or abort (a notice with
what was saved, when GPU time returns and the button that finishes the work, never an error badge); the
session gallery the headshot steps refresh, and the page after Delete. The selfie cards are ``cards``.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from pathlib import Path

import gradio as gr

from headshot import credentials, results, studio, styles
from headshot.errors import GpuAborted, GpuQuotaExceeded, HeadshotError, RenderIncomplete, TrainingPaused
from headshot.paused import paused_render, paused_training
from headshot.progress import words_for
from headshot.web.endpoints import (
    NOTHING_TO_DELETE,
    continue_headshots,
    continue_identity,
    create_identity,
    generate,
    generate_pack,
    identity_required,
    log_refusal,
    more_like_this,
    public_summary,
    refine,
    regenerate,
    user_errors,
)
from headshot.web.files import EXAMPLES_DIR, caller_session

# --------------------------------------------------------------------------------------
# Step 1: consent first; Next once the selfies are good enough (the cards: cards.py)
# --------------------------------------------------------------------------------------


CONSENT_MISSING = "Please tick the consent box first: these must be photos of you, or of someone who agreed."


def require_consent(consent: bool) -> None:
    """Stop the step until the consent box is ticked. Gradio's toasts are headed by their kind, not by the
    title, so the reminder is a warning ("Consent needed: ..."), never an "Error"; the stop is silent."""
    if not consent:
        gr.Warning(f"Consent needed. {CONSENT_MISSING}", duration=8, title="Consent needed")
        log_refusal("consent_missing", CONSENT_MISSING)
        raise gr.Error(CONSENT_MISSING, title="Consent needed", visible=False, print_exception=False)


def example_selfies() -> list[list[list[str]]]:
    photos = sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".png", ".webp"))
    return [[photos]] if photos else []


def next_after_check(report: dict | None):
    """Show Next once the selfies are good enough for an identity."""
    return gr.update(visible=bool(report and report.get("ready")))


# --------------------------------------------------------------------------------------
# Step 2: the identity shown with its keypoints, Continue for a paused training
# --------------------------------------------------------------------------------------


def continue_button(session=None, request: gr.Request = None):
    """Show Continue while this session has a LoRA training paused after some of its steps (refused before
    its first step, nothing is saved: Create starts it again)."""
    paused = paused_training(caller_session(session, request))
    if paused is None or not paused["steps_done"]:
        return gr.update(visible=False)
    label = f"Continue LoRA training (saved at step {paused['steps_done']} of {paused['steps_total']})"
    return gr.update(visible=True, value=label)


@user_errors
def show_identity(identity: str | None, session=None):
    """The reference face with its keypoints and a short summary, for the Identity step (the picture is
    a file in the session's folder)."""
    from headshot.faces.identity import identity_summary, reference_with_keypoints

    own = caller_session(session, None)
    if not identity:
        return None, ""
    (path,) = own.adopt([identity])
    loaded = studio.open_identity(path)
    summary = public_summary(identity_summary(loaded))
    method = "LoRA" if summary.get("has_lora") else "InstantID"
    count = summary["selfie_count"]
    text = (
        f"**Identity ready**: your face, learned with {method} from {count} selfie{'s' if count != 1 else ''}. "
        "Press **Next** to make your headshots."
    )
    picture = own.new_dir("reference") / "reference.png"
    reference_with_keypoints(loaded).save(picture)
    own.record(picture)
    return str(picture), text


def show_it():
    return gr.update(visible=True)


# --------------------------------------------------------------------------------------
# Step 3: the style menu and its words, the backdrop preview, the machine's note, Continue headshots
# --------------------------------------------------------------------------------------


def style_choices() -> list[tuple[str, str]]:
    return [(s["name"], s["id"]) for s in styles.list_styles()]


def style_blurb_text(style_id: str, backdrop: str = "style", outfit: str = "style") -> str:
    """The style's words under the menu, following the chosen backdrop and outfit."""
    text = styles.style_blurb(style_id, backdrop, outfit)
    return f"*{text}*" if text else ""


def preview(style_id: str | None, backdrop_id: str | None):
    """The preview swatch of the chosen backdrop, or of the style's own backdrop (no GPU)."""
    return styles.preview_swatch(style_id, backdrop_id)


def device_note() -> str:
    """What the person is told about the machine (no GPU, the tiny profile, ...)."""
    note = studio.device_summary().get("note")
    offline = studio.models_notice()
    if offline:  # "The models cannot be reached: ..." with its head in bold
        head, _, rest = offline.partition(": ")
        return f"> **{head}.** {rest}" + (f"\n\n> {note}" if note else "")
    return f"> {note}" if note else ""


def continue_headshots_button(session=None, request: gr.Request = None):
    """Show Continue while this session has a generate or pack cut short by ZeroGPU."""
    paused = paused_render(caller_session(session, request))
    if paused is None:
        return gr.update(visible=False)
    label = f"Continue headshots ({paused['made']} of {paused['requested']} made)"
    return gr.update(visible=True, value=label)


# --------------------------------------------------------------------------------------
# A chosen headshot: next to the selfie, favourites (the star's label and section)
# --------------------------------------------------------------------------------------


@user_errors
def pick_headshot(
    gallery, identity, identity_link: str, session, evt: gr.SelectData, request: gr.Request = None
):
    """The headshot clicked in the gallery, next to the reference selfie, with its likeness (UI only)."""
    from headshot.faces.analyzer import get_analyzer

    own = caller_session(session, request)
    items = gallery or []
    if evt is None or not isinstance(evt.index, int) or not (0 <= evt.index < len(items)):
        return [gr.update()] * 7
    item = items[evt.index]
    image = item[0] if isinstance(item, (list, tuple)) else item
    loaded = identity_required(identity, own, identity_link)
    reference, pick = results.comparison(own, loaded, image, get_analyzer())
    starred = str(pick.path) in own.favourites
    return (
        str(pick.path),
        str(reference),
        str(pick.path),
        pick.text(get_analyzer().same_person_threshold),
        gr.update(visible=True),
        gr.update(value=_star_label(starred)),
        gr.update(value=None, visible=False),  # a refined PNG of the headshot chosen before
    )


def _star_label(starred: bool) -> str:
    return "★ In your favourites (remove)" if starred else "☆ Add to favourites"


def favourites_view(image: str, session=None, request: gr.Request = None):
    """The UI after a star: the section shown while there are favourites, the button's label (UI only)."""
    own = caller_session(session, request)
    return gr.update(visible=bool(own.favourites)), gr.update(value=_star_label(str(image) in own.favourites))


# --------------------------------------------------------------------------------------
# The backdrop menu's brand colour: the picker shown, its colour as /generate wants it
# --------------------------------------------------------------------------------------


BRAND_COLOUR = "brand-colour"  # the Backdrop menu's "Your brand colour…": the colour picker decides


def backdrop_value(choice: str | None, colour: str | None):
    """The backdrop /generate gets (an id, or the picked colour as #rrggbb) and the picker shown with it."""
    if choice != BRAND_COLOUR:
        return choice or "style", gr.update(visible=False)
    return hex_colour(colour), gr.update(visible=True)


def hex_colour(colour: str | None) -> str:
    """The colour picker's value as #rrggbb (browsers may send rgb()/rgba() or #rgb)."""
    import re

    text = (colour or "").strip().lower()
    found = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+).*\)", text)
    if found:
        return "#" + "".join(f"{min(255, round(float(v))):02x}" for v in found.groups())
    if re.fullmatch(r"#[0-9a-f]{3}", text):
        return "#" + "".join(c * 2 for c in text[1:])
    return text[:7]


# --------------------------------------------------------------------------------------
# Check an image: what the panel says about a /verify report
# --------------------------------------------------------------------------------------


def verify_text(report: dict | None) -> str:
    """What the "Check an image" panel says about a /verify report."""
    if not report:
        return ""
    steps = [
        f"- {credentials.readable_time(a.get('when'))} **{a.get('action', '?')}**"
        + (f" ({a['digital_source_type']})" if a.get("digital_source_type") else "")
        + (f" · {a['software']}" if a.get("software") else "")
        for step in report.get("history", [])
        for a in step.get("actions", [])
    ]
    return "\n".join([report.get("message", ""), *(["", *steps] if steps else [])])


def after_delete(result: dict):
    """The UI after Delete: say what happened and empty every field that showed the session's files."""
    gr.Info(result.get("message", NOTHING_TO_DELETE))
    # selfies, identity file, gallery, pack, cards, reference, identity text, readiness, report, info, Nexts,
    # the chosen headshot's panel and path, the favourites, their ZIP and their section
    hidden = gr.update(visible=False)
    gone = gr.update(value=None, visible=False)
    return [
        None,
        None,
        None,
        None,
        None,
        None,
        "",
        "",
        None,
        {},
        hidden,
        hidden,
        hidden,
        "",
        None,
        None,
        hidden,
        gone,
    ]


# --------------------------------------------------------------------------------------
# The page's side of the GPU steps: a refusal is a notice in the step, not an error
# --------------------------------------------------------------------------------------

GPU_REFUSALS = (GpuQuotaExceeded, GpuAborted, TrainingPaused, RenderIncomplete)


def retry_after(err: BaseException | None) -> float | None:
    """Seconds until GPU time returns, as the platform's answer said (the error or what caused it)."""
    while err is not None:
        seconds = getattr(err, "retry_after", None)
        if seconds is not None and math.isfinite(float(seconds)):
            return max(0.0, float(seconds))
        err = err.__cause__
    return None


def _quota_refused(err: BaseException | None) -> bool:
    while err is not None:
        if isinstance(err, GpuQuotaExceeded):
            return True
        err = err.__cause__
    return False


def when_back(seconds: float | None, now: float | None = None) -> str:
    """ "in about 25 s", "in about 3 h 20 min (around 18:40 UTC)"; "later today" when the answer did not say."""
    if seconds is None:
        return "later (the platform did not say when)"
    words = words_for(seconds)  # "45 s", "about 12 min"
    if max(1, math.ceil(seconds)) < 90:
        return f"in about {words}"
    clock = time.strftime("%H:%M UTC", time.gmtime((time.time() if now is None else now) + seconds))
    return f"in {words} (around {clock})"


def gpu_notice(err: HeadshotError, step: str) -> str:
    """What the step says after ZeroGPU refused or stopped its GPU work: what was saved, when GPU time
    returns, and which button finishes the work. ``step``: "identity", "headshots", "continue" (the rest of
    headshots cut short) or "refine"."""
    quota = _quota_refused(err)
    head = "**GPU time is used up for now.**" if quota else "**The GPU stopped before the work was done.**"
    back = when_back(retry_after(err))
    if isinstance(err, TrainingPaused) and err.steps_done:
        saved = f"Your LoRA training is saved at step {err.steps_done} of {err.steps_total}."
        then = "press **Continue LoRA training** to finish it from there."
    elif isinstance(err, TrainingPaused):
        saved = "The LoRA training could not start, so there is nothing to continue yet."
        then = (
            "press **Create my identity** again. The quick InstantID identity needs no GPU time: "
            "you can make one now."
        )
    elif step == "continue":
        saved = "Nothing more was made: the headshots made so far are in the gallery, and the rest is still saved."
        then = "press **Continue headshots**."
    elif step == "refine":
        saved = "The high-resolution version was not made; your headshots are all still in the gallery."
        then = "press **High resolution** again."
    else:
        saved = "These headshots were not made; every headshot you made before is still in the gallery."
        then = "press the same button again."
    when = f"GPU time returns {back}; then {then}" if quota else f"You can try again now: {then}"
    return f"{head} {saved} {when}"


def _page_step(endpoint, after, step: str):
    """``endpoint`` for the page: its result through ``after(result, arguments, notice)``; a GPU refusal or
    abort becomes ``after(None, arguments, notice)`` (a notice in the step, no error badge); any other
    refusal stays an error message. Same parameters as the endpoint (Gradio reads the signature)."""
    raw = endpoint.__wrapped__
    signature = inspect.signature(raw)

    @functools.wraps(raw)
    def page(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            result = raw(*args, **kwargs)
        except GPU_REFUSALS as err:
            log_refusal(err.code, err.message)
            return after(None, bound.arguments, gpu_notice(err, step))
        except HeadshotError as err:
            log_refusal(err.code, err.message)
            raise gr.Error(err.message, title="Could not do that", print_exception=False) from err
        return after(result, bound.arguments, "")

    page.__name__ = f"{raw.__name__}_page"
    return page


def _identity_after(result, arguments: dict, notice: str):
    # identity file, summary, notice, Continue
    button = continue_button(arguments.get("session"), arguments.get("request"))
    if result is None:
        return gr.update(), gr.update(), notice, button
    return result[0], result[1], "", button


create_identity_page = _page_step(create_identity, _identity_after, "identity")
continue_identity_page = _page_step(continue_identity, _identity_after, "identity")


def identity_next(identity: str | None):
    """Next (to the headshots) once there is an identity."""
    return gr.update(visible=bool(identity))


def gallery_view(session=None, show: str = results.ALL, request: gr.Request = None):
    """The session gallery (every headshot of this session, newest first; ``show`` filters by run or style)
    and its filter menu."""
    from headshot.faces.analyzer import get_analyzer

    own = caller_session(session, request)
    analyzer = get_analyzer()
    choices = results.gallery_filters(own, analyzer)
    if show not in {value for _, value in choices}:
        show = results.ALL
    items = [(str(i.path), i.caption) for i in results.session_gallery(own, analyzer, show=show)]
    # The filter once there is something to filter: two runs, or two styles.
    return items, gr.update(choices=choices, value=show, visible=len(choices) > 3)


def incomplete_notice(incomplete: dict) -> str:
    """What the Headshots step says after a run ZeroGPU cut short (its ``info["incomplete"]``): how many of
    how many were made (they are in the gallery), that the rest is saved, when GPU time returns, and Continue."""
    quota = incomplete.get("code") == GpuQuotaExceeded.code
    head = "**GPU time ran out partway.**" if quota else "**The GPU stopped partway.**"
    made, total, left = incomplete.get("made", 0), incomplete.get("requested", 0), incomplete.get("left", 0)
    saved = (
        f"{made} of {total} headshot{'s' if total != 1 else ''} {'was' if made == 1 else 'were'} made and "
        f"{'is' if made == 1 else 'are'} in the gallery; the other {left} {'is' if left == 1 else 'are'} saved, "
        "to be made just as they would have been."
    )
    if not made:
        saved = (
            "No headshot is finished yet: each is the best of several candidates, chosen once they are all made. "
            "The candidates made so far are saved."
        )
    then = "press **Continue headshots** to make the rest."
    if incomplete.get("can_continue") is False:  # variations: a new ask makes new ones
        saved = saved.split(";")[0] + "."
        then = "press the same button again for more."
    back = when_back(incomplete.get("retry_after_s"))
    when = f"GPU time returns {back}; then {then}" if quota else f"You can go on now: {then}"
    return f"{head} {saved} {when}"


def _headshots_after(result, arguments: dict, notice: str):
    # gallery, filter, info, notice, Continue headshots
    session, request = arguments.get("session"), arguments.get("request")
    items, menu = gallery_view(session, results.ALL, request)
    info = gr.update() if result is None else result[-1]
    if isinstance(info, dict) and info.get("incomplete"):
        notice = incomplete_notice(info["incomplete"])
    return items, menu, info, notice, continue_headshots_button(session, request)


def _pack_after(result, arguments: dict, notice: str):
    # pack ZIP, gallery, filter, info, notice, Continue headshots
    zip_path = None if result is None else result[0]
    return (gr.update() if zip_path is None else zip_path), *_headshots_after(result, arguments, notice)


generate_page = _page_step(generate, _headshots_after, "headshots")
generate_pack_page = _page_step(generate_pack, _pack_after, "headshots")
continue_headshots_page = _page_step(continue_headshots, _pack_after, "continue")


def after_delete_page(result: dict):
    """The page after Delete: what ``after_delete`` empties, then the consent box unticked, the identity's
    summary, the notices, Continue, the gallery filter, the chosen pictures, the question closed, and Continue
    headshots."""
    hidden = gr.update(visible=False)
    return [*after_delete(result), False, None, "", hidden, "", hidden, None, None, hidden, hidden]


def _gpu_call(endpoint, *args):
    """Call an endpoint's core for the page: (result, "") or, when ZeroGPU refused or stopped it,
    (None, the step's notice); other refusals stay error messages."""
    try:
        return endpoint.__wrapped__(*args), ""
    except GPU_REFUSALS as err:
        log_refusal(err.code, err.message)
        return None, gpu_notice(err, "refine" if endpoint is refine else "headshots")
    except HeadshotError as err:
        log_refusal(err.code, err.message)
        raise gr.Error(err.message, title="Could not do that", print_exception=False) from err


def more_like_this_ui(
    identity, image: str, identity_link: str, session, request: gr.Request = None, progress=gr.Progress()
):
    """More like the chosen headshot, added to the session gallery (UI; /more_like_this in the API):
    gallery, filter, info, notice."""
    result, notice = _gpu_call(
        more_like_this, identity, image, 4, 0, identity_link, "", session, request, progress
    )
    return _headshots_after(result, {"session": session, "request": request}, notice)


def regenerate_ui(
    identity, image: str, identity_link: str, session, request: gr.Request = None, progress=gr.Progress()
):
    """The chosen headshot rendered again with a new seed, added to the gallery and shown as chosen:
    gallery, filter, info, notice, and the chosen path, picture and text."""
    from headshot.faces.analyzer import get_analyzer

    result, notice = _gpu_call(regenerate, identity, image, identity_link, "", session, request, progress)
    shown = _headshots_after(result, {"session": session, "request": request}, notice)
    if result is None:
        return *shown, gr.update(), gr.update(), gr.update()
    path = str(result[0][0][0])
    analyzer = get_analyzer()
    return *shown, path, path, results.read_pick(Path(path), analyzer).text(analyzer.same_person_threshold)


def refine_ui(
    identity, image: str, identity_link: str, session, request: gr.Request = None, progress=gr.Progress()
):
    """The chosen headshot at a higher resolution, shown as a picture with its download (UI; /refine in
    the API), and added to the gallery: the picture, gallery, filter, info, notice."""
    result, notice = _gpu_call(refine, identity, image, 0, 0, identity_link, "", session, request, progress)
    shown = _headshots_after(
        None if result is None else (result[2],), {"session": session, "request": request}, notice
    )
    if result is None:
        return gr.update(), *shown
    return gr.update(value=result[1], visible=True), *shown
