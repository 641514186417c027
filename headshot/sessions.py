"""Every file the app keeps, by session: working folders, sessions that own their files, the sweeper.

A :class:`Session` (a browser tab, an API client, an MCP session) copies the uploads it uses into its own
folder, whose name holds 128 random bits (as does every run folder in it), writes its outputs there and
records every file it was given or handed out, so :meth:`Session.delete` removes all of it and nothing of
another session. :func:`check_file` is the one ownership check for a file or link a caller passes: its
own session's file, or an upload no other session has used (then claimed for it). :func:`delete_named`
deletes only named files of the caller's. Sessions the server keeps by a key (an MCP session) live in
:func:`lasting` until ended or swept. The sweeper removes what sessions that never press Delete leave
behind, and what they held in memory (:func:`hold`, a paused LoRA training; :func:`on_sweep` hooks).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headshot import config
from headshot.errors import InvalidRequest

# --------------------------------------------------------------------------------------
# Working files: every request writes under one temp folder, removed after a short time
# --------------------------------------------------------------------------------------


_WORK_ROOT: list[Path] = []  # set by the UI to a folder inside the web server's file cache


def set_work_root(path: str | Path) -> Path:
    """Keep every working file under ``path`` (the UI puts it inside Gradio's cache, so that the files
    are served where they are, never as shared copies)."""
    _WORK_ROOT[:] = [Path(path)]
    return work_root()


def work_root() -> Path:
    root = _WORK_ROOT[0] if _WORK_ROOT else Path(tempfile.gettempdir()) / "headshot-studio"
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_workdir(kind: str) -> Path:
    """A fresh folder for one request's files; old folders are swept at the same time."""
    sweep_workdirs()
    path = work_root() / f"{kind}-{new_token()}"
    path.mkdir(parents=True)
    return path


def sweep_workdirs(max_age_s: float | None = None) -> int:
    """Delete request folders older than ``max_age_s`` (default: Gradio's delete_cache age)."""
    max_age = config.delete_cache()[1] if max_age_s is None else max_age_s
    now = time.time()
    removed = 0
    root = work_root()
    containers = [root / SESSIONS, root / UPLOADS]  # a session's folder, an upload's folder: each by age
    entries = [p for p in root.iterdir() if p not in containers]
    entries += [p for c in containers if c.is_dir() for p in c.iterdir()]
    for path in entries:
        try:
            age = now - path.stat().st_mtime
            # An upload folder Gradio's own cache cleaner emptied (it ages files by ctime) holds nothing
            # (not one just made, whose file is being linked in).
            empty_upload = path.parent.name == UPLOADS and age > 2 and path.is_dir() and not any(path.iterdir())
            if empty_upload or age > max_age:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed += 1
        except FileNotFoundError:
            continue
    # what sessions gone quiet held in memory; lasting sessions (MCP) gone quiet: their files and memory
    forget_claims()  # ownership records of uploads that are gone
    released = release_older_than(max_age) + end_quiet_sessions(max_age)
    for hook in list(_SWEEP_HOOKS):  # what the web layer keeps per session (Gradio's session states)
        released += hook(max_age) or 0
    if released:
        _give_memory_back()
    return removed


