"""The web layer's files: private uploads, a session per tab, client or MCP session, links as files.

Gradio names an upload by its content, so two people who upload the same photo would share one path:
:class:`PrivateFiles` (ASGI middleware) gives every upload a folder of its own, answers 404 for files
that were deleted, serves the app's files with ``Cache-Control: private, no-store``, and ties each MCP
session (its ``Mcp-Session-Id``) to one app session. :func:`caller_session` is the :class:`sessions.Session` a
handler works in (kept in the tab's ``gr.State``; for MCP, the one of its MCP session). A link is a read
capability for one file, nothing more: :func:`check_caller_file` is the one check behind every file and
link parameter (the caller's own session's file, or its own upload, else refused), :func:`linked_files`
turns ``data:`` URLs and links into files with it, and :func:`use_mcp_sessions` makes Gradio's MCP server
keep sessions and apply it to MCP file parameters. :func:`release_quiet_states` lets the sweep free what
Gradio keeps per session.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import gradio as gr

from headshot import config, sessions
from headshot.errors import HeadshotError

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"  # the repository's examples/


MCP_SESSION_HEADER = "mcp-session-id"


def _mcp_key(request: gr.Request | None) -> str | None:
    """The app-session key of an MCP call ("mcp:<Mcp-Session-Id>"), None for any other caller.

    Gradio's MCP server relays every agent's calls through one shared client (one ``gr.State`` for all),
    adding ``x-gradio-user: mcp`` and passing the agent's own request headers on, its Mcp-Session-Id
    among them: that id (128 random bits, issued by the server) is what tells agents apart."""
    headers = getattr(request, "headers", None)
    if not headers or headers.get("x-gradio-user") != "mcp":
        return None
    sid = headers.get(MCP_SESSION_HEADER) or ""
    return f"mcp:{sid}" if sid else "mcp:"


def caller_session(state, request: gr.Request | None) -> sessions.Session:
    """The session to work in: this tab's or API client's own (kept in its gr.State dict, made on first
    use and changed in place); for an MCP call the session of its MCP session (one app session per
    Mcp-Session-Id, for all its calls), or a session for this call only when the id is not one this
    server issued."""
    key = _mcp_key(request)
    if key is not None:
        return sessions.find_lasting(key) or sessions.Session()
    if not isinstance(state, dict):
        return sessions.Session()
    return state.setdefault("files", sessions.Session())


def finish_call(session: sessions.Session, state, *, handed_out: bool) -> None:
    """After a call: a one-call session drops the selfies it was sent, and everything when it handed
    nothing out; a lasting session (a tab's, a client's, an MCP session's) keeps its files for the next
    call and for Delete."""
    lasting = (isinstance(state, dict) and session is state.get("files")) or sessions.is_lasting(session)
    if not lasting:
        session.forget_inputs()
        if not handed_out:
            session.delete()


def check_caller_file(session: sessions.Session, value, *, outside_ok: bool = False) -> Path:
    """The one check for a file or link parameter: ``value`` (a server path, a ``/gradio_api/file=`` link,
    or a file dict) as a path if it is the caller's (a file of ``session``'s own, or an upload only this
    caller has used), else ``gr.Error`` with the file-parameter message. ``outside_ok`` lets through
    paths outside the app's folders (Gradio-checked file parameters: the public examples)."""
    paths = referenced_paths([value])
    if not paths:
        raise gr.Error("No file given.", title="Could not do that")
    try:
        return sessions.check_file(session, paths[0], outside_ok=outside_ok)
    except HeadshotError as err:
        raise gr.Error(err.message, title="Could not do that") from err


LINKS_HELP = (
    "data: URLs (base64, for small files), or links to this session's files: the server paths that "
    "POST /gradio_api/upload returns, or /gradio_api/file= URLs this app gave this session; separated by spaces"
)


