"""The product flows, as plain Python: selfies -> report -> identity -> headshots -> pack.

The web layer (``web/endpoints.py``, ``web/callbacks.py``), the command line (``python -m headshot``) and
the benchmarks all call these functions; none of them knows about Gradio. GPU work happens only inside
``gpu/pipeline.py``; face analysis, prompt building and PNG writing happen here, before and after it. What
a run that ZeroGPU cut short keeps is ``paused``'s; the style lists, blurbs and swatches are ``styles``'.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from headshot import __version__, config, credentials, disclosure, imaging
from headshot import progress as progress_
from headshot.errors import InvalidRequest, NotEnoughSelfies, RenderIncomplete
from headshot.faces.analyzer import FaceAnalyzer, cosine, get_analyzer
from headshot.faces.identity import Identity, build_identity, identity_summary, load_identity, save_identity
from headshot.faces.validation import ValidationResult, validate_selfies
from headshot.paused import PausedRender, PausedTraining, continuing, held_training, train_lora
from headshot.screening import check_prompt
from headshot.sessions import Session, new_workdir
from headshot.styles import Style, compose, get_style, negative_prompt

SOFTWARE = f"Headshot Studio {__version__}"
Progress = progress_.Progress

# --------------------------------------------------------------------------------------
# Step 1: selfies
# --------------------------------------------------------------------------------------


def validate(files: Sequence, analyzer: FaceAnalyzer | None = None) -> ValidationResult:
    """Check every selfie; a bad file becomes an issue in the report, never an exception."""
    return validate_selfies(list(files or []), analyzer=analyzer or get_analyzer())


# --------------------------------------------------------------------------------------
# Step 2: identity
# --------------------------------------------------------------------------------------


@dataclass
class IdentityResult:
    identity: Identity
    path: Path
    summary: dict
    report: dict


def create_identity(
    files: Sequence,
    method: str = "instantid",
    *,
    lora_steps: int | None = None,
    lora_rank: int | None = None,
    lora_learning_rate: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    analyzer: FaceAnalyzer | None = None,
    session: Session | None = None,
) -> IdentityResult:
    """Validate the selfies, then build an InstantID identity or train a quick LoRA on top of it.

    When ZeroGPU stops LoRA training between calls, :class:`errors.TrainingPaused` is raised and the
    training is kept for ``session`` (its id): :func:`continue_identity` goes on from there.

    ``lora_steps``, ``lora_rank`` and ``lora_learning_rate``: None keeps the default; any other value is
    checked against the ``config.*_LORA_*`` limits before anything runs.
    """
    from headshot.gpu import lora, pipeline

    method = (method or "instantid").strip().lower()
    if method not in ("instantid", "lora"):
        raise InvalidRequest(f"Unknown identity method {method!r}: choose 'instantid' or 'lora'.")
    seed = check_range(seed, 0, config.MAX_SEED, "The seed", whole=True)
    if method == "lora":
        check_lora_settings(lora_steps, lora_rank, lora_learning_rate)
    analyzer = analyzer or get_analyzer()
    started = time.perf_counter()
    progress_.report(progress, 0.02, "Checking your selfies")
    result = validate(files, analyzer)
    needed = config.LORA_MIN_ACCEPTED if method == "lora" else config.INSTANTID_MIN_ACCEPTED
    if len(result.accepted) < needed:
        total = len(result.report.get("selfies", []))
        raise NotEnoughSelfies(
            f"{'A LoRA identity' if method == 'lora' else 'An identity'} needs at least {needed} accepted "
            f"selfie{'s' if needed > 1 else ''}; {len(result.accepted)} of the {total} photo"
            f"{'s' if total != 1 else ''} you sent passed the checks. " + refusal_reasons(result.report)
        )
    progress_.report(progress, 0.1, "Building the face identity")
    identity = build_identity(
        result.accepted, face_pack=analyzer.pack_id, base_model=pipeline.base_model_id()
    )
    if method == "lora":
        settings = lora.lora_settings(lora_steps, lora_rank, lora_learning_rate, seed)
        images = [s.image for s in result.accepted]
        bboxes = [s.face.bbox for s in result.accepted]
        paused = PausedTraining(identity, images, bboxes, settings, result.report, started)
        return _train(paused, session, progress)
    return _finish_identity(identity, {}, result.report, started, progress, session)


MAX_REASONS = 4  # refused photos named one by one in an error message; the rest are counted


def refusal_reasons(report: dict) -> str:
    """Why each refused photo was refused, naming it: "No human face was found in 'coffee.png': ..."."""
    lines = []
    refused = [s for s in report.get("selfies", []) if not s.get("accepted")]
    for selfie in refused[:MAX_REASONS]:
        name = f"'{selfie.get('file', 'a photo')}'"
        errors_ = [i["message"] for i in selfie.get("issues", []) if i.get("severity") == "error"]
        reason = errors_[0] if errors_ else "it did not pass the checks."
        if "this photo" in reason:
            lines.append(reason.replace("this photo", name, 1))
        else:
            lines.append(f"{name}: {reason[0].lower() + reason[1:]}")
    if len(refused) > MAX_REASONS:
        lines.append(f"And {len(refused) - MAX_REASONS} more photos were refused (see the Selfies step).")
    for err in report.get("errors", []):
        lines.append(str(err.get("message", err)) if isinstance(err, dict) else str(err))
    if not lines:
        lines.append("Add photos of yourself, alone, facing the camera, in good light.")
    return " ".join(lines)


def _train(paused: PausedTraining, session: Session | None, progress: Progress | None) -> IdentityResult:
    lora = train_lora(paused, session, progress)
    identity = paused.identity
    identity.method = "lora"
    identity.lora = lora.state_dict
    identity.lora_config = lora.config
    summary = {
        "steps_run": lora.steps_run,
        "final_loss": round(float(lora.final_loss), 6),
        "train_seconds": round(float(lora.config.get("train_seconds", lora.seconds)), 2),
    }
    return _finish_identity(identity, summary, paused.report, paused.started, progress, session)


def continue_identity(session: Session | None, *, progress: Progress | None = None) -> IdentityResult:
    """Go on with this session's paused LoRA training from the step it reached."""
    return _train(held_training(session), session, progress)