def _give_memory_back() -> None:
    """After sessions were released: collect their objects, and hand the heap memory glibc keeps for
    reuse back to the OS (``malloc_trim``), so the process's RSS goes down with them (glibc only)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


_SWEEP_HOOKS: list = []  # callables(max_age_s) the sweep runs too (see on_sweep)


def on_sweep(hook) -> None:
    """Run ``hook(max_age_s)`` at every sweep: the web layer releases what it keeps per session there."""
    if hook not in _SWEEP_HOOKS:
        _SWEEP_HOOKS.append(hook)


_SWEEPER_LOCK = threading.Lock()
_SWEEPER: list[threading.Thread] = []  # the one sweeper thread of this process (no user data)


def start_sweeper(every_s: float | None = None, max_age_s: float | None = None) -> threading.Thread:
    """Sweep old request folders every ``every_s`` seconds in a daemon thread (one per process).

    :func:`new_workdir` sweeps too, but only when a request comes; this keeps the promise that files are
    gone after ``max_age_s`` (default: ``config.delete_cache()``) on a server that has gone quiet, also
    for sessions that never press Delete.
    """
    every = float(config.delete_cache()[0] if every_s is None else every_s)
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
# Sessions: each person's files in one folder of their own, deleted together
# --------------------------------------------------------------------------------------

SESSIONS = "sessions"  # work_root()/sessions/<session id>/<request folder>/...
UPLOADS = "uploads"  # work_root()/uploads/<token>/<file name>: one upload (the UI makes them private)
_TOKEN = re.compile(r"[0-9a-f]{32}")


def new_token() -> str:
    """An unguessable folder name (128 random bits)."""
    return uuid.uuid4().hex


def uploads_root() -> Path:
    return work_root() / UPLOADS


def _owner(path: Path) -> tuple[str, Path] | None:
    """``(kind, folder)`` when ``path`` lies in a session's folder or an upload's folder, else None."""
    try:
        parts = path.resolve().relative_to(work_root().resolve()).parts
    except (ValueError, OSError):
        return None
    if len(parts) >= 2 and parts[0] in (SESSIONS, UPLOADS) and _TOKEN.fullmatch(parts[1]):
        return parts[0], work_root() / parts[0] / parts[1]
    return None


@dataclass
class Session:
    """Every file one session (a browser tab, an API client) was given or handed in, across all its runs.

    Uploads are copied into the session's own folder before use and every output is written there, so
    :meth:`delete` removes all of it, and nothing that another session uses. Plain data: it lives in the
    UI's per-session state.
    """

    id: str = field(default_factory=new_token)
    files: list[str] = field(default_factory=list)  # every path handed in or out, in order
    copies: dict[str, str] = field(default_factory=dict)  # a received file -> this session's copy
    favourites: list[str] = field(default_factory=list)  # headshots the person starred, in order (results)

    @property
    def folder(self) -> Path:
        return work_root() / SESSIONS / self.id

    def new_dir(self, kind: str) -> Path:
        """A fresh folder for one request of this session (old folders of all sessions are swept first)."""
        sweep_workdirs()
        path = self.folder / f"{kind}-{new_token()}"
        path.mkdir(parents=True)
        return path

    def record(self, *paths: str | Path | None) -> None:
        for value in paths:
            if value and str(value) not in self.files:
                self.files.append(str(value))

    def owns(self, path: str | Path) -> bool:
        found = _owner(Path(path))
        return found is not None and found[0] == SESSIONS and found[1].name == self.id

    def check_not_foreign(self, path: str | Path) -> None:
        """Refuse a file of another session's, or an upload another session uses (see :func:`check_file`).
        Files outside the app's own folders are left to the caller's other checks."""
        check_file(self, path, outside_ok=True)

    def adopt(self, files: Sequence) -> list[Path]:
        """This session's own copies of the received files (made once; file names kept), in order.

        A file of this session is used as it is; one in another session's folder is refused; a received
        file that no longer exists is passed on as it is (the checks report it as not found)."""
        owned: list[Path] = []
        target: Path | None = None
        for value in files or []:
            if not value:
                continue
            source = str(value)
            copy = self.copies.get(source)
            if copy and Path(copy).exists():
                owned.append(Path(copy))
                continue
            self.check_not_foreign(source)
            if self.owns(source) or not Path(source).is_file():
                owned.append(Path(source))
                continue
            target = target or self.new_dir("selfies")
            dest = target / f"{len(owned):02d}" / Path(source).name
            dest.parent.mkdir()
            try:
                os.link(source, dest)  # a second name for the same bytes: deleting one keeps the other
            except OSError:
                shutil.copyfile(source, dest)
            self.copies[source] = str(dest)
            self.record(source, dest)
            owned.append(dest)
        return owned

    def save_bytes(self, data: bytes, name: str) -> Path:
        """Keep bytes a caller sent as text (a data URL) as a file of this session's."""
        path = self.new_dir("received") / Path(name).name
        path.write_bytes(data)
        self.record(path)
        return path

    def delete(self) -> dict:
        """Remove every file of this session: its folder (all runs) and the uploads it handed in.

        Files outside the app's own folders (the public example photos, Gradio's own copies) are never
        touched. Safe to call again: a second call finds nothing."""
        removed = missing = 0
        for value in self.files:
            found = _owner(Path(value))
            if found is None or found[0] != UPLOADS:
                continue
            if found[1].exists():
                removed += sum(1 for p in found[1].rglob("*") if p.is_file())
                shutil.rmtree(found[1], ignore_errors=True)
            else:
                missing += 1
        if self.folder.exists():
            removed += sum(1 for p in self.folder.rglob("*") if p.is_file())
            shutil.rmtree(self.folder, ignore_errors=True)
        self.files, self.copies, self.favourites = [], {}, []
        with _CLAIMS_LOCK:
            for token in [t for t, owner in _CLAIMS.items() if owner == self.id]:
                del _CLAIMS[token]
        release(self)  # what it held in memory (a paused LoRA training) goes too
        return {"deleted_files": removed, "already_gone": missing}

    def forget_inputs(self) -> None:
        """Delete the received uploads and this session's copies of them (for a one-call session)."""
        inputs = [*self.copies, *self.copies.values()]
        for value in inputs:
            found = _owner(Path(value))
            if found is not None and found[0] == UPLOADS:
                shutil.rmtree(found[1], ignore_errors=True)
            elif found is not None:
                Path(value).unlink(missing_ok=True)
        self.files = [f for f in self.files if f not in inputs]
        self.copies = {}


