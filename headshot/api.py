"""The endpoints: each handler is a Gradio API endpoint (and MCP tool) in a few lines that call ``studio``.

Handlers turn component values into calls to ``studio`` and ``HeadshotError`` into ``gr.Error`` with the
same message. The API's "the style's value" sentinels (``-1``, and ``0`` for steps and the LoRA
settings) become ``None`` here, at the boundary: the core reads every other value, 0 included, as given.
Files are the caller's session's (``webfiles``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import gradio as gr

from . import config, results, sessions, studio
from .errors import HeadshotError
from .webfiles import EXAMPLES_DIR, _done, _linked_files, _referenced_paths, _session

CONSENT_MISSING = "Please tick the consent box first: these must be photos of you, or of someone who agreed."


API_CONSENT = "Calling this endpoint asserts that the photos are of you, or that the person agreed."


def _user_errors(fn):
    """Turn the core's typed errors into messages the person sees; keep the app serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HeadshotError as err:
            title = "Training paused" if err.code == "training_paused" else "Could not do that"
            raise gr.Error(err.message, title=title) from err

    return wrapper


def _progress(progress: gr.Progress):
    return lambda fraction, desc="": progress(fraction, desc=desc)


def _paths(files) -> list[str]:
    if not files:
        return []
    if isinstance(files, (str, Path)):
        return [str(files)]
    return [str(f) for f in files if f]


def require_consent(consent: bool) -> None:
    """Stop the step until the consent box is ticked. Gradio's toasts are headed by their kind, not by the
    title, so the reminder is a warning ("Consent needed: ..."), never an "Error"; the stop is silent."""
    if not consent:
        gr.Warning(f"Consent needed. {CONSENT_MISSING}", duration=8, title="Consent needed")
        raise gr.Error(CONSENT_MISSING, title="Consent needed", visible=False)


@_user_errors
def validate_selfies(
    selfies: list[str] | None = None, selfie_links: str = "", session=None, request: gr.Request = None
) -> dict:
    """Check 1-12 selfies and report, per photo, whether it is usable and why not.

    selfies: image files. selfie_links (MCP agents, plain HTTP): the selfies as data: URLs (base64), or
    links to files uploaded to this app, separated by spaces. Returns the validation report: `ready`
    (enough for InstantID), `ready_lora`, `accepted`, and per selfie its issues (code, severity,
    message) and face measurements.
    """
    own = _session(session, request)
    files = [*_paths(selfies), *_linked_files(selfie_links, own, "selfie")]
    report = studio.validate(own.adopt(files)).report
    _done(own, session, handed_out=False)
    return report


def selfie_cards(selfies: list[str] | None, report: dict, session=None):
    """Thumbnails with a pass/fail caption per photo, and the overall readiness (written as files in
    the session's folder, so Delete removes them with the rest)."""
    from . import imaging

    own = _session(session, None)
    cards = []
    folder = None
    # The report lists the checked selfies in upload order (files past the limit are not in it).
    for path, entry in zip(own.adopt(_paths(selfies)), report.get("selfies", []), strict=False):
        try:
            image = imaging.load_image(path)
            image.thumbnail((256, 256))
            folder = folder or own.new_dir("thumbnails")
            thumb = folder / f"{len(cards):02d}-{Path(path).stem}.png"
            image.save(thumb)
            own.record(thumb)
        except (HeadshotError, OSError):
            thumb = None
        errors = [i["message"] for i in entry["issues"] if i["severity"] == "error"]
        warnings = [i["message"] for i in entry["issues"] if i["severity"] == "warning"]
        if entry.get("accepted"):
            caption = "✅ " + Path(path).name + (f" — note: {warnings[0]}" if warnings else "")
        else:
            caption = "❌ " + Path(path).name + (f" — {errors[0]}" if errors else "")
        if thumb is not None:
            cards.append((str(thumb), caption))
    return cards, readiness_text(report)