def _finish_identity(
    identity: Identity,
    extra: dict,
    report: dict,
    started: float,
    progress: Progress | None,
    session: Session | None,
) -> IdentityResult:
    workdir = session.new_dir("identity") if session else new_workdir("identity")
    path = save_identity(identity, workdir / f"identity-{identity.method}.safetensors")
    if session:
        session.record(path)
    summary = {**identity_summary(identity), **extra, "seconds": round(time.perf_counter() - started, 2)}
    progress_.report(progress, 1.0, "Identity ready")
    return IdentityResult(identity=identity, path=path, summary=summary, report=report)


def check_lora_settings(
    steps: int | None = None, rank: int | None = None, learning_rate: float | None = None
) -> None:
    """Refuse quick-LoRA settings outside the ``config`` limits (None: the default, always fine)."""
    if steps is not None:
        check_range(steps, config.MIN_LORA_STEPS, config.MAX_LORA_STEPS, "LoRA steps", whole=True)
    if rank is not None:
        check_range(rank, config.MIN_LORA_RANK, config.MAX_LORA_RANK, "LoRA rank", whole=True)
    if learning_rate is not None:
        check_range(learning_rate, 0.0, config.MAX_LORA_LEARNING_RATE, "LoRA learning rate")
        if not learning_rate > 0:
            raise InvalidRequest(
                f"LoRA learning rate must be above 0 and at most {config.MAX_LORA_LEARNING_RATE}, "
                f"not {learning_rate}."
            )


def open_identity(path: str | Path | bytes, analyzer: FaceAnalyzer | None = None) -> Identity:
    """Load an identity file, refusing one made for other face models or another base model."""
    from headshot.gpu import pipeline

    analyzer = analyzer or get_analyzer()
    return load_identity(
        path,
        face_pack=analyzer.pack_id,
        base_model=pipeline.base_model_id(),
        embedding_size=analyzer.embedding_size,
    )


# --------------------------------------------------------------------------------------
# Step 3: headshots
# --------------------------------------------------------------------------------------


