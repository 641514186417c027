"""End to end under the emulated ZeroGPU: ``python app.py`` with ``HEADSHOT_ZEROGPU_EMULATE=1`` (every
GPU call in a forked worker, pickled arguments and results, durations and a daily quota enforced),
driven through ``gradio_client`` as a Space visitor's client would."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch

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


def _lora_weights(path: str) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(path).items() if k.startswith("lora.") or ".lora_" in k}


def test_a_tight_quota_pauses_lora_training_and_continue_reaches_the_same_weights(space, obama):
    """One call's worth of quota, given back after 25 s: the second training call is refused with a
    plain message, the training is kept, and Continue (the API's /continue_identity) finishes it to
    the weights an uninterrupted run gives."""
    from tests.e2e import running_app

    env = {
        "HEADSHOT_ZEROGPU_EMULATE": "1",
        "HEADSHOT_LORA_STEPS_PER_CALL": "3",
        # A training call of 3 steps asks 10 + 8 + 3 x 0.36 -> 20 s, 30 s of quota on a half GPU: the first
        # is admitted and charged the seconds it ran, after which less than 30 s is left.
        "HEADSHOT_ZEROGPU_QUOTA": "30",
        "HEADSHOT_ZEROGPU_QUOTA_WINDOW": "25",
    }
    with running_app(extra_env=env) as (url, _):
        client = _client(url)
        with pytest.raises(gradio_client.exceptions.AppError, match="saved at step 3 of 6") as refused:
            client.predict(selfies=files(obama[:3]), method="lora", lora_steps=6, api_name="/create_identity")
        assert "GPU time" in str(refused.value)
        assert re.search(r"this step needs 30 s of GPU time and \d+ s are left\. More GPU time is yours again in "
                         r"\d+ s", str(refused.value))  # fmt: skip
        other = _client(url)  # another visitor has nothing to continue
        with pytest.raises(gradio_client.exceptions.AppError, match="no paused LoRA training"):
            other.predict(api_name="/continue_identity")
        time.sleep(26)  # the window passes: the quota comes back
        continued, summary = client.predict(api_name="/continue_identity")
        assert summary["steps_run"] == 6
    whole, whole_summary = _client(space).predict(
        selfies=files(obama[:3]), method="lora", lora_steps=6, api_name="/create_identity"
    )
    assert whole_summary["steps_run"] == 6
    a, b = _lora_weights(continued), _lora_weights(whole)
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