def linked_files(links: str | None, session: sessions.Session, kind: str) -> list[Path]:
    """The files that API and MCP callers send as text: data URLs are written into the session's folder;
    links to this session's own files (or its own uploads) are used where they are. Anything else (a
    link of another session's, a path outside the app) is refused with the file-parameter message."""
    import base64
    import binascii
    from urllib.parse import unquote

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
        try:
            files.append(sessions.check_file(session, referenced_paths([link])[0]))
        except HeadshotError as err:
            raise gr.Error(f"Link {index + 1}: {err.message} Links are {LINKS_HELP}.") from err
    return files


def referenced_paths(files) -> list[str]:
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


MCP_MAX_BODY_BYTES = 4 * 1024 * 1024  # the MCP SDK's limit on one request's body (its default)


def mcp_too_large_message(size: int) -> str:
    """The answer to an MCP request over the body limit: the limit, and the way around it."""
    return (
        f"This request is {size / 2**20:.1f} MiB; this app's MCP server takes at most "
        f"{MCP_MAX_BODY_BYTES >> 20} MiB per request, so photos cannot all travel inside it as data URLs. "
        "Upload the files first: POST them to /gradio_api/upload (multipart form, field 'files', one part per "
        "file; send this MCP session's Mcp-Session-Id header with it), which answers with their server paths. "
        "Then pass those paths, separated by spaces, as selfie_links (or identity_link / image_link), in this "
        "call and every later call of the same MCP session."
    )