def readiness_text(report: dict) -> str:
    total = len(report.get("selfies", []))
    accepted = report.get("accepted", 0)
    lines = [f"**{accepted} of {total} selfies accepted.**"]
    lines.append(
        ("✅" if report.get("ready") else "❌")
        + f" InstantID (needs {config.INSTANTID_MIN_ACCEPTED} or more)"
    )
    lines.append(
        ("✅" if report.get("ready_lora") else "❌") + f" LoRA (needs {config.LORA_MIN_ACCEPTED} or more)"
    )
    if report.get("set"):  # the set as a whole (issue 22): a verdict and at most two suggestions
        lines[0] += "\n\n🧭 " + " ".join([report["set"]["verdict"], *report["set"]["suggestions"]])
    for err in report.get("errors", []):
        lines.append(f"⚠️ {err.get('message', err)}")
    rejected = [s for s in report.get("selfies", []) if not s.get("accepted")]
    for s in rejected:
        reasons = "; ".join(i["message"] for i in s["issues"] if i["severity"] == "error")
        lines.append(f"- **{s['file']}**: {reasons}")
    return "\n\n".join(lines[:3]) + ("\n\n" + "\n".join(lines[3:]) if len(lines) > 3 else "")


# The Gradio API's sentinels for "the style's value" / "the default" (turned into None by _unset).
STYLE_VALUE = -1  # guidance, identity strength, IdentityNet strength


STYLE_STEPS = 0  # steps (0 is never a valid step count)


DEFAULT_LORA_SETTING = 0  # LoRA steps, rank, learning rate (0 is never a valid one)


RANDOM_SEED = -1  # the seed of /generate and /generate_pack: any negative seed is random


def _unset(value, sentinel):
    """None (the style's or the default value) for the API's sentinel, else the value as given."""
    return None if value is None or value == sentinel else value


