"""End to end: ``python app.py`` started as a user starts it (once for the module: the ``app`` fixture in
conftest.py), then driven through ``gradio_client``."""

from __future__ import annotations

import json
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def obama(faces_dir) -> list[str]:
    return sorted(str(p) for p in (faces_dir / "same_person" / "obama").glob("*.jpg"))


def files(paths):
    return [gradio_client.handle_file(p) for p in paths]


def pixels(path) -> bytes:
    """An image's pixels: each PNG carries its own signed Content Credentials (a time, an instance id)."""
    return Image.open(path).tobytes()


def test_api_names_are_the_contract(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/validate_selfies", "/create_identity", "/generate", "/generate_pack", "/list_styles"} <= names


def test_mcp_server_lists_the_tools(app):
    with urllib.request.urlopen(app[0] + "gradio_api/mcp/schema", timeout=30) as response:
        tools = {tool["name"] for tool in json.load(response)}
    assert {"validate_selfies", "create_identity", "generate", "generate_pack", "list_styles"} <= tools


def test_list_styles(client):
    styles = client.predict(api_name="/list_styles")
    assert len(styles) >= 10
    assert {"id", "name", "description"} <= set(styles[0])


def test_validate_selfies_reports_each_photo(client, obama, faces_dir):
    group = str(faces_dir / "group" / "deepface_couple.jpg")
    report = client.predict(selfies=files([*obama, group]), api_name="/validate_selfies")
    by_file = {s["file"]: s for s in report["selfies"]}
    assert all(by_file[Path(p).name]["accepted"] for p in obama)
    assert "multiple_faces" in [i["code"] for i in by_file["deepface_couple.jpg"]["issues"]]
    assert report["accepted"] == len(obama) and report["ready"] is True


def test_corrupt_upload_fails_alone_and_server_keeps_serving(client, obama, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    report = client.predict(selfies=files([obama[0], str(bad)]), api_name="/validate_selfies")
    by_file = {s["file"]: s for s in report["selfies"]}
    assert by_file["broken.jpg"]["issues"][0]["code"] == "unreadable_image"
    assert by_file[Path(obama[0]).name]["accepted"]
    assert client.predict(api_name="/list_styles")


def test_selfies_to_headshots_and_pack(client, obama):
    identity, summary = client.predict(selfies=files(obama), method="instantid", api_name="/create_identity")
    assert identity.endswith(".safetensors") and summary["method"] == "instantid"
    gallery, info = client.predict(
        identity=gradio_client.handle_file(identity), style="corporate-grey", num_images=2, seed=123,
        api_name="/generate",
    )
    assert len(gallery) == 2 and sorted(info["seeds"]) == [123, 124]
    assert len(info["likeness"]) == 2 and info["style"] == "corporate-grey"
    again, info2 = client.predict(
        identity=gradio_client.handle_file(identity), style="corporate-grey", num_images=2, seed=123,
        api_name="/generate",
    )
    same = {i["seed"]: pixels(g["image"]) for i, g in zip(info["images"], gallery, strict=True)}
    same2 = {i["seed"]: pixels(g["image"]) for i, g in zip(info2["images"], again, strict=True)}
    assert same == same2, "same seed must give the same images"

    zip_path, pack_gallery, pack_info = client.predict(
        identity=gradio_client.handle_file(identity), styles=["corporate-grey", "outdoor-natural"],
        images_per_style=1, seed=5, linkedin=False, api_name="/generate_pack",
    )
    with zipfile.ZipFile(zip_path) as archive:
        pngs = sorted(n for n in archive.namelist() if n.endswith(".png"))
    assert pngs == ["corporate-grey_5.png", "outdoor-natural_5.png"]
    assert len(pack_gallery) == 2 and pack_info["styles"] == ["corporate-grey", "outdoor-natural"]


def test_bad_identity_file_is_refused_clearly(client, tmp_path):
    bad = tmp_path / "identity.safetensors"
    bad.write_bytes(b"\x80\x04\x95 pickle bytes, not an identity")
    with pytest.raises(gradio_client.exceptions.AppError, match=r"(?i)identity file"):
        client.predict(identity=gradio_client.handle_file(str(bad)), style="corporate-grey", api_name="/generate")
    assert client.predict(api_name="/list_styles")


def test_lora_identity_through_the_api(client, obama):
    identity, summary = client.predict(selfies=files(obama), method="lora", seed=1, api_name="/create_identity")
    assert summary["method"] == "lora" and summary["has_lora"] is True
    assert summary["steps_run"] > 0 and summary["final_loss"] > 0 and summary["train_seconds"] > 0
    plain, _ = client.predict(selfies=files(obama), method="instantid", api_name="/create_identity")

    def render(path, **extra):
        gallery, _ = client.predict(identity=gradio_client.handle_file(path), style="corporate-grey",
                                    num_images=1, seed=9, api_name="/generate", **extra)
        return pixels(gallery[0]["image"])

    with_lora = render(identity)
    assert with_lora == render(identity), "a LoRA render is deterministic"
    assert with_lora != render(plain), "the LoRA changes the output"
    assert render(identity, lora_strength=0.0) != with_lora, "the LoRA strength is applied"


def test_refine_more_like_this_and_regenerate_through_the_api(client, obama, tmp_path):
    from PIL import Image

    from headshot import disclosure

    identity, _ = client.predict(selfies=files(obama[:2]), method="instantid", api_name="/create_identity")
    gallery, _ = client.predict(
        identity=gradio_client.handle_file(identity), style="corporate-grey", num_images=1, seed=77, steps=2,
        api_name="/generate",
    )
    source = gallery[0]["image"]
    assert json.loads(disclosure.read_png_metadata(source)["headshot:settings"])["seed"] == 77

    refined_gallery, refined, refined_info = client.predict(
        identity=gradio_client.handle_file(identity), image=gradio_client.handle_file(source), api_name="/refine",
    )
    with Image.open(source) as small, Image.open(refined) as big:
        assert big.size == (2 * small.width, 2 * small.height)
    settings = json.loads(disclosure.read_png_metadata(refined)["headshot:settings"])
    assert settings["kind"] == "refine" and settings["seed"] == 77 and settings["steps"] == 2
    assert refined_info["kind"] == "refine" and len(refined_gallery) == 1

    like, like_info = client.predict(
        identity=gradio_client.handle_file(identity), image=gradio_client.handle_file(source), count=2,
        api_name="/more_like_this",
    )
    assert len(like) == 2 and len(set(like_info["seeds"])) == 2 and like_info["kind"] == "more_like_this"

    again, again_info = client.predict(
        identity=gradio_client.handle_file(identity), image=gradio_client.handle_file(source),
        api_name="/regenerate",
    )
    assert len(again) == 1 and again_info["seeds"] != [77]

    plain = tmp_path / "screenshot.png"
    with Image.open(source) as image:
        image.save(plain)  # the same pixels without the app's settings
    with pytest.raises(gradio_client.exceptions.AppError, match="not a headshot made by this app"):
        client.predict(identity=gradio_client.handle_file(identity), image=gradio_client.handle_file(str(plain)),
                       api_name="/refine")
