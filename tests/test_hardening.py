"""Hostile input through the running app (``python app.py`` on the tiny profile, called with gradio_client).

* Uploads through ``/validate_selfies``: every odd or hostile file gets its own clear code and message in
  the report (``unreadable_image``, ``too_large``, ``low_resolution``), photos in unusual encodings are
  decoded and checked like any other, and the server keeps serving (and does not balloon in memory).
* Identity files through ``/generate``: anything but a sound identity made for this app's models is refused
  with a "This identity file ..." message, and pickles are never unpickled.
* Prompts through ``/generate``: over-long text and requests for sexual or degrading images are refused
  with a message that says why, before any rendering.
* Privacy: "Delete my data" removes the session's files, both Gradio's copies and the app's own folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headshot import config
from tests import _imagegen as gen
from tests.e2e import running_app

gradio_client = pytest.importorskip("gradio_client")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.slow

MB = 1024 * 1024


@pytest.fixture(scope="module")
def app(shared_dir):
    # One intra-op thread: on a shared two-core runner PyTorch's thread pool makes tiny renders crawl.
    with running_app(extra_env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def client(app):
    return gradio_client.Client(app[0], verbose=False, ssl_verify=False)  # plain HTTP: no SSL contexts


@pytest.fixture(scope="module")
def obama(faces_dir) -> list[Path]:
    photos = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))
    assert len(photos) >= 4
    return photos


def upload(paths) -> list:
    return [gradio_client.handle_file(str(p)) for p in paths]


def still_serving(client, app) -> None:
    """The app process is alive and answers a plain request."""
    assert app[1].poll() is None, "the app process died"
    assert len(client.predict(api_name="/list_styles")) >= 1


def rss(app) -> int:
    return psutil.Process(app[1].pid).memory_info().rss


# --------------------------------------------------------------------------------------
# Selfie uploads
# --------------------------------------------------------------------------------------


def _cmyk_jpeg(photo: Path) -> bytes:
    return gen.encode(Image.open(photo).convert("RGB").convert("CMYK"), "JPEG", quality=92)


def _png16(photo: Path) -> bytes:
    rgb = np.asarray(Image.open(photo).convert("RGB"), dtype=np.uint16)
    return gen.png16(rgb * 257)  # full 16-bit range, as a camera raw export writes it


def _animated_gif(photo: Path) -> bytes:
    first = Image.open(photo).convert("RGB")
    second = Image.new("RGB", first.size, (20, 200, 40))
    return gen.encode(first, "GIF", save_all=True, append_images=[second], duration=200, loop=0)


def _huge_exif(photo: Path) -> bytes:
    return gen.huge_exif_jpeg(Image.open(photo).convert("RGB"), orientation=6, payload=60_000)


def _oversize(photo: Path) -> bytes:
    """A real JPEG followed by padding up to one byte over the per-file limit (below Gradio's limit)."""
    data = photo.read_bytes()
    return data + b"\x00" * (config.MAX_UPLOAD_BYTES + 1 - len(data))


@pytest.fixture(scope="module")
def hostile_report(client, app, obama, tmp_path_factory) -> tuple[dict, dict]:
    """One request with twelve files (the selfie limit): eight bad ones and four photos in odd encodings."""
    folder = tmp_path_factory.mktemp("uploads")
    truncated = obama[0].read_bytes()
    files = {
        "empty.jpg": b"",
        "notes.jpg": gen.TEXT_FILE,
        "cut-off.jpg": truncated[: len(truncated) // 2],
        "drawing.svg": gen.SVG_WITH_SCRIPT,
        "bomb.png": gen.png_bomb(40_000),
        "pixel.png": gen.encode(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"),
        "huge.jpg": _oversize(obama[0]),
        "cmyk.jpg": _cmyk_jpeg(obama[0]),
        "deep-16bit.png": _png16(obama[1]),
        "animated.gif": _animated_gif(obama[2]),
        "big-exif.jpg": _huge_exif(obama[3]),
        "noise.jpg": gen.random_bytes(50_000),
    }
    assert len(files) == config.MAX_SELFIES
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    client.predict(selfies=upload(obama[:1]), api_name="/validate_selfies")  # warm-up: models loaded
    before = rss(app)
    started = time.monotonic()
    report = client.predict(selfies=upload(paths), api_name="/validate_selfies")
    seconds = time.monotonic() - started
    return report, {"rss_before": before, "rss_after": rss(app), "seconds": seconds}


def _entry(report: dict, name: str) -> dict:
    by_file = {s["file"]: s for s in report["selfies"]}
    assert name in by_file, f"{name} missing from the report: {sorted(by_file)}"
    return by_file[name]


def _errors(entry: dict) -> dict[str, str]:
    return {i["code"]: i["message"] for i in entry["issues"] if i["severity"] == "error"}


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("empty.jpg", "unreadable_image", r"empty"),
        ("notes.jpg", "unreadable_image", r"text file"),
        ("cut-off.jpg", "unreadable_image", r"incomplete|cut off"),
        ("drawing.svg", "unreadable_image", r"SVG"),
        ("noise.jpg", "unreadable_image", r"not a photo format"),
        ("bomb.png", "too_large", r"more than \d+ megapixels"),
        ("huge.jpg", "too_large", rf"{config.MAX_UPLOAD_BYTES / MB:.1f} MB"),
        ("pixel.png", "low_resolution", rf"1x1 pixels.*{config.MIN_SHORT_SIDE}"),
    ],
)
def test_each_bad_upload_gets_its_own_code_and_message(hostile_report, name, code, words):
    report, _ = hostile_report
    entry = _entry(report, name)
    errors = _errors(entry)
    assert entry["accepted"] is False
    assert code in errors, f"{name}: {entry['issues']}"
    message = errors[code]
    assert re.search(words, message), message
    if code != "low_resolution":  # the intake messages name the file they are about
        assert name in message, message
        assert len(entry["issues"]) == 1, entry["issues"]  # not decoded: nothing else can be said
    assert "Traceback" not in message and "Error" not in message


@pytest.mark.parametrize("name", ["cmyk.jpg", "deep-16bit.png", "animated.gif", "big-exif.jpg"])
def test_photos_in_odd_encodings_are_decoded_and_accepted(hostile_report, name):
    """CMYK, 16 bits per channel, an animation (first frame) and a 60 kB EXIF block with a rotation: each
    is decoded, the face found upright, and the photo accepted."""
    entry = _entry(hostile_report[0], name)
    assert entry["face"] is not None, entry["issues"]
    assert entry["accepted"], entry["issues"]
    assert not {"unreadable_image", "too_large", "extreme_pose"} & {i["code"] for i in entry["issues"]}


def test_the_whole_batch_is_answered_quickly_and_the_server_keeps_serving(hostile_report, client, app):
    report, stats = hostile_report
    assert len(report["selfies"]) == config.MAX_SELFIES and report["errors"] == []
    assert report["accepted"] == 4 and report["ready"] is True
    # The 1.6-gigapixel bomb was refused from its header: no gigabytes allocated, no minutes spent.
    assert stats["rss_after"] - stats["rss_before"] < 250 * MB, stats
    assert stats["seconds"] < 60, stats
    still_serving(client, app)


def test_more_files_than_the_limit_are_reported_not_checked(client, app, tmp_path):
    tiny = gen.encode(Image.new("RGB", (8, 8), (120, 120, 120)), "PNG")
    paths = []
    for i in range(config.MAX_SELFIES + 2):
        path = tmp_path / f"selfie-{i:02d}.png"
        path.write_bytes(tiny)
        paths.append(path)
    report = client.predict(selfies=upload(paths), api_name="/validate_selfies")
    assert [s["file"] for s in report["selfies"]] == [p.name for p in paths[: config.MAX_SELFIES]]
    extra = report["errors"]
    assert [e["file"] for e in extra] == [p.name for p in paths[config.MAX_SELFIES :]]
    assert {e["code"] for e in extra} == {"too_many_selfies"}
    assert all(f"at most {config.MAX_SELFIES} selfies" in e["message"] for e in extra)
    still_serving(client, app)


def test_no_selfies_is_an_empty_report(client):
    report = client.predict(selfies=[], api_name="/validate_selfies")
    assert report["selfies"] == [] and report["accepted"] == 0 and report["ready"] is False


# --------------------------------------------------------------------------------------
# Identity files
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def identity_path(client, obama) -> Path:
    path, summary = client.predict(selfies=upload(obama[:1]), method="instantid", api_name="/create_identity")
    assert summary["method"] == "instantid"
    return Path(path)


@pytest.fixture(scope="module")
def identity_parts(identity_path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(identity_path), framework="np") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())  # noqa: SIM118