@_user_errors
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

    method: "instantid" (seconds, one face embedding) or "lora" (a quick fine-tune, minutes).
    lora_steps / lora_rank / lora_learning_rate: 0 keeps the defaults. selfie_links: as for
    validate_selfies (data: URLs or links to files uploaded to this app). Returns the identity file
    (.safetensors) and a summary (JSON). When the GPU time runs out during LoRA training, the error
    says so and the training is kept: /continue_identity goes on from the step it reached.
    """
    own = _session(session, request)
    result = studio.create_identity(
        own.adopt([*_paths(selfies), *_linked_files(selfie_links, own, "selfie")]),
        method,
        lora_steps=_unset(lora_steps, DEFAULT_LORA_SETTING),
        lora_rank=_unset(lora_rank, DEFAULT_LORA_SETTING),
        lora_learning_rate=_unset(lora_learning_rate, DEFAULT_LORA_SETTING),
        seed=0 if seed is None else seed,
        progress=_progress(progress),
        session=own,
    )
    _done(own, session, handed_out=True)
    return str(result.path), public_summary(result.summary)


@_user_errors
def continue_identity(session=None, request: gr.Request = None, progress=gr.Progress()) -> tuple[str, dict]:
    """Continue this session's LoRA training from the step it reached when the GPU time ran out.

    Returns the identity file and summary, as /create_identity does.
    """
    own = _session(session, request)
    result = studio.continue_identity(own, progress=_progress(progress))
    _done(own, session, handed_out=True)
    return str(result.path), public_summary(result.summary)


def continue_button(session=None, request: gr.Request = None):
    """Show Continue while this session has a paused LoRA training."""
    paused = studio.paused_training(_session(session, request))
    if paused is None:
        return gr.update(visible=False)
    label = f"Continue LoRA training (saved at step {paused['steps_done']} of {paused['steps_total']})"
    return gr.update(visible=True, value=label)


@_user_errors
def show_identity(identity: str | None, session=None):
    """The reference face with its keypoints and a short summary, for the Identity step (the picture is
    a file in the session's folder)."""
    from .identity import identity_summary, reference_with_keypoints

    own = _session(session, None)
    if not identity:
        return None, ""
    (path,) = own.adopt([identity])
    loaded = studio.open_identity(path)
    summary = public_summary(identity_summary(loaded))
    method = "LoRA" if summary.get("has_lora") else "InstantID"
    count = summary["selfie_count"]
    text = (
        f"✅ **Identity ready**: your face, learned with {method} from {count} selfie{'s' if count != 1 else ''}. "
        "Press **Next** to make your headshots."
    )
    picture = own.new_dir("reference") / "reference.png"
    reference_with_keypoints(loaded).save(picture)
    own.record(picture)
    return str(picture), text


def public_summary(summary: dict) -> dict:
    """An identity summary without server paths: a model given as a local folder is shown by its name."""
    out = dict(summary)
    for key in ("base_model", "face_pack"):
        value = out.get(key)
        if isinstance(value, str) and (os.path.isabs(value) or value.startswith(("~", "./", "../"))):
            out[key] = Path(value).name or value
    return out


def _empty_means(sentinel, **kwargs) -> gr.Number:
    """A number a person may leave empty (placeholder: what empty means), and behind it the API's parameter,
    hidden, which keeps the API's sentinel default (so API callers may still leave it out or send it):
    the visible field copies its value there, empty as the sentinel."""
    api = gr.Number(sentinel, visible=False, **kwargs)
    shown = {k: v for k, v in kwargs.items() if k != "elem_id"}
    field = gr.Number(None, elem_id=f"{kwargs['elem_id']}_field", **shown)
    field.change(lambda value: sentinel if value is None else value, field, api, api_visibility="private")
    return api


def _show():
    return gr.update(visible=True)


def _next_after_check(report: dict | None):
    """Show Next once the selfies are good enough for an identity."""
    return gr.update(visible=bool(report and report.get("ready")))


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
    """Each headshot, best first, followed by its LinkedIn crop when one was asked for."""
    items = []
    size = f"{config.LINKEDIN_SIZE}x{config.LINKEDIN_SIZE}"
    for shot in result.headshots:
        if shot.likeness is None:
            badge = "⚠️ no face found"
        elif shot.verdict == "good":
            badge = f"★ likeness {shot.likeness:.2f}"
        else:
            badge = f"⚠️ low likeness {shot.likeness:.2f}"
        items.append((str(shot.path), f"{badge} · {shot.style} · seed {shot.seed}"))
        if shot.linkedin_path:
            items.append((str(shot.linkedin_path), f"LinkedIn {size} · {shot.style} · seed {shot.seed}"))
    return items


def _identity_required(identity, session: sessions.Session, link: str = ""):
    linked = _linked_files(link, session, "identity")
    if not identity and not linked:
        raise gr.Error(
            "Create an identity in step 2, or upload your identity file, first.", title="No identity"
        )
    # A link is as good as the file it names (an unguessable path the app returned); a file parameter
    # is this caller's own upload or output, never another session's.
    return studio.open_identity(linked[0] if linked else session.adopt([identity])[0])


@_user_errors
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
    """Render headshots of one style for an identity file, best likeness first.

    seed -1 is random (the seed used is returned); steps 0 and guidance / strengths -1 use the style's
    values; aspect "style", "square", "4:5" or "3:4"; linkedin adds a 400x400 crop after each
    headshot; face_region_only (default true) keeps the identity on the face so the prompt decides
    outfit and backdrop. Returns the gallery and info (JSON: seed per image, style, likeness per image,
    the LinkedIn crop's file name; likeness is null where no face is found). identity_link (MCP
    agents): the identity as a data: URL, or the link create_identity returned, instead of the file.
    backdrop / outfit: an id from /list_options ("style" keeps the style's own); subject: subject hint
    ids from /list_options (e.g. ["woman", "age-30s", "glasses", "smile"]; at most one per group).
    """
    own = _session(session, request)
    loaded = _identity_required(identity, own, identity_link)
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
    _done(own, session, handed_out=True)
    return _gallery(result), result.info


@_user_errors
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
    """A headshot pack: several styles in one run. Returns a ZIP of PNGs (named by style and seed),
    the gallery, and info (JSON). identity_link, backdrop, outfit, subject: as for generate."""
    own = _session(session, request)
    loaded = _identity_required(identity, own, identity_link)
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
    _done(own, session, handed_out=True)
    return str(result.zip_path), _gallery(result), result.info


# What a person can do with a headshot they made (results.py): each takes the identity and one of the
# caller's own headshot PNGs, whose settings (written into it) are the recipe.


def _headshot_required(image: str | None, session: sessions.Session, link: str = ""):
    linked = _linked_files(link, session, "headshot")
    if not image and not linked:
        raise gr.Error("Choose one of your headshots (its PNG file) first.", title="No headshot")
    return linked[0] if linked else session.adopt([image])[0]


@_user_errors
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
    """Refine a headshot to a higher resolution: upscaled (scale 0: 2x, at most 2048 px on the long side),
    then a light image-to-image pass (strength 0: 0.3) with the same identity, prompt, settings and seed.

    image: a headshot PNG this app made (its settings are read from it). Returns the gallery, the refined
    PNG file and info (JSON). identity_link / image_link (MCP agents): data: URLs or links to this
    app's files instead of the files.
    """
    own = _session(session, request)
    loaded = _identity_required(identity, own, identity_link)
    result = results.refine(
        loaded,
        _headshot_required(image, own, image_link),
        scale=_unset(scale, 0),
        strength=_unset(strength, 0),
        progress=_progress(progress),
        session=own,
    )
    _done(own, session, handed_out=True)
    return _gallery(result), str(result.headshots[0].path), result.info


@_user_errors
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
    """More headshots like this one: `count` variations with its settings and new seeds, rendered from it
    (strength 0: 0.55; lower stays closer), best likeness first. image, identity_link, image_link: as for
    refine. Returns the gallery and info (JSON)."""
    own = _session(session, request)
    loaded = _identity_required(identity, own, identity_link)
    result = results.more_like_this(
        loaded,
        _headshot_required(image, own, image_link),
        count,
        strength=_unset(strength, 0),
        progress=_progress(progress),
        session=own,
    )
    _done(own, session, handed_out=True)
    return _gallery(result), result.info


@_user_errors
def regenerate(
    identity: str | None = None,
    image: str | None = None,
    identity_link: str = "",
    image_link: str = "",
    session=None,
    request: gr.Request = None,
    progress=gr.Progress(),
) -> tuple[list, dict]:
    """Render a headshot again with its settings and a new seed (one image). image, identity_link,
    image_link: as for refine. Returns the gallery and info (JSON)."""
    own = _session(session, request)
    loaded = _identity_required(identity, own, identity_link)
    result = results.regenerate(
        loaded, _headshot_required(image, own, image_link), progress=_progress(progress), session=own
    )
    _done(own, session, handed_out=True)
    return _gallery(result), result.info


def list_styles() -> list[dict]:
    """The style presets: a list of {id, name, description}."""
    return studio.list_styles()


def list_options() -> dict:
    """Everything /generate and /generate_pack can be asked for: {styles, backdrops, outfits, subject}, each
    a list of {id, name, ...}. Pass a backdrop or outfit id as `backdrop` / `outfit` ("style" keeps the
    style's own) and subject hint ids as `subject` (at most one per group: person, age, glasses, expression)."""
    return studio.list_options()


def preview(style_id: str | None, backdrop_id: str | None):
    """The preview swatch of the chosen backdrop, or of the style's own backdrop (no GPU)."""
    return studio.preview_swatch(style_id, backdrop_id)


NOTHING_TO_DELETE = "Nothing to delete: this session has no files on the server (none made yet, or already deleted)."


def delete_my_data(files: str = "", session=None, request: gr.Request = None):
    """Delete this session's data from the server now: the selfies it sent, their thumbnails, identity
    files and headshots of every run. Every link to them answers 404 afterwards.

    files: optional links (or server paths) the app returned, separated by spaces, for callers without
    a lasting session (an MCP agent): each deletes the whole call's folder that holds it. Returns
    {deleted_files, message}.
    """
    own = _session(session, request)
    lasting = isinstance(session, dict) and own is session.get("files")
    result = own.delete() if lasting else {"deleted_files": 0}
    by_reference = sessions.delete_by_reference(_referenced_paths((files or "").split()))
    count = result["deleted_files"] + by_reference["deleted_files"]
    if count:
        message = f"Deleted your data from this server: {count} file{'s' if count != 1 else ''}."
    else:
        message = NOTHING_TO_DELETE
    if by_reference["not_ours"]:
        message += f" {by_reference['not_ours']} link(s) were not files of this app and were left alone."
    return {"deleted_files": count, "message": message}


def _after_delete(result: dict):
    """The UI after Delete: say what happened and empty every field that showed the session's files."""
    gr.Info(result.get("message", NOTHING_TO_DELETE))
    # selfies, identity file, gallery, pack, cards, reference, identity text, readiness, report, info, Nexts,
    # the chosen headshot's panel and path, the favourites, their ZIP and their section
    hidden = gr.update(visible=False)
    gone = gr.update(value=None, visible=False)
    return [None, None, None, None, None, None, "", "", None, {}, hidden, hidden, hidden, "", None, None, hidden, gone]


def _style_choices() -> list[tuple[str, str]]:
    return [(s["name"], s["id"]) for s in studio.list_styles()]


def _style_blurb(style_id: str) -> str:
    for s in studio.list_styles():
        if s["id"] == style_id:
            return f"*{s['description']}*"
    return ""


def _example_selfies() -> list[list[list[str]]]:
    photos = sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".png", ".webp"))
    return [[photos]] if photos else []