@dataclass
class GenerateOptions:
    """Everything a user can set for one render; ``None`` means "the style's value".

    Any other value is used as given (0 included) once checked against the ``config`` limits.
    """

    prompt: str = ""
    negative_prompt: str = ""
    num_images: int = 1
    seed: int | None = None  # None: random (shown in the result); else 0..config.MAX_SEED
    steps: int | None = None
    guidance: float | None = None
    identity_strength: float | None = None
    identitynet_strength: float | None = None
    aspect: str | None = None
    fast: bool = False
    lora_strength: float = 1.0  # 0 turns the identity LoRA off
    best_of: int = 1  # render this many candidates per kept image and keep the best
    ai_mark: bool = False
    linkedin: bool = False  # also export a 400x400 crop centred on the face
    face_region_only: bool = True  # the identity acts on the face; the prompt decides outfit and backdrop
    backdrop: str = "style"  # a backdrop id of styles/options/backdrops.toml, or "style" (the style's own)
    outfit: str = "style"  # an outfit id of styles/options/outfits.toml, or "style"
    subject: str = ""  # subject hint ids (styles/options/subject.toml), separated by commas


@dataclass
class Headshot:
    image: Image.Image
    style: str
    seed: int
    likeness: float | None
    verdict: str  # "good", "low_likeness" or "no_face"
    path: Path | None = None
    linkedin_path: Path | None = None
    prompt: str = ""
    settings: dict = field(default_factory=dict)  # its recipe (see settings_for), written into its PNG

    def info(self) -> dict:
        return {
            "style": self.style,
            "seed": self.seed,
            "likeness": None if self.likeness is None else round(self.likeness, 4),
            "verdict": self.verdict,
            "file": self.path.name if self.path else None,
            "linkedin": self.linkedin_path.name if self.linkedin_path else None,
        }


@dataclass
class GenerateResult:
    headshots: list[Headshot]
    info: dict
    workdir: Path
    zip_path: Path | None = None
    extra_files: list[Path] = field(default_factory=list)


def random_seed() -> int:
    return random.SystemRandom().randint(0, config.MAX_SEED)


def _resolve_seed(options: GenerateOptions) -> int:
    """The user's seed, or a fresh random one for None (returned in the result so it can be reused)."""
    if options.seed is None:
        return random_seed()
    return int(check_range(options.seed, 0, config.MAX_SEED, "The seed", whole=True))


def subject_for(identity: Identity) -> str:
    """The words that stand for the person in the prompt (the LoRA's rare token when there is one)."""
    if identity.lora_config:
        token = identity.lora_config.get("token", "ohwx")
        word = identity.lora_config.get("class_word", "person")
        return f"{token} {word}"
    return "a person"


def placed_keypoints(identity: Identity, width: int, height: int) -> np.ndarray:
    """The reference keypoints placed in a head-and-shoulders frame of the output size (pixels)."""
    side = min(width, height)
    kps = identity.keypoints.astype(np.float32) * side
    kps[:, 0] += (width - side) / 2.0
    kps[:, 1] += (height - side) * 0.35
    return kps


def control_image_for(identity: Identity, width: int, height: int) -> Image.Image:
    """Place the reference keypoints in a head-and-shoulders frame of the output size."""
    return imaging.draw_kps(width, height, placed_keypoints(identity, width, height))


def score_likeness(images: Sequence[Image.Image], identity: Identity, analyzer: FaceAnalyzer) -> list:
    """Cosine of each image's largest face to the identity; ``None`` where no face is found."""
    scores: list[float | None] = []
    for image in images:
        face = analyzer.embed_largest(image)
        scores.append(cosine(face.embedding, identity.embedding) if face is not None else None)
    return scores


def verdict_for(likeness: float | None, analyzer: FaceAnalyzer) -> str:
    if likeness is None:
        return "no_face"
    return "good" if likeness >= analyzer.same_person_threshold else "low_likeness"


def rank(headshots: list[Headshot]) -> list[Headshot]:
    """Best likeness first; images with no face go last (marked, never hidden)."""
    return sorted(headshots, key=lambda h: (h.likeness is None, -(h.likeness or 0.0), h.seed))