def delete_named(session: Session, paths: Sequence[str | Path | None]) -> dict:
    """Delete only the named files, and only those of ``session``: a file in its folder, or an upload it
    uses (with this session's copies of it). Never a folder of runs, never another session's file: those
    are counted as ``not_yours`` and left alone."""
    removed = not_yours = 0
    for value in paths:
        if not value:
            continue
        path = Path(str(value))
        found = _owner(path)
        mine = found is not None and (
            (found[0] == SESSIONS and found[1].name == session.id)
            or (found[0] == UPLOADS and _claimant(found[1].name) == session.id)
        )
        if not mine:
            not_yours += 1
            continue
        targets = [path, *(Path(c) for s, c in session.copies.items() if s == str(path))]
        for target in targets:
            try:
                if target.is_file():
                    target.unlink()
                    removed += 1
            except OSError:
                continue
        if found[0] == UPLOADS:
            shutil.rmtree(found[1], ignore_errors=True)
            session.copies.pop(str(path), None)
        if str(path) in session.favourites:
            session.favourites.remove(str(path))
    return {"deleted_files": removed, "not_yours": not_yours}


# --------------------------------------------------------------------------------------
# Whose file is this: one check for every file or link a caller passes
# --------------------------------------------------------------------------------------

# An upload (uploads/<token>/<name>) belongs to no session until one uses it: the first session that
# passes it claims it, and from then on it is that session's (refused everywhere else, deleted with it).
_CLAIMS: dict[str, str] = {}  # upload token -> session id
_CLAIMS_LOCK = threading.Lock()


def not_yours_message(path: str | Path) -> str:
    """What every file or link parameter answers for a file that is not the caller's."""
    return (
        f"{Path(str(path)).name!r} is not a file of this session (it belongs to another session, or is not a "
        "file of this app): upload your own file, or use a link this session was given."
    )


def _claimant(token: str) -> str | None:
    with _CLAIMS_LOCK:
        return _CLAIMS.get(token)


def claim_upload(session: Session, path: str | Path) -> bool:
    """Make an upload ``session``'s own if no other session has used it yet; False when another has."""
    found = _owner(Path(str(path)))
    if found is None or found[0] != UPLOADS:
        return False
    if not found[1].exists():  # swept or deleted: nothing to own (using it answers "not found")
        return _claimant(found[1].name) in (None, session.id)
    with _CLAIMS_LOCK:
        owner = _CLAIMS.setdefault(found[1].name, session.id)
    if owner == session.id:
        session.record(path)
        return True
    return False


def forget_claims() -> int:
    """Drop the ownership records of uploads whose folder is gone (swept or deleted)."""
    with _CLAIMS_LOCK:
        gone = [token for token in _CLAIMS if not (uploads_root() / token).exists()]
        for token in gone:
            del _CLAIMS[token]
    return len(gone)


