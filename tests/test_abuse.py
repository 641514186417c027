"""What a security reviewer tries against the running app (``python app.py``, tiny profile, started once for
the module with a 2-request queue, a 1 s sweeper and a 20 s file age): odd and hostile file names, other
sessions' server paths and system files as file parameters, out-of-range and wrong-typed values,
decompression bombs in every accepted format, pickled identity files, 10k-character and control-character
prompts, clients that disconnect mid-request, a queue filled past its size, the sweeper for sessions that
never press Delete, and the app's memory before and after a bounded load run.

Each case gets a clear refusal, nothing of another session (or of the system) is readable, and the
server keeps serving. The RSS figures are printed (``-s``) and written to ``.cache/abuse-rss.json``.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests import _imagegen as gen

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MAX_AGE_S = 20


@pytest.fixture(scope="module")
def app(shared_dir):
    from tests.e2e import running_app

    env = {
        "HEADSHOT_QUEUE_MAX_SIZE": "2",
        "HEADSHOT_SWEEP_EVERY_S": "1",
        "HEADSHOT_MAX_FILE_AGE_S": str(MAX_AGE_S),
        "MALLOC_ARENA_MAX": "2",  # as docs/privacy.md recommends to operators
    }
    with running_app(extra_env=env) as (url, proc):
        yield url, proc


def new_client(app, **kwargs):
    return gradio_client.Client(app[0], verbose=False, **kwargs)


def serving(app) -> None:
    assert app[1].poll() is None, "the app process died"
    assert len(new_client(app).predict(api_name="/list_styles")) >= 1


def upload_http(app, named: list[tuple[str, bytes]]) -> list[str]:
    response = httpx.post(app[0] + "gradio_api/upload", files=[("files", f) for f in named], timeout=60)
    response.raise_for_status()
    return response.json()


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def refused(call, *patterns: str) -> str:
    """The app's message for a refused call (an AppError carrying it, never a crash)."""
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        call()
    message = str(caught.value)
    assert any(p.lower() in message.lower() for p in patterns), message
    return message


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --------------------------------------------------------------------------------------
# File names and paths
# --------------------------------------------------------------------------------------


def test_odd_file_names_stay_inside_the_uploads_folder(app):
    photo = (EXAMPLES / "astronaut.jpg").read_bytes()
    names = ["../../../../tmp/escaped.jpg", "..\\..\\win.jpg", "a b;rm -rf ~.jpg", "ünï cødé.jpg",
             "x" * 300 + ".jpg", "\x01\x1b[31mred.jpg", ".hidden.jpg", "CON.jpg"]  # fmt: skip
    paths = upload_http(app, [(n, photo) for n in names])
    assert len(paths) == len(names)
    for path in paths:
        assert "/headshot-studio/uploads/" in path and ".." not in Path(path).parts, path
    assert not Path("/tmp/escaped.jpg").exists()
    client = new_client(app)
    report = client.predict(selfies=[gradio_client.handle_file(p) for p in paths[:4]], api_name="/validate_selfies")
    assert len(report["selfies"]) == 4 and all("\x1b" not in s["file"] for s in report["selfies"])
    serving(app)


GENERATE = ["identity", "style", "prompt", "negative_prompt", "num_images", "seed", "steps", "guidance",
            "identity_strength", "identitynet_strength", "aspect", "fast", "best_of", "lora_strength", "ai_mark",
            "linkedin", "identity_link", "face_region_only", "backdrop", "outfit", "subject"]  # fmt: skip
DEFAULTS = {"style": "corporate-grey", "prompt": "", "negative_prompt": "", "num_images": 1, "seed": 1, "steps": 1,
            "guidance": -1, "identity_strength": -1, "identitynet_strength": -1, "aspect": "style", "fast": False,
            "best_of": 1, "lora_strength": 1.0, "ai_mark": False, "linkedin": False, "identity_link": "",
            "face_region_only": True, "backdrop": "style", "outfit": "style", "subject": []}  # fmt: skip


