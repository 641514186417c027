"""The endpoints: each handler is a Gradio API endpoint (and MCP tool) in a few lines that call ``studio``.

Handlers turn component values into calls to ``studio`` and ``HeadshotError`` into ``gr.Error`` with the
same message. The API's "the style's value" sentinels (``-1``, and ``0`` for steps and the LoRA
settings) become ``None`` here, at the boundary: the core reads every other value, 0 included, as given.
Files and links are the caller's session's own (``webfiles.check_caller_file``); an MCP session is one
session across its calls.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import gradio as gr

from headshot import credentials, results, sessions, studio, styles
from headshot.errors import HeadshotError
from headshot.web.files import caller_session, finish_call, linked_files, referenced_paths

API_CONSENT = "Calling this endpoint asserts that the photos are of you, or that the person agreed."


log = logging.getLogger("headshot")


def log_refusal(code: str, message: str) -> None:
    """A refusal is one line of the server's log, with its stable code (no traceback: nothing broke)."""
    log.warning("refused [%s] %s", code, " ".join(str(message).split()))


def user_errors(fn):
    """Turn the core's typed errors into messages the person sees; keep the app serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HeadshotError as err:
            title = "Training paused" if err.code == "training_paused" else "Could not do that"
            log_refusal(err.code, err.message)
            raise gr.Error(err.message, title=title, print_exception=False) from err

    return wrapper


def _progress(progress: gr.Progress):
    return lambda fraction, desc="": progress(fraction, desc=desc)


def file_paths(files) -> list[str]:
    if not files:
        return []
    if isinstance(files, (str, Path)):
        return [str(files)]
    return [str(f) for f in files if f]


@user_errors
def validate_selfies(
    selfies: list[str] | None = None, selfie_links: str = "", session=None, request: gr.Request = None
) -> dict:
    """Check 1-12 selfies and report, per photo, whether it is usable and why not.

    Send the photos as files (selfies) or as text (selfie_links). Photos over a few MB: upload them first (POST
    /gradio_api/upload) and pass the returned paths in selfie_links; they stay usable for the whole session.

    Args:
        selfies: the selfie photos (1-12 image files). Over MCP: per file an http(s) URL or a data: URL.
        selfie_links: the selfies as text, separated by spaces: data: URLs, or paths from /gradio_api/upload.

    Returns:
        the validation report: ready (enough for InstantID), ready_lora, accepted, and per selfie its issues
        (code, severity, message) and face measurements.
    """
    own = caller_session(session, request)
    files = [*file_paths(selfies), *linked_files(selfie_links, own, "selfie")]
    report = studio.validate(own.adopt(files)).report
    finish_call(own, session, handed_out=False)
    return report


# The Gradio API's sentinels for "the style's value" / "the default" (turned into None by _unset).
STYLE_VALUE = -1  # guidance, identity strength, IdentityNet strength


STYLE_STEPS = 0  # steps (0 is never a valid step count)


DEFAULT_LORA_SETTING = 0  # LoRA steps, rank, learning rate (0 is never a valid one)


RANDOM_SEED = -1  # the seed of /generate and /generate_pack: any negative seed is random


def _unset(value, sentinel):
    """None (the style's or the default value) for the API's sentinel, else the value as given."""
    return None if value is None or value == sentinel else value


@user_errors
def create_identity(
    selfies: list[str] | None = None,
    method: str = "instantid",
    lora_steps: float = 0,
    lora_rank: float = 0,
    lora_learning_rate: float = 0,
    seed: float = 0,
    selfie_links: str = "",
    session=None,
    request: gr.Request = None,
    progress=gr.Progress(),
) -> tuple[str, dict]:
    """Build a reusable identity file from the accepted selfies.

    When the GPU time runs out during LoRA training, the error says so and the training is kept for this
    session: continue_identity goes on from the step it reached.

    Args:
        selfies: the selfie photos (1-12 image files). Over MCP: per file an http(s) URL or a data: URL.
        method: "instantid" (seconds, one face embedding) or "lora" (a quick fine-tune, minutes).
        lora_steps: LoRA training steps; 0 keeps the default.
        lora_rank: LoRA rank; 0 keeps the default.
        lora_learning_rate: LoRA learning rate; 0 keeps the default.
        seed: the LoRA training seed (the same seed gives the same weights).
        selfie_links: the selfies as text, separated by spaces: data: URLs, or paths from /gradio_api/upload.

    Returns:
        the identity file (.safetensors) and a summary (JSON).
    """
    own = caller_session(session, request)
    result = studio.create_identity(
        own.adopt([*file_paths(selfies), *linked_files(selfie_links, own, "selfie")]),
        method,
        lora_steps=_unset(lora_steps, DEFAULT_LORA_SETTING),
        lora_rank=_unset(lora_rank, DEFAULT_LORA_SETTING),
        lora_learning_rate=_unset(lora_learning_rate, DEFAULT_LORA_SETTING),
        seed=0 if seed is None else seed,
        progress=_progress(progress),
        session=own,
    )
    finish_call(own, session, handed_out=True)
    return str(result.path), public_summary(result.summary)


@user_errors
def continue_identity(session=None, request: gr.Request = None, progress=gr.Progress()) -> tuple[str, dict]:
    """Continue this session's LoRA training from the step it reached when the GPU time ran out.

    Takes no parameters: the paused training belongs to the calling session (a browser tab, an API client, or
    an MCP session, across its calls).

    Returns:
        the identity file and summary, as create_identity does.
    """
    own = caller_session(session, request)
    result = studio.continue_identity(own, progress=_progress(progress))
    finish_call(own, session, handed_out=True)
    return str(result.path), public_summary(result.summary)


def public_summary(summary: dict) -> dict:
    """An identity summary without server paths: a model given as a local folder is shown by its name."""
    out = dict(summary)
    for key in ("base_model", "face_pack"):
        value = out.get(key)
        if isinstance(value, str) and (os.path.isabs(value) or value.startswith(("~", "./", "../"))):
            out[key] = Path(value).name or value
    return out


def _options(
    *,
    prompt,
    negative_prompt,
    seed,
    fast,
    best_of,
    lora_strength,
    ai_mark,
    linkedin,
    face_region_only=True,
    num_images=1,
    steps=STYLE_STEPS,
    guidance=STYLE_VALUE,
    identity_strength=STYLE_VALUE,
    identitynet_strength=STYLE_VALUE,
    aspect="style",
    backdrop="style",
    outfit="style",
    subject=None,
) -> studio.GenerateOptions:
    """The core's options from the API's values: sentinels become None, every other value (0 included)
    goes to ``studio`` as given, which checks it against the ``config`` limits."""
    return studio.GenerateOptions(
        prompt=prompt or "",
        negative_prompt=negative_prompt or "",
        num_images=num_images,
        seed=None if seed is None or seed < 0 else seed,
        steps=_unset(steps, STYLE_STEPS),
        guidance=_unset(guidance, STYLE_VALUE),
        identity_strength=_unset(identity_strength, STYLE_VALUE),
        identitynet_strength=_unset(identitynet_strength, STYLE_VALUE),
        aspect=None if aspect in (None, "", "style") else aspect,
        fast=bool(fast),
        best_of=best_of,
        lora_strength=1.0 if lora_strength is None else lora_strength,
        ai_mark=bool(ai_mark),
        linkedin=bool(linkedin),
        face_region_only=True if face_region_only is None else bool(face_region_only),
        backdrop=backdrop or "style",
        outfit=outfit or "style",
        subject=",".join(subject) if isinstance(subject, (list, tuple)) else (subject or ""),
    )


def _gallery(result: studio.GenerateResult) -> list[tuple[str, str]]:
    """Each headshot, best first, followed by its LinkedIn crop when one was asked for (captions name the
    style; the seeds are in the info)."""
    items = []
    for shot in result.headshots:
        items.append((str(shot.path), results.caption(shot.likeness, shot.verdict, shot.style)))
        if shot.linkedin_path:
            items.append((str(shot.linkedin_path), results.caption(None, "", shot.style, linkedin=True)))
    return items


def identity_required(identity, session: sessions.Session, link: str = ""):
    linked = linked_files(link, session, "identity")
    if not identity and not linked:
        raise gr.Error(
            "Create an identity in step 2, or upload your identity file, first.", title="No identity"
        )
    # A link or a file parameter names this caller's own upload or output, never another session's
    # (webfiles.check_caller_file: a link is a read capability, not a way to use someone's file).
    return studio.open_identity(linked[0] if linked else session.adopt([identity])[0])


@user_errors
def generate(
    identity: str | None = None,
    style: str = "corporate-grey",
    prompt: str = "",
    negative_prompt: str = "",
    num_images: float = 2,
    seed: float = -1,
    steps: float = 0,
    guidance: float = -1,
    identity_strength: float = -1,
    identitynet_strength: float = -1,
    aspect: str = "style",
    fast: bool = False,
    best_of: float = 1,
    lora_strength: float = 1.0,
    ai_mark: bool = False,
    linkedin: bool = False,
    identity_link: str = "",
    face_region_only: bool = True,
    backdrop: str = "style",
    outfit: str = "style",
    subject: list[str] | str | None = None,
    session=None,
    request: gr.Request = None,
    progress=gr.Progress(),
) -> tuple[list, dict]:
    """Render headshots of one style for an identity, best likeness first.

    Args:
        identity: the identity file (.safetensors) from create_identity. Over MCP: its URL, or use identity_link.
        style: a style id from list_styles (e.g. "corporate-grey").
        prompt: extra words for the picture (outfit, expression, ...); empty for none.
        negative_prompt: what to keep out of the picture; empty for the style's own.
        num_images: how many headshots to keep (1-8).
        seed: -1 for a random seed (the seeds used are returned), else 0 or more: same seed, same image.
        steps: denoising steps; 0 uses the style's.
        guidance: prompt guidance scale; -1 uses the style's.
        identity_strength: how strongly the face embedding acts; -1 uses the style's.
        identitynet_strength: how strongly the face keypoints act; -1 uses the style's.
        aspect: "style" (the style's own), "square", "4:5" or "3:4".
        fast: true renders in fewer steps (quicker, a little less detail).
        best_of: candidates rendered per kept image (1-4); the best likeness is kept.
        lora_strength: how strongly a LoRA identity acts (0 turns it off; 1 is the default).
        ai_mark: true adds a visible "AI-generated" mark to each image (the metadata always says so).
        linkedin: true adds a 400x400 crop, centred on the face, after each headshot.
        identity_link: the identity as text: the link create_identity returned, or a data: URL of the file.
        face_region_only: true (default) keeps the identity on the face; the prompt decides the rest.
        backdrop: a backdrop id from list_options, a colour as "#rrggbb", or "style" for the style's own.
        outfit: an outfit id from list_options, or "style" for the style's own.
        subject: subject hint ids from list_options (at most one per group), e.g. ["woman", "smile"].

    Returns:
        the gallery and info (JSON: seed per image, style, likeness per image (null where no face is found),
        the LinkedIn crop's file name).
    """
    own = caller_session(session, request)
    loaded = identity_required(identity, own, identity_link)
    options = _options(
        prompt=prompt,
        negative_prompt=negative_prompt,
        num_images=num_images,
        seed=seed,
        steps=steps,
        guidance=guidance,
        identity_strength=identity_strength,
        identitynet_strength=identitynet_strength,
        aspect=aspect,
        fast=fast,
        best_of=best_of,
        lora_strength=lora_strength,
        ai_mark=ai_mark,
        linkedin=linkedin,
        face_region_only=face_region_only,
        backdrop=backdrop,
        outfit=outfit,
        subject=subject,
    )
    result = studio.generate(loaded, style, options, progress=_progress(progress), session=own)
    finish_call(own, session, handed_out=True)
    return _gallery(result), result.info


@user_errors
def generate_pack(
    identity: str | None = None,
    styles: list[str] | None = None,
    images_per_style: float = 2,
    prompt: str = "",
    negative_prompt: str = "",
    seed: float = -1,
    fast: bool = False,
    best_of: float = 1,
    lora_strength: float = 1.0,
    ai_mark: bool = False,
    linkedin: bool = True,
    identity_link: str = "",
    face_region_only: bool = True,
    backdrop: str = "style",
    outfit: str = "style",
    subject: list[str] | str | None = None,
    session=None,
    request: gr.Request = None,
    progress=gr.Progress(),
) -> tuple[str, list, dict]:
    """A headshot pack: several styles in one run.

    Args:
        identity: the identity file (.safetensors) from create_identity. Over MCP: its URL, or use identity_link.
        styles: the style ids to render (from list_styles).
        images_per_style: headshots per style (1-8).
        prompt: extra words for the picture (outfit, expression, ...); empty for none.
        negative_prompt: what to keep out of the picture; empty for the style's own.
        seed: -1 for a random seed (the seeds used are returned), else 0 or more: same seed, same image.
        fast: true renders in fewer steps (quicker, a little less detail).
        best_of: candidates rendered per kept image (1-4); the best likeness is kept.
        lora_strength: how strongly a LoRA identity acts (0 turns it off; 1 is the default).
        ai_mark: true adds a visible "AI-generated" mark to each image (the metadata always says so).
        linkedin: true adds a 400x400 crop, centred on the face, after each headshot.
        identity_link: the identity as text: the link create_identity returned, or a data: URL of the file.
        face_region_only: true (default) keeps the identity on the face; the prompt decides the rest.
        backdrop: a backdrop id from list_options, a colour as "#rrggbb", or "style" for the style's own.
        outfit: an outfit id from list_options, or "style" for the style's own.
        subject: subject hint ids from list_options (at most one per group), e.g. ["woman", "smile"].

    Returns:
        a ZIP of PNGs (named by style and seed), the gallery, and info (JSON).
    """
    own = caller_session(session, request)
    loaded = identity_required(identity, own, identity_link)
    options = _options(
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        fast=fast,
        best_of=best_of,
        lora_strength=lora_strength,
        ai_mark=ai_mark,
        linkedin=linkedin,
        face_region_only=face_region_only,
        backdrop=backdrop,
        outfit=outfit,
        subject=subject,
    )
    result = studio.generate_pack(
        loaded, styles or [], images_per_style, options, progress=_progress(progress), session=own
    )
    finish_call(own, session, handed_out=True)
    return str(result.zip_path), _gallery(result), result.info


@user_errors
def continue_headshots(
    session=None, request: gr.Request = None, progress=gr.Progress()
) -> tuple[str | None, list, dict]:
    """Finish this session's generate or generate_pack that ran out of GPU time partway.

    When ZeroGPU refuses (quota) or stops a later GPU step of a run, generate and generate_pack return the
    headshots already made, with info.incomplete: made, requested and left (headshots), the refusal's message,
    gpu_seconds_requested and gpu_seconds_left, retry_after_s and gpu_back_at (when GPU time returns). The rest
    is kept for this session; this renders it with the seeds it would have had, so the two runs together give
    the headshots of a run never stopped. Refused again partway, it returns what it made, as generate does.

    Takes no parameters: the run to finish belongs to the calling session (a browser tab, an API client, or an
    MCP session, across its calls).

    Returns:
        the pack's ZIP with every headshot of the pack so far (null for generate), the gallery of the headshots
        made now, and info (JSON, as generate's; info.continued says which part this is).
    """
    own = caller_session(session, request)
    result = studio.continue_headshots(own, progress=_progress(progress))
    finish_call(own, session, handed_out=True)
    return (str(result.zip_path) if result.zip_path else None), _gallery(result), result.info


# What a person can do with a headshot they made (results.py): each takes the identity and one of the
# caller's own headshot PNGs, whose settings (written into it) are the recipe.


def _headshot_required(image: str | None, session: sessions.Session, link: str = ""):
    linked = linked_files(link, session, "headshot")
    if not image and not linked:
        raise gr.Error("Choose one of your headshots (its PNG file) first.", title="No headshot")
    return linked[0] if linked else session.adopt([image])[0]


@user_errors
def refine(
    identity: str | None = None,
    image: str | None = None,
    scale: float = 0,
    strength: float = 0,
    identity_link: str = "",
    image_link: str = "",
    session=None,
    request: gr.Request = None,
    progress=gr.Progress(),
) -> tuple[list, str, dict]:
    """Refine a headshot to a higher resolution: upscaled, then a light image-to-image pass with the same identity, prompt, settings and seed.

    Args:
        identity: the identity file (.safetensors) from create_identity. Over MCP: its URL, or use identity_link.
        image: one of this session's headshot PNGs (its settings are read from it). Over MCP: its URL.
        scale: the upscale factor; 0 is 2x (at most 2048 px on the long side).
        strength: how much the image-to-image pass may change; 0 is 0.3.
        identity_link: the identity as text: the link create_identity returned, or a data: URL of the file.
        image_link: the headshot as text: the link this session was given for it, or a data: URL.

    Returns:
        the gallery, the refined PNG file and info (JSON).
    """
    own = caller_session(session, request)
    loaded = identity_required(identity, own, identity_link)
    result = results.refine(
        loaded,
        _headshot_required(image, own, image_link),
        scale=_unset(scale, 0),
        strength=_unset(strength, 0),
        progress=_progress(progress),
        session=own,
    )
    finish_call(own, session, handed_out=True)
    return _gallery(result), str(result.headshots[0].path), result.info


@user_errors
def more_like_this(
    identity: str | None = None,
    image: str | None = None,
    count: float = 4,
    strength: float = 0,
    identity_link: str = "",
    image_link: str = "",
    session=None,
    request: gr.Request = None,
    progress=gr.Progress(),
) -> tuple[list, dict]:
    """More headshots like this one: variations with its settings and new seeds, best likeness first.

    Args:
        identity: the identity file (.safetensors) from create_identity. Over MCP: its URL, or use identity_link.
        image: one of this session's headshot PNGs (its settings are read from it). Over MCP: its URL.
        count: how many variations (1-8).
        strength: how far they may stray from it; 0 is 0.55 (lower stays closer).
        identity_link: the identity as text: the link create_identity returned, or a data: URL of the file.
        image_link: the headshot as text: the link this session was given for it, or a data: URL.

    Returns:
        the gallery and info (JSON).
    """
    own = caller_session(session, request)
    loaded = identity_required(identity, own, identity_link)
    result = results.more_like_this(
        loaded,
        _headshot_required(image, own, image_link),
        count,
        strength=_unset(strength, 0),
        progress=_progress(progress),
        session=own,
    )
    finish_call(own, session, handed_out=True)
    return _gallery(result), result.info


@user_errors
def regenerate(
    identity: str | None = None,
    image: str | None = None,
    identity_link: str = "",
    image_link: str = "",
    session=None,
    request: gr.Request = None,
    progress=gr.Progress(),
) -> tuple[list, dict]:
    """Render a headshot again with its settings and a new seed (one image).

    Args:
        identity: the identity file (.safetensors) from create_identity. Over MCP: its URL, or use identity_link.
        image: one of this session's headshot PNGs (its settings are read from it). Over MCP: its URL.
        identity_link: the identity as text: the link create_identity returned, or a data: URL of the file.
        image_link: the headshot as text: the link this session was given for it, or a data: URL.

    Returns:
        the gallery and info (JSON).
    """
    own = caller_session(session, request)
    loaded = identity_required(identity, own, identity_link)
    result = results.regenerate(
        loaded, _headshot_required(image, own, image_link), progress=_progress(progress), session=own
    )
    finish_call(own, session, handed_out=True)
    return _gallery(result), result.info


def list_styles() -> list[dict]:
    """The style presets: a list of {id, name, description}."""
    return styles.list_styles()


def list_options() -> dict:
    """Everything /generate and /generate_pack can be asked for: {styles, backdrops, outfits, subject}, each
    a list of {id, name, ...}. Pass a backdrop or outfit id as `backdrop` / `outfit` ("style" keeps the
    style's own) and subject hint ids as `subject` (at most one per group: person, age, glasses, expression)."""
    return styles.list_options()


@user_errors
def verify(image: str | None = None, image_link: str = "", session=None, request: gr.Request = None) -> dict:
    """Check an image's Content Credentials (C2PA): any image, a headshot of this app or not.

    Args:
        image: the image file, as downloaded (a screenshot or a re-saved copy has none). Over MCP: an http(s)
            URL or a data: URL.
        image_link: the image as text instead: a data: URL, or a path from /gradio_api/upload.

    Returns:
        JSON: status (valid, tampered, invalid, none or unsupported), valid, ours (signed with this app's key),
        ai_generated, made (when), signed_by, history (each manifest from the oldest parent on, with its
        actions: c2pa.created, c2pa.opened, c2pa.edited, c2pa.cropped), problems and message.
    """
    own = caller_session(session, request)
    linked = linked_files(image_link, own, "image")
    if not image and not linked:
        raise gr.Error("Choose an image to check first.", title="No image")
    report = credentials.verify(linked[0] if linked else own.adopt([image])[0])
    finish_call(own, session, handed_out=False)
    return report


NOTHING_TO_DELETE = (
    "Nothing to delete: this session has no files on the server (none made yet, or already deleted)."
)


def delete_my_data(files: str = "", session=None, request: gr.Request = None):
    """Delete this session's data from the server now: the selfies it sent, their thumbnails, identity files and headshots of every run. Every link to them answers 404 afterwards.

    Args:
        files: optional; links (or server paths) this session was given, separated by spaces: then only those files are deleted. Empty: everything of this session.

    Returns:
        {deleted_files, message}
    """
    own = caller_session(session, request)
    named = referenced_paths((files or "").split())
    result = sessions.delete_named(own, named) if named else {**own.delete(), "not_yours": 0}
    count = result["deleted_files"]
    if count:
        message = f"Deleted your data from this server: {count} file{'s' if count != 1 else ''}."
    else:
        message = NOTHING_TO_DELETE
    if result["not_yours"]:
        message += f" {result['not_yours']} link(s) were not files of this session and were left alone."
    return {"deleted_files": count, "message": message}


# --------------------------------------------------------------------------------------
# A chosen headshot: next to the selfie, favourites (results)
# --------------------------------------------------------------------------------------


@user_errors
def favourite(image: str = "", session=None, request: gr.Request = None) -> tuple[list, str | None]:
    """Star a headshot made in this session, or unstar it if it is starred already.

    Args:
        image: the headshot's file name as generate's info lists it (images[i].file), or its path or link.

    Returns:
        the favourites (a gallery, in the order they were starred) and a ZIP of them (null when none).
    """
    from headshot.faces.analyzer import get_analyzer

    own = caller_session(session, request)
    results.toggle_favourite(own, (referenced_paths([image]) or [image])[0])
    chosen = results.favourites(own)
    analyzer = get_analyzer()
    shown = []
    for path in chosen:
        pick = results.read_pick(path, analyzer)
        shown.append((str(path), results.caption(pick.likeness, pick.verdict, pick.style)))
    return shown, (str(results.favourites_zip(own, analyzer)) if chosen else None)
