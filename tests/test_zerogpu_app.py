"""End to end under the emulated ZeroGPU: ``python app.py`` with ``HEADSHOT_ZEROGPU_EMULATE=1`` (every
GPU call in a forked worker, pickled arguments and results, durations and a daily quota enforced),
driven through ``gradio_client`` as a Space visitor's client would."""

from __future__ import annotations

from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def obama(faces_dir) -> list[str]:
    return sorted(str(p) for p in (faces_dir / "same_person" / "obama").glob("*.jpg"))


def files(paths):
    return [gradio_client.handle_file(p) for p in paths]


def _client(url):
    return gradio_client.Client(url, verbose=False, ssl_verify=False)


@pytest.fixture(scope="module")
def space(shared_dir):
    """The app on an emulated ZeroGPU with a PRO quota: every flow must pass there."""
    from tests.e2e import running_app

    with running_app(extra_env={"HEADSHOT_ZEROGPU_EMULATE": "1", "HEADSHOT_ZEROGPU_QUOTA": "pro"}) as (
        url,
        _,
    ):
        yield url


def test_the_whole_flow_on_the_emulated_space(space, obama):
    client = _client(space)
    report = client.predict(selfies=files(obama[:3]), api_name="/validate_selfies")
    assert report["ready"] and report["accepted"] == 3

    instantid, summary = client.predict(
        selfies=files(obama[:3]), method="instantid", api_name="/create_identity"
    )
    assert summary["method"] == "instantid"
    gallery, info = client.predict(
        identity=gradio_client.handle_file(instantid),
        style="corporate-grey",
        num_images=2,
        seed=3,
        steps=2,
        api_name="/generate",
    )
    assert len(gallery) == 2 and sorted(info["seeds"]) == [3, 4]
    fast_gallery, _ = client.predict(
        identity=gradio_client.handle_file(instantid),
        style="tech-casual",
        fast=True,
        seed=1,
        num_images=1,
        api_name="/generate",
    )
    assert len(fast_gallery) == 1

    lora, lora_summary = client.predict(
        selfies=files(obama[:3]), method="lora", lora_steps=4, api_name="/create_identity"
    )
    assert lora_summary["steps_run"] == 4 and lora_summary["has_lora"]
    zip_path, pack_gallery, pack_info = client.predict(
        identity=gradio_client.handle_file(lora),
        styles=["corporate-grey", "classic-bw"],
        images_per_style=1,
        seed=7,
        api_name="/generate_pack",
    )
    assert Path(zip_path).suffix == ".zip" and len(pack_gallery) == 2
    assert sorted(pack_info["styles"]) == ["classic-bw", "corporate-grey"]