def queue_call(app, api_name: str, data: list, session_hash: str | None = None) -> dict:
    """Run an endpoint as a browser does (raw queue join + stream): file parameters are sent as the
    server paths given, where gradio_client would upload a local file it can read."""
    session_hash = session_hash or f"raw{time.time_ns()}"
    _join(app, session_hash, api_name, data)
    with httpx.stream("GET", app[0] + "gradio_api/queue/data", params={"session_hash": session_hash},
                      timeout=120) as stream:  # fmt: skip
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("no answer")


def generate_data(**values) -> list:
    return [values.get(k, DEFAULTS.get(k)) for k in GENERATE] + [None]  # + the session state


def test_other_sessions_paths_and_system_files_are_refused_as_parameters(app):
    owner = new_client(app, download_files=False)
    identity, _ = owner.predict(selfies=[gradio_client.handle_file(str(EXAMPLES / "astronaut.jpg"))],
                                api_name="/create_identity")  # fmt: skip
    # another session's identity file, by its server path, through the file parameter
    answer = queue_call(app, "generate", generate_data(identity=file_data(identity["path"])))
    assert not answer["success"] and "another session" in json.dumps(answer["output"]), answer
    # system files: through file parameters (Gradio takes only files uploaded to it) and through links
    for name, data in (
        ("generate", generate_data(identity=file_data("/etc/passwd"))),
        ("validate_selfies", [[file_data("/etc/passwd")], "", None]),
        ("validate_selfies", [[file_data(f"{Path(identity['path']).parent}/../../../../../etc/passwd")], "", None]),
        ("generate", generate_data(identity_link="/etc/passwd")),
        ("generate", generate_data(identity_link=app[0] + "gradio_api/file=/etc/passwd")),
        ("validate_selfies", [None, "file:///etc/passwd", None]),
    ):
        answer = queue_call(app, name, data)
        text = json.dumps(answer.get("output"))
        assert not answer["success"], (name, data, answer)
        assert "root:" not in text and any(
            w in text for w in ("not in the upload folder", "cannot be accessed", "not a file of this session", "Cannot move")
        ), text
    assert httpx.get(app[0] + "gradio_api/file=/etc/passwd", timeout=30).status_code == 403
    serving(app)


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


def test_out_of_range_and_wrong_typed_values_are_refused(app):
    client = new_client(app)
    identity, _ = client.predict(selfies=[gradio_client.handle_file(str(EXAMPLES / "astronaut.jpg"))],
                                 api_name="/create_identity")  # fmt: skip
    ident = gradio_client.handle_file(identity)
    cases = [
        {"num_images": 100}, {"num_images": 0}, {"num_images": "many"}, {"num_images": 2.5},
        {"seed": 2**40}, {"steps": 10**9}, {"steps": -5}, {"guidance": 1e9}, {"best_of": 99},
        {"identity_strength": 7}, {"lora_strength": -2}, {"style": "../../etc/passwd"},
        {"aspect": "99999x99999"}, {"prompt": "a" * 10_000}, {"negative_prompt": "b" * 10_000},
        {"prompt": "navy blazer\x00\x1b[31m"}, {"prompt": "\x07\x08"},
    ]  # fmt: skip
    for extra in cases:
        refused(lambda extra=extra: client.predict(identity=ident, **{"steps": 1, **extra},
                                                   api_name="/generate"),
                "must", "between", "unknown", "limit", "control characters", "not", "choose",
                "value")  # fmt: skip
    refused(lambda: client.predict(selfies=[gradio_client.handle_file(str(EXAMPLES / "astronaut.jpg"))],
                                   method="rm -rf", api_name="/create_identity"), "unknown", "value")  # fmt: skip
    refused(lambda: client.predict(styles=["corporate-grey"] * 3 + ["nope"], identity=ident,
                                   api_name="/generate_pack"), "unknown", "not in the list of choices")  # fmt: skip
    serving(app)


# --------------------------------------------------------------------------------------
# Files built to hurt
# --------------------------------------------------------------------------------------


def _encode(fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "gray").save(buffer, fmt, **params)
    return buffer.getvalue()


