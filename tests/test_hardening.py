"""Hostile input where only the running app can show it: the HTTP, queue and file-serving layer of Gradio.

``python app.py`` (tiny profile) is started once for the module and called with ``gradio_client`` and
plain HTTP. The refusal matrices (odd and hostile image files, tampered identity files, prompt screening)
are tested once, on the core, in tests/test_imaging.py, test_validation.py, test_identity.py and
test_styles.py; a corrupt upload failing alone through the API is in tests/test_app_e2e.py. Here:

* files over our per-file limits (yet under Gradio's) pass Gradio's upload and get our message, and an
  empty upload is an empty report;
* there is no REST route around the queue, and only files in Gradio's cache are served (the app's session
  folders live there; nothing of the project or the system);
* "Delete my data" removes the session's files, every served link then answers 404, and the served
  headshots carried their disclosure metadata until then. The two-session case, the sweeper and the
  abuse matrix are in tests/test_privacy.py and tests/test_abuse.py.
"""

from __future__ import annotations

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


def test_delete_my_data_removes_the_sessions_files_everywhere(app, obama):
    """Outputs are served where the app wrote them (in the session's folder, no content-addressed copies
    elsewhere), carry their disclosure metadata, and answer 404 once the session deleted them."""
    import httpx

    from headshot.disclosure import read_png_metadata

    url = app[0]
    client = gradio_client.Client(url, verbose=False, download_files=False)
    identity, _ = client.predict(selfies=upload(obama[:1]), method="instantid", api_name="/create_identity")
    gallery, _ = client.predict(
        identity=identity, style="corporate-grey", num_images=1, seed=3, steps=1,
        prompt="navy blazer, warm smile", api_name="/generate",
    )  # fmt: skip
    served = [Path(identity["path"]), Path(gallery[0]["image"]["path"])]
    folders = {p.parts[p.parts.index("sessions") + 1] for p in served}
    assert len(folders) == 1, served  # one session, one folder, every run in it
    # The served PNG (the very file the app wrote) carries the prompt and the AI disclosure.
    meta = json.dumps(read_png_metadata(served[1].read_bytes()))
    assert "navy blazer, warm smile" in meta and "trainedAlgorithmicMedia" in meta
    links = [identity["url"], gallery[0]["image"]["url"]]
    assert [httpx.get(link, timeout=30).status_code for link in links] == [200, 200]

    answer = client.predict(api_name="/delete_my_data")
    assert answer["deleted_files"] >= 2, answer
    assert not any(p.exists() for p in served)
    assert [httpx.get(link, timeout=30).status_code for link in links] == [404, 404]
    still_serving(gradio_client.Client(url, verbose=False), app)


def test_only_files_in_gradios_cache_are_served(app, client, obama):
    """Files of the project, the test data and the system are refused; so are folders and traversal."""
    import httpx

    client = gradio_client.Client(app[0], verbose=False, download_files=False)
    identity, _ = client.predict(selfies=upload(obama[:1]), method="instantid", api_name="/create_identity")
    folder = Path(identity["path"]).parent
    for path in [obama[0], "/etc/passwd", Path(__file__), folder, f"{folder}/../../../../../etc/passwd"]:
        response = httpx.get(app[0] + "gradio_api/file=" + str(path), timeout=30)
        assert response.status_code in (403, 404), (path, response.status_code)
    assert httpx.get(identity["url"], timeout=30).status_code == 200


def test_no_rest_route_around_the_queue(app):
    """Direct POSTs to /gradio_api/run/<name> would skip the queue's bound and the GPU slot."""
    import httpx

    for name in ("generate", "validate_selfies"):
        response = httpx.post(app[0] + f"gradio_api/run/{name}", json={"data": []}, timeout=30)
        assert response.status_code == 404, response.text
        assert "join the queue" in response.json()["detail"]
