"""The face-model pack: which one, where its files are, and getting antelopev2 safely.

The pack is ``HEADSHOT_FACE_MODELS`` (a local folder, any layout: :func:`find_onnx_dir`) or antelopev2,
downloaded once into the cache (the Hub at a pinned revision, then the insightface release URL), its zip
and each ONNX file taken from it checked against ``config.ANTELOPEV2_SHA256`` before use, and unpacked
without letting a hostile zip write outside its folder. :func:`resolve_pack` answers ``(pack id, folder)``;
``faces.analyzer`` loads what it names. A local folder is the user's own and is not checked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from headshot import config, errors

log = logging.getLogger(__name__)

# Recognizer file name -> pack id, so a pack is recognised whatever its folder is called.
KNOWN_RECOGNIZERS = {
    "glintr100.onnx": "antelopev2",
    "mobilefacenet_128d_dynbatch.onnx": "faces-small",
}
# The two files of the antelopev2 zip we need (the zip also holds landmark and gender/age models).
ANTELOPEV2_FILES = ("scrfd_10g_bnkps.onnx", "glintr100.onnx")

DOWNLOAD_TIMEOUT_S = 60

OFFLINE_HINT = (
    "Set HEADSHOT_FACE_MODELS to a local insightface model-pack folder (one folder holding a face "
    "detector .onnx and a face recognizer .onnx, e.g. an unzipped antelopev2) and start again."
)


def find_onnx_dir(folder: Path) -> Path:
    """The folder inside ``folder`` that holds the pack's ``.onnx`` files: ``folder`` itself or a single
    nested folder up to two levels down (zips often unpack as ``antelopev2/antelopev2/*.onnx``).

    Raises :class:`errors.FaceModelsUnavailable` when there is none or the choice is ambiguous."""
    folder = Path(folder)
    if not folder.is_dir():
        raise errors.FaceModelsUnavailable(f"The face model folder {folder} does not exist. {OFFLINE_HINT}")
    if any(folder.glob("*.onnx")):
        return folder
    candidates = sorted(
        {p.parent for p in folder.glob("*/*.onnx")} | {p.parent for p in folder.glob("*/*/*.onnx")}
    )
    candidates = [c for c in candidates if not c.name.startswith((".", "__MACOSX"))]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise errors.FaceModelsUnavailable(
            f"The face model folder {folder} holds no .onnx model files. {OFFLINE_HINT}"
        )
    names = ", ".join(str(c.relative_to(folder)) for c in candidates)
    raise errors.FaceModelsUnavailable(
        f"The face model folder {folder} holds several model folders ({names}); point "
        "HEADSHOT_FACE_MODELS at exactly one of them."
    )


def pack_id_for(onnx_dir: Path) -> str:
    """A known pack's id from its recognizer's file name, else the folder's name."""
    for filename, pack in KNOWN_RECOGNIZERS.items():
        if (onnx_dir / filename).is_file():
            return pack
    return onnx_dir.name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_download(path: Path, name: str) -> None:
    """Check ``path`` against the SHA-256 in ``config.ANTELOPEV2_SHA256[name]``.

    Raises :class:`errors.FaceModelsUnavailable` naming the file and the expected digest on a mismatch
    (the caller deletes what it downloaded). A name without a confirmed digest is logged and passes.
    """
    expected = config.ANTELOPEV2_SHA256.get(name)
    if not expected:
        log.warning("face model file %s has no known SHA-256 digest; loading it unverified", name)
        return
    actual = _sha256(path)
    if actual != expected.lower():
        raise errors.FaceModelsUnavailable(
            f"The downloaded face model file {name} is not the expected file: its SHA-256 is {actual}, "
            f"expected {expected}. It has been deleted and nothing of that download is used; start "
            f"again to download it once more. {OFFLINE_HINT}"
        )


def _delete_download(path: Path) -> None:
    """Remove a downloaded file; for a Hub cache entry, the blob the snapshot link points at too."""
    target = path.resolve()
    path.unlink(missing_ok=True)
    target.unlink(missing_ok=True)


def _safe_extract_onnx(zip_path: Path, target: Path, wanted: Sequence[str]) -> Path:
    """Unpack the ``.onnx`` members of ``zip_path`` flat into ``target`` (atomically: a temp folder renamed
    into place). Only ``wanted`` names when all are present, else every ``.onnx`` member. Member paths are
    never joined to the target, so a hostile zip cannot write outside it. Each file is checked against its
    digest before the folder is renamed into place; on a mismatch nothing is kept."""
    with zipfile.ZipFile(zip_path) as zf:
        members = [
            m
            for m in zf.infolist()
            if not m.is_dir() and m.filename.lower().endswith(".onnx") and "__MACOSX" not in m.filename
        ]
        by_name = {Path(m.filename).name: m for m in members}
        if all(name in by_name for name in wanted):
            members = [by_name[name] for name in wanted]
        if not members:
            raise errors.FaceModelsUnavailable(
                f"The downloaded face model archive {zip_path.name} holds no models."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            for member in members:
                name = Path(member.filename).name
                with zf.open(member) as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
                _verify_download(tmp / name, name)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _download_zip(dest_dir: Path) -> Path:
    """antelopev2.zip from the Hub (pinned revision), else from the insightface release URL.

    The default Hub cache is looked at first: a Space's build puts the file there (``preload_from_hub``)."""
    failures: list[str] = []
    model = config.ANTELOPEV2
    try:
        from huggingface_hub import hf_hub_download

        filename = model.filename or "antelopev2.zip"
        hub = {"repo_id": model.repo_id, "filename": filename, "revision": model.revision}
        try:
            return Path(hf_hub_download(**hub, local_files_only=True))
        except Exception:  # not preloaded: download into our own cache
            return Path(hf_hub_download(**hub, cache_dir=str(dest_dir / "hub")))
    except Exception as exc:  # offline, blocked, repo gone: try the release URL
        failures.append(f"Hugging Face Hub: {type(exc).__name__}")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        failures.append("release URL: skipped, HF_HUB_OFFLINE is set")
    else:
        part = dest_dir / "antelopev2.zip.part"
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            with (
                urllib.request.urlopen(config.ANTELOPEV2_URL, timeout=DOWNLOAD_TIMEOUT_S) as resp,
                open(part, "wb") as fh,
            ):
                shutil.copyfileobj(resp, fh, length=1 << 20)
            final = dest_dir / "antelopev2.zip"
            os.replace(part, final)
            return final
        except Exception as exc:
            part.unlink(missing_ok=True)
            failures.append(f"release URL: {type(exc).__name__}")
    raise errors.FaceModelsUnavailable(
        "The face models (antelopev2) are not on this machine and could not be downloaded "
        f"({'; '.join(failures)}). {OFFLINE_HINT}"
    )


_DOWNLOAD_LOCK = threading.Lock()


def _cached_pack_ok(target: Path) -> bool:
    """True when the unpacked pack in the cache is there and each file still matches its digest; a
    folder that does not match is deleted (and downloaded again)."""
    if not (target.is_dir() and any(target.glob("*.onnx"))):
        return False
    try:
        for onnx in sorted(target.glob("*.onnx")):
            _verify_download(onnx, onnx.name)
    except errors.FaceModelsUnavailable as exc:
        log.warning("the cached face models failed their check and are downloaded again: %s", exc.message)
        shutil.rmtree(target, ignore_errors=True)
        return False
    return True


def ensure_antelopev2() -> Path:
    """The folder with antelopev2's detector and recognizer, downloading and unpacking it on first use.

    The zip and the ONNX files taken from it are checked against ``config.ANTELOPEV2_SHA256`` before
    they are used; a download that fails the check is deleted and refused."""
    target = config.cache_dir() / "face_packs" / "antelopev2"
    with _DOWNLOAD_LOCK:
        if _cached_pack_ok(target):
            return target
        zip_path = _download_zip(config.cache_dir() / "downloads")
        try:
            _verify_download(zip_path, config.ANTELOPEV2.filename or "antelopev2.zip")
            return _safe_extract_onnx(zip_path, target, ANTELOPEV2_FILES)
        except errors.FaceModelsUnavailable:
            _delete_download(zip_path)
            raise
        except zipfile.BadZipFile:
            _delete_download(zip_path)
            raise errors.FaceModelsUnavailable(
                f"The downloaded face model archive was damaged and has been removed; start again. {OFFLINE_HINT}"
            ) from None


def resolve_pack() -> tuple[str, Path]:
    """``(pack_id, folder with the .onnx files)`` from ``HEADSHOT_FACE_MODELS`` or the antelopev2 cache."""
    local = config.face_models_dir()
    onnx_dir = find_onnx_dir(local) if local is not None else ensure_antelopev2()
    return pack_id_for(onnx_dir), onnx_dir
