"""Likeness benchmark: do the headshots look like the person? One JSON line per identity method.

    python benchmarks/likeness.py                      # the real models (GPU; HEADSHOT_PROFILE=full)
    python benchmarks/likeness.py --tiny --quick       # the code path, offline on the tiny profile

For every person with enough photos in ``--faces-dir`` (one folder per person; default
``../shared/testdata/faces/same_person``), the photos are validated, the first ``--inputs`` accepted
ones build the identity (``studio.create_identity``) and the remaining accepted ones are held out.
A fixed set of styles and seeds is rendered (``studio.generate``) and every output's largest face is
compared with the held-out photos only (mean cosine similarity of the face embeddings), never with
the photos the identity was built from. Methods:

* ``instantid``: an InstantID identity (face adapter + IdentityNet);
* ``lora``: a quick-LoRA identity rendered with the face adapter and IdentityNet switched off
  (identity and IdentityNet strength 0): the LoRA alone;
* ``both``: the LoRA identity with InstantID on (the app's default for a LoRA identity);
* ``best_of``: InstantID rendering ``--best-of`` candidates per image and keeping the one most like
  the identity (the app's "candidates per image" ranking).

Each line: ``{"name": "likeness_<method>", "value": mean similarity over detected faces (null when
none), "unit": "cosine", "detection_rate", "seconds_per_image" (render + scoring, after the identity
exists), "identity_seconds" (building it, per identity), "images", "identities", "machine", "notes"}``.
A ``likeness_real_photos`` line gives the ceiling: the input photos against the held-out ones.
On the tiny profile the images are noise, so the detection rate is 0 and the similarity null; the
line format and the code path are what ``--quick`` checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("instantid", "lora", "both", "best_of")
DEFAULT_STYLES = ("corporate-grey", "outdoor-natural", "tech-casual", "classic-bw")
DEFAULT_SEEDS = (1, 2)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SHARED = Path(os.environ.get("HEADSHOT_TEST_DATA", ROOT.parent / "shared"))  # the shared test data


@dataclass
class Person:
    name: str
    inputs: list[Path]
    held_out: list[Path]
    held_out_embeddings: list[Any] = field(default_factory=list)


@dataclass
class Tally:
    """Scores of one method over every identity, style and seed."""

    similarities: list[float] = field(default_factory=list)
    images: int = 0
    render_seconds: float = 0.0
    identity_seconds: list[float] = field(default_factory=list)
    identities: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)
    timed: bool = True  # False for the real photos (nothing rendered)

    def record(self, name: str) -> dict:
        return {
            "name": name,
            "value": round(statistics.fmean(self.similarities), 4) if self.similarities else None,
            "unit": "cosine",
            "detection_rate": round(len(self.similarities) / self.images, 4) if self.images else None,
            "seconds_per_image": (
                round(self.render_seconds / self.images, 4) if self.images and self.timed else None
            ),
            "identity_seconds": (
                round(statistics.fmean(self.identity_seconds), 3) if self.identity_seconds else None
            ),
            "images": self.images,
            "identities": len(self.identities),
        }


def people(faces_dir: Path, analyzer, inputs: int, limit: int) -> list[Person]:
    """People with ``inputs`` accepted photos plus at least one more accepted one to hold out."""
    from headshot import studio

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


def similarity_to(embedding, references: Sequence[Any]) -> float:
    """Mean cosine similarity of ``embedding`` to each held-out photo's embedding."""
    from headshot.faces import cosine

    return statistics.fmean(cosine(embedding, ref) for ref in references)


def score_images(images, person: Person, analyzer, tally: Tally) -> None:
    for image in images:
        tally.images += 1
        faces = analyzer.detect(image)
        if faces:
            tally.similarities.append(similarity_to(faces[0].embedding, person.held_out_embeddings))


