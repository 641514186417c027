"""Privacy: every file the app keeps belongs to one session, and Delete removes all of it and nothing else.

Fast tier: the studio-level ownership, copy, delete and sweep logic (no app process), and the upload
rewrite of the HTTP layer (``webfiles.private_upload``) on a folder laid out as Gradio lays out its cache.
Slow tier (``-m slow``, the module's ``python app.py``): two ``gradio_client`` sessions that upload the same
bytes, every URL of the deleting session answering 404 afterwards, the other session unharmed, a third
session's example check, and LinkedIn crops in single-style ``/generate``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from headshot import sessions
from headshot.errors import InvalidRequest
from headshot.web import callbacks as page
from headshot.web import cards as selfie_cards
from headshot.web import endpoints as api
from headshot.web import files as webfiles

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def root(tmp_path):
    """A private work root for the test (restored afterwards)."""
    before = list(sessions._WORK_ROOT)
    yield sessions.set_work_root(tmp_path / "cache" / "headshot-studio")
    sessions._WORK_ROOT[:] = before


def _upload(root: Path, name: str, data: bytes) -> Path:
    """A file as the upload rewrite leaves it: its own folder under ``uploads/<token>/``."""
    path = root / sessions.UPLOADS / sessions.new_token() / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------
# Fast: sessions.Session
# --------------------------------------------------------------------------------------


def test_a_session_copies_its_uploads_and_delete_removes_every_run(root):
    upload = _upload(root, "me.jpg", b"selfie bytes")
    session = sessions.Session()
    (copy,) = session.adopt([upload])
    assert copy != upload and copy.name == "me.jpg" and copy.read_bytes() == b"selfie bytes"
    assert session.owns(copy) and session.adopt([upload]) == [copy]  # copied once
    runs = [session.new_dir("headshots") for _ in range(2)]
    for run in runs:
        (run / "a.png").write_bytes(b"png")
    assert session.delete() == {"deleted_files": 4, "already_gone": 0}
    assert not upload.exists() and not upload.parent.exists() and not session.folder.exists()
    # twice, or with nothing made: a plain answer
    assert session.delete() == {"deleted_files": 0, "already_gone": 0}
    assert sessions.Session().delete() == {"deleted_files": 0, "already_gone": 0}


def test_delete_leaves_other_sessions_and_files_outside_the_app_alone(root, tmp_path):
    example = tmp_path / "astronaut.jpg"
    example.write_bytes((EXAMPLES / "astronaut.jpg").read_bytes())
    same = (EXAMPLES / "astronaut.jpg").read_bytes()
    a, b = sessions.Session(), sessions.Session()
    a_files = a.adopt([example, _upload(root, "astronaut.jpg", same)])
    b_files = b.adopt([example, _upload(root, "astronaut.jpg", same)])
    assert not set(a_files) & set(b_files)
    a.delete()
    assert example.exists(), "a file outside the app's folders (the public example) was deleted"
    assert all(p.exists() for p in b_files) and not any(p.exists() for p in a_files)
    assert b.delete()["deleted_files"] == 3  # its two copies and its own upload


def test_a_file_of_another_session_is_refused(root):
    a, b = sessions.Session(), sessions.Session()
    theirs = a.new_dir("identity") / "identity-instantid.safetensors"
    theirs.write_bytes(b"x")
    with pytest.raises(InvalidRequest, match="another session"):
        b.adopt([theirs])
    assert b.adopt([str(theirs).replace(a.id, b.id)]) == [Path(str(theirs).replace(a.id, b.id))]  # not found


def test_delete_with_named_files_removes_only_those_files_of_the_callers_session(root):
    a, b = sessions.Session(), sessions.Session()
    run = a.new_dir("headshots")
    mine, other_of_mine = run / "x.png", run / "x2.png"
    for path in (mine, other_of_mine):
        path.write_bytes(b"png")
    keep = b.new_dir("headshots") / "y.png"
    keep.write_bytes(b"png")
    link = f"http://127.0.0.1:7860/gradio_api/file={mine}"
    b_link = f"http://127.0.0.1:7860/gradio_api/file={keep}"

    # B names A's file and its own: only its own named file goes
    result = sessions.delete_named(b, webfiles.referenced_paths([link, b_link, "/etc/passwd", str(root / "..")]))
    assert result == {"deleted_files": 1, "not_yours": 3}
    assert mine.exists() and other_of_mine.exists() and not keep.exists() and Path("/etc/passwd").exists()
    # A names one of its files: that file only, never its run folder
    assert sessions.delete_named(a, webfiles.referenced_paths([link])) == {"deleted_files": 1, "not_yours": 0}
    assert not mine.exists() and other_of_mine.exists()


def test_an_upload_belongs_to_the_first_session_that_uses_it(root):
    upload = _upload(root, "me.jpg", b"selfie")
    a, b = sessions.Session(), sessions.Session()
    (copy,) = a.adopt([upload])
    with pytest.raises(InvalidRequest, match="another session"):
        b.adopt([upload])
    with pytest.raises(InvalidRequest, match="another session"):
        sessions.check_file(b, copy)
    assert sessions.check_file(a, upload) == upload  # still the owner's
    # named delete by B leaves it; A's removes the upload and A's copy of it
    assert sessions.delete_named(b, [upload])["not_yours"] == 1 and upload.exists()
    assert sessions.delete_named(a, [upload])["deleted_files"] == 2
    assert not upload.exists() and not copy.exists()
    sessions.sweep_workdirs(max_age_s=3600)
    assert upload.parent.name not in sessions._CLAIMS  # the record goes with the file


def test_served_folders_carry_128_random_bits(root):
    import re

    session = sessions.Session()
    for folder in (session.new_dir("headshots"), sessions.new_workdir("identity")):
        assert re.fullmatch(r"[a-z]+-[0-9a-f]{32}", folder.name), folder.name
    assert re.fullmatch(r"[0-9a-f]{32}", session.id)


def test_a_lasting_session_ends_with_its_files_or_by_the_sweep(root):
    kept = sessions.lasting("mcp:abc")
    assert sessions.find_lasting("mcp:abc") is kept and sessions.is_lasting(kept)
    (kept.new_dir("headshots") / "a.png").write_bytes(b"png")
    sessions.hold(kept, object())
    assert sessions.end_session("mcp:abc") == {"deleted_files": 1, "already_gone": 0}
    assert sessions.find_lasting("mcp:abc") is None and not kept.folder.exists() and sessions.held(kept) is None
    quiet = sessions.lasting("mcp:quiet")
    (quiet.new_dir("headshots") / "a.png").write_bytes(b"png")
    time.sleep(0.05)
    assert sessions.end_quiet_sessions(0.01) == 1 and not quiet.folder.exists()
    assert sessions.end_session("mcp:quiet") is None


def test_the_sweeper_removes_sessions_and_uploads_past_their_age(root):
    old = sessions.Session()
    (old.new_dir("headshots") / "a.png").write_bytes(b"png")
    upload = _upload(root, "me.jpg", b"selfie")
    for path in (old.folder, upload.parent):
        os.utime(path, (time.time() - 100, time.time() - 100))
    fresh = sessions.Session()
    (fresh.new_dir("headshots") / "b.png").write_bytes(b"png")
    assert sessions.sweep_workdirs(max_age_s=50) == 2
    assert not old.folder.exists() and not upload.exists() and fresh.folder.exists()


def test_config_reads_short_sweep_times_from_the_environment(monkeypatch):
    from headshot import config

    monkeypatch.setenv("HEADSHOT_SWEEP_EVERY_S", "1")
    monkeypatch.setenv("HEADSHOT_MAX_FILE_AGE_S", "5")
    assert config.delete_cache() == (1, 5)
    monkeypatch.delenv("HEADSHOT_SWEEP_EVERY_S")
    monkeypatch.delenv("HEADSHOT_MAX_FILE_AGE_S")
    assert config.delete_cache() == config.DELETE_CACHE


# --------------------------------------------------------------------------------------
# Fast: the HTTP layer's helpers
# --------------------------------------------------------------------------------------


def test_identical_uploads_get_paths_of_their_own(root):

    cache = root.parent
    gradio_path = cache / "0123abcd" / "me.jpg"  # Gradio names an upload by its content
    gradio_path.parent.mkdir()
    gradio_path.write_bytes(b"same bytes")
    first = Path(webfiles.private_upload(str(gradio_path)))
    assert not gradio_path.exists(), "Gradio's shared, content-named copy stays behind"
    gradio_path.parent.mkdir(exist_ok=True)
    gradio_path.write_bytes(b"same bytes")  # the second session's identical upload
    second = Path(webfiles.private_upload(str(gradio_path)))
    assert first != second and first.read_bytes() == second.read_bytes() == b"same bytes"
    assert first.name == second.name == "me.jpg"
    session = sessions.Session()
    session.adopt([first])
    session.delete()
    assert not first.exists() and second.exists()


def test_the_example_photos_cached_copy_is_never_removed(root):

    cached = root.parent / "feedbeef" / "astronaut.jpg"
    cached.parent.mkdir()
    cached.write_bytes((EXAMPLES / "astronaut.jpg").read_bytes())
    private = Path(webfiles.private_upload(str(cached)))
    assert cached.exists() and private.exists() and private != cached


def test_the_list_of_files_schema_has_no_refs():
    import json

    from headshot.web import ui

    demo = ui.build_demo()
    info = demo.get_api_info()["named_endpoints"]["/validate_selfies"]["parameters"][0]["type"]
    assert "$ref" not in json.dumps(info) and "$defs" not in json.dumps(info)
    assert info["type"] == "array" and "path" in info["items"]["properties"]


def test_links_are_data_urls_or_files_of_the_callers_session(root):
    import base64

    import gradio as gr

    session, other = sessions.Session(), sessions.Session()
    data = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8 bytes").decode()
    (saved,) = webfiles.linked_files(data, session, "selfie")
    assert saved.read_bytes() == b"\xff\xd8 bytes" and session.owns(saved)
    upload = _upload(root, "me.jpg", b"x")
    assert webfiles.linked_files(f"http://h/gradio_api/file={upload}", session, "selfie") == [upload]
    assert webfiles.linked_files(str(saved), session, "identity") == [saved]
    theirs = other.new_dir("identity") / "identity.safetensors"
    theirs.write_bytes(b"x")
    for bad in ("/etc/passwd", "https://example.com/me.jpg", f"{root}/../../../etc/passwd", "data:;base64,@@",
                str(theirs), f"http://h/gradio_api/file={theirs}", str(upload).replace(session.id, other.id)):
        with pytest.raises(gr.Error):
            webfiles.linked_files(bad, other if bad == str(upload) else session, "selfie")
    with pytest.raises(gr.Error, match="not a file of this session"):
        webfiles.linked_files(str(upload), other, "selfie")  # A's upload, once A used it
    with pytest.raises(gr.Error, match="not a file of this session"):
        webfiles.check_caller_file(session, {"path": str(theirs)})
    assert webfiles.check_caller_file(other, {"path": str(theirs)}) == theirs


def test_mcp_file_positions_cover_every_item_of_a_list_and_check_ownership(root):
    import gradio as gr

    positions = webfiles._expand_list_positions({"selfies": ["a", "b"], "identity": "x"},
                                                [["selfies", "items"], ["identity"]])
    assert positions == [["selfies", 0], ["selfies", 1], ["identity"]]
    mine, theirs = sessions.Session(), sessions.Session()
    own = _upload(root, "me.jpg", b"x")
    other = theirs.new_dir("identity") / "identity.safetensors"
    other.write_bytes(b"x")
    value = {"selfies": [f"http://h/gradio_api/file={own}", "data:image/png;base64,AA=="]}
    out = webfiles._own_files_as_paths(value, [["selfies", 0], ["selfies", 1]], mine)
    assert out["selfies"][0]["path"] == str(own)
    assert mine.owns(out["selfies"][1]["path"])  # a data URL: kept in the session's folder, deleted with it
    with pytest.raises(gr.Error, match="not a file of this session"):
        webfiles._own_files_as_paths({"identity": str(other)}, [["identity"]], mine)


# --------------------------------------------------------------------------------------
# Slow: through the running app
# --------------------------------------------------------------------------------------

slow = pytest.mark.slow


def _get(url: str) -> int:
    import httpx

    return httpx.get(url, timeout=30).status_code


def _urls(value) -> list[str]:
    """Every file URL in an API answer (file dicts, galleries, nested lists)."""
    if isinstance(value, dict):
        return [value["url"]] if value.get("url") else [u for v in value.values() for u in _urls(v)]
    if isinstance(value, (list, tuple)):
        return [u for v in value for u in _urls(v)]
    return []


def _queue_call(url: str, session_hash: str, api_name: str, data: list) -> dict:
    """Run an event as the browser does: join the queue in this session, read the stream to the end."""
    import json

    import httpx

    config = httpx.get(url + "config", timeout=30).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    httpx.post(url + "gradio_api/queue/join", json=body, timeout=30).raise_for_status()
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session_hash}, timeout=120) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event did not complete")


def _upload_http(url: str, paths: list[str]) -> list[str]:
    import httpx

    files = [("files", (Path(p).name, Path(p).read_bytes())) for p in paths]
    response = httpx.post(url + "gradio_api/upload", files=files, timeout=60)
    response.raise_for_status()
    return response.json()


@slow
def test_identical_uploads_get_private_paths(app):
    photo = str(EXAMPLES / "astronaut.jpg")
    first, second = _upload_http(app[0], [photo]) + _upload_http(app[0], [photo])
    assert first != second and Path(first).name == Path(second).name == "astronaut.jpg"
    assert "/headshot-studio/uploads/" in first


@slow
def test_two_sessions_same_bytes_delete_is_per_session(app):
    gradio_client = pytest.importorskip("gradio_client")
    from gradio_client import handle_file

    url = app[0]
    photos = [str(EXAMPLES / "astronaut.jpg"), str(EXAMPLES / "astronaut-mirrored.jpg")]
    a = gradio_client.Client(url, verbose=False, download_files=False)
    b = gradio_client.Client(url, verbose=False, download_files=False)
    # A uploads as a browser does (POST /gradio_api/upload), so the test knows those URLs too.
    uploaded = _upload_http(url, photos)
    given: list[str] = [f"{url}gradio_api/file={p}" for p in uploaded]
    selfies_a = [{"path": p, "meta": {"_type": "gradio.FileData"}} for p in uploaded]
    # (gradio_client would upload a path it can read again; a browser sends the uploaded path as it is)
    message = _queue_call(url, a.session_hash, "validate_selfies", [selfies_a, "", None])
    assert message["success"] and message["output"]["data"][0]["accepted"] == 2, message
    b_identity, _ = b.predict(selfies=[handle_file(p) for p in photos], api_name="/create_identity")
    a_identity, _ = a.predict(selfies=[handle_file(p) for p in photos], api_name="/create_identity")
    given += _urls(a_identity)
    for seed in (1, 2):
        gallery, _ = a.predict(identity=a_identity, num_images=1, seed=seed, steps=1, api_name="/generate")
        given += _urls(gallery)
    zip_file, pack, _ = a.predict(identity=a_identity, styles=["corporate-grey"], images_per_style=1,
                                  seed=3, api_name="/generate_pack")  # fmt: skip
    given += _urls(zip_file) + _urls(pack)
    assert len(given) >= 6 and all(_get(u) == 200 for u in given)

    answer = a.predict(api_name="/delete_my_data")
    assert answer["deleted_files"] >= len(given) and "Deleted" in answer["message"]
    assert {u: _get(u) for u in given} == dict.fromkeys(given, 404)
    again = a.predict(api_name="/delete_my_data")
    assert again["deleted_files"] == 0 and "Nothing to delete" in again["message"]

    # B is unharmed: it generates from its identity, then deletes without error.
    gallery, _ = b.predict(identity=b_identity, num_images=1, seed=5, steps=1, api_name="/generate")
    assert len(gallery) == 1 and _get(_urls(gallery)[0]) == 200
    assert b.predict(api_name="/delete_my_data")["deleted_files"] >= 2
    assert _get(_urls(b_identity)[0]) == 404
    # A third session's check of the example photos still passes.
    c = gradio_client.Client(url, verbose=False)
    report = c.predict(selfies=[handle_file(p) for p in photos], api_name="/validate_selfies")
    assert report["accepted"] == 2, report


@slow
def test_generate_returns_linkedin_crops(client):
    from gradio_client import handle_file
    from PIL import Image

    photos = [str(EXAMPLES / "astronaut.jpg")]
    identity, _ = client.predict(selfies=[handle_file(p) for p in photos], api_name="/create_identity")
    gallery, info = client.predict(identity=handle_file(identity), num_images=2, seed=7, steps=1,
                                   linkedin=True, api_name="/generate")  # fmt: skip
    assert len(gallery) == 4  # each headshot, then its crop
    crops = [g for g in gallery if "LinkedIn" in (g.get("caption") or "")]
    assert len(crops) == 2
    assert all(Image.open(c["image"]).size == (400, 400) for c in crops)
    assert [i["linkedin"] for i in info["images"]] == [f"corporate-grey_{s}_linkedin.png" for s in info["seeds"]]
    plain, info = client.predict(identity=handle_file(identity), num_images=1, seed=7, steps=1,
                                 api_name="/generate")  # fmt: skip
    assert len(plain) == 1 and info["images"][0]["linkedin"] is None


def test_the_ui_handlers_keep_every_file_in_the_session(root, analyzer):
    """The browser's path, handler by handler: thumbnails, the identity and its reference picture all
    land in the session's folder, and Delete (then Delete again) answers plainly."""

    state: dict = {}
    photo = _upload(root, "astronaut.jpg", (EXAMPLES / "astronaut.jpg").read_bytes())
    report = api.validate_selfies([str(photo)], "", state)
    session = state["files"]
    cards, _ = selfie_cards.selfie_cards([str(photo)], report, state)
    identity, _ = api.create_identity([str(photo)], "instantid", session=state)
    reference, text = page.show_identity(identity, state)
    made = [Path(cards[0][0]), Path(identity), Path(reference)]
    assert all(session.owns(p) and p.exists() for p in made) and "Identity ready" in text
    answer = api.delete_my_data("", state)
    assert answer["deleted_files"] >= 4 and not any(p.exists() for p in [*made, photo])
    assert "Nothing to delete" in api.delete_my_data("", state)["message"]
    assert page.after_delete(answer)[0] is None


