"""The page's own callbacks around the endpoints (api.py): what the steps show after a GPU refusal or abort
(a notice with what was saved, when GPU time returns and the button that finishes the work, never an error
badge), the session gallery the headshot steps refresh, and the page after Delete. The endpoints themselves,
the API and MCP surface, stay in api.py; ui.py wires both.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from pathlib import Path

import gradio as gr

from headshot import results
from headshot.errors import GpuAborted, GpuQuotaExceeded, HeadshotError, RenderIncomplete, TrainingPaused
from headshot.gpu import zerogpu
from headshot.web.endpoints import (
    NOTHING_TO_DELETE,
    continue_button,
    continue_headshots,
    continue_headshots_button,
    continue_identity,
    create_identity,
    generate,
    generate_pack,
    log_refusal,
    more_like_this,
    refine,
    regenerate,
)
from headshot.web.files import caller_session


def after_delete(result: dict):
    """The UI after Delete: say what happened and empty every field that showed the session's files."""
    gr.Info(result.get("message", NOTHING_TO_DELETE))
    # selfies, identity file, gallery, pack, cards, reference, identity text, readiness, report, info, Nexts,
    # the chosen headshot's panel and path, the favourites, their ZIP and their section
    hidden = gr.update(visible=False)
    gone = gr.update(value=None, visible=False)
    return [None, None, None, None, None, None, "", "", None, {}, hidden, hidden, hidden, "", None, None, hidden, gone]


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
    """"in about 25 s", "in about 3 h 20 min (around 18:40 UTC)"; "later today" when the answer did not say."""
    if seconds is None:
        return "later (the platform did not say when)"
    words = zerogpu.words_for(seconds)  # "45 s", "about 12 min"
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


def more_like_this_ui(identity, image: str, identity_link: str, session, request: gr.Request = None,
                      progress=gr.Progress()):
    """More like the chosen headshot, added to the session gallery (UI; /more_like_this in the API):
    gallery, filter, info, notice."""
    result, notice = _gpu_call(more_like_this, identity, image, 4, 0, identity_link, "", session, request, progress)
    return _headshots_after(result, {"session": session, "request": request}, notice)


def regenerate_ui(identity, image: str, identity_link: str, session, request: gr.Request = None,
                  progress=gr.Progress()):
    """The chosen headshot rendered again with a new seed, added to the gallery and shown as chosen:
    gallery, filter, info, notice, and the chosen path, picture and text."""
    from headshot import results
    from headshot.faces.analyzer import get_analyzer

    result, notice = _gpu_call(regenerate, identity, image, identity_link, "", session, request, progress)
    shown = _headshots_after(result, {"session": session, "request": request}, notice)
    if result is None:
        return *shown, gr.update(), gr.update(), gr.update()
    path = str(result[0][0][0])
    analyzer = get_analyzer()
    return *shown, path, path, results.read_pick(Path(path), analyzer).text(analyzer.same_person_threshold)


def refine_ui(identity, image: str, identity_link: str, session, request: gr.Request = None, progress=gr.Progress()):
    """The chosen headshot at a higher resolution, shown as a picture with its download (UI; /refine in
    the API), and added to the gallery: the picture, gallery, filter, info, notice."""
    result, notice = _gpu_call(refine, identity, image, 0, 0, identity_link, "", session, request, progress)
    shown = _headshots_after(
        None if result is None else (result[2],), {"session": session, "request": request}, notice
    )
    if result is None:
        return gr.update(), *shown
    return gr.update(value=result[1], visible=True), *shown