def check_range(value, low, high, name: str, *, whole: bool = False):
    """``value`` if it is a number from ``low`` to ``high`` (a whole one if ``whole``), else InvalidRequest."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, not {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number) or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise InvalidRequest(f"{name} must be {kind} from {low} to {high}, not {value!r}.")
    if not (low <= number <= high):
        raise InvalidRequest(f"{name} must be between {low} and {high}, not {value}.")
    return int(number) if whole else number


def _or_style(value, style_value, low, high, name: str, *, whole: bool = False):
    """The requested value (0 included), checked; the style's value where none was requested (None)."""
    return style_value if value is None else check_range(value, low, high, name, whole=whole)


# InstantID's strengths under a person's LoRA for identity files that do not carry their own
# (``lora.LoraSettings.render_identity_strength`` / ``render_identitynet_strength`` write them).
LORA_INSTANTID_SCALES = {"identity_strength": 0.5, "identitynet_strength": 0.6}


def instantid_scales_with_lora(identity: Identity) -> tuple[float, float]:
    """(identity strength, IdentityNet strength) while this identity's LoRA is on.

    The LoRA's own settings (``lora_config["instantid_scales"]``, written at training), not the style's
    InstantID-only values stacked on top of the LoRA at full strength.
    """
    written = (identity.lora_config or {}).get("instantid_scales")
    own = {**LORA_INSTANTID_SCALES, **(written if isinstance(written, dict) else {})}
    scales = (config.MIN_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE)
    return (
        check_range(own["identity_strength"], *scales, "The identity file's identity strength"),
        check_range(own["identitynet_strength"], *scales, "The identity file's IdentityNet strength"),
    )


def build_request(
    identity: Identity,
    style: Style,
    options: GenerateOptions,
    seed: int,
    count: int,
    size: tuple[int, int] | None = None,
):
    """The render request for one style: prompts, sizes, scales and the control image, before the GPU.

    ``size`` (width, height) replaces the aspect's output size (a refined image's bigger one): the
    keypoints are placed in it as in the aspect's frame, scaled.
    """
    from headshot.gpu import pipeline

    for text, name in ((options.prompt, "prompt"), (options.negative_prompt, "negative prompt")):
        if any((ord(c) < 32 and c not in "\n\t") or 127 <= ord(c) < 160 for c in text or ""):
            raise InvalidRequest(f"The {name} contains control characters: please use plain text.")
    extra = check_prompt(options.prompt or "")
    aspect = style.aspect if options.aspect is None else options.aspect
    sizes = config.output_sizes()
    if aspect not in sizes:
        raise InvalidRequest(f"Unknown size {aspect!r}: choose one of {', '.join(sizes)}.")
    width, height = sizes[aspect] if size is None else size
    scales = (config.MIN_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE)
    style_steps = config.style_steps(style.steps)
    steps = _or_style(options.steps, style_steps, config.MIN_STEPS, config.MAX_STEPS, "Steps", whole=True)
    guidance = _or_style(
        options.guidance, style.guidance, config.MIN_GUIDANCE, config.MAX_GUIDANCE, "Guidance"
    )
    lora_strength = check_range(options.lora_strength, *scales, "LoRA strength")
    style_identity, style_identitynet = style.identity_strength, style.identitynet_strength
    if identity.lora and lora_strength:
        style_identity, style_identitynet = instantid_scales_with_lora(identity)
    identity_strength = _or_style(options.identity_strength, style_identity, *scales, "Identity strength")
    identitynet_strength = _or_style(
        options.identitynet_strength, style_identitynet, *scales, "IdentityNet strength"
    )
    lora = None
    if identity.lora:
        lora = {"name": "identity", "state_dict": identity.lora, "scale": float(lora_strength)}
    prompt, option_negative = compose(
        style,
        subject_for(identity),
        extra,
        backdrop=options.backdrop,
        outfit=options.outfit,
        hints=options.subject,
    )
    return pipeline.RenderRequest(
        prompt=prompt,
        negative_prompt=negative_prompt(style, options.negative_prompt or "", option_negative),
        face_embedding=identity.embedding,
        control_image=control_image_for(identity, width, height),
        width=width,
        height=height,
        num_images=count,
        seed=seed,
        steps=int(steps),
        guidance=float(guidance),
        identity_strength=float(identity_strength),
        identitynet_strength=float(identitynet_strength),
        fast=bool(options.fast),
        lora=lora,
        face_mask=(
            imaging.face_region_mask(width, height, placed_keypoints(identity, width, height))
            if options.face_region_only
            else None
        ),
    )