def _is_mcp_path(path: str) -> bool:
    return path.rstrip("/").endswith(("/gradio_api/mcp", "/gradio_api/mcp/http"))


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class PrivateFiles:
    """ASGI middleware around Gradio's routes: every upload gets a path of its own (``private_upload``),
    a file link under the app's cache whose file is gone answers 404 (Gradio says 403 for both "not
    allowed" and "not there"; deleted data should read as not found), the app's files are served with
    ``Cache-Control: private, no-store``, and each MCP session is an app session (made when the MCP
    server issues its Mcp-Session-Id, ended when the client closes it); an MCP request over the body
    limit gets an answer that says how to send the files instead."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope.get("path", "")
            method = scope["method"]
            if method == "POST" and path.rstrip("/").endswith("/gradio_api/upload"):
                return await self._upload(scope, receive, send)
            if _is_mcp_path(path):
                return await self._mcp(scope, receive, send)
            if method == "POST" and path.rstrip("/").endswith("/gradio_api/queue/join"):
                return await self._join(scope, receive, send)
            if "/gradio_api/file=" in path and method in ("GET", "HEAD"):
                target = path.split("/gradio_api/file=", 1)[1]
                if _is_gone(target):
                    return await _answer(send, 404, b"Not found: this file was deleted or has expired.")
                if _is_ours(target):
                    return await self.app(scope, receive, _private_cache(send))
        return await self.app(scope, receive, send)

    async def _mcp(self, scope, receive, send):
        sid = _header(scope, MCP_SESSION_HEADER.encode())
        if scope["method"] == "POST":
            size = _header(scope, b"content-length")
            if size and size.isdigit() and int(size) > MCP_MAX_BODY_BYTES:
                return await _mcp_error(scope, receive, send, mcp_too_large_message(int(size)))
        status: dict = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if sid is None and message["status"] < 400:
                    issued = next(
                        (v.decode("latin-1") for k, v in message.get("headers", [])
                         if k.lower() == MCP_SESSION_HEADER.encode()),
                        None,
                    )
                    if issued:
                        sessions.lasting(f"mcp:{issued}")  # one app session for all its calls
            await send(message)

        await self.app(scope, receive, watch)
        if scope["method"] == "DELETE" and sid and status.get("code", 500) < 400:
            sessions.end_session(f"mcp:{sid}")  # the client closed its MCP session: its data goes

    async def _join(self, scope, receive, send):
        """A queued call whose file parameter is a URL of this app's own file (``https://<this
        app>/gradio_api/file=<path>``) goes on with the path itself, so the file-parameter check decides
        (Gradio would fetch its own URL, and on a public address a leaked link would come back as a
        fresh file of the caller's)."""
        import json

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"/gradio_api/file=" in body and size <= 16 * 2**20:
            with contextlib.suppress(ValueError):
                body = json.dumps(_own_urls_as_paths(json.loads(body))).encode()
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app({**scope, "headers": headers}, replay, send)

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
                private = [private_upload(p) for p in paths]
                sid = _header(scope, MCP_SESSION_HEADER.encode())
                owner = sessions.find_lasting(f"mcp:{sid}") if sid else None
                for path in private if owner is not None else []:
                    sessions.claim_upload(owner, path)  # an MCP session's upload is its own at once
                body = json.dumps(private).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _own_urls_as_paths(value):
    """``value`` with every file dict whose path or url is a ``/gradio_api/file=`` URL given the server
    path instead (checked later, by the handler, like any server path)."""
    if isinstance(value, list):
        return [_own_urls_as_paths(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _own_urls_as_paths(v) for k, v in value.items()}
    target = out.get("path") if isinstance(out.get("path"), str) else None
    if target and target.startswith(("http://", "https://")) and "/gradio_api/file=" in target:
        out["path"] = referenced_paths([target])[0]
        out.pop("url", None)
    return out


def _is_ours(target: str) -> bool:
    """A path inside the app's own folders (sessions and uploads)."""
    try:
        return Path(target).resolve().is_relative_to(sessions.work_root().resolve())
    except (OSError, ValueError):
        return False


def _private_cache(send):
    """``send`` with the response's Cache-Control set to ``private, no-store`` (a person's own files:
    no shared cache or browser disk keeps them after Delete)."""

    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
            headers.append((b"cache-control", b"private, no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def _mcp_error(scope, receive, send, text: str) -> None:
    """Answer an MCP request with a JSON-RPC error for its id (read from the body), as
    HTTP 200 JSON, so that the client reports the message for that call and its session lives on (the
    Python client drops its session on an HTTP error status)."""
    import json
    import re

    head = tail = b""
    drained = 0
    while drained < 64 * MCP_MAX_BODY_BYTES:  # read the body to its end (keeping its start and end), so
        message = await receive()  # the client, still sending, gets the answer rather than a reset
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        drained += len(chunk)
        if len(head) < 4096:
            head += chunk[: 4096 - len(head)]
        tail = (tail + chunk)[-4096:]
        if not message.get("more_body", False):
            break
    # The request's id: the SDK writes it after the (large) params, others before them.
    value = rb'("(?:[^"\\]|\\.)*"|-?\d+)'
    found = re.search(rb'"id"\s*:\s*' + value + rb'\s*}\s*$', tail) or re.match(
        rb'\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*' + value, head
    )
    request_id = json.loads(found.group(1)) if found else None
    error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32600, "message": text}}
    body = json.dumps(error).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200 if found else 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def fix_list_schema(component) -> None:
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


# --------------------------------------------------------------------------------------
# Gradio's MCP server, with sessions: one MCP session is one app session
# --------------------------------------------------------------------------------------

MCP_FILES_NOTE = (
    " File parameters take, per file, an http(s) URL the server can fetch, a data: URL (small files: a "
    "request holds at most 4 MiB), or a file this MCP session uploaded (its server path from POST "
    "/gradio_api/upload, or its /gradio_api/file= URL); files of other sessions are refused."
)


def use_mcp_sessions() -> None:
    """Make Gradio's MCP server keep sessions: its streamable-HTTP transport runs stateful (the server
    issues an Mcp-Session-Id that the client sends with every call, and a DELETE ends it), idle sessions
    end after the file age, and file parameters accept this app's own files as well as URLs and data
    URLs, each checked against the caller's session before Gradio relays the call. Gradio builds its
    MCP server when the app is created (``gradio.routes``); this swaps in the subclass before that."""
    import gradio.mcp

    if getattr(gradio.mcp.GradioMCPServer, "_headshot_sessions", False):
        return
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    class SessionManager(StreamableHTTPSessionManager):
        def __init__(self, app, json_response: bool = False, stateless: bool = True, **_ignored):
            super().__init__(
                app=app,
                json_response=json_response,
                stateless=False,
                session_idle_timeout=float(config.delete_cache()[1]),
                max_request_body_size=MCP_MAX_BODY_BYTES,
            )

    class SessionMCPServer(gradio.mcp.GradioMCPServer):
        _headshot_sessions = True

        @property
        def _file_data_tool_description(self) -> str:
            return MCP_FILES_NOTE

        def convert_strings_to_filedata(self, value, filedata_positions):
            positions = _expand_list_positions(value, filedata_positions)
            value = _own_files_as_paths(value, positions, self._caller())
            return super().convert_strings_to_filedata(value, positions)

        def _caller(self) -> sessions.Session:
            request = self.mcp_server.request_context.request
            sid = request.headers.get(MCP_SESSION_HEADER) if request is not None else None
            return (sessions.find_lasting(f"mcp:{sid}") if sid else None) or sessions.Session()

    SessionMCPServer.StreamableHTTPSessionManager = SessionManager
    gradio.mcp.GradioMCPServer = SessionMCPServer


def _expand_list_positions(value, positions: list[list]) -> list[list]:
    """Gradio marks a list of files by its schema path (``[name, "items"]``) but looks values up by their
    index (``[name, 0]``): a list-of-files parameter's strings were never turned into files. Each item's
    own position instead."""
    out: list[list] = []
    for position in positions:
        if position and position[-1] == "items":
            node = value
            for key in position[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, list):
                out += [[*position[:-1], index] for index in range(len(node))]
            continue
        out.append(position)
    return out


def _own_files_as_paths(value, positions: list[list], session: sessions.Session):
    """The strings at ``positions`` that name this app's own files (a server path, a ``/gradio_api/file=``
    URL of any host) replaced by the local path, after the file-parameter check for ``session`` (an
    MCP caller may pass only its own files); data URLs written into the session's folder (deleted with
    it). Outside URLs are left to Gradio (which fetches public addresses only)."""
    import copy

    value = copy.deepcopy(value)
    for position in positions:
        node = value
        for key in position[:-1]:
            node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
        last = position[-1] if position else None
        if node is None or last is None or not _has(node, last) or not isinstance(node[last], str):
            continue
        text = node[last].strip()
        from gradio_client.utils import handle_file

        if "/gradio_api/file=" in text or text.startswith("/"):
            node[last] = handle_file(str(check_caller_file(session, text)))
        elif text.startswith("data:"):  # kept in the session's folder (Gradio would keep a shared copy)
            (saved,) = linked_files(text, session, "file")
            node[last] = handle_file(str(saved))
    return value


def _has(node, key) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)


# --------------------------------------------------------------------------------------
# Memory: what Gradio keeps per session, released by the sweep
# --------------------------------------------------------------------------------------


def release_quiet_states(blocks) -> None:
    """Let the sweep drop Gradio's per-session state of sessions idle past the file age.

    Gradio keeps a ``SessionState`` for every session hash it has seen (each browser tab, each API
    client): a copy of the page's config (about 230 KiB) and the session's ``gr.State`` (here the
    :class:`sessions.Session`), until 10 000 sessions push the oldest out. Their files are swept after
    the file age; this lets their memory go at the same time (a tab that comes back later starts a new
    session, as its files are gone)."""

    def sweep(max_age_s: float) -> int:
        import datetime

        holder = getattr(blocks, "state_holder", None)
        if holder is None:
            return 0
        now = datetime.datetime.now()
        quiet = [key for key, when in list(holder.time_last_used.items())
                 if (now - when).total_seconds() > max_age_s]  # fmt: skip
        for key in quiet:
            with holder.lock:
                state = holder.session_data.pop(key, None)
                holder.time_last_used.pop(key, None)
            for value in getattr(state, "state_data", {}).values():
                if isinstance(value, dict) and isinstance(value.get("files"), sessions.Session):
                    sessions.release(value["files"])  # what it held in memory (its files are swept)
        return len(quiet)

    sessions.on_sweep(sweep)