def _jpeg_bomb() -> bytes:
    data = bytearray(_encode("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def _bmp_bomb() -> bytes:
    data = bytearray(_encode("BMP"))
    data[18:26] = struct.pack("<ii", 60000, 60000)
    return bytes(data)


def _tiff_bomb() -> bytes:
    data = bytearray(_encode("TIFF"))
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            data[entry + 8 : entry + 12] = struct.pack("<H", 60000) + b"\0\0" if kind == 3 else struct.pack("<I", 60000)
    return bytes(data)


def _webp_bomb() -> bytes:
    data = bytearray(_encode("WEBP", lossless=True))
    bits = (16383) | (16383 << 14)  # 16384 x 16384 (width-1, height-1 in 14 bits each)
    data[21:25] = struct.pack("<I", bits | (int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)))
    return bytes(data)


def _heif_bomb(fmt: str) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    data = bytearray(_encode(fmt))
    at = data.index(b"ispe") + 8  # version/flags, then width and height
    data[at : at + 8] = struct.pack(">II", 60000, 60000)
    return bytes(data)


def test_decompression_bombs_in_every_format_are_refused_without_decoding(app):
    bombs = {
        "bomb.png": gen.png_bomb(40_000),
        "bomb.gif": gen.gif_bomb(40_000, 40_000),
        "bomb.jpg": _jpeg_bomb(),
        "bomb.bmp": _bmp_bomb(),
        "bomb.tiff": _tiff_bomb(),
        "bomb.webp": _webp_bomb(),
        "bomb.heic": _heif_bomb("HEIF"),
        "bomb.avif": _heif_bomb("AVIF"),
    }
    before = rss_kib(app[1].pid)
    paths = upload_http(app, list(bombs.items()))
    client = new_client(app)
    started = time.perf_counter()
    report = client.predict(selfies=[gradio_client.handle_file(p) for p in paths], api_name="/validate_selfies")
    elapsed = time.perf_counter() - started
    codes = {s["file"]: [i["code"] for i in s["issues"]] for s in report["selfies"]}
    assert set(codes) == set(bombs), codes
    for name, found in codes.items():
        assert found and found[0] in ("too_large", "unreadable_image"), (name, found)
    assert sum(found[0] == "too_large" for found in codes.values()) >= 6, codes
    assert report["accepted"] == 0 and elapsed < 30
    assert rss_kib(app[1].pid) - before < 300_000, "a bomb was decoded"  # 60000^2 pixels would be GBs
    serving(app)


def test_pickled_and_oversized_identity_files_are_refused_unread(app, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    client = new_client(app)
    for name, data in (("identity.safetensors", pickle.dumps(Exploit())), ("identity.pt", pickle.dumps(Exploit())),
                       ("identity.bin", b"\x80\x04" + b"\0" * 1000)):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(data)
        # Refused unread: by our identity-file check, or (another extension) by Gradio's file-type check.
        refused(lambda path=path: client.predict(identity=gradio_client.handle_file(str(path)), api_name="/generate"),
                "identity file", "Invalid file type")  # fmt: skip
    assert not marker.exists(), "a pickle was loaded"
    serving(app)


# --------------------------------------------------------------------------------------
# Clients that misbehave, a full queue
# --------------------------------------------------------------------------------------


def _join(app, session_hash: str, api_name: str, data: list) -> None:
    config = httpx.get(app[0] + "config", timeout=30).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    httpx.post(app[0] + "gradio_api/queue/join", json=body, timeout=30).raise_for_status()


def test_clients_that_disconnect_mid_request_do_not_hurt_the_server(app):
    client = new_client(app, download_files=False)
    identity, _ = client.predict(selfies=[gradio_client.handle_file(str(EXAMPLES / "astronaut.jpg"))],
                                 api_name="/create_identity")  # fmt: skip
    for i in range(3):
        session_hash = f"gone{i}{time.time_ns()}"
        # generate's inputs: identity, style, prompt, negative, num_images, seed, steps, guidance, strengths,
        # aspect, fast, best_of, lora_strength, ai_mark, linkedin, identity_link, face_region_only, backdrop,
        # outfit, subject, state
        data = [identity, "corporate-grey", "", "", 1, 1, 2, -1, -1, -1, "style", False, 1, 1.0, False, False, "",
                True, "style", "style", [], None]  # fmt: skip
        _join(app, session_hash, "generate", data)
        with httpx.stream("GET", app[0] + "gradio_api/queue/data", params={"session_hash": session_hash},
                          timeout=30) as stream:  # fmt: skip
            next(stream.iter_lines())  # read one event, then hang up
    # an upload cut off half way: the client says 100 kB and hangs up after a few bytes
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(app[0])
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\nContent-Disposition: "
                     b"form-data; name=\"files\"; filename=\"half.jpg\"\r\n\r\n\xff\xd8")  # fmt: skip
    serving(app)
    # The requests of the clients that hung up run out and leave the queue (the next test floods an empty one:
    # requests queued behind them would wait past the module's 20 s file age, and their uploads be swept).
    deadline = time.monotonic() + 120
    while httpx.get(app[0] + "gradio_api/queue/status", timeout=30).json()["queue_size"]:
        assert time.monotonic() < deadline, "requests of clients that hung up stay in the queue"
        time.sleep(0.5)


def test_a_queue_filled_past_its_size_answers_busy_and_recovers(app):
    client = new_client(app)
    identity, _ = client.predict(selfies=[gradio_client.handle_file(str(EXAMPLES / "astronaut.jpg"))],
                                 api_name="/create_identity")  # fmt: skip
    ident = gradio_client.handle_file(identity)
    clients = [new_client(app) for _ in range(8)]
    # The cheapest render (one image, two steps): the admitted requests finish well inside the module's 20 s
    # file age (a request queued longer would find its upload swept: "identity file was not found").
    jobs = [c.submit(identity=ident, num_images=1, seed=i, steps=2, api_name="/generate") for i, c in enumerate(clients)]
    outcomes = []
    for job in jobs:
        try:
            job.result(timeout=300)
            outcomes.append("done")
        except Exception as err:
            outcomes.append(str(err))
    busy = [o for o in outcomes if o != "done"]
    assert busy and all("queue is full" in o.lower() or "busy" in o.lower() for o in busy), outcomes
    assert "done" in outcomes
    serving(app)


# --------------------------------------------------------------------------------------
# Sessions that never press Delete, memory after a bounded load
# --------------------------------------------------------------------------------------


def test_the_sweeper_removes_files_of_sessions_that_never_delete(app):
    client = new_client(app, download_files=False)
    identity, _ = client.predict(selfies=[gradio_client.handle_file(str(EXAMPLES / "astronaut.jpg"))],
                                 api_name="/create_identity")  # fmt: skip
    assert httpx.get(identity["url"], timeout=30).status_code == 200
    deadline = time.monotonic() + MAX_AGE_S + 20
    while httpx.get(identity["url"], timeout=30).status_code != 404:
        assert time.monotonic() < deadline, "the sweeper did not remove the file"
        time.sleep(1)
    assert not Path(identity["path"]).exists()
    serving(app)


def test_memory_returns_to_its_baseline_after_a_bounded_load(app):
    photos = [str(EXAMPLES / "astronaut.jpg"), str(EXAMPLES / "astronaut-mirrored.jpg")]

    def one_user(seed: int) -> None:
        client = new_client(app)
        client.predict(selfies=[gradio_client.handle_file(p) for p in photos], api_name="/validate_selfies")
        identity, _ = client.predict(selfies=[gradio_client.handle_file(p) for p in photos],
                                     api_name="/create_identity")  # fmt: skip
        client.predict(identity=gradio_client.handle_file(identity), num_images=2, seed=seed, steps=2,
                       linkedin=True, api_name="/generate")  # fmt: skip
        client.predict(api_name="/delete_my_data")

    one_user(0)  # warm: models loaded, caches filled
    pid = app[1].pid
    baseline = rss_kib(pid)
    with ThreadPoolExecutor(2) as pool:  # 2 at a time: the queue holds 2
        list(pool.map(one_user, range(1, 13)))
    time.sleep(2)
    after = rss_kib(pid)
    record = {"users": 12, "rss_baseline_mib": round(baseline / 1024, 1), "rss_after_mib": round(after / 1024, 1),
              "growth_mib": round((after - baseline) / 1024, 1)}  # fmt: skip
    print("\nRSS", json.dumps(record))  # noqa: T201 - the figure the report quotes
    (ROOT / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "abuse-rss.json").write_text(json.dumps(record, indent=1))
    assert after - baseline < max(64 * 1024, baseline * 0.15), record
    serving(app)