SETTINGS_VERSION = 1


def settings_for(style: Style, options: GenerateOptions, request, seed: int, kind: str = "generate") -> dict:
    """One image's recipe, as written into its PNG (``headshot:settings``, JSON): what a person chose and
    the values the render used (the style's where none was chosen), so ``results`` can render it again."""
    settings = {
        "version": SETTINGS_VERSION,
        "kind": kind,
        "style": style.id,
        "backdrop": options.backdrop or "style",
        "outfit": options.outfit or "style",
        "subject": options.subject or "",
        "prompt": options.prompt or "",
        "negative_prompt": options.negative_prompt or "",
        "steps": int(request.steps),
        "guidance": float(request.guidance),
        "identity_strength": float(request.identity_strength),
        "identitynet_strength": float(request.identitynet_strength),
        "aspect": style.aspect if options.aspect is None else options.aspect,
        "fast": bool(options.fast),
        "lora_strength": float(options.lora_strength),
        "face_region_only": bool(options.face_region_only),
        "ai_mark": bool(options.ai_mark),
        "seed": int(seed),
    }
    if request.init_image is not None:
        settings["strength"] = float(request.strength)
    return settings


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "headshot"


def write_outputs(
    headshots: list[Headshot],
    workdir: Path,
    options: GenerateOptions,
    analyzer,
    suffix: str = "",
    parent: Path | None = None,
) -> None:
    """Save each headshot as a PNG (``<style>_<seed><suffix>.png``) with its disclosure metadata and
    its settings (and the LinkedIn crop if asked), each signed with Content Credentials last
    (``credentials``; ``parent``: the source headshot of a refine or a variation)."""
    for shot in headshots:
        kind = (shot.settings or {}).get("kind", "generate")
        image = disclosure.add_ai_mark(shot.image) if options.ai_mark else shot.image
        meta = {
            "software": SOFTWARE,
            "style": shot.style,
            "prompt": shot.prompt,
            "seed": shot.seed,
            "likeness": "" if shot.likeness is None else f"{shot.likeness:.4f}",
            "settings": json.dumps(shot.settings, sort_keys=True) if shot.settings else None,
        }
        stem = f"{_slug(shot.style)}_{shot.seed}{suffix}"
        shot.path = workdir / f"{stem}.png"
        sign = credentials.signer_for(
            style=shot.style, kind=kind, parent=parent
        )  # last: C2PA hashes the file
        disclosure.save_png(image, shot.path, meta, sign)
        if options.linkedin:
            faces = analyzer.detect(shot.image)
            size = (config.LINKEDIN_SIZE, config.LINKEDIN_SIZE)
            if faces:
                crop = imaging.crop_around_face(shot.image, faces[0].bbox, size, face_fraction=0.45)
            else:
                crop = ImageOps.fit(shot.image, size, Image.LANCZOS)
            if options.ai_mark:
                crop = disclosure.add_ai_mark(crop)
            shot.linkedin_path = workdir / f"{stem}_linkedin.png"
            sign = credentials.signer_for(style=shot.style, kind=kind, parent=parent, crop=True)
            disclosure.save_png(crop, shot.linkedin_path, meta, sign)