def device_note() -> str:
    """What the person is told about the machine (no GPU, the tiny profile, ...)."""
    note = studio.device_summary().get("note")
    return f"> {note}" if note else ""



# --------------------------------------------------------------------------------------
# A chosen headshot: next to the selfie, favourites (results)
# --------------------------------------------------------------------------------------


@_user_errors
def pick_headshot(gallery, identity, identity_link: str, session, evt: gr.SelectData, request: gr.Request = None):
    """The headshot clicked in the gallery, next to the reference selfie, with its likeness (UI only)."""
    from . import results
    from .faces import get_analyzer

    own = _session(session, request)
    items = gallery or []
    if evt is None or not isinstance(evt.index, int) or not (0 <= evt.index < len(items)):
        return [gr.update()] * 7
    item = items[evt.index]
    image = item[0] if isinstance(item, (list, tuple)) else item
    loaded = _identity_required(identity, own, identity_link)
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


def _gallery_items(gallery) -> list[tuple[str, str | None]]:
    return [(str(item[0]), item[1]) if isinstance(item, (list, tuple)) else (str(item), None) for item in gallery or []]


def more_like_this_ui(gallery, identity, image: str, identity_link: str, session, request: gr.Request = None,
                      progress=gr.Progress()):
    """More like the chosen headshot, the variations first in the gallery (UI; /more_like_this in the API)."""
    new, info = more_like_this(identity, image, 4, 0, identity_link, "", session, request, progress)
    return new + _gallery_items(gallery), info


