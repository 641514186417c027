"""Likeness you can trust: the independent judge, the copy-paste score, face-region control, and a
LoRA that works with InstantID (tiny profile, CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchmarks import likeness
from headshot import imaging, studio, styles
from headshot.errors import InvalidRequest
from headshot.gpu import instantid, lora, pipeline, tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

D = 128  # the faces-small pack's embedding size


@pytest.fixture(scope="module")
def instantid_identity(obama, analyzer):
    return studio.create_identity(obama[:3], "instantid", analyzer=analyzer).identity


@pytest.fixture(scope="module")
def lora_identity(obama, analyzer):
    """A LoRA identity made with the default (tiny profile) settings."""
    return studio.create_identity(obama[:3], "lora", analyzer=analyzer).identity


def _render(identity, **options) -> tuple[pipeline.RenderRequest, np.ndarray]:
    request = studio.build_request(
        identity, styles.get_style("corporate-grey"), studio.GenerateOptions(steps=4, **options), 7, 1
    )
    return request, np.asarray(pipeline.render(request)[0], dtype=np.float32)


# --------------------------------------------------------------------------------------
# The judge and the scores
# --------------------------------------------------------------------------------------


def test_copy_paste_is_withanyones_score():
    ref, target = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    dist = likeness.Judge.distance
    assert likeness.copy_paste(ref, [ref], [target], dist) == pytest.approx(1.0)  # the selfie pasted
    assert likeness.copy_paste(target, [ref], [target], dist) == pytest.approx(-1.0)  # the held-out photo
    assert likeness.copy_paste((ref + target) / 2, [ref], [target], dist) == pytest.approx(0.0)
    assert likeness.copy_paste(ref, [], [target], dist) is None
    angle = likeness.angular_distance
    assert angle(ref, target) == pytest.approx(np.pi / 2) and angle(ref, ref) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def judge():
    pytest.importorskip("dlib")
    return likeness.Judge()


def test_the_judge_verifies_held_out_photos(judge, faces_dir, tmp_path, capsys):
    """Three people of the project's photos (the whole folder: docs/performance.md's figure)."""
    for name in ("obama", "biden", "faceapi_amy"):
        (tmp_path / name).symlink_to(faces_dir / "same_person" / name)
    stats = likeness.main(["--check-judge", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"judge_accuracy={stats['judge_accuracy']:.4f}"
    assert stats["people"] == 3 and stats["same_pairs"] == 6 + 1 + 10
    assert stats["judge_accuracy"] >= 0.95 and stats["other_rejected"] == stats["other_pairs"]


def test_the_judge_finds_no_face_in_noise(judge):
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    assert judge.embed(Image.fromarray(noise)) is None


# --------------------------------------------------------------------------------------
# Face-region control
# --------------------------------------------------------------------------------------


def test_face_region_mask_is_the_face_box():
    kps = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], dtype=np.float32)
    mask = np.asarray(imaging.face_region_mask(100, 120, kps)) > 127
    assert all(mask[int(y), int(x)] for x, y in kps)  # every keypoint inside
    ys, xs = np.nonzero(mask)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert 20 * 2.2 <= width <= 20 * 2.2 * 1.3 and 20 * 3.1 <= height <= 20 * 3.1 * 1.3
    assert not mask[0, 0] and not mask[-1, -1]
    edge = np.asarray(imaging.face_region_mask(100, 120, kps - 45)) > 127  # clipped at the canvas
    assert edge[0, 0] and edge.mean() < mask.mean()


def test_identitynet_residuals_are_masked():
    net = instantid.load_identitynet(tiny.ensure_tiny_models(D)["instantid"])
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1.0
    wrapped = instantid.FaceTokenControlNet(net, torch.zeros(1, 16, 64), mask)
    residual = torch.ones(2, 4, 8, 8)
    masked = wrapped._masked(residual)
    assert masked.shape == residual.shape
    assert masked[..., 0, 0].eq(0).all() and masked[..., 4, 4].eq(1).all()
    assert torch.equal(
        instantid.mask_tensor(
            imaging.face_region_mask(64, 64, np.array([[28, 28], [36, 28], [32, 32], [29, 36], [35, 36]])),
            64,
            64,
        ).unique(),
        torch.tensor([0.0, 1.0]),
    )


def test_face_region_only_keeps_the_identity_off_the_backdrop(instantid_identity):
    """Two identities (same keypoints), one seed: outside the face box their renders differ less with
    face-region control on than off; and on and off give different images."""
    other = dataclasses.replace(instantid_identity)
    vector = np.random.default_rng(1).standard_normal(instantid_identity.embedding.size).astype(np.float32)
    other.embedding = vector / np.linalg.norm(vector)
    outside, inside = {}, {}
    images = {}
    for on in (True, False):
        request, first = _render(instantid_identity, face_region_only=on)
        _, second = _render(other, face_region_only=on)
        assert (request.face_mask is not None) == on
        kps = studio.placed_keypoints(instantid_identity, request.width, request.height)
        face = np.asarray(imaging.face_region_mask(request.width, request.height, kps)) > 127
        diff = np.abs(first - second).mean(axis=2)
        outside[on], inside[on] = diff[~face].mean(), diff[face].mean()
        images[on] = first
    assert np.abs(images[True] - images[False]).mean() > 1.0  # on and off: different images
    assert outside[True] < 0.9 * outside[False]
    assert outside[True] / inside[True] < 0.5 * outside[False] / inside[False]


def test_face_region_only_is_on_by_default_and_checked():
    assert studio.GenerateOptions().face_region_only is True
    import inspect

    from headshot.web import ui

    for fn in (ui.generate, ui.generate_pack):
        assert inspect.signature(fn).parameters["face_region_only"].default is True


def test_a_face_mask_must_be_an_image(instantid_identity):
    request = studio.build_request(
        instantid_identity, styles.get_style("corporate-grey"), studio.GenerateOptions(), 1, 1
    )
    request.face_mask = np.ones((8, 8))
    from headshot.gpu import recipe

    with pytest.raises(InvalidRequest, match="face mask"):
        recipe.check_request(request)


# --------------------------------------------------------------------------------------
# LoRA and InstantID together
# --------------------------------------------------------------------------------------


def test_a_default_lora_identity_renders_differently_from_instantid(lora_identity, instantid_identity):
    _, with_lora = _render(lora_identity)
    _, plain = _render(instantid_identity)
    assert np.abs(with_lora - plain).mean() > 1.0
    # ...and not only through its prompt and strengths: the trained LoRA itself moves the image.
    same = {"identity_strength": 0.8, "identitynet_strength": 0.8}
    _, on = _render(lora_identity, **same)
    _, off = _render(lora_identity, lora_strength=0.0, **same)
    assert np.abs(on - off).mean() > 1.0


def test_a_lora_identity_uses_its_own_instantid_strengths(lora_identity):
    style = styles.get_style("corporate-grey")
    scales = lora_identity.lora_config["instantid_scales"]
    request = studio.build_request(lora_identity, style, studio.GenerateOptions(), 1, 1)
    assert (request.identity_strength, request.identitynet_strength) == (
        scales["identity_strength"],
        scales["identitynet_strength"],
    )
    assert request.identity_strength < style.identity_strength  # not stacked at InstantID-only strength
    off = studio.build_request(lora_identity, style, studio.GenerateOptions(lora_strength=0.0), 1, 1)
    assert off.identity_strength == style.identity_strength  # LoRA off: InstantID alone
    mine = studio.build_request(lora_identity, style, studio.GenerateOptions(identity_strength=0.3), 1, 1)
    assert mine.identity_strength == 0.3  # the user's value wins
    old = dataclasses.replace(lora_identity, lora_config={"token": "ohwx"})  # a file from before
    assert (
        studio.build_request(old, style, studio.GenerateOptions(), 1, 1).identity_strength
        == (studio.LORA_INSTANTID_SCALES["identity_strength"])
    )
    defaults = lora.LoraSettings()
    assert {
        "identity_strength": defaults.render_identity_strength,
        "identitynet_strength": defaults.render_identitynet_strength,
    } == studio.LORA_INSTANTID_SCALES


def test_training_with_the_face_adapter_active(obama, analyzer, instantid_identity):
    """A setting: the face adapter conditions training; the LoRA lands on the UNet blocks only and the
    UNet's face adapter (projection, processors, scale) is as it was afterwards."""
    loaded = pipeline.ready_models(embedding_size=D)
    unet = loaded.pipe.unet
    checked = studio.validate(obama[:3], analyzer)
    images = [s.image for s in checked.accepted]
    bboxes = [s.face.bbox for s in checked.accepted]
    processors = {k: type(v) for k, v in unet.attn_processors.items()}
    scales = [list(p.scale) for p in unet.attn_processors.values() if hasattr(p, "scale")]
    base = lora.LoraSettings.for_profile("tiny", steps=3, seed=3)
    plain = pipeline.train_identity_lora(images, bboxes, base)
    adapted_settings = dataclasses.replace(base, face_adapter_scale=0.8)
    with pytest.raises(InvalidRequest, match="face embedding"):
        pipeline.train_identity_lora(images, bboxes, adapted_settings)
    adapted = pipeline.train_identity_lora(
        images, bboxes, adapted_settings, face_embedding=instantid_identity.embedding
    )
    assert adapted.state_dict.keys() == plain.state_dict.keys()
    assert all(
        k.startswith(("unet.down_blocks.", "unet.mid_block.", "unet.up_blocks.")) for k in adapted.state_dict
    )
    assert any(not torch.equal(adapted.state_dict[k], plain.state_dict[k]) for k in plain.state_dict)
    assert adapted.config["face_adapter_scale"] == 0.8 and plain.config["face_adapter_scale"] == 0.0
    assert unet.encoder_hid_proj is not None and unet.config.encoder_hid_dim_type == "ip_image_proj"
    assert {k: type(v) for k, v in unet.attn_processors.items()} == processors
    assert [list(p.scale) for p in unet.attn_processors.values() if hasattr(p, "scale")] == scales