def render_tracked(
    requests: list,
    names: Sequence[str],
    per_style: int,
    what: str,
    progress: Progress | None,
    *,
    starting: bool = False,
    checking: str = "Checking the likeness",
) -> list[list[Image.Image]]:
    """``pipeline.render_all`` with progress a person trusts: "Style 2 of 3, <name>: image 1 of 2 · about
    40 s left" (the first time left from the GPU estimate, see ``progress.Eta``) over the first 95%, then
    ``checking`` (the likeness scoring that follows); ``starting`` first says how many renders are coming."""
    from headshot.gpu import pipeline, sizing

    eta = progress_.Eta(sizing.expected_seconds(requests))
    if starting:
        count = f"{len(names) * per_style} {what}s"
        progress_.report(
            progress, 0.0, f"Starting: {count} to render · {progress_.eta_text(eta.left(0.0))}".strip(" ·")
        )
    label = progress_.pack_label(names, per_style, what)
    rendered = pipeline.render_all(
        requests, progress_.tracked(progress_.scaled(progress, 0.0, 0.95), eta, label)
    )
    progress_.report(progress, 0.96, checking)
    return rendered


def _plan_render(kind: str, identity, styles, options, seed: int, keep: int) -> PausedRender:
    """The requests of ``keep`` kept images per style (best of ``options.best_of`` candidates each)."""
    candidates = keep * check_range(
        options.best_of, 1, config.MAX_BEST_OF, "Candidates per image", whole=True
    )
    if candidates > config.MAX_PACK_IMAGES:
        raise InvalidRequest(
            f"{keep} images x {candidates // keep} candidates is {candidates} renders; "
            f"at most {config.MAX_PACK_IMAGES} per request. Ask for fewer images or candidates."
        )
    requests = [build_request(identity, style, options, seed, candidates) for style in styles]
    count = len(requests)
    return PausedRender(kind, identity, list(styles), options, seed, keep, requests, [0] * count,
                        [[] for _ in requests])  # fmt: skip


def _render_styles(paused: PausedRender, analyzer, progress) -> list[Headshot]:
    """Render what is left of ``paused``; the headshots of the styles it completes (best likeness first), or
    with one candidate per image every image made. A call refused or stopped partway sets ``refusal``."""
    rest = paused.rest()
    requests = [request for _, request in rest]
    names = [paused.styles[i].name for i, _ in rest]
    counts = {request.num_images for request in requests}
    per_style = counts.pop() if len(counts) == 1 else 0
    if not per_style:  # a continued pack with styles begun: "Image 3 of 5"
        names, per_style = [""], sum(request.num_images for request in requests)
    refusal = None
    try:
        rendered = render_tracked(
            requests, names, per_style, "candidate" if paused.best_of else "image", progress,
            starting=True, checking="Checking the likeness of each headshot",
        )  # fmt: skip
    except RenderIncomplete as stopped:
        rendered, refusal = stopped.images, stopped.refusal
        progress_.report(progress, 0.96, "Checking the likeness of the headshots made")
    shots: list[Headshot] = []
    for (index, _), images in zip(rest, rendered, strict=True):
        ready = paused.add(index, images)  # None: a best-of style with candidates still to make
        if ready is not None:
            shots.extend(_keep_best(paused, index, *ready, analyzer))
    paused.refusal, paused.parts = refusal, paused.parts + 1
    made = f"{len(shots)} headshot{'s' if len(shots) != 1 else ''}"
    progress_.report(
        progress, 1.0, f"{made} ready" + (" (GPU time ran out before the rest)" if refusal else "")
    )
    return shots


def _keep_best(paused: PausedRender, index: int, first: int, images: list, analyzer) -> list[Headshot]:
    """The candidates ``images`` of style ``index`` (the first at seed offset ``first``), scored, best first,
    at most ``keep``."""
    style, request = paused.styles[index], paused.requests[index]
    scores = score_likeness(images, paused.identity, analyzer)
    style_shots = [
        Headshot(
            image=image,
            style=style.id,
            seed=request.seed + first + i,
            likeness=score,
            verdict=verdict_for(score, analyzer),
            prompt=request.prompt,
            settings=settings_for(style, paused.options, request, request.seed + first + i),
        )
        for i, (image, score) in enumerate(zip(images, scores, strict=True))
    ]
    return rank(style_shots)[: paused.keep]


