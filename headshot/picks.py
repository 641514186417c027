"""What a person does with a result: look at one headshot next to their selfie, keep favourites.

Plain Python like ``studio`` (the UI and the API call it). A headshot is one of this session's own PNG
files; what it says about itself (style, seed, likeness) is read from its metadata, which
``studio._write_outputs`` wrote. Favourites are kept by the session (``sessions.Session.favourites``),
in the order they were chosen, and go with the session's other files on Delete or the sweep.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import disclosure
from .errors import InvalidRequest
from .faces import FaceAnalyzer
from .identity import Identity
from .sessions import Session

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
        """What the comparison says under the two pictures."""
        seed = "" if self.seed is None else f" · seed {self.seed}"
        if self.likeness is None:
            head = "⚠️ **No face was found in this headshot.** Try Regenerate or More like this."
        elif self.verdict == "good":
            head = (
                f"★ **Likeness {self.likeness:.2f}**: reads as the same person as your selfies "
                f"(the face models' same-person line is {threshold:.2f})."
            )
        else:
            head = (
                f"⚠️ **Likeness {self.likeness:.2f}**: below the face models' same-person line "
                f"({threshold:.2f}); it may not look like you. Try More like this or Regenerate."
            )
        return f"{head}\n\nStyle: {self.style}{seed}"


def headshot_file(session: Session, image: str | Path | None) -> Path:
    """``image`` as one of this session's own headshot PNGs, or a clear refusal."""
    if not image:
        raise InvalidRequest("Choose a headshot first: click one in the gallery.")
    path = Path(str(image))
    if not path.is_absolute():  # a file name, as /generate's info gives it: this session's latest of that name
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
