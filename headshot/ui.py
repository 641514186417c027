"""The Gradio app: three steps (Selfies, Identity, Generate), each also an API endpoint.

Handlers here are a few lines each: they turn component values into calls to ``studio`` and turn
``HeadshotError`` into ``gr.Error`` with the same message. The only module that imports gradio.
``build_demo()`` only builds the Blocks; ``serve()`` starts the preload and the sweeper and launches.
Slider and number bounds are the ``config`` limits. The API's "the style's value" sentinels
(``-1``, and ``0`` for steps and the LoRA settings) become ``None`` here, at the boundary: the core
reads every other value, 0 included, as given.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from . import config, sessions, studio
from .errors import HeadshotError

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

CONSENT_LABEL = "These are photos of me, or I have the person's permission to use them to make AI headshots."
CONSENT_MISSING = "Please tick the consent box first: these must be photos of you, or of someone who agreed."

HEADER = """
<div class="hs-header">
  <div class="hs-title">📸 Headshot Studio</div>
  <div class="hs-tagline">Professional studio headshots from 3-6 selfies: business attire, studio or outdoor
  backdrops, good light. Three steps: your selfies, your face, your headshots.</div>
</div>
"""

SELFIES_LABEL = "Your selfies (3-6 work best)"
STEP_SELFIES = (
    "**Step 1 of 3.** Add 3-6 selfies, tick the consent box and press **Check my selfies**: "
    "each photo gets a pass or a reason it was refused."
)
STEP_IDENTITY = (
    "**Step 2 of 3.** Press **Create my identity**: the app learns your face from the accepted selfies. "
    "Download the identity file to come back later without uploading your selfies again."
)
STEP_GENERATE = (
    "**Step 3 of 3.** Pick a style and press **Generate headshots**. The best likeness comes first; "
    "click an image to see it large and download it."
)

TIPS = f"""
**Tips for good selfies.** Face the camera, eyes open, in soft daylight (face a window).
Use different days, outfits and backgrounds, but only you in the picture. No sunglasses, hats or
heavy filters. Hold the phone at eye level and tap to focus on your face. JPEG, PNG, WebP and
iPhone HEIC photos are fine, up to {config.MAX_SELFIES} at a time.
"""

PRIVACY = f"""
**Your photos stay yours.** Nothing is processed before you tick the consent box. Uploads and results
are deleted from the server within {sum(config.DELETE_CACHE) // 60} minutes, nothing is kept
beyond that, and **Delete my data** removes everything of this session now (every link to it then
answers "not found"). Your files are kept in a folder of this session's own, never shared with another
visitor. The identity file is yours to download and upload again later. Every image is labelled as AI-generated
in its metadata (IPTC `trainedAlgorithmicMedia`). Calling the API asserts the same consent.
"""

# The README's licence table: on a Space its page (SPACE_ID is set there), else the README next to app.py.
_README_LICENCES = (
    f"https://huggingface.co/spaces/{os.environ['SPACE_ID']}/blob/main/README.md#licences"
    if os.environ.get("SPACE_ID")
    else "README.md#licences"
)
LICENCES = f"""
**Licences.** The app's code is Apache-2.0, but some of the models it runs are not free for business use:
InstantID's checkpoints are released for research only and insightface's antelopev2 face models for
non-commercial research only. Before using this app or its images commercially, read the
[licence table]({_README_LICENCES}) and the terms of each model.
"""

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


# --------------------------------------------------------------------------------------
# Handlers (each one is an API endpoint or the UI glue around one)
# --------------------------------------------------------------------------------------


def require_consent(consent: bool) -> None:
    """Stop the step until the consent box is ticked. Gradio's toasts are headed by their kind, not by the
    title, so the reminder is a warning ("Consent needed: ..."), never an "Error"; the stop is silent."""
    if not consent:
        gr.Warning(f"Consent needed. {CONSENT_MISSING}", duration=8, title="Consent needed")
        raise gr.Error(CONSENT_MISSING, title="Consent needed", visible=False)


# --------------------------------------------------------------------------------------
# Sessions: whose files these are (see sessions.Session)
# --------------------------------------------------------------------------------------


def _via_mcp(request: gr.Request | None) -> bool:
    """Gradio's MCP server relays every agent's calls through one shared client session, so an MCP call
    gets a session of its own for that call (never the shared state); its client says who it is."""
    headers = getattr(request, "headers", None)
    return bool(headers) and headers.get("x-gradio-user") == "mcp"


def _session(state, request: gr.Request | None) -> sessions.Session:
    """The session to work in: this tab's or API client's own (kept in its gr.State dict, made on first
    use and changed in place), or for an MCP call a session for this call only."""
    if _via_mcp(request) or not isinstance(state, dict):
        return sessions.Session()
    return state.setdefault("files", sessions.Session())


def _done(session: sessions.Session, state, *, handed_out: bool) -> None:
    """After a call: a one-call (MCP) session drops the selfies it was sent, and everything when it
    handed nothing out; a lasting session keeps its files for the next call and for Delete."""
    if not isinstance(state, dict) or session is not state.get("files"):
        session.forget_inputs()
        if not handed_out:
            session.delete()


LINKS_HELP = (
    "data: URLs (base64), or links to files uploaded to this app (`/gradio_api/file=...`, or the server "
    "paths that POST /gradio_api/upload returns), separated by spaces"
)


def _linked_files(links: str | None, session: sessions.Session, kind: str) -> list[Path]:
    """The files that API and MCP callers send as text: data URLs are written into the session's folder;
    links to this app's own files are used where they are. Anything else is refused."""
    import base64
    import binascii
    from urllib.parse import unquote, urlsplit

    files: list[Path] = []
    for index, link in enumerate((links or "").split()):
        if link.startswith("data:"):
            head, _, data = link.partition(",")
            if len(data) > (config.MAX_IDENTITY_BYTES * 4) // 3 + 4:
                raise gr.Error(f"Link {index + 1} is too large: send at most {config.MAX_IDENTITY_BYTES >> 20} MB.")
            try:
                raw = base64.b64decode(data, validate=True) if head.endswith(";base64") else unquote(data).encode()
            except (binascii.Error, ValueError):
                raise gr.Error(f"Link {index + 1} is not valid base64 data.") from None
            suffix = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "heic": ".heic", "avif": ".avif"}.get(
                head.partition("/")[2].partition(";")[0], ".bin"
            )
            files.append(session.save_bytes(raw, f"{kind}-{index + 1}{suffix}"))
            continue
        value = unquote(urlsplit(link).path.split("/file=", 1)[1]) if "/file=" in link else link
        path = Path(value)
        served = sessions.work_root().resolve().parent
        try:
            inside = path.is_absolute() and path.resolve().is_relative_to(served)
        except OSError:
            inside = False
        if not inside:
            raise gr.Error(
                f"Link {index + 1} is neither a data: URL nor a file uploaded to this app: send {LINKS_HELP}."
            )
        files.append(path)
    return files


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


