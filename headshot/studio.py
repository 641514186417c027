"""The product flows, as plain Python: selfies -> report -> identity -> headshots -> pack.

The UI (``ui.py``), the command line (``python -m headshot``) and the benchmarks all call these
functions; none of them knows about Gradio. GPU work happens only inside ``pipeline``; face
analysis, prompt building and PNG writing happen here, before and after it.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from . import __version__, config, imaging
from .errors import InvalidRequest, NotEnoughSelfies
from .faces import FaceAnalyzer, cosine, get_analyzer
from .identity import Identity, build_identity, identity_summary, load_identity, save_identity
from .styles import Style, check_prompt, get_style, load_styles, negative_prompt
from .validation import ValidationResult, validate_selfies

SOFTWARE = f"Headshot Studio {__version__}"
Progress = Callable[[float, str], None]

# --------------------------------------------------------------------------------------
# Working files: every request writes under one temp folder, removed after a short time
# --------------------------------------------------------------------------------------


def work_root() -> Path:
    root = Path(tempfile.gettempdir()) / "headshot-studio"
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_workdir(kind: str) -> Path:
    """A fresh folder for one request's files; old folders are swept at the same time."""
    sweep_workdirs()
    path = work_root() / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def sweep_workdirs(max_age_s: float | None = None) -> int:
    """Delete request folders older than ``max_age_s`` (default: Gradio's delete_cache age)."""
    max_age = config.DELETE_CACHE[1] if max_age_s is None else max_age_s
    now = time.time()
    removed = 0
    for path in work_root().iterdir():
        try:
            if now - path.stat().st_mtime > max_age:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


_SWEEPER_LOCK = threading.Lock()
_SWEEPER: list[threading.Thread] = []  # the one sweeper thread of this process (no user data)


def start_sweeper(every_s: float | None = None, max_age_s: float | None = None) -> threading.Thread:
    """Sweep old request folders every ``every_s`` seconds in a daemon thread (one per process).

    :func:`new_workdir` sweeps too, but only when a request comes; this keeps the promise that files are
    gone after ``max_age_s`` (default: Gradio's delete_cache age) on a server that has gone quiet.
    """
    every = float(config.DELETE_CACHE[0] if every_s is None else every_s)
    with _SWEEPER_LOCK:
        if _SWEEPER and _SWEEPER[0].is_alive():
            return _SWEEPER[0]

        def loop() -> None:
            while True:
                time.sleep(every)
                try:
                    sweep_workdirs(max_age_s)
                except OSError:  # the temp folder vanished or is unreadable: try again next time
                    continue

        thread = threading.Thread(target=loop, name="headshot-sweeper", daemon=True)
        thread.start()
        _SWEEPER[:] = [thread]
        return thread