def _run(paused: PausedRender, analyzer, progress, session: Session | None, started: float) -> GenerateResult:
    """Render what is left of ``paused``, then write and record what it made (a pack's ZIP holds every
    headshot of the pack so far); a run ZeroGPU cut short says so in its info and is held for Continue."""
    shots = _render_styles(paused, analyzer, progress)
    workdir = session.new_dir(paused.kind) if session else new_workdir(paused.kind)
    write_outputs(shots, workdir, paused.options, analyzer)
    before = len(paused.shown)
    paused.shown.extend(shots)
    style_ids = [s.id for s in paused.styles]
    info = run_info(shots, paused.seed, started, style_ids=style_ids, options=paused.options)
    if paused.parts > 1:
        info["continued"] = {"part": paused.parts, "headshots_before": before}
    if paused.refusal is not None:
        info["incomplete"] = paused.incomplete(can_continue=session is not None)
    zip_path = None
    if paused.kind == "pack":
        whole = info if not before else {
            **run_info(paused.shown, paused.seed, started, style_ids=style_ids, options=paused.options),
            **{k: info[k] for k in ("continued", "incomplete") if k in info},
        }  # fmt: skip
        zip_path = _pack_zip(paused.shown, workdir / f"headshots-{paused.seed}.zip", whole)
    if session:
        session.record(zip_path, *[p for h in shots for p in (h.path, h.linkedin_path)])
        paused.settle(session)
    headshots = rank(shots) if paused.kind == "pack" else shots
    return GenerateResult(headshots=headshots, info=info, workdir=workdir, zip_path=zip_path)