def test_the_sweep_releases_gradios_state_of_quiet_sessions(root):
    """Gradio keeps a SessionState per session hash (a copy of the page's config and the gr.State): the
    sweep drops those idle past the file age, with what their session held in memory."""
    import datetime
    from types import SimpleNamespace

    from gradio.state_holder import StateHolder

    holder = StateHolder()
    quiet, busy = sessions.Session(), sessions.Session()
    sessions.hold(quiet, object())
    now = datetime.datetime.now()
    for key, session, when in (("quiet", quiet, now - datetime.timedelta(seconds=100)), ("busy", busy, now)):
        holder.session_data[key] = SimpleNamespace(state_data={7: {"files": session}})
        holder.time_last_used[key] = when
    hooks = list(sessions._SWEEP_HOOKS)
    try:
        webfiles.release_quiet_states(SimpleNamespace(state_holder=holder))
        sessions.sweep_workdirs(max_age_s=50)
    finally:
        sessions._SWEEP_HOOKS[:] = hooks
    assert list(holder.session_data) == ["busy"] and list(holder.time_last_used) == ["busy"]
    assert sessions.held(quiet) is None


def test_a_url_of_this_apps_file_in_a_file_parameter_becomes_its_path():
    """Gradio would fetch such a URL anew (on a public address, a leaked link would come back as a fresh
    file of the caller's): the queue call goes on with the server path, which the file check decides."""
    link = "https://space.example/gradio_api/file=/tmp/gradio/headshot-studio/sessions/abc/x.png"
    body = {"data": [{"path": link, "url": link, "meta": {"_type": "gradio.FileData"}},
                     [{"path": "https://example.com/me.jpg", "meta": {}}], "text /gradio_api/file=x"]}
    out = webfiles._own_urls_as_paths(body)
    assert out["data"][0] == {"path": "/tmp/gradio/headshot-studio/sessions/abc/x.png", "meta": {"_type": "gradio.FileData"}}
    assert out["data"][1:] == body["data"][1:]


def test_the_sweep_removes_an_emptied_upload_folder_and_forgets_its_claim(root):
    """Gradio's cache cleaner ages files by ctime and may empty an upload folder before our sweep's age:
    the empty folder and the upload's owner record go at the next sweep, not one file age later."""
    upload = _upload(root, "me.jpg", b"x")
    owner = sessions.Session()
    owner.adopt([upload])
    upload.unlink()
    os.utime(upload.parent, (time.time() - 5, time.time() - 5))
    fresh = _upload(root, "new.jpg", b"y")
    sessions.sweep_workdirs(max_age_s=3600)
    assert not upload.parent.exists() and fresh.exists() and upload.parent.name not in sessions._CLAIMS