def _safetensors(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)


class _Trap:
    """Unpickling this creates a folder: proof that a file was unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def generate(client, identity: Path | str, **kwargs):
    params = {"style": "corporate-grey", "num_images": 1, "seed": 1, "steps": 1, **kwargs}
    return client.predict(identity=gradio_client.handle_file(str(identity)), api_name="/generate", **params)


def _refused(client, app, path: Path, words: str) -> str:
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        generate(client, path)
    message = str(caught.value)
    assert "This identity file" in message, message
    assert re.search(words, message), message
    still_serving(client, app)
    return message


def test_pickles_are_refused_and_never_unpickled(client, app, tmp_path_factory):
    import torch

    # The trap's folder is created on this machine's /tmp if the server ever unpickles the file.
    trap_dir = tmp_path_factory.mktemp("trap")
    plain, checkpoint = trap_dir / "unpickled-plain", trap_dir / "unpickled-torch"
    folder = tmp_path_factory.mktemp("pickles")
    raw = folder / "identity.safetensors"
    raw.write_bytes(pickle.dumps({"face_embedding": _Trap(str(plain))}, protocol=4))
    ckpt = folder / "identity.pt"
    torch.save({"face_embedding": _Trap(str(checkpoint))}, ckpt)
    for path in (raw, ckpt):
        _refused(client, app, path, r"pickle or PyTorch checkpoint.*can run code")
    assert not plain.exists() and not checkpoint.exists()
    control = trap_dir / "control"  # the trap works: unpickling it here does create its folder
    pickle.loads(pickle.dumps(_Trap(str(control))))
    assert control.is_dir()


def test_files_that_are_not_safetensors_are_refused(client, app, tmp_path, obama):
    text = tmp_path / "identity.safetensors"
    text.write_bytes(b"my identity, please\n" * 10)
    _refused(client, app, text, r"is not a safetensors identity file")
    photo = tmp_path / "me.safetensors"
    photo.write_bytes(obama[0].read_bytes())
    _refused(client, app, photo, r"is a picture")
    header = tmp_path / "huge-header.safetensors"  # a header length that points far past the end
    header.write_bytes((2**40).to_bytes(8, "little") + b'{"__metadata__": {}}')
    _refused(client, app, header, r"is not a safetensors identity file")


def test_truncated_identity_is_refused(client, app, tmp_path, identity_path):
    data = identity_path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 1000])
    _refused(client, app, cut, r"damaged or incomplete|not a safetensors")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t, m: t.update(face_embedding=t["face_embedding"].reshape(2, -1)), r"wrong type or shape"),
        (
            lambda t, m: t.update(face_embedding=t["face_embedding"].astype(np.float64)),
            r"wrong type or shape.*float64",
        ),
        (
            lambda t, m: t.update(face_keypoints=t["face_keypoints"][:4]),
            r"keypoints of the wrong type or shape",
        ),
        (
            lambda t, m: t.update(reference_crop=t["reference_crop"].astype(np.float32)),
            r"reference picture of the wrong type or shape",
        ),
        (lambda t, m: t.update(face_embedding=t["face_embedding"] * 3), r"not normalised"),
        (lambda t, m: t.update(face_keypoints=t["face_keypoints"] + 5), r"keypoints outside"),
        (lambda t, m: t.pop("face_embedding"), r"has no 'face_embedding'"),
        (lambda t, m: t.update(extra=np.zeros(3, np.float32)), r"unexpected tensor 'extra'"),
        (lambda t, m: m.update(face_pack="antelopev2"), r"face models 'antelopev2'.*this app uses"),
        (lambda t, m: m.update(format_version="99"), r"newer version"),
        (lambda t, m: m.pop("format"), r"not a Headshot Studio identity"),
        (
            lambda t, m: (
                t.update(face_embedding=_unit(512)),
                m.update(embedding_size="512"),
            ),
            r"512-value face embeddings",
        ),
        (
            lambda t, m: (
                t.update(
                    {
                        "lora.unet.a.to_q.lora_A.weight": np.zeros((4, 32), np.float32),
                        "lora.unet.a.to_q.lora_B.weight": np.zeros((32, 4), np.float32),
                    }
                ),
                m.update(
                    method="lora", base_model="SG161222/RealVisXL_V4.0", lora_config=json.dumps({"r": 4})
                ),
            ),
            r"LoRA trained on the base model 'SG161222/RealVisXL_V4.0'",
        ),
    ],
    ids=[
        "embedding-shape",
        "embedding-dtype",
        "keypoints-shape",
        "crop-dtype",
        "embedding-not-normalised",
        "keypoints-outside",
        "embedding-missing",
        "extra-tensor",
        "other-face-pack",
        "newer-format",
        "not-an-identity",
        "other-embedding-size",
        "lora-for-another-base-model",
    ],
)
def test_tampered_identity_files_are_refused(client, app, identity_parts, tmp_path, change, words):
    tensors, metadata = (dict(part) for part in identity_parts)
    change(tensors, metadata)
    path = tmp_path / "identity.safetensors"
    path.write_bytes(_safetensors(tensors, metadata))
    _refused(client, app, path, words)


def _unit(size: int) -> np.ndarray:
    vec = np.random.default_rng(size).standard_normal(size).astype(np.float32)
    return vec / np.linalg.norm(vec)


def test_the_untampered_identity_is_accepted(client, identity_parts, tmp_path):
    """The control for the tampering tests: the same parts written back unchanged generate fine."""
    tensors, metadata = identity_parts
    path = tmp_path / "identity.safetensors"
    path.write_bytes(_safetensors(tensors, metadata))
    gallery, info = generate(client, path, seed=7)
    assert len(gallery) == 1 and info["seeds"] == [7]


def test_oversize_identity_file_is_refused_with_our_message(client, app, identity_path, tmp_path):
    """Over ``MAX_IDENTITY_BYTES`` (yet under Gradio's upload limit): refused by size before parsing."""
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as fh:
        fh.write(identity_path.read_bytes())
        fh.truncate(config.MAX_IDENTITY_BYTES + 1)
    _refused(client, app, path, rf"too large: the limit is {config.MAX_IDENTITY_BYTES / MB:.1f} MB")


# --------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------


def _prompt_refused(client, app, identity_path, words: str, **kwargs) -> str:
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        generate(client, identity_path, **kwargs)
    message = str(caught.value)
    assert re.search(words, message), message
    still_serving(client, app)
    return message


def test_prompt_over_the_length_limit_is_refused(client, app, identity_path):
    long = "navy blazer, " * (config.MAX_PROMPT_CHARS // 13 + 1)
    _prompt_refused(
        client, app, identity_path, rf"characters long; the limit is {config.MAX_PROMPT_CHARS}", prompt=long
    )
    _prompt_refused(
        client,
        app,
        identity_path,
        rf"negative prompt .* the limit is {config.MAX_PROMPT_CHARS}",
        negative_prompt="blurry, " * (config.MAX_PROMPT_CHARS // 8 + 1),
    )


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("topless, on a beach", "sexual"),
        ("n a k e d portrait", "sexual"),
        ("sexy lingerie photo shoot", "sexual"),
        ("make him look ugly, with a black eye", "degrading"),
        ("mugshot in a prison jumpsuit", "degrading"),
    ],
)
def test_sexual_or_degrading_prompts_are_refused(client, app, identity_path, prompt, category):
    message = _prompt_refused(
        client, app, identity_path, rf"refused: it asks for {category} content", prompt=prompt
    )
    assert "respectful professional portraits" in message


def test_an_ordinary_prompt_renders_and_is_recorded(client, identity_path):
    gallery, info = generate(client, identity_path, prompt="navy blazer, warm smile", seed=11)
    assert info["seeds"] == [11]
    from headshot.imaging import read_png_metadata

    meta = read_png_metadata(Path(gallery[0]["image"]).read_bytes())
    text = json.dumps(meta)
    assert "navy blazer, warm smile" in text and "trainedAlgorithmicMedia" in text


# --------------------------------------------------------------------------------------
# Privacy: "Delete my data" removes the session's files, Gradio's copies and this app's own
# --------------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(folder: Path) -> set[str]:
    return {_digest(p) for p in folder.rglob("*") if p.is_file()}


def _call_private(url: str, session_hash: str, api_name: str, data: list) -> dict:
    """Run a UI-only event (one the Gradio clients may not call) as the browser does: join the queue in
    this session and read the stream until the event completes."""
    import httpx

    config_ = httpx.get(url + "config", timeout=30).json()
    fn_id = next(d["id"] for d in config_["dependencies"] if d.get("api_name") == api_name)
    body = {
        "data": data,
        "fn_index": fn_id,
        "session_hash": session_hash,
        "event_data": None,
        "trigger_id": None,
    }
    httpx.post(url + "gradio_api/queue/join", json=body, timeout=30).raise_for_status()
    with httpx.stream(
        "GET", url + "gradio_api/queue/data", params={"session_hash": session_hash}, timeout=60
    ) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event did not complete")


def test_delete_my_data_removes_the_sessions_files_everywhere(app, obama):
    from headshot import studio

    url = app[0]
    client = gradio_client.Client(url, verbose=False, download_files=False)
    before = set(studio.work_root().iterdir())
    identity, _ = client.predict(selfies=upload(obama[:1]), method="instantid", api_name="/create_identity")
    gallery, _ = client.predict(
        identity=identity, style="corporate-grey", num_images=1, seed=3, steps=1, api_name="/generate"
    )
    served = [Path(identity["path"]), Path(gallery[0]["image"]["path"])]
    assert all(p.is_file() for p in served)  # Gradio's copies (same machine, loopback)
    ours = {_digest(p) for p in served}
    folders = [f for f in set(studio.work_root().iterdir()) - before if _digests(f) & ours]
    assert len(folders) == 2, folders  # the identity's and the headshots' request folders

    message = _call_private(
        url, client.session_hash, "delete_my_data", [None, identity, gallery, None, None, None, None]
    )
    assert message["success"], message
    assert not any(p.exists() for p in served), "Gradio's copies are still there"
    assert not any(f.exists() for f in folders), "the app's own request folders are still there"
    still_serving(gradio_client.Client(url, verbose=False), app)


def test_request_folders_and_other_files_are_not_served(app, client, obama):
    """Only Gradio's cached copies are served: not the app's own request folders, not other temp files."""
    import httpx

    from headshot import studio

    before = set(studio.work_root().iterdir())
    client.predict(selfies=upload(obama[:1]), method="instantid", api_name="/create_identity")
    originals = [p for f in set(studio.work_root().iterdir()) - before for p in f.iterdir()]
    assert originals
    for path in [*originals, obama[0]]:
        response = httpx.get(app[0] + "gradio_api/file=" + str(path), timeout=30)
        assert response.status_code == 403, (path, response.status_code)


def test_no_rest_route_around_the_queue(app):
    """Direct POSTs to /gradio_api/run/<name> would skip the queue's bound and the GPU slot."""
    import httpx

    for name in ("generate", "validate_selfies"):
        response = httpx.post(app[0] + f"gradio_api/run/{name}", json={"data": []}, timeout=30)
        assert response.status_code == 404, response.text
        assert "join the queue" in response.json()["detail"]