def delete_paths(paths: Sequence[str | Path | None]) -> int:
    """Delete the request folders that hold these files (the "delete my data" button)."""
    removed = 0
    root = work_root().resolve()
    for value in paths:
        if not value:
            continue
        path = Path(value).resolve()
        for parent in [path, *path.parents]:
            if parent.parent == root:
                if parent.exists():
                    shutil.rmtree(parent, ignore_errors=True) if parent.is_dir() else parent.unlink()
                    removed += 1
                break
    return removed


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
) -> IdentityResult:
    """Validate the selfies, then build an InstantID identity or train a quick LoRA on top of it."""
    from . import pipeline

    method = (method or "instantid").strip().lower()
    if method not in ("instantid", "lora"):
        raise InvalidRequest(f"Unknown identity method {method!r}: choose 'instantid' or 'lora'.")
    analyzer = analyzer or get_analyzer()
    started = time.perf_counter()
    _report(progress, 0.02, "Checking your selfies")
    result = validate(files, analyzer)
    needed = config.LORA_MIN_ACCEPTED if method == "lora" else config.INSTANTID_MIN_ACCEPTED
    if len(result.accepted) < needed:
        raise NotEnoughSelfies(
            f"{'A LoRA identity' if method == 'lora' else 'An identity'} needs at least {needed} accepted "
            f"selfie{'s' if needed > 1 else ''}; {len(result.accepted)} passed the checks. "
            "See the Selfies step for why the others were refused."
        )
    _report(progress, 0.1, "Building the face identity")
    identity = build_identity(
        result.accepted, face_pack=analyzer.pack_id, base_model=pipeline.base_model_id()
    )
    summary: dict = {}
    if method == "lora":
        lora = pipeline.train_identity_lora(
            [s.image for s in result.accepted],
            [s.face.bbox for s in result.accepted],
            steps=lora_steps,
            rank=lora_rank,
            learning_rate=lora_learning_rate,
            seed=seed,
            progress=_scaled(progress, 0.1, 0.95),
        )
        identity.method = "lora"
        identity.lora = lora.state_dict
        identity.lora_config = lora.config
        summary.update(
            steps_run=lora.steps_run,
            final_loss=round(float(lora.final_loss), 6),
            train_seconds=round(float(lora.config.get("train_seconds", lora.seconds)), 2),
        )
    workdir = new_workdir("identity")
    path = save_identity(identity, workdir / f"identity-{identity.method}.safetensors")
    summary = {**identity_summary(identity), **summary, "seconds": round(time.perf_counter() - started, 2)}
    _report(progress, 1.0, "Identity ready")
    return IdentityResult(identity=identity, path=path, summary=summary, report=result.report)


def open_identity(path: str | Path | bytes, analyzer: FaceAnalyzer | None = None) -> Identity:
    """Load an identity file, refusing one made for other face models or another base model."""
    from . import pipeline

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
    """Everything a user can set for one render; ``None`` means "the style's value"."""

    prompt: str = ""
    negative_prompt: str = ""
    num_images: int = 1
    seed: int | None = None  # None or negative: random, and shown in the result
    steps: int | None = None
    guidance: float | None = None
    identity_strength: float | None = None
    identitynet_strength: float | None = None
    aspect: str | None = None
    fast: bool = False
    lora_strength: float = 1.0
    best_of: int = 1  # render this many candidates per kept image and keep the best
    ai_mark: bool = False
    linkedin: bool = False  # also export a 400x400 crop centred on the face


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

    def info(self) -> dict:
        return {
            "style": self.style,
            "seed": self.seed,
            "likeness": None if self.likeness is None else round(self.likeness, 4),
            "verdict": self.verdict,
            "file": self.path.name if self.path else None,
        }


@dataclass
class GenerateResult:
    headshots: list[Headshot]
    info: dict
    workdir: Path
    zip_path: Path | None = None
    extra_files: list[Path] = field(default_factory=list)


def random_seed() -> int:
    return random.SystemRandom().randrange(0, 2**31 - 1)


def _resolve_seed(options: GenerateOptions) -> int:
    """The user's seed, or a fresh random one (returned in the result so it can be reused)."""
    return options.seed if options.seed is not None and options.seed >= 0 else random_seed()


def subject_for(identity: Identity) -> str:
    """The words that stand for the person in the prompt (the LoRA's rare token when there is one)."""
    if identity.lora_config:
        token = identity.lora_config.get("token", "ohwx")
        word = identity.lora_config.get("class_word", "person")
        return f"{token} {word}"
    return "a person"


def control_image_for(identity: Identity, width: int, height: int) -> Image.Image:
    """Place the reference keypoints in a head-and-shoulders frame of the output size."""
    side = min(width, height)
    kps = identity.keypoints.astype(np.float32) * side
    kps[:, 0] += (width - side) / 2.0
    kps[:, 1] += (height - side) * 0.35
    return imaging.draw_kps(width, height, kps)


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


def _clamp(value, low, high, name):
    if value is None:
        return None
    if not (low <= value <= high):
        raise InvalidRequest(f"{name} must be between {low} and {high}, not {value}.")
    return value