def _pack_zip(shots: list[Headshot], path: Path, info: dict) -> Path:
    """A ZIP of the headshots' PNGs (and LinkedIn crops) with ``info.json``; files deleted since are left out."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for shot in shots:
            for file in (shot.path, shot.linkedin_path):
                if file is not None and file.is_file():
                    archive.write(file, arcname=file.name)
        archive.writestr("info.json", json.dumps(info, indent=2))
    return path


def continue_headshots(
    session: Session | None, *, progress: Progress | None = None, analyzer: FaceAnalyzer | None = None
) -> GenerateResult:
    """Render the rest of this session's generate or pack that ZeroGPU cut short, with the seeds those images
    would have had: with what the earlier run made, the same headshots as a run never stopped."""
    with continuing(session) as paused:
        return _run(paused, analyzer or get_analyzer(), progress, session, time.perf_counter())


def generate(
    identity: Identity,
    style_id: str,
    options: GenerateOptions | None = None,
    *,
    progress: Progress | None = None,
    analyzer: FaceAnalyzer | None = None,
    session: Session | None = None,
) -> GenerateResult:
    """Render ``num_images`` headshots of one style, scored for likeness and ordered best first.

    When ZeroGPU refuses or stops a later GPU call, the headshots made are returned with ``info["incomplete"]``
    and the rest is kept for ``session``: :func:`continue_headshots` renders it.
    """
    options = options or GenerateOptions()
    analyzer = analyzer or get_analyzer()
    style = get_style(style_id)
    count = check_range(
        options.num_images, config.MIN_IMAGES, config.MAX_IMAGES_PER_REQUEST, "Number of images", whole=True
    )
    seed = _resolve_seed(options)
    started = time.perf_counter()
    paused = _plan_render("headshots", identity, [style], options, seed, count)
    return _run(paused, analyzer, progress, session, started)


def generate_pack(
    identity: Identity,
    style_ids: Sequence[str],
    images_per_style: int = 2,
    options: GenerateOptions | None = None,
    *,
    progress: Progress | None = None,
    analyzer: FaceAnalyzer | None = None,
    session: Session | None = None,
) -> GenerateResult:
    """Several styles in one run, with a ZIP of PNGs named by style and seed (cut short: as :func:`generate`)."""
    options = options or GenerateOptions()
    analyzer = analyzer or get_analyzer()
    ids = list(dict.fromkeys(s.strip() for s in (style_ids or []) if s and s.strip()))
    if not ids:
        raise InvalidRequest("Choose at least one style for the pack.")
    styles = [get_style(s) for s in ids]
    per_style = check_range(
        images_per_style, config.MIN_IMAGES, config.MAX_IMAGES_PER_REQUEST, "Images per style", whole=True
    )
    if per_style * len(styles) > config.MAX_PACK_IMAGES:
        raise InvalidRequest(
            f"A pack holds at most {config.MAX_PACK_IMAGES} images: "
            f"{len(styles)} styles x {per_style} is {len(styles) * per_style}."
        )
    seed = _resolve_seed(options)
    started = time.perf_counter()
    # The same seeds for every style, so a pack is reproducible from one number; one batch, so a
    # person's LoRA is loaded once for the whole pack.
    paused = _plan_render("pack", identity, styles, options, seed, per_style)
    return _run(paused, analyzer, progress, session, started)


def run_info(
    shots: list[Headshot],
    seed: int,
    started: float,
    style_ids: list[str],
    options: GenerateOptions | None = None,
) -> dict:
    options = options or GenerateOptions()
    return {
        "seed": seed,
        "backdrop": options.backdrop or "style",
        "outfit": options.outfit or "style",
        "subject": options.subject or "",
        "styles": style_ids,
        "style": style_ids[0] if len(style_ids) == 1 else None,
        "images": [s.info() for s in shots],
        "seeds": [s.seed for s in shots],
        "likeness": [None if s.likeness is None else round(s.likeness, 4) for s in shots],
        "seconds": round(time.perf_counter() - started, 2),
        "device": device_summary(),
        "ai_generated": True,
    }


# --------------------------------------------------------------------------------------
# The machine (for the UI: studio is the only caller of pipeline)
# --------------------------------------------------------------------------------------


def device_summary() -> dict:
    """Where renders run and what that means for the user (cheap: loads no model)."""
    from headshot.gpu import pipeline

    return pipeline.device_summary()


OFFLINE_HOW = (
    "To try the app with no network, start it with the tiny test models and a local face-model pack: "
    "`HEADSHOT_PROFILE=tiny HEADSHOT_FACE_MODELS=<folder with a detector and a recognizer .onnx> python app.py` "
    '(README, "Offline, or without a GPU").'
)
HUB_HOST, HUB_PORT = "huggingface.co", 443


def missing_models() -> list[str]:
    """What this profile needs from the Hugging Face Hub and does not find on this machine (cheap: looks at
    files only): "the face models" and, for the full profile, "the diffusion models"."""
    from huggingface_hub import try_to_load_from_cache

    def cached(repo: str, revision: str, filename: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(repo, filename, revision=revision), str)
        except Exception:  # a malformed cache answers "not there"
            return False

    missing = []
    local = config.face_models_dir()
    pack = config.cache_dir() / "face_packs" / "antelopev2"
    face = config.ANTELOPEV2
    if not (
        (local is not None and local.is_dir())
        or any(pack.glob("*.onnx"))
        or cached(face.repo_id, face.revision, str(face.filename or "antelopev2.zip"))
    ):
        missing.append("the face models")
    if config.profile() == "full":
        repos = [h for h in config.hub_files() if h.repo_id != face.repo_id]
        if not all(cached(h.repo_id, h.revision, f) for h in repos for f in h.files):
            missing.append("the diffusion models")
    return missing


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a connection (False with ``HF_HUB_OFFLINE`` set)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((HUB_HOST, HUB_PORT), timeout=timeout):
            return True
    except OSError:
        return False


_models_notice: list[str] = []  # the answer of the first page load (one network check per process)
_models_notice_lock = threading.Lock()


def models_notice() -> str:
    """A sentence for the page when the models this profile needs are neither on this machine nor
    downloadable (offline), with how to run offline; "" when they are there or can be fetched."""
    with _models_notice_lock:
        if not _models_notice:
            missing = missing_models()
            if not missing or hub_reachable():
                _models_notice.append("")
            else:
                what = " and ".join(missing)
                _models_notice.append(
                    f"The models cannot be reached: {what[0].upper() + what[1:]} are not on this machine and "
                    f"the Hugging Face Hub ({HUB_HOST}) does not answer, so checking selfies and making "
                    "headshots will fail. " + OFFLINE_HOW
                )
                logging.getLogger("headshot").warning("models unavailable: %s", _models_notice[0])
        return _models_notice[0]


def start_preload() -> threading.Thread | None:
    """Load and warm up the models at startup where that pays (a CUDA GPU, ZeroGPU); see ``pipeline``."""
    from headshot.gpu import pipeline

    return pipeline.start_preload()