def check_file(session: Session, path: str | Path, *, outside_ok: bool = False) -> Path:
    """``path`` if it is the caller's: a file in ``session``'s own folder, or an upload that no other
    session has used (the caller's own: it is claimed for ``session`` now). Anything else raises
    :class:`InvalidRequest` with :func:`not_yours_message`: a file of another session, an upload another
    session uses, and (unless ``outside_ok``: Gradio's own checked file parameters, the public examples)
    any path outside the app's own folders.

    This is the one check behind every file and link parameter: a link the app hands out lets its
    holder read that one file, never use it as an input of another session."""
    value = Path(str(path))
    found = _owner(value)
    if found is None:
        inside_root = False
        with contextlib.suppress(OSError, ValueError):
            inside_root = value.resolve().is_relative_to(work_root().resolve())
        if outside_ok and not inside_root:
            return value
        raise InvalidRequest(not_yours_message(value))
    kind, folder = found
    if kind == SESSIONS and folder.name == session.id:
        return value
    if kind == UPLOADS and claim_upload(session, value):
        return value
    raise InvalidRequest(not_yours_message(value))


# --------------------------------------------------------------------------------------
# Lasting sessions kept by the server (an MCP session: one per Mcp-Session-Id)
# --------------------------------------------------------------------------------------

_LASTING: dict[str, tuple[float, Session]] = {}  # key -> (last used, session)
_LASTING_LOCK = threading.Lock()


def lasting(key: str) -> Session:
    """The session kept for ``key`` (made on first use); every use keeps it from being swept."""
    with _LASTING_LOCK:
        entry = _LASTING.get(key)
        session = entry[1] if entry else Session()
        _LASTING[key] = (time.monotonic(), session)
    return session


def find_lasting(key: str) -> Session | None:
    """The session kept for ``key`` if there is one (using it keeps it from being swept), else None."""
    with _LASTING_LOCK:
        entry = _LASTING.get(key)
        if entry is None:
            return None
        _LASTING[key] = (time.monotonic(), entry[1])
        return entry[1]


def is_lasting(session: Session) -> bool:
    with _LASTING_LOCK:
        return any(s is session for _, s in _LASTING.values())


def end_session(key: str) -> dict | None:
    """End the session kept for ``key``: all its files and what it holds in memory go (None if none)."""
    with _LASTING_LOCK:
        entry = _LASTING.pop(key, None)
    return None if entry is None else entry[1].delete()


def end_quiet_sessions(max_age_s: float) -> int:
    """End the kept sessions not used for ``max_age_s`` seconds (the sweep)."""
    now = time.monotonic()
    with _LASTING_LOCK:
        quiet = [key for key, (when, _) in _LASTING.items() if now - when > max_age_s]
    for key in quiet:
        end_session(key)
    return len(quiet)


def lasting_count() -> int:
    with _LASTING_LOCK:
        return len(_LASTING)


# --------------------------------------------------------------------------------------
# What a session holds in memory (the main process's, never a GPU worker's)
# --------------------------------------------------------------------------------------

_HELD: dict[tuple[str, str], tuple[float, Any]] = {}  # (session id, slot) -> (when, value)
_HELD_LOCK = threading.Lock()


def hold(session: Session, value: Any, slot: str = "") -> None:
    """Keep ``value`` for ``session`` in ``slot`` (one value each: a paused LoRA training in ``""``, a render
    cut short in ``"render"``) until :func:`release`, its Delete, or the sweep after the file age."""
    with _HELD_LOCK:
        _HELD[(session.id, slot)] = (time.monotonic(), value)


def held(session: Session | None, slot: str = "") -> Any:
    with _HELD_LOCK:
        entry = _HELD.get((session.id if session is not None else "", slot))
    return None if entry is None else entry[1]


def release(session: Session | None, slot: str | None = None) -> int:
    """Drop what ``session`` holds in ``slot`` (every slot for None); how many values went."""
    if session is None:
        return 0
    with _HELD_LOCK:
        keys = [key for key in _HELD if key[0] == session.id and (slot is None or key[1] == slot)]
        for key in keys:
            del _HELD[key]
    return len(keys)


def release_older_than(max_age_s: float) -> int:
    now = time.monotonic()
    with _HELD_LOCK:
        old = [key for key, (when, _) in _HELD.items() if now - when > max_age_s]
        for key in old:
            del _HELD[key]
    return len(old)