def build_request(identity: Identity, style: Style, options: GenerateOptions, seed: int, count: int):
    """The render request for one style: prompts, sizes, scales and the control image, before the GPU."""
    from . import pipeline

    extra = check_prompt(options.prompt or "")
    aspect = options.aspect or style.aspect
    sizes = config.output_sizes()
    if aspect not in sizes:
        raise InvalidRequest(f"Unknown size {aspect!r}: choose one of {', '.join(sizes)}.")
    width, height = sizes[aspect]
    steps = int(_clamp(options.steps, 1, config.MAX_STEPS, "Steps") or style.steps)
    lora = None
    if identity.lora:
        lora = {
            "name": "identity",
            "state_dict": identity.lora,
            "scale": float(_clamp(options.lora_strength, 0.0, 2.0, "LoRA strength")),
        }
    return pipeline.RenderRequest(
        prompt=style.build_prompt(subject_for(identity), extra),
        negative_prompt=negative_prompt(style, options.negative_prompt or ""),
        face_embedding=identity.embedding,
        control_image=control_image_for(identity, width, height),
        width=width,
        height=height,
        num_images=count,
        seed=seed,
        steps=steps,
        guidance=float(_clamp(options.guidance, 0.0, 20.0, "Guidance") or style.guidance),
        identity_strength=float(
            style.identity_strength
            if options.identity_strength is None
            else _clamp(options.identity_strength, 0.0, 1.5, "Identity strength")
        ),
        identitynet_strength=float(
            style.identitynet_strength
            if options.identitynet_strength is None
            else _clamp(options.identitynet_strength, 0.0, 1.5, "IdentityNet strength")
        ),
        fast=bool(options.fast),
        lora=lora,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "headshot"


def _write_outputs(headshots: list[Headshot], workdir: Path, options: GenerateOptions, analyzer) -> None:
    """Save each headshot as a PNG with its disclosure metadata (and the LinkedIn crop if asked)."""
    for shot in headshots:
        image = imaging.add_ai_mark(shot.image) if options.ai_mark else shot.image
        meta = {
            "software": SOFTWARE,
            "style": shot.style,
            "prompt": shot.prompt,
            "seed": shot.seed,
            "likeness": "" if shot.likeness is None else f"{shot.likeness:.4f}",
        }
        stem = f"{_slug(shot.style)}_{shot.seed}"
        shot.path = workdir / f"{stem}.png"
        imaging.save_png(image, shot.path, meta)
        if options.linkedin:
            faces = analyzer.detect(shot.image)
            size = (config.LINKEDIN_SIZE, config.LINKEDIN_SIZE)
            if faces:
                crop = imaging.crop_around_face(shot.image, faces[0].bbox, size, face_fraction=0.45)
            else:
                crop = ImageOps.fit(shot.image, size, Image.LANCZOS)
            if options.ai_mark:
                crop = imaging.add_ai_mark(crop)
            shot.linkedin_path = workdir / f"{stem}_linkedin.png"
            imaging.save_png(crop, shot.linkedin_path, meta)


def _render_style(identity, style, options, seed, count, analyzer, progress) -> list[Headshot]:
    from . import pipeline

    keep = count
    candidates = keep * int(_clamp(options.best_of or 1, 1, 4, "Candidates per image"))
    if candidates > config.MAX_PACK_IMAGES:
        raise InvalidRequest(
            f"{keep} images x {candidates // keep} candidates is {candidates} renders; "
            f"at most {config.MAX_PACK_IMAGES} per request. Ask for fewer images or candidates."
        )
    request = build_request(identity, style, options, seed, candidates)
    images = pipeline.render(request, progress=progress)
    scores = score_likeness(images, identity, analyzer)
    shots = [
        Headshot(
            image=image,
            style=style.id,
            seed=seed + i,
            likeness=score,
            verdict=verdict_for(score, analyzer),
            prompt=request.prompt,
        )
        for i, (image, score) in enumerate(zip(images, scores, strict=True))
    ]
    return rank(shots)[:keep]


def generate(
    identity: Identity,
    style_id: str,
    options: GenerateOptions | None = None,
    *,
    progress: Progress | None = None,
    analyzer: FaceAnalyzer | None = None,
) -> GenerateResult:
    """Render ``num_images`` headshots of one style, scored for likeness and ordered best first."""
    options = options or GenerateOptions()
    analyzer = analyzer or get_analyzer()
    style = get_style(style_id)
    count = int(_clamp(options.num_images, 1, config.MAX_IMAGES_PER_REQUEST, "Number of images"))
    seed = _resolve_seed(options)
    started = time.perf_counter()
    shots = _render_style(identity, style, options, seed, count, analyzer, progress)
    workdir = new_workdir("headshots")
    _write_outputs(shots, workdir, options, analyzer)
    info = _info(shots, seed, started, style_ids=[style.id])
    return GenerateResult(headshots=shots, info=info, workdir=workdir)


def generate_pack(
    identity: Identity,
    style_ids: Sequence[str],
    images_per_style: int = 2,
    options: GenerateOptions | None = None,
    *,
    progress: Progress | None = None,
    analyzer: FaceAnalyzer | None = None,
) -> GenerateResult:
    """Several styles in one run, with a ZIP of PNGs named by style and seed."""
    options = options or GenerateOptions()
    analyzer = analyzer or get_analyzer()
    ids = list(dict.fromkeys(s.strip() for s in (style_ids or []) if s and s.strip()))
    if not ids:
        raise InvalidRequest("Choose at least one style for the pack.")
    styles = [get_style(s) for s in ids]
    per_style = int(_clamp(images_per_style, 1, config.MAX_IMAGES_PER_REQUEST, "Images per style"))
    if per_style * len(styles) > config.MAX_PACK_IMAGES:
        raise InvalidRequest(
            f"A pack holds at most {config.MAX_PACK_IMAGES} images: "
            f"{len(styles)} styles x {per_style} is {len(styles) * per_style}."
        )
    seed = _resolve_seed(options)
    started = time.perf_counter()
    shots: list[Headshot] = []
    for index, style in enumerate(styles):
        step = _scaled(progress, index / len(styles), (index + 1) / len(styles), f"{style.name}: ")
        # The same seeds for every style, so a pack is reproducible from one number.
        shots.extend(_render_style(identity, style, options, seed, per_style, analyzer, step))
    workdir = new_workdir("pack")
    _write_outputs(shots, workdir, options, analyzer)
    info = _info(shots, seed, started, style_ids=ids)
    zip_path = workdir / f"headshots-{seed}.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for shot in shots:
            archive.write(shot.path, arcname=shot.path.name)
            if shot.linkedin_path:
                archive.write(shot.linkedin_path, arcname=shot.linkedin_path.name)
        archive.writestr("info.json", json.dumps(info, indent=2))
    return GenerateResult(headshots=rank(shots), info=info, workdir=workdir, zip_path=zip_path)


def _info(shots: list[Headshot], seed: int, started: float, style_ids: list[str]) -> dict:
    from . import pipeline

    return {
        "seed": seed,
        "styles": style_ids,
        "style": style_ids[0] if len(style_ids) == 1 else None,
        "images": [s.info() for s in shots],
        "seeds": [s.seed for s in shots],
        "likeness": [None if s.likeness is None else round(s.likeness, 4) for s in shots],
        "seconds": round(time.perf_counter() - started, 2),
        "device": pipeline.device_summary(),
        "ai_generated": True,
    }


def list_styles() -> list[dict]:
    return [{"id": s.id, "name": s.name, "description": s.description} for s in load_styles().values()]


# --------------------------------------------------------------------------------------
# Progress helpers
# --------------------------------------------------------------------------------------


def _report(progress: Progress | None, fraction: float, desc: str) -> None:
    if progress is not None:
        progress(max(0.0, min(1.0, fraction)), desc)


def _scaled(progress: Progress | None, start: float, end: float, prefix: str = "") -> Progress | None:
    if progress is None:
        return None

    def inner(fraction: float, desc: str = "") -> None:
        progress(start + (end - start) * max(0.0, min(1.0, fraction)), prefix + (desc or ""))

    return inner