def regenerate_ui(gallery, identity, image: str, identity_link: str, session, request: gr.Request = None,
                  progress=gr.Progress()):
    """The chosen headshot rendered again with a new seed, in its place in the gallery, and shown as chosen."""
    from . import results
    from .faces import get_analyzer

    new, info = regenerate(identity, image, identity_link, "", session, request, progress)
    items = _gallery_items(gallery)
    spot = next((i for i, (path, _) in enumerate(items) if path == str(image)), None)
    items = new + items if spot is None else items[:spot] + new + items[spot + 1:]
    path = str(new[0][0])
    analyzer = get_analyzer()
    return items, info, path, path, results.read_pick(Path(path), analyzer).text(analyzer.same_person_threshold)


def refine_ui(identity, image: str, identity_link: str, session, request: gr.Request = None, progress=gr.Progress()):
    """The chosen headshot at a higher resolution, as a download beside it (UI; /refine in the API)."""
    _, path, info = refine(identity, image, 0, 0, identity_link, "", session, request, progress)
    return gr.update(value=path, visible=True), info


def _star_label(starred: bool) -> str:
    return "★ In your favourites (remove)" if starred else "☆ Add to favourites"


@_user_errors
def favourite(image: str = "", session=None, request: gr.Request = None) -> tuple[list, str | None]:
    """Star a headshot made in this session, or unstar it if it is starred already.

    image: the headshot's file name as /generate's info lists it (`images[i].file`), or its path. Returns
    the favourites (a gallery, in the order they were starred) and a ZIP of them (null when none).
    """
    from . import results
    from .faces import get_analyzer

    own = _session(session, request)
    results.toggle_favourite(own, image)
    chosen = results.favourites(own)
    return [(str(p), p.stem) for p in chosen], (
        str(results.favourites_zip(own, get_analyzer())) if chosen else None
    )


def favourites_view(image: str, session=None, request: gr.Request = None):
    """The UI after a star: the section shown while there are favourites, the button's label (UI only)."""
    own = _session(session, request)
    return gr.update(visible=bool(own.favourites)), gr.update(value=_star_label(str(image) in own.favourites))
