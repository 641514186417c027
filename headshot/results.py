"""What a person can do with a headshot they made: refine it, make more like it, render it again.

Every headshot PNG carries its recipe (``headshot:settings``, written by ``studio``): the style, the
choices on top of it, the prompts, the values the render used and its seed. These flows need only the
identity and the PNG file: they read its settings, check them again as ``studio.generate`` checks a
request (a PNG is untrusted input), rebuild the request with ``studio.build_request`` and render it:

* :func:`refine`: the image upscaled (``config.REFINE_SCALE``, within ``config.RENDER_MAX_SIDE``), then
  a low-strength image-to-image pass (``config.REFINE_STRENGTH``) with the same models, prompt, face
  embedding, keypoints and LoRA: new detail at the bigger size, the same picture, the same seed;
* :func:`more_like_this`: N image-to-image renders from the image at a moderate strength
  (``config.VARIATION_STRENGTH``) with new seeds: the same composition, new details;
* :func:`regenerate`: the same settings, a new seed, one text-to-image render;
* :func:`comparison`: the headshot next to the reference selfie, with the likeness its PNG records;
* favourites (:func:`toggle_favourite`, :func:`favourites_zip`): kept by the session
  (``sessions.Session.favourites``) in the order chosen, gone with its other files on Delete or the sweep.

Like ``studio``, plain Python (no Gradio, no torch): the GPU work happens in ``pipeline``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from headshot import config, disclosure, imaging
from headshot.errors import HeadshotError, InvalidRequest, RenderIncomplete
from headshot.faces.analyzer import FaceAnalyzer, get_analyzer
from headshot.faces.identity import Identity
from headshot.paused import incomplete_info
from headshot.sessions import Session, new_workdir
from headshot.studio import (
    SETTINGS_VERSION,
    GenerateOptions,
    GenerateResult,
    Headshot,
    Progress,
    build_request,
    check_range,
    rank,
    render_tracked,
    run_info,
    score_likeness,
    settings_for,
    verdict_for,
    write_outputs,
)
from headshot.styles import Style, get_style

SETTINGS_KEY = "headshot:settings"  # the PNG text field studio writes (disclosure's "settings" key)
NOT_OURS = (
    "This image is not a headshot made by this app: it carries no Headshot Studio settings. Choose one of "
    "the PNG files of your headshots (as downloaded from the gallery, not a screenshot or an edited copy)."
)
TEXT_FIELDS = ("style", "backdrop", "outfit", "subject", "prompt", "negative_prompt", "aspect")
NUMBER_FIELDS = ("steps", "guidance", "identity_strength", "identitynet_strength", "lora_strength", "seed")
SWITCH_FIELDS = ("fast", "face_region_only", "ai_mark")


@dataclass
class Source:
    """A headshot PNG of this app: its picture and its checked recipe."""

    image: Image.Image
    style: Style
    options: GenerateOptions
    seed: int
    settings: dict
    name: str
    path: Path | None = None  # the file: a refine's or a variation's parent in its Content Credentials


def read_settings(path: str | Path) -> dict:
    """The settings written into a headshot PNG, or :class:`errors.InvalidRequest` saying it is not one."""
    try:
        metadata = disclosure.read_png_metadata(path)
    except (HeadshotError, OSError):
        raise InvalidRequest(NOT_OURS) from None
    raw = metadata.get(SETTINGS_KEY)
    if not raw:
        raise InvalidRequest(NOT_OURS)
    try:
        settings = json.loads(raw)
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise InvalidRequest("This headshot's settings are damaged (not a JSON object): " + NOT_OURS)
    return settings


def options_from_settings(settings: dict, count: int = 1) -> tuple[Style, GenerateOptions, int]:
    """(style, options, seed) from a PNG's settings, each value checked as for a request to generate.

    Types here; the ranges, the prompt screening and the choices (backdrop, outfit, subject, aspect) in
    ``studio.build_request``, the same checks as for ``studio.generate``."""
    version = settings.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SETTINGS_VERSION:
        raise InvalidRequest(
            f"This headshot's settings have version {version!r}; this app reads version {SETTINGS_VERSION}. "
            + NOT_OURS
        )
    missing = [k for k in (*TEXT_FIELDS, *NUMBER_FIELDS, *SWITCH_FIELDS) if k not in settings]
    if missing:
        raise InvalidRequest(f"This headshot's settings lack {', '.join(missing)}: " + NOT_OURS)
    for key in TEXT_FIELDS:
        if not isinstance(settings[key], str):
            raise InvalidRequest(f"The headshot's setting {key!r} must be text, not {settings[key]!r}.")
    for key in NUMBER_FIELDS:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f"The headshot's setting {key!r} must be a number, not {value!r}.")
    for key in SWITCH_FIELDS:
        if not isinstance(settings[key], bool):
            raise InvalidRequest(
                f"The headshot's setting {key!r} must be true or false, not {settings[key]!r}."
            )
    style = get_style(settings["style"])
    seed = check_range(settings["seed"], 0, config.MAX_SEED, "The headshot's seed", whole=True)
    options = GenerateOptions(
        prompt=settings["prompt"],
        negative_prompt=settings["negative_prompt"],
        num_images=count,
        seed=seed,
        steps=settings["steps"],
        guidance=settings["guidance"],
        identity_strength=settings["identity_strength"],
        identitynet_strength=settings["identitynet_strength"],
        aspect=settings["aspect"],
        fast=settings["fast"],
        lora_strength=settings["lora_strength"],
        ai_mark=settings["ai_mark"],
        face_region_only=settings["face_region_only"],
        backdrop=settings["backdrop"],
        outfit=settings["outfit"],
        subject=settings["subject"],
    )
    return style, options, seed


def open_source(path: str | Path) -> Source:
    """A headshot PNG of this app, its settings checked (before its pixels are decoded)."""
    settings = read_settings(path)
    style, options, seed = options_from_settings(settings)
    image = imaging.load_image(path)
    return Source(
        image=image,
        style=style,
        options=options,
        seed=seed,
        settings=settings,
        name=Path(path).name,
        path=Path(path),
    )


def refined_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``size`` times ``scale``, at most ``config.RENDER_MAX_SIDE`` on the long side (the aspect kept),
    in multiples of 8."""
    factor = min(float(scale), config.RENDER_MAX_SIDE / max(size))
    width, height = (max(config.RENDER_MIN_SIDE, int(side * factor) // 8 * 8) for side in size)
    return width, height


def refine(
    identity: Identity,
    image_path: str | Path,
    *,
    session: Session | None = None,
    progress: Progress | None = None,
    scale: float | None = None,
    strength: float | None = None,
    analyzer: FaceAnalyzer | None = None,
) -> GenerateResult:
    """The headshot at a higher resolution: upscaled by ``scale`` (``config.REFINE_SCALE``), then an
    image-to-image pass at ``strength`` (``config.REFINE_STRENGTH``) with its own settings and seed.

    The same image, identity and settings give the same refined image."""
    scale = (
        config.REFINE_SCALE
        if scale is None
        else check_range(scale, config.MIN_REFINE_SCALE, config.MAX_REFINE_SCALE, "The refine scale")
    )
    strength = _strength(strength, config.REFINE_STRENGTH)
    source = open_source(image_path)
    size = refined_size(source.image.size, scale)
    if size[0] <= source.image.width and size[1] <= source.image.height:
        raise InvalidRequest(
            f"This headshot is already {source.image.width}x{source.image.height} px: refining makes it "
            f"bigger, up to {config.RENDER_MAX_SIDE} px on its long side."
        )
    request = build_request(identity, source.style, source.options, source.seed, 1, size=size)
    request = dataclasses.replace(request, init_image=source.image, strength=strength)
    extra = {"scale": round(size[0] / source.image.width, 4), "source": source.name}
    return _render(identity, source, [request], "refine", "refined", session, progress, analyzer, extra)


def more_like_this(
    identity: Identity,
    image_path: str | Path,
    count: int = 4,
    *,
    session: Session | None = None,
    progress: Progress | None = None,
    strength: float | None = None,
    analyzer: FaceAnalyzer | None = None,
) -> GenerateResult:
    """``count`` variations of the headshot: its settings, new seeds, image-to-image from it at
    ``strength`` (``config.VARIATION_STRENGTH``), at its aspect's output size; best likeness first."""
    count = check_range(count, config.MIN_IMAGES, config.MAX_VARIATIONS, "Number of variations", whole=True)
    strength = _strength(strength, config.VARIATION_STRENGTH)
    source = open_source(image_path)
    seed = _new_seed(count)
    request = build_request(identity, source.style, source.options, seed, count)
    # A refined source goes back to the output size in the recipe (init_image is resized to the request's).
    request = dataclasses.replace(request, init_image=source.image, strength=strength)
    extra = {"source": source.name}
    return _render(
        identity, source, [request], "more_like_this", "variations", session, progress, analyzer, extra
    )


def regenerate(
    identity: Identity,
    image_path: str | Path,
    *,
    session: Session | None = None,
    progress: Progress | None = None,
    analyzer: FaceAnalyzer | None = None,
) -> GenerateResult:
    """The headshot's settings rendered again with a new seed: one text-to-image render."""
    source = open_source(image_path)
    request = build_request(identity, source.style, source.options, _new_seed(1), 1)
    return _render(
        identity,
        source,
        [request],
        "generate",
        "headshots",
        session,
        progress,
        analyzer,
        {"source": source.name},
    )


def _strength(value: Any, default: float) -> float:
    if value is None:
        return default
    return check_range(
        value, config.MIN_IMG2IMG_STRENGTH, config.MAX_IMG2IMG_STRENGTH, "The image-to-image strength"
    )


def _new_seed(count: int) -> int:
    """A random seed whose ``count`` images (seed + i) all stay within ``config.MAX_SEED``."""
    return random.SystemRandom().randint(0, config.MAX_SEED - count + 1)


def _render(
    identity: Identity,
    source: Source,
    requests: list,
    kind: str,
    folder: str,
    session: Session | None,
    progress: Progress | None,
    analyzer: FaceAnalyzer | None,
    extra: dict,
) -> GenerateResult:
    """Render the requests, score likeness, write the PNGs (with their settings) into the session's folder."""
    analyzer = analyzer or get_analyzer()
    started = time.perf_counter()
    # The same progress as a render from scratch: what is happening, N of M, the time left.
    count = sum(int(r.num_images) for r in requests)
    what = {"refine": "refining", "more_like_this": "variation"}.get(kind, "image")
    try:
        rendered, stopped = render_tracked(requests, [source.style.name], count, what, progress), None
    except RenderIncomplete as cut:  # ZeroGPU refused a later call: keep what the earlier ones made
        rendered, stopped = cut.images, cut.refusal
    shots: list[Headshot] = []
    for request, images in zip(requests, rendered, strict=True):
        scores = score_likeness(images, identity, analyzer)
        for index, (image, score) in enumerate(zip(images, scores, strict=True)):
            settings = settings_for(source.style, source.options, request, request.seed + index, kind)
            if kind == "refine":
                settings["scale"] = extra["scale"]
            shots.append(
                Headshot(
                    image=image,
                    style=source.style.id,
                    seed=request.seed + index,
                    likeness=score,
                    verdict=verdict_for(score, analyzer),
                    prompt=request.prompt,
                    settings=settings,
                )
            )
    shots = rank(shots)
    workdir = session.new_dir(folder) if session else new_workdir(folder)
    suffix = {"refine": f"_{requests[0].width}px", "more_like_this": "_like"}.get(kind, "")
    parent = source.path if kind in ("refine", "more_like_this") else None  # image-to-image: from its pixels
    write_outputs(shots, workdir, source.options, analyzer, suffix=suffix, parent=parent)
    if session:
        session.record(*[h.path for h in shots])
    info = run_info(
        shots,
        shots[0].seed if len(shots) == 1 else requests[0].seed,
        started,
        style_ids=[source.style.id],
        options=source.options,
    )
    info.update(kind=kind, size=[requests[0].width, requests[0].height], **extra)
    if stopped is not None:
        todo = "Ask again for more (each has a new seed)." if kind == "more_like_this" else "Ask again later."
        info["incomplete"] = incomplete_info(stopped, len(shots), count, todo, can_continue=False)
    if requests[0].init_image is not None:
        info["strength"] = float(requests[0].strength)
    return GenerateResult(headshots=shots, info=info, workdir=workdir)


# --------------------------------------------------------------------------------------
# Looking at one headshot, and favourites
# --------------------------------------------------------------------------------------
FAVOURITES_ZIP = "favourite-headshots.zip"


@dataclass
class Pick:
    """One headshot as the comparison shows it."""

    path: Path
    style: str
    seed: int | None
    likeness: float | None
    verdict: str  # "good", "low_likeness" or "no_face"

    def text(self, threshold: float) -> str:
        """What the comparison says under the two pictures (the style by its name; the seed is in Details)."""
        if self.likeness is None:
            head = "**No face was found in this headshot.** Try Regenerate or More like this."
        elif self.verdict == "good":
            head = (
                f"★ **Likeness {self.likeness:.2f}**: reads as the same person as your selfies "
                f"(the face models' same-person line is {threshold:.2f})."
            )
        else:
            head = (
                f"**Low likeness {self.likeness:.2f}**: below the face models' same-person line "
                f"({threshold:.2f}); it may not look like you. Try More like this or Regenerate."
            )
        return f"{head}\n\nStyle: {style_name(self.style)}"


def headshot_file(session: Session, image: str | Path | None) -> Path:
    """``image`` as one of this session's own headshot PNGs, or a clear refusal."""
    if not image:
        raise InvalidRequest("Choose a headshot first: click one in the gallery.")
    path = Path(str(image))
    # a file name, as /generate's info gives it: this session's latest of that name
    if not path.is_absolute():
        named = [Path(f) for f in session.files if Path(f).name == path.name and Path(f).is_file()]
        path = named[-1] if named else path
    session.check_not_foreign(path)
    if not session.owns(path) or not path.is_file():
        raise InvalidRequest(
            f"{path.name!r} is not one of the headshots made in this session: choose one from the gallery."
        )
    return path


def read_pick(path: Path, analyzer: FaceAnalyzer) -> Pick:
    """Style, seed and likeness as the headshot's PNG metadata gives them."""
    meta = disclosure.read_png_metadata(path)
    if "headshot:style" not in meta:
        raise InvalidRequest(f"{path.name!r} is not a headshot made by this app (it carries no style).")
    try:
        seed: int | None = int(meta.get("headshot:seed", ""))
    except ValueError:
        seed = None
    try:
        likeness: float | None = float(meta.get("headshot:likeness", ""))
    except ValueError:
        likeness = None
    if likeness is None:
        verdict = "no_face"
    else:
        verdict = "good" if likeness >= analyzer.same_person_threshold else "low_likeness"
    return Pick(path=path, style=meta["headshot:style"], seed=seed, likeness=likeness, verdict=verdict)


def comparison(
    session: Session, identity: Identity, image: str | Path, analyzer: FaceAnalyzer
) -> tuple[Path, Pick]:
    """The reference selfie (the identity's crop, saved as a file of this session) and the headshot."""
    pick = read_pick(headshot_file(session, image), analyzer)
    reference = session.new_dir("compare") / "your-selfie.png"
    identity.reference.convert("RGB").save(reference)
    session.record(reference)
    return reference, pick


def toggle_favourite(session: Session, image: str | Path) -> bool:
    """Add a headshot to this session's favourites, or take it out again; True when it is one now."""
    path = str(headshot_file(session, image))
    if path in session.favourites:
        session.favourites.remove(path)
        return False
    session.favourites.append(path)
    return True


def favourites(session: Session) -> list[Path]:
    """This session's favourites that still exist, in the order they were chosen."""
    kept = [p for p in session.favourites if Path(p).is_file()]
    session.favourites[:] = kept
    return [Path(p) for p in kept]


def favourites_zip(session: Session, analyzer: FaceAnalyzer) -> Path | None:
    """A ZIP of the favourites (PNGs as they are, metadata included, and an info.json), or None."""
    chosen = favourites(session)
    if not chosen:
        return None
    path = session.new_dir("favourites") / FAVOURITES_ZIP
    info = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, file in enumerate(chosen, start=1):
            name = f"{index:02d}-{file.name}"
            archive.write(file, arcname=name)
            pick = read_pick(file, analyzer)
            info.append({"file": name, "style": pick.style, "seed": pick.seed, "likeness": pick.likeness})
        archive.writestr("info.json", json.dumps({"favourites": info, "ai_generated": True}, indent=2))
    session.record(path)
    return path


# --------------------------------------------------------------------------------------
# The session gallery: every headshot of this session, newest run first
# --------------------------------------------------------------------------------------

# The folders the flows write headshots into (studio and the flows above), and what a person calls each run.
RUN_KINDS = {
    "headshots": "Headshots",
    "pack": "Pack",
    "variations": "More like this",
    "refined": "High resolution",
}
ALL = "all"  # the gallery filter that shows everything


@dataclass
class GalleryItem:
    """One picture of the session gallery: its file, its run and what the caption says."""

    path: Path
    run: str  # the run's folder name (one generate, pack, variations or refine)
    style: str  # the style id
    caption: str


def style_name(style_id: str) -> str:
    """A style's display name ("Corporate grey backdrop"), or the id itself for one no longer shipped."""
    try:
        return get_style(style_id).name
    except HeadshotError:
        return style_id


def caption(likeness: float | None, verdict: str, style_id: str, linkedin: bool = False) -> str:
    """What a gallery picture says: its likeness and its style's display name (seeds stay in Details)."""
    name = style_name(style_id)
    if linkedin:
        return f"LinkedIn {config.LINKEDIN_SIZE}x{config.LINKEDIN_SIZE} · {name}"
    if likeness is None:
        return f"No face found · {name}"
    if verdict == "good":
        return f"★ Likeness {likeness:.2f} · {name}"
    return f"Low likeness {likeness:.2f} · {name}"


def _run_kind(run: str) -> str:
    return run.split("-", 1)[0]


def session_gallery(session: Session, analyzer: FaceAnalyzer, *, show: str = ALL) -> list[GalleryItem]:
    """Every headshot this session made that still exists: the newest run first, each run best first (its
    own order), LinkedIn crops after their headshot. ``show``: ``"all"``, ``"run:<folder>"`` or
    ``"style:<id>"``."""
    runs: dict[str, list[Path]] = {}
    for name in session.files:
        path = Path(name)
        if (
            path.suffix.lower() != ".png"
            or _run_kind(path.parent.name) not in RUN_KINDS
            or not path.is_file()
        ):
            continue
        runs.setdefault(path.parent.name, []).append(path)
    items: list[GalleryItem] = []
    for run, paths in reversed(list(runs.items())):
        for path in paths:
            try:
                pick = read_pick(path, analyzer)
            except (HeadshotError, OSError):
                continue
            linkedin = path.stem.endswith("_linkedin")
            items.append(
                GalleryItem(path, run, pick.style, caption(pick.likeness, pick.verdict, pick.style, linkedin))
            )
    kind, _, value = show.partition(":")
    if kind == "run":
        items = [i for i in items if i.run == value]
    elif kind == "style":
        items = [i for i in items if i.style == value]
    return items


def gallery_filters(session: Session, analyzer: FaceAnalyzer) -> list[tuple[str, str]]:
    """The gallery's filter choices: everything, each run (newest first, numbered in order), each style."""
    items = session_gallery(session, analyzer)
    runs = list(dict.fromkeys(i.run for i in items))
    choices = [(f"All your headshots ({len(items)})", ALL)]
    for number, run in zip(range(len(runs), 0, -1), runs, strict=True):
        count = sum(1 for i in items if i.run == run)
        choices.append((f"Run {number}: {RUN_KINDS[_run_kind(run)]} ({count})", f"run:{run}"))
    for style in dict.fromkeys(i.style for i in items):
        choices.append((f"Style: {style_name(style)}", f"style:{style}"))
    return choices
