"""Likeness benchmark: do the headshots look like the person, without pasting the selfie? One JSON line
per identity method, scored by an independent judge.

    python benchmarks/likeness.py                      # the real models (GPU; HEADSHOT_PROFILE=full)
    python benchmarks/likeness.py --tiny --quick       # the code path, offline on the tiny profile
    python benchmarks/likeness.py --check-judge DIR    # the judge alone on person/photo folders (CPU)

**Two judges.** The *judge* is a face recognizer of another family than the one the images are
conditioned and ranked on: dlib's ResNet (128-d, ``dlib-bin`` + ``face-recognition-models``; its own
detector, 5-point alignment and its documented same-person rule, Euclidean distance < 0.6). The *pack*
score (the app's face pack: antelopev2's glintr100 on the full profile, the embedding InstantID's adapter
is conditioned on and best-of-N ranks by) is the second column: a method can score high on it by
pasting the conditioning face, so it is never the headline.

For every person with enough photos in ``--faces-dir`` (one folder per person; default
``../shared/testdata/faces/same_person``), the photos are validated, the first ``--inputs`` accepted
ones build the identity (the "selfies") and the remaining accepted ones are held out. A fixed set of
styles and seeds is rendered (``studio.generate``) and every output's largest face is compared with the
held-out photos only. Methods:

* ``instantid``: an InstantID identity (face adapter + IdentityNet);
* ``lora``: a quick-LoRA identity rendered with the face adapter and IdentityNet switched off
  (identity and IdentityNet strength 0): the LoRA alone;
* ``both``: the LoRA identity with InstantID on at the LoRA's own strengths (the app's default);
* ``both_adapter``: a LoRA trained with the face adapter active (``--face-adapter-scale``), with InstantID;
* ``best_of``: InstantID rendering ``--best-of`` candidates per image, keeping the one the *pack* ranks
  first (the app's "candidates per image"); the judge scores the kept image, so what ranking gains is
  measured, not assumed.

Figures per method (each for the judge, ``judge_*``, and the pack, ``pack_*``):

* **likeness ratio** (``value``: the judge's): an output's mean similarity (cosine) to the person's
  held-out photos divided by the mean similarity of that person's input selfies to the same held-out
  photos, averaged over outputs. 1.0 is "as like the person as their own selfies".
* **copy-paste** (WithAnyone, MultiID-Bench): for an output g, a reference selfie r and a held-out photo
  t, ``(d(g, t) - d(g, r)) / max(d(t, r), eps)``, averaged over every (r, t) pair, with d the judge's
  distance (dlib: Euclidean; the pack: the angle between embeddings). +1: g is the reference selfie
  pasted; -1: g is the held-out photo; about 0: as far from both as they are from each other. Lower is
  better at equal likeness. (Our reading of the paper's definition, which uses angular distances of
  ArcFace embeddings; their evaluation code was not available to check it against.)
* **match rate** (judge): the share of outputs whose mean distance to the held-out photos is under the
  judge's 0.6, i.e. that dlib would call the same person;
* **detection rate**: outputs in which a face is found (pack detector; the judge's own in
  ``judge_detection_rate``); **s/image**: render and scoring time per image once the identity exists.

A ``likeness_real_photos`` line gives the input selfies themselves (likeness ratio 1 by definition; their
copy-paste against the other selfies). On the tiny profile the images are noise, so nothing is detected
and the scores are null; the line format and the code path are what ``--quick`` checks. ``--table FILE``
also writes the markdown table of the README.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("instantid", "lora", "both", "both_adapter", "best_of")
FAMILIES = {"instantid": "instantid", "best_of": "instantid", "lora": "lora", "both": "lora"}
FAMILIES["both_adapter"] = "lora_adapter"
DEFAULT_STYLES = ("corporate-grey", "outdoor-natural", "tech-casual", "classic-bw")
DEFAULT_SEEDS = (1, 2)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SHARED = Path(os.environ.get("HEADSHOT_TEST_DATA", ROOT.parent / "shared"))  # the shared test data
CP_EPS = 1e-6

# --------------------------------------------------------------------------------------
# The independent judge: dlib's ResNet face recognizer
# --------------------------------------------------------------------------------------

JUDGE_NAME = "dlib-resnet-v1"
JUDGE_THRESHOLD = 0.6  # dlib's documented same-person rule: Euclidean distance under 0.6
JUDGE_MAX_SIDE = 800  # photos are judged at most this many pixels on their long side
JUDGE_CNN_SIDE = 600  # the CNN detector (the fallback) at most this many


def judge_models_dir() -> Path:
    """The model files of ``face-recognition-models`` (read without importing it: it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "The likeness judge needs dlib's models: pip install dlib-bin face-recognition-models "
            "(both are in requirements-dev.txt)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class Judge:
    """dlib's face recognizer, another family than the app's insightface pack (detection included).

    ``embed(image)`` is the 128-d descriptor of the largest face (HOG detector, upsampled once for small
    faces, then dlib's CNN detector; 5-point alignment), or None when no face is found.
    """

    name = JUDGE_NAME
    threshold = JUDGE_THRESHOLD

    def __init__(self, models_dir: Path | None = None):
        try:
            import dlib
        except ImportError:
            raise SystemExit(
                "The likeness judge needs dlib: pip install dlib-bin face-recognition-models "
                "(both are in requirements-dev.txt)."
            ) from None
        folder = Path(models_dir) if models_dir else judge_models_dir()
        self._dlib = dlib
        self.hog = dlib.get_frontal_face_detector()
        self._cnn_path = folder / "mmod_human_face_detector.dat"
        self._cnn = None
        self.shape = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def _largest(self, pixels: np.ndarray):
        for upsample in (0, 1):
            rects = list(self.hog(pixels, upsample))
            if rects:
                return max(rects, key=lambda r: r.area())
        return None

    def _cnn_face(self, image) -> tuple[Any, np.ndarray] | None:
        if self._cnn is None:
            if not self._cnn_path.is_file():
                return None
            self._cnn = self._dlib.cnn_face_detection_model_v1(str(self._cnn_path))
        small = image.copy()
        small.thumbnail((JUDGE_CNN_SIDE, JUDGE_CNN_SIDE))
        pixels = np.ascontiguousarray(np.asarray(small, dtype=np.uint8))
        found = [d.rect for d in self._cnn(pixels, 1)]
        return (max(found, key=lambda r: r.area()), pixels) if found else None

    def embed(self, image) -> np.ndarray | None:
        image = image.convert("RGB")
        scaled = image.copy()
        scaled.thumbnail((JUDGE_MAX_SIDE, JUDGE_MAX_SIDE))
        pixels = np.ascontiguousarray(np.asarray(scaled, dtype=np.uint8))
        rect = self._largest(pixels)
        if rect is None:
            found = self._cnn_face(image)
            if found is None:
                return None
            rect, pixels = found
        shape = self.shape(pixels, rect)
        return np.asarray(self.encoder.compute_face_descriptor(pixels, shape), dtype=np.float32)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        return _cosine(a, b)


def _cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def angular_distance(a, b) -> float:
    """The angle between two embeddings (radians): the pack's distance for the copy-paste score."""
    return float(math.acos(max(-1.0, min(1.0, _cosine(a, b)))))


def copy_paste(
    output, references: Sequence[Any], targets: Sequence[Any], distance: Callable[[Any, Any], float]
) -> float | None:
    """WithAnyone's copy-paste score of one output: mean over (reference r, held-out target t) of
    ``(d(g, t) - d(g, r)) / max(d(t, r), eps)`` (see the module docstring). None without pairs."""
    scores = [
        (distance(output, t) - distance(output, r)) / max(distance(t, r), CP_EPS)
        for r, t in itertools.product(references, targets)
    ]
    return statistics.fmean(scores) if scores else None


def check_judge(folder: Path, judge: Judge | None = None, out=print) -> dict:
    """The judge's verification accuracy on ``folder/<person>/<photo>``: every pair of photos of one
    person should be within 0.6, every pair of two people's photos beyond it.

    A photo in which the judge finds no face fails each of its same-person pairs (and is not counted
    among the other-person pairs). ``judge_accuracy`` is the balanced accuracy: the mean of the share
    of same-person pairs verified and the share of other-person pairs rejected. Printed last.
    """
    judge = judge or Judge()
    people: dict[str, list[tuple[Path, np.ndarray | None]]] = {}
    from PIL import Image, ImageOps

    for person in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        photos = sorted(p for p in person.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        for photo in photos:
            with Image.open(photo) as img:
                image = ImageOps.exif_transpose(img).convert("RGB")
            people.setdefault(person.name, []).append((photo, judge.embed(image)))
    same_total = same_ok = diff_total = diff_ok = 0
    no_face = [
        str(path.relative_to(folder)) for entries in people.values() for path, e in entries if e is None
    ]
    for entries in people.values():
        for (_, a), (_, b) in itertools.combinations(entries, 2):
            same_total += 1
            same_ok += a is not None and b is not None and judge.distance(a, b) < judge.threshold
    for (_, first), (_, second) in itertools.combinations(people.items(), 2):
        for (_, a), (_, b) in itertools.product(first, second):
            if a is None or b is None:
                continue
            diff_total += 1
            diff_ok += judge.distance(a, b) >= judge.threshold
    same_rate = same_ok / same_total if same_total else float("nan")
    diff_rate = diff_ok / diff_total if diff_total else float("nan")
    rates = [r for r in (same_rate, diff_rate) if not math.isnan(r)]
    accuracy = statistics.fmean(rates) if rates else float("nan")
    photos = sum(len(v) for v in people.values())
    out(f"judge={judge.name} threshold={judge.threshold} people={len(people)} photos={photos}")
    out(f"no_face={len(no_face)} {' '.join(no_face)}".rstrip())
    out(f"same_person_pairs={same_total} verified={same_ok} rate={same_rate:.4f}")
    out(f"other_person_pairs={diff_total} rejected={diff_ok} rate={diff_rate:.4f}")
    out(f"judge_accuracy={accuracy:.4f}")
    return {
        "people": len(people),
        "photos": photos,
        "no_face": no_face,
        "same_pairs": same_total,
        "same_verified": same_ok,
        "other_pairs": diff_total,
        "other_rejected": diff_ok,
        "judge_accuracy": accuracy,
    }


# --------------------------------------------------------------------------------------
# People, scores and tallies
# --------------------------------------------------------------------------------------


@dataclass
class Scorer:
    """One recognizer's embeddings of a person's photos: ``embed(image)``, its similarity and distance."""

    embed: Callable[[Any], Any]
    similarity: Callable[[Any, Any], float]
    distance: Callable[[Any, Any], float]


@dataclass
class Person:
    name: str
    inputs: list[Path]
    held_out: list[Path]
    held_out_embeddings: list[Any] = field(default_factory=list)  # the pack's
    input_embeddings: dict[str, list[Any]] = field(default_factory=dict)  # per scorer ("judge", "pack")
    held_out_by: dict[str, list[Any]] = field(default_factory=dict)
    baseline: dict[str, float | None] = field(default_factory=dict)  # inputs' mean similarity to held-out


@dataclass
class Scores:
    """One scorer's figures over the outputs of one method."""

    similarities: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    copy_paste: list[float] = field(default_factory=list)
    matches: int = 0

    def mean(self, values: list[float]) -> float | None:
        return round(statistics.fmean(values), 4) if values else None


@dataclass
class Tally:
    """Scores of one method over every identity, style and seed."""

    judge: Scores = field(default_factory=Scores)
    pack: Scores = field(default_factory=Scores)
    images: int = 0
    render_seconds: float = 0.0
    identity_seconds: list[float] = field(default_factory=list)
    identities: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)
    timed: bool = True  # False for the real photos (nothing rendered)

    @property
    def similarities(self) -> list[float]:  # the pack's (older callers)
        return self.pack.similarities

    def record(self, name: str) -> dict:
        images = self.images
        return {
            "name": name,
            "value": self.judge.mean(self.judge.ratios),
            "unit": "ratio",
            "judge": JUDGE_NAME,
            "judge_similarity": self.judge.mean(self.judge.similarities),
            "judge_copy_paste": self.judge.mean(self.judge.copy_paste),
            "judge_match_rate": round(self.judge.matches / images, 4) if images else None,
            "judge_detection_rate": round(len(self.judge.similarities) / images, 4) if images else None,
            "pack_likeness_ratio": self.pack.mean(self.pack.ratios),
            "pack_similarity": self.pack.mean(self.pack.similarities),
            "pack_copy_paste": self.pack.mean(self.pack.copy_paste),
            "detection_rate": round(len(self.pack.similarities) / images, 4) if images else None,
            "seconds_per_image": round(self.render_seconds / images, 4) if images and self.timed else None,
            "identity_seconds": (
                round(statistics.fmean(self.identity_seconds), 3) if self.identity_seconds else None
            ),
            "images": images,
            "identities": len(self.identities),
        }


def scorers(analyzer, judge: Judge) -> dict[str, Scorer]:
    from headshot.faces.analyzer import cosine

    def pack_embed(image):
        faces = analyzer.detect(image)
        return faces[0].embedding if faces else None

    return {
        "judge": Scorer(judge.embed, judge.similarity, judge.distance),
        "pack": Scorer(pack_embed, cosine, angular_distance),
    }


def people(faces_dir: Path, analyzer, inputs: int, limit: int, judge: Judge | None = None) -> list[Person]:
    """People with ``inputs`` accepted photos plus at least one more accepted one to hold out."""
    from headshot import imaging, studio

    found: list[Person] = []
    for folder in sorted(p for p in faces_dir.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if len(photos) < inputs + 1:
            continue
        report = studio.validate(photos, analyzer).report
        accepted = [path for path, entry in zip(photos, report["selfies"], strict=True) if entry["accepted"]]
        if len(accepted) < inputs + 1:
            continue
        person = Person(folder.name, accepted[:inputs], accepted[inputs:])
        person.held_out_embeddings = [face.embedding for face in _faces(person.held_out, analyzer)]
        if judge is not None:
            for key, scorer in scorers(analyzer, judge).items():
                embed = [scorer.embed(imaging.load_image(p)) for p in person.inputs]
                held = [scorer.embed(imaging.load_image(p)) for p in person.held_out]
                person.input_embeddings[key] = [e for e in embed if e is not None]
                person.held_out_by[key] = [e for e in held if e is not None]
                sims = [
                    similarity_to(e, person.held_out_by[key], scorer.similarity)
                    for e in person.input_embeddings[key]
                ]
                person.baseline[key] = statistics.fmean(sims) if sims and person.held_out_by[key] else None
        found.append(person)
        if limit and len(found) >= limit:
            break
    return found


def _faces(paths: Sequence[Path], analyzer) -> list:
    from headshot import imaging

    out = []
    for path in paths:
        face = analyzer.embed_largest(imaging.load_image(path))
        if face is not None:
            out.append(face)
    return out


def similarity_to(embedding, references: Sequence[Any], similarity: Callable | None = None) -> float:
    """Mean similarity (cosine) of ``embedding`` to each held-out photo's embedding."""
    if similarity is None:
        from headshot.faces.analyzer import cosine as similarity
    return statistics.fmean(similarity(embedding, ref) for ref in references)


def score_embedding(key: str, embedding, person: Person, scorer: Scorer, scores: Scores, refs=None) -> None:
    """Add one output's (or photo's) figures against the person's held-out photos to ``scores``."""
    held = person.held_out_by.get(key) or []
    if embedding is None or not held:
        return
    sim = similarity_to(embedding, held, scorer.similarity)
    scores.similarities.append(sim)
    baseline = person.baseline.get(key)
    if baseline:
        scores.ratios.append(sim / baseline)
    cp = copy_paste(
        embedding, person.input_embeddings.get(key, []) if refs is None else refs, held, scorer.distance
    )
    if cp is not None:
        scores.copy_paste.append(cp)
    if key == "judge" and statistics.fmean(scorer.distance(embedding, t) for t in held) < JUDGE_THRESHOLD:
        scores.matches += 1


def score_images(images, person: Person, scoring: dict[str, Scorer], tally: Tally) -> None:
    for image in images:
        tally.images += 1
        for key, scorer in scoring.items():
            score_embedding(key, scorer.embed(image), person, scorer, getattr(tally, key))


def score_real_photos(person: Person, scoring: dict[str, Scorer], tally: Tally) -> None:
    """The input selfies themselves: likeness ratio 1, copy-paste against the *other* selfies."""
    tally.images += len(person.inputs)
    for key, scorer in scoring.items():
        inputs = person.input_embeddings.get(key, [])
        for index, embedding in enumerate(inputs):
            others = inputs[:index] + inputs[index + 1 :]
            score_embedding(key, embedding, person, scorer, getattr(tally, key), refs=others)
    tally.identities.add(person.name)


# --------------------------------------------------------------------------------------
# Identities and renders
# --------------------------------------------------------------------------------------


def render_method(method: str, identity, person: Person, args, analyzer, scoring, tally: Tally) -> None:
    """Render every style and seed of one method for one identity and score the outputs."""
    from headshot import studio

    off = method == "lora"  # the LoRA alone: no face adapter, no IdentityNet
    options = studio.GenerateOptions(
        num_images=len(args.seeds),
        seed=args.seeds[0],
        steps=args.steps,
        identity_strength=0.0 if off else None,
        identitynet_strength=0.0 if off else None,
        best_of=args.best_of if method == "best_of" else 1,
        fast=args.fast,
        face_region_only=args.face_region == "on",
    )
    for style in args.styles:
        started = time.perf_counter()
        result = studio.generate(identity, style, options, analyzer=analyzer)
        try:
            score_images([shot.image for shot in result.headshots], person, scoring, tally)
        finally:
            tally.render_seconds += time.perf_counter() - started
            shutil.rmtree(result.workdir, ignore_errors=True)
    tally.identities.add(person.name)


def build(person: Person, family: str, args, analyzer):
    """The identity of ``person`` for one method family and the seconds it took.

    ``instantid`` and ``lora`` as the app makes them (``studio.create_identity``); ``lora_adapter``: the
    app's LoRA recipe trained with the face adapter active at ``--face-adapter-scale``.
    """
    from headshot import studio

    started = time.perf_counter()
    if family == "lora_adapter":
        identity = _lora_with_face_adapter(person, args, analyzer)
    else:
        result = studio.create_identity(
            [str(p) for p in person.inputs], family, lora_steps=args.lora_steps, seed=0, analyzer=analyzer
        )
        shutil.rmtree(result.path.parent, ignore_errors=True)
        identity = result.identity
    return identity, time.perf_counter() - started


def _lora_with_face_adapter(person: Person, args, analyzer):
    from headshot import config, errors, studio
    from headshot.faces.identity import build_identity
    from headshot.gpu import lora, pipeline

    checked = studio.validate([str(p) for p in person.inputs], analyzer)
    if len(checked.accepted) < config.LORA_MIN_ACCEPTED:
        raise errors.NotEnoughSelfies("not enough accepted selfies for a LoRA")
    identity = build_identity(
        checked.accepted, face_pack=analyzer.pack_id, base_model=pipeline.base_model_id()
    )
    settings = lora.lora_settings(args.lora_steps, seed=0)
    settings.face_adapter_scale = args.face_adapter_scale
    settings.render_identity_strength = args.face_adapter_scale  # render as it was trained
    result = pipeline.train_identity_lora(
        [s.image for s in checked.accepted],
        [s.face.bbox for s in checked.accepted],
        settings,
        face_embedding=identity.embedding,
    )
    identity.method = "lora"
    identity.lora = result.state_dict
    identity.lora_config = result.config
    return identity


def run(args: argparse.Namespace) -> list[dict]:
    from headshot import config, errors
    from headshot.faces.analyzer import get_analyzer
    from headshot.gpu import pipeline

    if config.profile() == "tiny":
        import torch

        torch.set_num_threads(1)  # tiny models: one thread is as fast, and fair on a shared machine

    judge = Judge()
    analyzer = get_analyzer()
    scoring = scorers(analyzer, judge)
    persons = people(args.faces_dir, analyzer, args.inputs, args.identities, judge)
    if not persons:
        raise SystemExit(f"no person in {args.faces_dir} has {args.inputs + 1}+ accepted photos")
    tallies = {method: Tally() for method in args.methods}
    real = Tally(timed=False)
    pipeline.ready_models()  # once, before anything is timed
    for person in persons:
        print(f"{person.name}: {len(person.inputs)} inputs, {len(person.held_out)} held out", file=sys.stderr)
        score_real_photos(person, scoring, real)
        identities: dict[str, tuple[Any, float]] = {}
        for method in args.methods:
            family = FAMILIES[method]
            tally = tallies[method]
            try:
                if family not in identities:
                    identities[family] = build(person, family, args, analyzer)
            except errors.HeadshotError as exc:
                tally.skipped.append(f"{person.name}: {exc.code}")
                continue
            identity, seconds = identities[family]
            tally.identity_seconds.append(seconds)
            render_method(method, identity, person, args, analyzer, scoring, tally)

    from benchmarks.run import load_average, machine

    settings = (
        f"profile {config.profile()}, judge {JUDGE_NAME}, pack {analyzer.pack_id}, {len(args.styles)} style(s) x "
        f"{len(args.seeds)} seed(s), {args.inputs} input photos, face region {args.face_region}"
    )
    records = []
    for method in ("real_photos", *args.methods):
        tally = real if method == "real_photos" else tallies[method]
        record = tally.record(f"likeness_{method}")
        record["machine"] = machine()
        notes = [settings]
        if method == "real_photos":
            notes = ["input selfies against the held-out photos (copy-paste: against the other selfies)"]
        elif method == "best_of":
            notes.append(
                f"best of {args.best_of}, ranked by the pack ({analyzer.pack_id}), scored by the judge"
            )
        elif method in ("lora", "both", "both_adapter"):
            notes.append(f"LoRA steps {args.lora_steps or 'default'}")
            if method == "both_adapter":
                notes.append(f"trained with the face adapter at {args.face_adapter_scale}")
        if tally.skipped:
            notes.append("skipped " + ", ".join(tally.skipped))
        notes.append(load_average())
        record["notes"] = "; ".join(n for n in notes if n)
        print(json.dumps(record), flush=True)
        records.append(record)
    if args.table:
        Path(args.table).write_text(markdown_table(records, settings))
    return records


def _cell(value, digits: int = 3) -> str:
    return "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def markdown_table(records: Sequence[dict], settings: str = "") -> str:
    """The README's likeness table from the records."""
    lines = [
        f"Likeness ({settings}; {records[0]['machine'] if records else ''})",
        "",
        "| method | likeness ratio (judge) | copy-paste (judge) | judge match rate | likeness ratio (pack) "
        "| copy-paste (pack) | face detection rate | s/image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['name'].removeprefix('likeness_')} | {_cell(r['value'])} | {_cell(r['judge_copy_paste'])} | "
            f"{_cell(r['judge_match_rate'], 2)} | {_cell(r['pack_likeness_ratio'])} | "
            f"{_cell(r['pack_copy_paste'])} | {_cell(r['detection_rate'], 2)} | {_cell(r['seconds_per_image'], 2)} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces-dir", type=Path, default=SHARED / "testdata" / "faces" / "same_person")
    parser.add_argument(
        "--check-judge", type=Path, metavar="DIR", help="only check the judge on DIR/<person>/<photo>"
    )
    parser.add_argument("--quick", action="store_true", help="1 identity, 1 style, 1 seed, 2 LoRA steps")
    parser.add_argument(
        "--tiny", action="store_true", help="the offline tiny profile and the small face pack"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--identities", type=int, help="at most this many people (0: all; quick: 1)")
    parser.add_argument("--inputs", type=int, default=3, help="photos an identity is built from")
    parser.add_argument("--styles", nargs="+", help=f"style ids (default: {' '.join(DEFAULT_STYLES)})")
    parser.add_argument("--seeds", type=int, nargs="+", help="consecutive seeds (default: 1 2)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: each style's; quick: 4)")
    parser.add_argument("--lora-steps", type=int, help="LoRA training steps (default: the profile's)")
    parser.add_argument("--best-of", type=int, default=4, help="candidates per image for best_of (2-4)")
    parser.add_argument(
        "--face-adapter-scale", type=float, default=0.5, help="face adapter scale while training both_adapter"
    )
    parser.add_argument(
        "--face-region",
        choices=("on", "off"),
        default="on",
        help="face-region control (the app's default: on)",
    )
    parser.add_argument("--fast", action="store_true", help="render in fast mode")
    parser.add_argument("--table", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.check_judge is not None:
        if not args.check_judge.is_dir():
            parser.error(f"--check-judge {args.check_judge} is not a folder")
        return args
    if args.quick:
        args.identities = 1 if args.identities is None else args.identities
        args.styles = args.styles or [DEFAULT_STYLES[0]]
        args.seeds = args.seeds or [DEFAULT_SEEDS[0]]
        args.steps = args.steps or 4
        args.lora_steps = args.lora_steps or 2
        args.best_of = min(args.best_of, 2)
    args.identities = args.identities or 0
    args.styles = args.styles or list(DEFAULT_STYLES)
    args.seeds = args.seeds or list(DEFAULT_SEEDS)
    if args.seeds != list(range(args.seeds[0], args.seeds[0] + len(args.seeds))):
        parser.error("--seeds must be consecutive and ascending (image i of a render uses seed + i)")
    if not 2 <= args.best_of <= 4:
        parser.error("--best-of must be 2, 3 or 4")
    if args.inputs < 1:
        parser.error("--inputs must be at least 1")
    if not 0.0 < args.face_adapter_scale <= 1.5:
        parser.error("--face-adapter-scale must be above 0 and at most 1.5")
    if not args.faces_dir.is_dir():
        parser.error(f"--faces-dir {args.faces_dir} is not a folder")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict] | dict:
    args = parse_args(argv)
    if args.check_judge is not None:
        return check_judge(args.check_judge)
    if args.tiny:
        os.environ["HEADSHOT_PROFILE"] = "tiny"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        pack = SHARED / "models" / "faces-small"
        if "HEADSHOT_FACE_MODELS" not in os.environ and pack.is_dir():
            os.environ["HEADSHOT_FACE_MODELS"] = str(pack)
    return run(args)


if __name__ == "__main__":
    main()