def _referenced_paths(files) -> list[str]:
    """Server paths from what a caller was given: ``/gradio_api/file=`` URLs, file dicts or paths."""
    from urllib.parse import unquote, urlsplit

    if not files:
        return []
    out = []
    for item in files if isinstance(files, list) else [files]:
        value = item.get("path") or item.get("url") if isinstance(item, dict) else item
        if not isinstance(value, str) or not value.strip():
            continue
        value = value.strip()
        if "/file=" in value:
            value = unquote(urlsplit(value).path.split("/file=", 1)[1])
        out.append(value)
    return out


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
    # selfies, identity file, gallery, pack, cards, reference, identity text, readiness, report, info, Nexts
    hidden = gr.update(visible=False)
    return [None, None, None, None, None, None, "", "", None, {}, hidden, hidden]


# --------------------------------------------------------------------------------------
# Files on the HTTP layer: private uploads, 404 for deleted files, an MCP schema without $ref
# --------------------------------------------------------------------------------------

_RECENT_UPLOADS: dict[str, str] = {}  # Gradio's content-addressed upload path -> our last private copy
_RECENT_LIMIT = 256
_EXAMPLE_FILES: list[tuple[int, str]] = []  # (size, sha256) of the public example photos


def _is_example_file(path: Path) -> bool:
    """The bytes of one of the public example photos: Gradio's cached copy of those serves the Examples of
    every visitor and is never deleted."""
    import hashlib

    if not _EXAMPLE_FILES:
        _EXAMPLE_FILES.extend(
            (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in EXAMPLES_DIR.glob("*")
            if p.is_file() and p.suffix.lower() in (".jpg", ".png", ".webp")
        )
    try:
        size = path.stat().st_size
        if not any(size == known for known, _ in _EXAMPLE_FILES):
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() in {digest for _, digest in _EXAMPLE_FILES}
    except OSError:
        return False


def private_upload(path: str) -> str:
    """A path of its own for one upload: Gradio names uploads by their content, so identical uploads from
    two sessions would share one path that either could delete. The bytes get a second name in a
    folder of their own (an unguessable token), and Gradio's shared name is removed (unless it is the
    copy behind the public examples)."""
    import os
    import shutil

    source = Path(path)
    dest = sessions.uploads_root() / sessions.new_token() / source.name
    dest.parent.mkdir(parents=True)
    try:
        os.link(source, dest)
    except FileNotFoundError:  # an identical upload that finished just before took Gradio's name away
        earlier = _RECENT_UPLOADS.get(path)
        if not earlier or not Path(earlier).is_file():
            shutil.rmtree(dest.parent, ignore_errors=True)
            return path
        shutil.copyfile(earlier, dest)
    except OSError:
        shutil.copyfile(source, dest)
    _RECENT_UPLOADS[path] = str(dest)
    while len(_RECENT_UPLOADS) > _RECENT_LIMIT:
        _RECENT_UPLOADS.pop(next(iter(_RECENT_UPLOADS)))
    if not _is_example_file(dest):
        source.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: the same content under another name
            source.parent.rmdir()
    return str(dest)


def _is_gone(target: str) -> bool:
    """A file path under the app's served folders that does not exist (deleted or swept)."""
    try:
        path = Path(target)
        if not path.is_absolute():
            return False
        cache = sessions.work_root().resolve().parent
        return path.resolve().is_relative_to(cache) and not path.exists()
    except (OSError, ValueError):
        return False


class PrivateFiles:
    """ASGI middleware around Gradio's routes: every upload gets a path of its own (``private_upload``),
    and a file link under the app's cache whose file is gone answers 404 (Gradio says 403 for both
    "not allowed" and "not there"; deleted data should read as not found)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope.get("path", "")
            if scope["method"] == "POST" and path.rstrip("/").endswith("/gradio_api/upload"):
                return await self._upload(scope, receive, send)
            gone = "/gradio_api/file=" in path and _is_gone(path.split("/gradio_api/file=", 1)[1])
            if scope["method"] in ("GET", "HEAD") and gone:
                return await _answer(send, 404, b"Not found: this file was deleted or has expired.")
        return await self.app(scope, receive, send)

    async def _upload(self, scope, receive, send):
        import json

        start: dict = {}
        chunks: list[bytes] = []

        async def keep(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        body = b"".join(chunks)
        if start.get("status") == 200:
            try:
                paths = json.loads(body)
            except ValueError:
                paths = None
            if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
                body = json.dumps([private_upload(p) for p in paths]).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _answer(send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def _fix_list_schema(component) -> None:
    """A list-of-files input's API schema without ``$ref``: Gradio's MCP server moves the list's ``$defs``
    below the parameter, where ``#/$defs/FileData`` no longer resolves (clients fail with
    PointerToNowhere). gradio_client reads the same schema, inlined, as before."""
    schema = _inline_refs(component.api_info())
    component.api_info = lambda: schema


def _inline_refs(schema, defs: dict | None = None):
    """The JSON schema with every local ``$ref`` replaced by its definition and no ``$defs`` left."""
    if isinstance(schema, dict):
        defs = {**(defs or {}), **schema.get("$defs", {})}
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/") and ref.split("/")[-1] in defs:
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            return _inline_refs({**defs[ref.split("/")[-1]], **extra}, defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------


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


def build_demo() -> gr.Blocks:
    """The Blocks app, its events and its queue settings. Starts nothing: no thread, no model load
    (``serve`` does that), so importing ``app`` or building the demo in a test has no side effects."""
    styles = _style_choices()
    default_style = "corporate-grey" if any(v == "corporate-grey" for _, v in styles) else styles[0][1]

    with gr.Blocks(title="Headshot Studio", delete_cache=config.delete_cache()) as demo:
        # Every file the app keeps lives in a session's folder inside Gradio's cache, so that Gradio
        # serves it where it is (no shared content-addressed copies) and Delete removes what was served.
        sessions.set_work_root(Path(demo.GRADIO_CACHE) / "headshot-studio")
        gr.HTML(HEADER, elem_id="header")
        device_md = gr.Markdown(elem_id="device")
        with gr.Tabs(selected="selfies", elem_id="flow") as tabs:
            with gr.Tab("1 Selfies", id="selfies", elem_id="tab_selfies"):
                gr.Markdown(STEP_SELFIES, elem_classes="step-lead")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=300):
                        selfies = gr.File(
                            label=SELFIES_LABEL,
                            file_count="multiple",
                            file_types=["image", ".heic", ".heif", ".avif"],
                            elem_id="selfies",
                        )
                        _fix_list_schema(selfies)
                        consent = gr.Checkbox(label=CONSENT_LABEL, value=False, elem_id="consent")
                        check_btn = gr.Button("Check my selfies", variant="primary", elem_id="check")
                        examples = _example_selfies()
                        if examples:
                            gr.Examples(examples, inputs=[selfies], label="Or try the example selfies (public domain)")
                    with gr.Column(scale=2, min_width=300):
                        gr.Markdown(TIPS, elem_classes="tips")
                readiness = gr.Markdown(elem_id="readiness")
                cards = gr.Gallery(
                    label="Your checked selfies",
                    columns=6,
                    height="auto",
                    interactive=False,
                    allow_preview=True,
                    elem_id="cards",
                )
                next_1 = gr.Button(
                    "Next: learn my face →", variant="primary", visible=False, elem_id="next_1",
                    elem_classes="next",
                )
                with gr.Accordion("Details", open=False, elem_id="details_1"):
                    report = gr.JSON(label="Report", open=False)

            with gr.Tab("2 Identity", id="identity", elem_id="tab_identity"):
                gr.Markdown(STEP_IDENTITY, elem_classes="step-lead")
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        method = gr.Radio(
                            [
                                ("Quick: InstantID (seconds)", "instantid"),
                                ("Closer likeness: LoRA (minutes, 3+ selfies)", "lora"),
                            ],
                            value="instantid",
                            label="How to learn your face",
                        )
                        with gr.Accordion("LoRA settings (optional)", open=False):
                            lora_steps = _empty_means(
                                DEFAULT_LORA_SETTING,
                                label="Training steps",
                                placeholder="the default",
                                precision=0,
                                minimum=DEFAULT_LORA_SETTING,
                                maximum=config.MAX_LORA_STEPS,
                                elem_id="lora_steps",
                            )
                            lora_rank = _empty_means(
                                DEFAULT_LORA_SETTING,
                                label="Rank",
                                placeholder="the default",
                                precision=0,
                                minimum=DEFAULT_LORA_SETTING,
                                maximum=config.MAX_LORA_RANK,
                                elem_id="lora_rank",
                            )
                            lora_lr = _empty_means(
                                DEFAULT_LORA_SETTING,
                                label="Learning rate",
                                placeholder="the default",
                                minimum=DEFAULT_LORA_SETTING,
                                maximum=config.MAX_LORA_LEARNING_RATE,
                                step=1e-5,
                                elem_id="lora_lr",
                            )
                            identity_seed = gr.Number(
                                0,
                                label="Training seed",
                                precision=0,
                                minimum=0,
                                maximum=config.MAX_SEED,
                                elem_id="identity_seed",
                            )
                        create_btn = gr.Button("Create my identity", variant="primary", elem_id="create")
                        continue_btn = gr.Button(
                            "Continue LoRA training", visible=False, variant="primary", elem_id="continue"
                        )
                    with gr.Column(min_width=300):
                        reference = gr.Image(
                            label="Your face, as the app sees it",
                            interactive=False,
                            type="filepath",
                            height=260,
                            elem_id="reference",
                        )
                        identity_text = gr.Markdown(elem_id="identity_text")
                        identity_file = gr.File(
                            label="Your identity file (keep it to come back later)",
                            file_types=[".safetensors"],
                            elem_id="identity_file",
                        )
                next_2 = gr.Button(
                    "Next: make my headshots →", variant="primary", visible=False, elem_id="next_2",
                    elem_classes="next",
                )
                with gr.Accordion("Details", open=False, elem_id="details_2"):
                    identity_summary = gr.JSON(label="Summary", open=False)

            with gr.Tab("3 Headshots", id="generate", elem_id="tab_generate"):
                gr.Markdown(STEP_GENERATE, elem_classes="step-lead")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        style = gr.Dropdown(styles, value=default_style, label="Style", elem_id="style")
                        style_blurb = gr.Markdown(_style_blurb(default_style), elem_id="style_blurb")
                        choices = studio.list_options()
                        with gr.Row(equal_height=False):
                            with gr.Column(scale=3, min_width=160):
                                backdrop = gr.Dropdown(
                                    [(o["name"], o["id"]) for o in choices["backdrops"]],
                                    value="style",
                                    label="Backdrop",
                                    elem_id="backdrop",
                                )
                                outfit = gr.Dropdown(
                                    [(o["name"], o["id"]) for o in choices["outfits"]],
                                    value="style",
                                    label="Outfit",
                                    elem_id="outfit",
                                )
                            with gr.Column(scale=2, min_width=110):
                                swatch = gr.Image(
                                    preview(default_style, "style"),
                                    type="pil",
                                    label="Backdrop preview",
                                    interactive=False,
                                    show_label=False,
                                    height=170,
                                    elem_id="swatch",
                                    elem_classes="swatch",
                                )
                        subject = gr.Dropdown(
                            [(f"{o['name']} ({o['group']})", o["id"]) for o in choices["subject"]],
                            value=[],
                            multiselect=True,
                            label="About you (optional: one per kind, e.g. Woman, 30s, Keep my glasses, Smile)",
                            elem_id="subject",
                        )
                        prompt = gr.Textbox(
                            "",
                            label="Your own touch (optional)",
                            placeholder="e.g. navy blazer, warm smile, glasses",
                            max_length=config.MAX_PROMPT_CHARS,
                        )
                        with gr.Row():
                            num_images = gr.Slider(
                                config.MIN_IMAGES,
                                config.MAX_IMAGES_PER_REQUEST,
                                value=2,
                                step=1,
                                label="How many headshots",
                                elem_id="num_images",
                            )
                        generate_btn = gr.Button("Generate headshots", variant="primary", elem_id="generate")
                        with gr.Accordion("More settings", open=False, elem_id="more_settings"):
                            negative = gr.Textbox(
                                "", label="Avoid (optional)", max_length=config.MAX_PROMPT_CHARS
                            )
                            seed = _empty_means(
                                RANDOM_SEED,
                                label="Seed (leave empty for a random one)",
                                placeholder="random",
                                precision=0,
                                minimum=RANDOM_SEED,
                                maximum=config.MAX_SEED,
                                elem_id="seed",
                            )
                            fast = gr.Checkbox(label="Fast mode (fewer steps, a little less detail)", value=False)
                            best_of = gr.Slider(
                                1,
                                config.MAX_BEST_OF,
                                value=1,
                                step=1,
                                label="Candidates per headshot (the best likeness is kept)",
                                elem_id="best_of",
                            )
                            aspect = gr.Radio(
                                [("The style's", "style"), *[(s, s) for s in config.OUTPUT_SIZES]],
                                value="style",
                                label="Size",
                            )
                            steps = _empty_means(
                                STYLE_STEPS,
                                label="Steps",
                                placeholder="the style's",
                                precision=0,
                                minimum=STYLE_STEPS,
                                maximum=config.MAX_STEPS,
                                elem_id="steps",
                            )
                            guidance = _empty_means(
                                STYLE_VALUE,
                                label="Guidance",
                                placeholder="the style's",
                                minimum=STYLE_VALUE,
                                maximum=config.MAX_GUIDANCE,
                                step=0.5,
                                elem_id="guidance",
                            )
                            identity_strength = _empty_means(
                                STYLE_VALUE,
                                label="Identity strength",
                                placeholder="the style's",
                                minimum=STYLE_VALUE,
                                maximum=config.MAX_ADAPTER_SCALE,
                                step=0.05,
                                elem_id="identity_strength",
                            )
                            identitynet_strength = _empty_means(
                                STYLE_VALUE,
                                label="Face-shape strength (IdentityNet)",
                                placeholder="the style's",
                                minimum=STYLE_VALUE,
                                maximum=config.MAX_ADAPTER_SCALE,
                                step=0.05,
                                elem_id="identitynet_strength",
                            )
                            lora_strength = gr.Slider(
                                config.MIN_ADAPTER_SCALE,
                                config.MAX_ADAPTER_SCALE,
                                value=1.0,
                                step=0.05,
                                label="LoRA strength (LoRA identities only)",
                                elem_id="lora_strength",
                            )
                            ai_mark = gr.Checkbox(label="Add a visible 'AI-generated' mark", value=False)
                            linkedin = gr.Checkbox(
                                label=f"Also make LinkedIn {config.LINKEDIN_SIZE}x{config.LINKEDIN_SIZE} crops",
                                value=False,
                            )
                            face_region_only = gr.Checkbox(
                                label="Identity on the face only (outfit and backdrop follow the prompt)",
                                value=True,
                                elem_id="face_region_only",
                            )
                    with gr.Column(scale=3, min_width=300):
                        gallery = gr.Gallery(
                            label="Your headshots (best likeness first)",
                            columns=2,
                            height="auto",
                            format="png",
                            interactive=False,
                            elem_id="gallery",
                        )
                        with gr.Accordion("Headshot pack: several styles at once, as a ZIP", open=False,
                                          elem_id="pack_section"):
                            pack_styles = gr.CheckboxGroup(
                                styles, value=[default_style], label="Styles", elem_id="pack_styles"
                            )
                            per_style = gr.Slider(
                                config.MIN_IMAGES,
                                config.MAX_IMAGES_PER_REQUEST,
                                value=2,
                                step=1,
                                label="Headshots per style",
                                elem_id="per_style",
                            )
                            pack_btn = gr.Button("Generate pack", variant="primary", elem_id="pack")
                            pack_zip = gr.File(label="Your pack (ZIP of PNGs)", interactive=False, elem_id="pack_zip")
                        with gr.Accordion("Details", open=False, elem_id="details_3"):
                            info = gr.JSON(label="Seeds, likeness and settings", open=False)
        with gr.Accordion("Privacy and licences", open=False, elem_id="privacy"):
            gr.Markdown(PRIVACY)
            gr.Markdown(LICENCES, elem_id="licences")
        delete_btn = gr.Button("Delete my data", variant="stop", size="sm", elem_id="delete")
        # /delete_my_data's optional links (for callers without a lasting session) and its answer.
        delete_links = gr.Textbox("", visible=False)
        deleted = gr.JSON(None, visible=False)
        # Selfies and identities as text (data: URLs or links to this app's files) for API and MCP callers.
        selfie_links = gr.Textbox("", visible=False)
        identity_link = gr.Textbox("", visible=False)
        # This session's files on the server: {"files": sessions.Session}, one per Gradio session (a tab, an
        # API client; Gradio deep-copies the empty dict for each), made on first use and changed in place
        # by the handlers (no State outputs: Gradio's MCP server cannot relay those). Never shared, not
        # part of the API. The sweeper removes the files of sessions that never press Delete.
        session = gr.State({})

        # Step 1: consent first, then the API endpoint, then the thumbnails (UI only).
        check_btn.click(require_consent, consent, None, api_visibility="private").success(
            validate_selfies,
            [selfies, selfie_links, session],
            report,
            api_name="validate_selfies",
            api_description=validate_selfies.__doc__ + "\n" + API_CONSENT,
            concurrency_limit=4,
        ).then(
            selfie_cards, [selfies, report, session], [cards, readiness], api_visibility="private"
        ).then(_next_after_check, report, next_1, api_visibility="private")
        next_1.click(lambda: gr.Tabs(selected="identity"), None, tabs, api_visibility="private")

        # Step 2
        create_event = create_btn.click(require_consent, consent, None, api_visibility="private").success(
            create_identity,
            [selfies, method, lora_steps, lora_rank, lora_lr, identity_seed, selfie_links, session],
            [identity_file, identity_summary],
            api_name="create_identity",
            api_description=create_identity.__doc__ + "\n" + API_CONSENT,
            concurrency_limit=config.QUEUE_CONCURRENCY_PER_GPU,
            concurrency_id="gpu",
        )
        create_event.success(
            show_identity,
            [identity_file, session],
            [reference, identity_text],
            api_visibility="private",
        ).success(_show, None, next_2, api_visibility="private")
        # After success or failure: when ZeroGPU refused or stopped a LoRA training call, the
        # training is kept for this session and Continue goes on from there.
        create_event.then(continue_button, session, continue_btn, api_visibility="private")
        continue_event = continue_btn.click(
            continue_identity,
            [session],
            [identity_file, identity_summary],
            api_name="continue_identity",
            api_description=continue_identity.__doc__,
            concurrency_limit=config.QUEUE_CONCURRENCY_PER_GPU,
            concurrency_id="gpu",
        )
        continue_event.success(
            show_identity,
            [identity_file, session],
            [reference, identity_text],
            api_visibility="private",
        ).success(_show, None, next_2, api_visibility="private")
        continue_event.then(continue_button, session, continue_btn, api_visibility="private")
        identity_file.upload(
            show_identity,
            [identity_file, session],
            [reference, identity_text],
            api_visibility="private",
        ).success(_show, None, next_2, api_visibility="private")
        next_2.click(lambda: gr.Tabs(selected="generate"), None, tabs, api_visibility="private")

        # Step 3
        style.change(_style_blurb, style, style_blurb, api_visibility="private")
        generate_btn.click(
            generate,
            [
                identity_file,
                style,
                prompt,
                negative,
                num_images,
                seed,
                steps,
                guidance,
                identity_strength,
                identitynet_strength,
                aspect,
                fast,
                best_of,
                lora_strength,
                ai_mark,
                linkedin,
                identity_link,
                face_region_only,
                backdrop,
                outfit,
                subject,
                session,
            ],
            [gallery, info],
            api_name="generate",
            concurrency_limit=config.QUEUE_CONCURRENCY_PER_GPU,
            concurrency_id="gpu",
        )
        pack_btn.click(
            generate_pack,
            [
                identity_file,
                pack_styles,
                per_style,
                prompt,
                negative,
                seed,
                fast,
                best_of,
                lora_strength,
                ai_mark,
                linkedin,
                identity_link,
                face_region_only,
                backdrop,
                outfit,
                subject,
                session,
            ],
            [pack_zip, gallery, info],
            api_name="generate_pack",
            concurrency_limit=config.QUEUE_CONCURRENCY_PER_GPU,
            concurrency_id="gpu",
        )
        gr.api(list_styles, api_name="list_styles")
        gr.api(list_options, api_name="list_options")
        for changed in (style, backdrop):
            changed.change(preview, [style, backdrop], swatch, api_visibility="private")

        # The API endpoint answers {deleted_files, message}; the UI then empties its fields.
        delete_btn.click(
            delete_my_data,
            [delete_links, session],
            deleted,
            api_name="delete_my_data",
        ).then(
            _after_delete,
            deleted,
            [selfies, identity_file, gallery, pack_zip, cards, reference, identity_text, readiness, report, info,
             next_1, next_2],
            api_visibility="private",
        )
        demo.load(device_note, None, device_md, api_visibility="private")
    # A bounded queue (a full queue answers "busy" at once instead of piling up work), and no REST route
    # around it: Gradio leaves /gradio_api/run/<name> open off Spaces, which would skip the queue, its
    # size bound and the GPU concurrency limit. Settings only (no thread): they belong to the built demo,
    # whoever launches it (serve, `gradio app.py`, a test).
    demo.queue(
        max_size=queue_max_size(),
        default_concurrency_limit=config.QUEUE_CONCURRENCY_PER_GPU,
        api_open=False,
    )
    return demo


def queue_max_size() -> int:
    """How many requests may wait in the queue: ``config.QUEUE_MAX_SIZE``, or ``HEADSHOT_QUEUE_MAX_SIZE``."""
    return max(1, config.env_int("HEADSHOT_QUEUE_MAX_SIZE", config.QUEUE_MAX_SIZE))


# Gradio refuses bigger uploads outright (and gradio_client before sending them). It sits above our own
# per-file limits (a selfie: MAX_UPLOAD_BYTES, an identity file: MAX_IDENTITY_BYTES) so that a file just
# over one of those gets our message, which names the file and the limit, rather than Gradio's.
UPLOAD_HEADROOM_BYTES = 16 * 1024 * 1024
GRADIO_MAX_FILE_SIZE = max(config.MAX_UPLOAD_BYTES, config.MAX_IDENTITY_BYTES) + UPLOAD_HEADROOM_BYTES


_MIDDLEWARE = [Middleware(PrivateFiles)]  # private upload paths, 404 for deleted files (see PrivateFiles)


THEME_HUE = "indigo"
CSS = """
.gradio-container { max-width: 1200px !important; margin: 0 auto !important; }
.hs-header { padding: 18px 4px 6px; }
.hs-title { font-size: 1.9rem; font-weight: 700; letter-spacing: -0.01em; }
.hs-tagline { font-size: 1.02rem; opacity: 0.8; margin-top: 4px; max-width: 60rem; }
.step-lead { font-size: 1.02rem; }
.next { max-width: 420px; margin-left: auto; }
#flow > .tab-wrapper button[role=tab] { font-size: 1.0rem; font-weight: 600; padding-left: 14px; padding-right: 14px; }
#cards .grid-wrap, #gallery .grid-wrap { min-height: 0 !important; height: auto !important; }
#cards .grid-container { grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)) !important; }
#cards .caption-label { white-space: normal !important; overflow: visible !important; text-overflow: clip !important; }
#readiness ul { margin-top: 4px; }
.swatch img { border-radius: 10px; }
@media (max-width: 640px) {
  .hs-title { font-size: 1.5rem; }
  #flow > .tab-wrapper button[role=tab] { padding-left: 8px; padding-right: 8px; }
  #cards .grid-wrap, #gallery .grid-wrap { min-height: 0 !important; height: auto !important; }
#cards .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  .next { max-width: none; }
}
"""


@functools.cache
def theme():
    """The app's look: Gradio's Soft theme in indigo, the Space card's colour."""
    return gr.themes.Soft(primary_hue=THEME_HUE, secondary_hue="slate", radius_size="lg")


