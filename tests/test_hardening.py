"""Hostile input where only the running app can show it: the HTTP, queue and file-serving layer of Gradio.

``python app.py`` (tiny profile) is started once for the module and called with ``gradio_client`` and
plain HTTP. The refusal matrices (odd and hostile image files, tampered identity files, prompt screening)
are tested once, on the core, in tests/test_imaging.py, test_validation.py, test_identity.py and
test_styles.py; a corrupt upload failing alone through the API is in tests/test_app_e2e.py. Here:

* files over our per-file limits (yet under Gradio's) pass Gradio's upload and get our message, and an
  empty upload is an empty report;
* there is no REST route around the queue, and only Gradio's own copies are served, never the app's
  request folders or other files;
* "Delete my data" removes the session's files, both Gradio's copies and the app's own folders, and the
  served headshots carried their disclosure metadata until then.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from headshot import config

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow

MB = 1024 * 1024


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


# --------------------------------------------------------------------------------------
# Uploads over our limits, under Gradio's
# --------------------------------------------------------------------------------------


def test_oversize_selfie_passes_gradio_and_gets_our_message(client, app, obama, tmp_path):
    """A real JPEG padded one byte over ``MAX_UPLOAD_BYTES``: Gradio takes it, our check refuses it alone."""
    huge = tmp_path / "huge.jpg"
    data = obama[0].read_bytes()
    huge.write_bytes(data + b"\x00" * (config.MAX_UPLOAD_BYTES + 1 - len(data)))
    report = client.predict(selfies=upload([obama[1], huge]), api_name="/validate_selfies")
    by_file = {s["file"]: s for s in report["selfies"]}
    (issue,) = by_file["huge.jpg"]["issues"]
    assert issue["code"] == "too_large" and f"{config.MAX_UPLOAD_BYTES / MB:.1f} MB" in issue["message"]
    assert by_file[obama[1].name]["accepted"]
    still_serving(client, app)


def test_oversize_identity_passes_gradio_and_gets_our_message(client, app, tmp_path):
    """Over ``MAX_IDENTITY_BYTES`` (yet under Gradio's upload limit): refused by size before parsing."""
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as fh:
        fh.truncate(config.MAX_IDENTITY_BYTES + 1)
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        client.predict(
            identity=gradio_client.handle_file(str(path)), style="corporate-grey", num_images=1, seed=1,
            steps=1, api_name="/generate",
        )  # fmt: skip
    message = str(caught.value)
    assert "This identity file" in message, message
    assert re.search(rf"too large: the limit is {config.MAX_IDENTITY_BYTES / MB:.1f} MB", message), message
    still_serving(client, app)


def test_no_selfies_is_an_empty_report(client):
    """Gradio hands an empty file list to the handler as None: still a report, not an error."""
    report = client.predict(selfies=[], api_name="/validate_selfies")
    assert report["selfies"] == [] and report["accepted"] == 0 and report["ready"] is False


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
    from headshot.imaging import read_png_metadata

    url = app[0]
    client = gradio_client.Client(url, verbose=False, download_files=False)
    before = set(studio.work_root().iterdir())
    identity, _ = client.predict(selfies=upload(obama[:1]), method="instantid", api_name="/create_identity")
    gallery, _ = client.predict(
        identity=identity, style="corporate-grey", num_images=1, seed=3, steps=1,
        prompt="navy blazer, warm smile", api_name="/generate",
    )  # fmt: skip
    served = [Path(identity["path"]), Path(gallery[0]["image"]["path"])]
    assert all(p.is_file() for p in served)  # Gradio's copies (same machine, loopback)
    # The served PNG (not only the one the app wrote) carries the prompt and the AI disclosure.
    meta = json.dumps(read_png_metadata(served[1].read_bytes()))
    assert "navy blazer, warm smile" in meta and "trainedAlgorithmicMedia" in meta
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