def render_method(method: str, identity, person: Person, args, analyzer, tally: Tally) -> None:
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
    )
    for style in args.styles:
        started = time.perf_counter()
        result = studio.generate(identity, style, options, analyzer=analyzer)
        try:
            score_images([shot.image for shot in result.headshots], person, analyzer, tally)
        finally:
            tally.render_seconds += time.perf_counter() - started
            shutil.rmtree(result.workdir, ignore_errors=True)
    tally.identities.add(person.name)


def build(person: Person, method: str, args, analyzer):
    """The identity of ``person`` for one method family (InstantID, or LoRA) and the seconds it took."""
    from headshot import studio

    started = time.perf_counter()
    result = studio.create_identity(
        [str(p) for p in person.inputs],
        "lora" if method in ("lora", "both") else "instantid",
        lora_steps=args.lora_steps,
        seed=0,
        analyzer=analyzer,
    )
    shutil.rmtree(result.path.parent, ignore_errors=True)
    return result.identity, time.perf_counter() - started


def run(args: argparse.Namespace) -> list[dict]:
    from headshot import config, errors, pipeline
    from headshot.faces import get_analyzer

    if config.profile() == "tiny":
        import torch

        torch.set_num_threads(1)  # tiny models: one thread is as fast, and fair on a shared machine

    analyzer = get_analyzer()
    persons = people(args.faces_dir, analyzer, args.inputs, args.identities)
    if not persons:
        raise SystemExit(f"no person in {args.faces_dir} has {args.inputs + 1}+ accepted photos")
    tallies = {method: Tally() for method in args.methods}
    real = Tally(timed=False)
    pipeline.ready_models()  # once, before anything is timed
    for person in persons:
        print(f"{person.name}: {len(person.inputs)} inputs, {len(person.held_out)} held out", file=sys.stderr)
        for face in _faces(person.inputs, analyzer):  # the ceiling: real photos against the held-out ones
            real.images += 1
            real.similarities.append(similarity_to(face.embedding, person.held_out_embeddings))
        real.identities.add(person.name)
        identities: dict[str, tuple[Any, float]] = {}
        for method in args.methods:
            family = "lora" if method in ("lora", "both") else "instantid"
            tally = tallies[method]
            try:
                if family not in identities:
                    identities[family] = build(person, method, args, analyzer)
            except errors.HeadshotError as exc:
                tally.skipped.append(f"{person.name}: {exc.code}")
                continue
            identity, seconds = identities[family]
            tally.identity_seconds.append(seconds)
            render_method(method, identity, person, args, analyzer, tally)

    from benchmarks.run import load_average, machine

    settings = (
        f"profile {config.profile()}, pack {analyzer.pack_id}, {len(args.styles)} style(s) x "
        f"{len(args.seeds)} seed(s), {args.inputs} input photos"
    )
    records = []
    for method in ("real_photos", *args.methods):
        tally = real if method == "real_photos" else tallies[method]
        record = tally.record(f"likeness_{method}")
        record["machine"] = machine()
        notes = [settings]
        if method == "real_photos":
            notes = [f"input photos against held-out photos (the ceiling), pack {analyzer.pack_id}"]
        elif method == "best_of":
            notes.append(f"best of {args.best_of}")
        elif method in ("lora", "both"):
            notes.append(f"LoRA steps {args.lora_steps or 'default'}")
        if tally.skipped:
            notes.append("skipped " + ", ".join(tally.skipped))
        notes.append(load_average())
        record["notes"] = "; ".join(n for n in notes if n)
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces-dir", type=Path, default=SHARED / "testdata" / "faces" / "same_person")
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
    parser.add_argument("--fast", action="store_true", help="render in fast mode")
    args = parser.parse_args(argv)
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
    if not args.faces_dir.is_dir():
        parser.error(f"--faces-dir {args.faces_dir} is not a folder")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.tiny:
        os.environ["HEADSHOT_PROFILE"] = "tiny"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        pack = SHARED / "models" / "faces-small"
        if "HEADSHOT_FACE_MODELS" not in os.environ and pack.is_dir():
            os.environ["HEADSHOT_FACE_MODELS"] = str(pack)
    return run(args)


if __name__ == "__main__":
    main()
