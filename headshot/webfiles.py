"""The web layer's files: private uploads, a session per tab, client or MCP call, and links as files.

Gradio names an upload by its content, so two people who upload the same photo would share one path:
:class:`PrivateFiles` (ASGI middleware) gives every upload a folder of its own and answers 404 for
files that were deleted. :func:`_session` is the :class:`sessions.Session` a handler works in (kept in
the tab's ``gr.State``; one per call for MCP), :func:`_linked_files` turns ``data:`` URLs and links to
this app's files into files (how MCP agents send photos), and :func:`_fix_list_schema` inlines the
list-of-files JSON schema MCP clients could not resolve.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import gradio as gr

from . import config, sessions

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


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


async def _answer(send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})