def launch_kwargs() -> dict:
    """What ``python app.py`` passes to ``launch``: the upload size limit, the MCP server, error messages,
    and the ``PrivateFiles`` middleware.

    No ``allowed_paths``: the app's files live in session folders inside Gradio's cache (names with 128
    random bits), which Gradio serves where they are; nothing outside the cache is served.
    """
    return {
        "max_file_size": GRADIO_MAX_FILE_SIZE,
        "mcp_server": True,
        "show_error": True,
        "app_kwargs": {"middleware": _MIDDLEWARE},
        "theme": theme(),
        "css": CSS,
    }


def serve(demo: gr.Blocks | None = None, **launch_overrides) -> None:
    """Run the app (``python app.py``): preload the models where it pays, start the sweeper, launch.

    On a GPU (and on ZeroGPU, where the models must be loaded in the main process at startup) the models
    load and warm up now, so no user waits for it; elsewhere torch is not even imported until the first
    render. The sweeper removes request folders after ``config.DELETE_CACHE[1]`` s even when no request
    comes. Blocks until the server stops.
    """
    if config.on_zerogpu() or Path("/proc/driver/nvidia/version").exists():
        studio.start_preload()
    sessions.start_sweeper()
    demo = build_demo() if demo is None else demo
    demo.launch(**{**launch_kwargs(), **launch_overrides})
