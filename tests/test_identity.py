"""Identity: building from selfies (mean embedding, best reference, crop) and the safetensors identity file."""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from headshot import config, errors, imaging
from headshot.faces import identity

PACK = "faces-small"
BASE = "tiny/sdxl-base"
D = 128


# --------------------------------------------------------------------------------------
# Hand-made faces (the same fields as faces.Face / validation.AcceptedSelfie)
# --------------------------------------------------------------------------------------


@dataclass
class FakeFace:
    bbox: np.ndarray
    kps: np.ndarray
    embedding: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    score: float = 0.9

    @property
    def size(self) -> float:
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))


@dataclass
class FakeSelfie:
    name: str
    image: Image.Image
    face: FakeFace


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def textured_image(seed: int = 0, side: int = 800) -> Image.Image:
    """Detail at several scales (upsampled noise plus fine noise), so blurring lowers sharpness."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).resize((side, side))
    fine = rng.integers(-40, 40, (side, side, 3))
    return Image.fromarray(np.clip(np.asarray(coarse, dtype=np.int32) + fine, 0, 255).astype(np.uint8))


def face_kps(bbox) -> np.ndarray:
    x0, y0, x1, y1 = bbox
    w, h = x1 - x0, y1 - y0
    rel = np.array([[0.3, 0.38], [0.7, 0.38], [0.5, 0.58], [0.35, 0.78], [0.65, 0.78]])
    return (rel * [w, h] + [x0, y0]).astype(np.float32)


def make_selfie(name, image, bbox, embedding, **pose) -> FakeSelfie:
    bbox = np.asarray(bbox, dtype=np.float32)
    return FakeSelfie(name, image, FakeFace(bbox, face_kps(bbox), embedding, **pose))


@pytest.fixture(scope="module")
def fake_identity() -> identity.Identity:
    rng = np.random.default_rng(1)
    base = rng.normal(size=D)
    selfies = [
        make_selfie(
            f"s{i}.jpg", textured_image(i), (250, 200, 550, 560), unit(base + 0.3 * rng.normal(size=D))
        )
        for i in range(3)
    ]
    return identity.build_identity(selfies, face_pack=PACK, base_model=BASE)


def lora_tensors() -> dict[str, torch.Tensor]:
    """A small peft-style LoRA state dict in three dtypes (bf16 cannot be represented in numpy)."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, dtype in enumerate((torch.bfloat16, torch.float16, torch.float32)):
        base = f"unet.down_blocks.{i}.attentions.0.transformer_blocks.0.attn1.to_q"
        out[f"{base}.lora_A.weight"] = torch.randn(4, 32, generator=g).to(dtype)
        out[f"{base}.lora_B.weight"] = torch.randn(32, 4, generator=g).to(dtype)
    return out


@pytest.fixture()
def lora_identity(fake_identity) -> identity.Identity:
    return replace(
        fake_identity,
        method="lora",
        lora=lora_tensors(),
        lora_config={
            "r": 4,
            "lora_alpha": 4,
            "target_modules": ["to_q"],
            "token": "ohwx",
            "class_word": "man",
        },
    )


def load(data, **kw):
    kw.setdefault("face_pack", PACK)
    kw.setdefault("base_model", BASE)
    return identity.load_identity(data, **kw)


def parts(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of an identity file, to make altered copies."""
    size = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + size])["__metadata__"]
    return st_load(data), metadata


def altered(data: bytes, tensors=None, drop=(), **metadata_changes) -> bytes:
    original, metadata = parts(data)
    original.update(tensors or {})
    for name in drop:
        original.pop(name)
    metadata.update(metadata_changes)
    metadata = {k: v for k, v in metadata.items() if v is not None}
    return st_save(original, metadata=metadata)


def refused(data, match: str | None = None, **kw) -> str:
    with pytest.raises(errors.IdentityFileError) as info:
        load(data, **kw)
    message = str(info.value)
    assert message.startswith(("This identity file ", "This identity file's LoRA ")), message
    assert info.value.code == "invalid_identity"
    if match is not None:
        assert match in message, message
    return message


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


def test_mean_embedding_is_normalised_mean_of_normalised():
    rng = np.random.default_rng(0)
    raw = [rng.normal(size=D) * scale for scale in (0.5, 3.0, 10.0)]  # different norms count equally
    mean = identity.mean_embedding(raw)
    assert mean.dtype == np.float32 and mean.shape == (D,)
    assert np.linalg.norm(mean) == pytest.approx(1.0, abs=1e-6)
    expected = sum(v / np.linalg.norm(v) for v in raw)
    assert np.allclose(mean, expected / np.linalg.norm(expected), atol=1e-6)
    with pytest.raises(ValueError):
        identity.mean_embedding([np.full(D, np.nan)])
    with pytest.raises(ValueError):
        identity.mean_embedding([raw[0], -raw[0]])


def test_build_identity_fields(fake_identity):
    ident = fake_identity
    assert ident.method == "instantid" and ident.face_pack == PACK and ident.base_model == BASE
    assert ident.selfie_count == 3 and ident.embedding_size == D and ident.lora is None
    assert ident.reference.size == (identity.REFERENCE_SIZE, identity.REFERENCE_SIZE)
    assert ident.reference.mode == "RGB"
    assert ident.keypoints.dtype == np.float32 and ident.keypoints.shape == (5, 2)
    assert ident.keypoints.min() >= 0.0 and ident.keypoints.max() <= 1.0
    # face_fraction 0.4: the eyes (0.4 of the face box apart) are ~0.16 of the crop apart, centred
    eye_gap = ident.keypoints[1, 0] - ident.keypoints[0, 0]
    assert eye_gap == pytest.approx(0.4 * 0.4, abs=0.01)
    assert ident.keypoints[2, 0] == pytest.approx(0.5, abs=0.01)


def test_build_identity_needs_selfies():
    with pytest.raises(errors.NotEnoughSelfies):
        identity.build_identity([], face_pack=PACK, base_model=BASE)


def test_reference_keypoints_point_at_the_same_pixels():
    img = Image.new("RGB", (900, 700), (90, 90, 90))
    bbox = (400, 150, 600, 400)
    kps = face_kps(bbox)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
    px = img.load()
    for (x, y), colour in zip(kps, colours, strict=True):
        for dx in range(-6, 7):
            for dy in range(-6, 7):
                px[int(x) + dx, int(y) + dy] = colour
    face = FakeFace(np.array(bbox, dtype=np.float32), kps, unit(np.ones(D)))
    crop, normalised = identity.reference_crop(img, face)
    for (u, v), colour in zip(normalised, colours, strict=True):
        got = crop.getpixel((int(u * crop.width), int(v * crop.height)))
        assert np.abs(np.array(got) - colour).max() < 40


def test_best_reference_prefers_frontal_sharp_large_face():
    img = textured_image(3)
    bbox = (250, 200, 550, 560)
    emb = unit(np.ones(D))
    best = make_selfie("best.jpg", img, bbox, emb, yaw=2.0, pitch=-3.0)
    turned = make_selfie("turned.jpg", img, bbox, emb, yaw=28.0, pitch=12.0)
    blurred = make_selfie(
        "blurred.jpg", img.filter(ImageFilter.GaussianBlur(6)), bbox, emb, yaw=2.0, pitch=-3.0
    )
    small_img = img.resize((240, 240))
    small = make_selfie("small.jpg", small_img, np.array(bbox) * 0.3, emb, yaw=2.0, pitch=-3.0)

    scores = {s.name: identity.reference_scores(s.image, s.face) for s in (best, turned, blurred, small)}
    assert scores["turned.jpg"]["frontal"] < scores["best.jpg"]["frontal"]
    assert scores["blurred.jpg"]["sharpness"] < scores["best.jpg"]["sharpness"] - 0.2
    assert scores["small.jpg"]["size"] < scores["best.jpg"]["size"]
    for order in (
        [best, turned, blurred, small],
        [small, blurred, turned, best],
        [turned, best, small, blurred],
    ):
        assert order[identity.best_reference(order)] is best
    # the identity's reference is the best selfie's crop
    ident = identity.build_identity([turned, blurred, best, small], face_pack=PACK, base_model=BASE)
    expected, _ = identity.reference_crop(best.image, best.face)
    assert np.array_equal(np.asarray(ident.reference), np.asarray(expected))


# --------------------------------------------------------------------------------------
# Real faces (the small face pack on real photos)
# --------------------------------------------------------------------------------------


def _real_selfie(analyzer, path: Path, image: Image.Image | None = None) -> FakeSelfie:
    img = imaging.load_image(path) if image is None else image
    face = analyzer.embed_largest(img)
    assert face is not None, path
    return FakeSelfie(path.name, img, face)


@pytest.fixture(scope="module")
def p01_selfies(analyzer, faces_dir) -> list[FakeSelfie]:
    """Three photos of one person, analysed once for the tests below."""
    person = faces_dir / "same_person" / "deepface_p01"
    return [_real_selfie(analyzer, person / name) for name in ("img11.jpg", "img5.jpg", "img10.jpg")]


def test_real_mean_embedding_closer_to_selfies_than_intruder(analyzer, faces_dir, p01_selfies):
    selfies = p01_selfies
    intruder = _real_selfie(analyzer, faces_dir / "same_person" / "deepface_p02" / "img46.jpg")
    ident = identity.build_identity(selfies, face_pack=analyzer.pack_id, base_model=BASE)
    assert ident.embedding_size == analyzer.embedding_size
    assert np.linalg.norm(ident.embedding) == pytest.approx(1.0, abs=1e-5)
    to_mean = [float(np.dot(ident.embedding, s.face.embedding)) for s in selfies]
    to_intruder = [float(np.dot(s.face.embedding, intruder.face.embedding)) for s in selfies]
    assert min(to_mean) > max(to_intruder)
    assert min(to_mean) >= analyzer.same_person_threshold
    assert float(np.dot(ident.embedding, intruder.face.embedding)) < analyzer.same_person_threshold
    # the mean represents each selfie better than the selfies represent each other on average
    pairwise = [
        float(np.dot(a.face.embedding, b.face.embedding)) for a in selfies for b in selfies if a is not b
    ]
    assert np.mean(to_mean) > np.mean(pairwise)
    # the reference crop is a face the analyzer finds again, with the keypoints where it finds them
    again = analyzer.embed_largest(ident.reference)
    assert again is not None
    found = np.asarray(again.kps) / identity.REFERENCE_SIZE
    assert np.abs(found - ident.keypoints).max() < 0.05


def test_real_best_reference_prefers_the_sharp_large_original(analyzer, p01_selfies):
    original = p01_selfies[0]  # 600x800, a large face
    blurred = _real_selfie(analyzer, Path("blurred.jpg"), original.image.filter(ImageFilter.GaussianBlur(5)))
    small = _real_selfie(
        analyzer,
        Path("small.jpg"),
        original.image.resize((original.image.width // 4, original.image.height // 4)),
    )
    selfies = [blurred, small, original]
    scores = {s.name: identity.reference_scores(s.image, s.face) for s in selfies}
    assert scores["blurred.jpg"]["sharpness"] < scores[original.name]["sharpness"]
    assert scores["small.jpg"]["size"] < scores[original.name]["size"]
    assert selfies[identity.best_reference(selfies)] is original


def test_real_accepted_selfies_from_validation(analyzer, faces_dir):
    from headshot.faces import validation

    person = faces_dir / "same_person" / "deepface_p03"
    result = validation.validate_selfies(
        [person / n for n in ("img8.jpg", "img50.jpg", "img51.jpg")], analyzer
    )
    assert result.accepted, result.report
    ident = identity.build_identity(result.accepted, face_pack=analyzer.pack_id, base_model=BASE)
    data = identity.identity_to_bytes(ident)
    back = identity.load_identity(data, face_pack=analyzer.pack_id, base_model=BASE)
    assert np.array_equal(back.embedding, ident.embedding)


# --------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------


def test_round_trip_is_exact(fake_identity, tmp_path):
    path = identity.save_identity(fake_identity, tmp_path / "sub" / "me.safetensors")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    for source in (path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes())):
        back = load(source)
        assert back.embedding.dtype == np.float32 and np.array_equal(back.embedding, fake_identity.embedding)
        assert back.keypoints.dtype == np.float32 and np.array_equal(back.keypoints, fake_identity.keypoints)
        assert np.array_equal(np.asarray(back.reference), np.asarray(fake_identity.reference))
        assert (back.method, back.face_pack, back.base_model, back.selfie_count) == (
            "instantid",
            PACK,
            BASE,
            3,
        )
        assert back.lora is None and back.lora_config is None
        assert back.created == fake_identity.created
    tensors, metadata = parts(path.read_bytes())
    assert set(tensors) == {"face_embedding", "face_keypoints", "reference_crop"}
    assert tensors["reference_crop"].dtype == torch.uint8
    assert tensors["reference_crop"].shape == (512, 512, 3)
    assert metadata["format"] == "headshot-identity" and metadata["format_version"] == "1"
    assert metadata["embedding_size"] == str(D) and metadata["selfie_count"] == "3"
    assert "lora_config" not in metadata
    assert all(isinstance(v, str) for v in metadata.values())


def test_instantid_identity_loads_with_another_base_model(fake_identity):
    data = identity.identity_to_bytes(fake_identity)
    assert load(data, base_model="another/sdxl").base_model == BASE


def test_lora_round_trip_is_bit_exact(lora_identity):
    data = identity.identity_to_bytes(lora_identity)
    back = load(data)
    assert back.method == "lora" and back.lora_config == lora_identity.lora_config
    assert set(back.lora) == set(lora_identity.lora)
    for name, tensor in lora_identity.lora.items():
        assert back.lora[name].dtype == tensor.dtype
        assert torch.equal(back.lora[name].view(torch.uint8), tensor.view(torch.uint8)), name
    tensors, metadata = parts(data)
    assert sum(n.startswith("lora.") for n in tensors) == 6
    assert json.loads(metadata["lora_config"])["r"] == 4


def test_summary_and_keypoint_view(lora_identity, fake_identity):
    summary = identity.identity_summary(lora_identity)
    json.dumps(summary)
    assert summary["method"] == "lora" and summary["has_lora"] is True
    assert summary["embedding_size"] == D and summary["selfie_count"] == 3
    assert summary["lora_config"]["r"] == 4
    assert identity.identity_summary(fake_identity)["has_lora"] is False

    view = identity.reference_with_keypoints(fake_identity)
    assert view.size == fake_identity.reference.size
    ref = np.asarray(fake_identity.reference)
    out = np.asarray(view)
    u, v = (fake_identity.keypoints[0] * identity.REFERENCE_SIZE).astype(int)
    assert tuple(out[v, u]) == (255, 0, 0)  # the left eye dot is red
    assert np.array_equal(out[:40, :40], ref[:40, :40])  # away from the face the picture is unchanged
    assert 0 < (out != ref).any(axis=2).mean() < 0.1


# --------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------


def test_foreign_face_pack_refused(fake_identity):
    data = identity.identity_to_bytes(fake_identity)
    message = refused(data, face_pack="antelopev2")
    assert message == (
        "This identity file was made with the face models 'faces-small'; this app uses 'antelopev2'. "
        "Create it again from your selfies."
    )


def test_foreign_base_model_refused_for_lora(lora_identity):
    data = identity.identity_to_bytes(lora_identity)
    refused(
        data,
        "trained on the base model 'tiny/sdxl-base'; this app uses 'other/base'",
        base_model="other/base",
    )


def test_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for data in (pickle.dumps(Payload(), protocol=2), pickle.dumps(Payload(), protocol=5)):
        refused(data, "pickle")
    buffer = io.BytesIO()
    torch.save({"face_embedding": torch.zeros(D)}, buffer)
    refused(buffer.getvalue(), "pickle")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n" * 10, "not a safetensors"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "is a picture"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"[1, 2, 3]      " + b"\x00" * 8, "not a safetensors"),
        (b"\xff" * 8 + b"{}", "not a safetensors"),
    ],
)
def test_not_safetensors_refused(data, match):
    refused(data, match)


def test_truncated_refused(fake_identity):
    data = identity.identity_to_bytes(fake_identity)
    for cut in (len(data) - 1, len(data) - 1000, len(data) // 2, 100, 9):
        refused(data[:cut])


def test_missing_path_refused(tmp_path):
    refused(tmp_path / "nope.safetensors", "was not found")


def test_oversize_refused(fake_identity, tmp_path, monkeypatch):
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as fh:  # sparse: refused from its size, never read
        fh.truncate(config.MAX_IDENTITY_BYTES + 1)
    refused(big, "too large")
    refused(b"\x00" * (config.MAX_IDENTITY_BYTES + 1), "too large")
    data = identity.identity_to_bytes(fake_identity)
    monkeypatch.setattr(config, "MAX_IDENTITY_BYTES", len(data) - 1)
    refused(data, "too large")
    refused(io.BytesIO(data), "too large")
    with pytest.raises(errors.IdentityFileError, match="over the"):
        identity.identity_to_bytes(fake_identity)


def _emb(values) -> torch.Tensor:
    return torch.as_tensor(values)


BAD_TENSORS = [
    ({"face_embedding": torch.ones(2, D // 2) / np.sqrt(D)}, "wrong type or shape"),
    ({"face_embedding": torch.ones(D, dtype=torch.float64) / np.sqrt(D)}, "wrong type or shape"),
    ({"face_embedding": (torch.ones(D) / np.sqrt(D)).half()}, "wrong type or shape"),
    ({"face_embedding": (torch.ones(D) / np.sqrt(D)).bfloat16()}, "wrong type or shape"),
    ({"face_embedding": torch.ones(D + 1) / np.sqrt(D + 1)}, f"has {D + 1} values but its metadata says {D}"),
    ({"face_embedding": torch.full((D,), float("nan"))}, "NaN"),
    ({"face_embedding": torch.ones(D)}, "not normalised"),
    ({"face_keypoints": torch.full((4, 2), 0.5)}, "keypoints of the wrong type or shape"),
    ({"face_keypoints": torch.full((5, 2), 0.5, dtype=torch.float64)}, "keypoints of the wrong type"),
    ({"face_keypoints": torch.full((5, 2), 1.5)}, "outside"),
    ({"face_keypoints": torch.full((5, 2), float("inf"))}, "outside"),
    ({"reference_crop": torch.zeros(512, 512, dtype=torch.uint8)}, "reference picture of the wrong"),
    ({"reference_crop": torch.zeros(512, 512, 4, dtype=torch.uint8)}, "reference picture of the wrong"),
    ({"reference_crop": torch.zeros(512, 512, 3)}, "reference picture of the wrong"),
    ({"reference_crop": torch.zeros(8, 8, 3, dtype=torch.uint8)}, "8x8"),
    ({"extra": torch.zeros(3)}, "unexpected tensor 'extra'"),
    ({"lora.x.lora_A.weight": torch.zeros(4, 8)}, "InstantID identity but holds LoRA"),
]


@pytest.mark.parametrize(("tensors", "match"), BAD_TENSORS)
def test_bad_tensors_refused(fake_identity, tensors, match):
    refused(altered(identity.identity_to_bytes(fake_identity), tensors), match)


def test_missing_tensor_refused(fake_identity):
    refused(
        altered(identity.identity_to_bytes(fake_identity), drop=["face_keypoints"]), "no 'face_keypoints'"
    )


def test_embedding_size_must_match_pack(fake_identity):
    data = identity.identity_to_bytes(fake_identity)
    assert load(data, embedding_size=D).embedding_size == D
    refused(
        data,
        "has 128-value face embeddings; the face models 'faces-small' make 512-value",
        embedding_size=512,
    )
    refused(altered(data, embedding_size="512"), "metadata says 512")


BAD_METADATA = [
    ({"format": None}, "not a Headshot Studio identity"),
    ({"format": "something-else"}, "not a Headshot Studio identity"),
    ({"format_version": "2"}, "newer version"),
    ({"format_version": "0"}, "old format 0"),
    ({"format_version": "one"}, "unknown format version"),
    ({"method": "dreambooth"}, "unknown method"),
    ({"face_pack": None}, "face models ''"),
    ({"selfie_count": "0"}, "'selfie_count'"),
    ({"selfie_count": "-3"}, "'selfie_count'"),
    ({"embedding_size": "lots"}, "'embedding_size'"),
    ({"lora_config": "[1, 2]"}, "lora_config"),
]


@pytest.mark.parametrize(("changes", "match"), BAD_METADATA)
def test_bad_metadata_refused(fake_identity, changes, match):
    refused(altered(identity.identity_to_bytes(fake_identity), **changes), match)


def test_safetensors_without_metadata_refused():
    refused(st_save({"face_embedding": torch.ones(D) / np.sqrt(D)}), "not a Headshot Studio identity")


def _lora_file(lora_identity, lora: dict[str, torch.Tensor], config_changes=None) -> bytes:
    data = identity.identity_to_bytes(lora_identity)
    tensors, metadata = parts(data)
    tensors = {n: t for n, t in tensors.items() if not n.startswith("lora.")}
    tensors.update({"lora." + n: t for n, t in lora.items()})
    if config_changes is not None:
        metadata["lora_config"] = json.dumps({**lora_identity.lora_config, **config_changes})
    return st_save(tensors, metadata=metadata)


def test_malformed_lora_refused(lora_identity):
    good = lora_tensors()
    a_name = next(n for n in good if n.endswith("lora_A.weight"))
    b_name = a_name.replace("lora_A", "lora_B")

    nan = dict(good)
    nan[a_name] = nan[a_name].clone()
    nan[a_name][0, 0] = float("nan")
    refused(_lora_file(lora_identity, nan), "NaN")

    mismatch = {**good, b_name: torch.zeros(32, 8, dtype=good[b_name].dtype)}
    refused(_lora_file(lora_identity, mismatch), "do not fit together")

    no_partner = {n: t for n, t in good.items() if n != b_name}
    refused(_lora_file(lora_identity, no_partner), "without its partner")

    no_down = {n: t for n, t in good.items() if n != a_name}
    refused(_lora_file(lora_identity, no_down), "without its partner")

    ints = {**good, a_name: torch.zeros(4, 32, dtype=torch.int32)}
    refused(_lora_file(lora_identity, ints), "int32")

    vector = {**good, a_name: torch.zeros(32)}
    refused(_lora_file(lora_identity, vector), "not a matrix")

    too_big = config.MAX_LORA_RANK + 1
    big = {**good, a_name: torch.zeros(too_big, 32), b_name: torch.zeros(32, too_big)}
    refused(_lora_file(lora_identity, big, {"r": None}), f"rank {too_big}")

    refused(_lora_file(lora_identity, {}), "no LoRA weights")
    refused(_lora_file(lora_identity, good, {"r": 8}), "not the configured 8")
    refused(_lora_file(lora_identity, good, {"r": None, "rank": 16}), "not the configured 16")
    not_attention = {
        "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 32),
        "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(32, 4),
    }
    refused(_lora_file(lora_identity, not_attention), "not on an attention projection")


KOHYA_DOWN = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
FOREIGN_LORAS = [  # one accepted format (diffusers, as lora.train_lora exports it); everything else is refused
    pytest.param(
        {KOHYA_DOWN: torch.zeros(4, 32), KOHYA_DOWN.replace("down", "up"): torch.zeros(32, 4)},
        "in another format (kohya name 'lora_unet_down_blocks_1",
        id="kohya",
    ),
    pytest.param(
        {
            "unet.m.to_q.lora_down.weight": torch.zeros(4, 32),
            "unet.m.to_q.lora_up.weight": torch.zeros(32, 4),
        },
        "kohya name",
        id="kohya-suffixes",
    ),
    pytest.param(
        {"unet.m.to_q.alpha": torch.tensor(4.0)}, "separate alpha tensor 'unet.m.to_q.alpha'", id="alpha"
    ),
    pytest.param(
        {
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 32),
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(32, 4),
        },
        "text-encoder weights",
        id="text-encoder",
    ),
    pytest.param(
        {
            "unet.m.to_q.lora.down.weight": torch.zeros(4, 32),
            "unet.m.to_q.lora.up.weight": torch.zeros(32, 4),
        },
        "old diffusers name",
        id="old-diffusers",
    ),
    pytest.param(
        {
            "unet.m.to_q.lora_A.default.weight": torch.zeros(4, 32),
            "unet.m.to_q.lora_B.default.weight": torch.zeros(32, 4),
        },
        "unexpected tensor 'unet.m.to_q.lora_",
        id="peft-adapter-name",
    ),
]


@pytest.mark.parametrize(("extra", "match"), FOREIGN_LORAS)
def test_foreign_lora_formats_refused_at_load(lora_identity, extra, match):
    """Refused when the file is read (the upload), with the reason, never later at Generate."""
    message = refused(_lora_file(lora_identity, {**lora_tensors(), **extra}), match)
    assert message.startswith("This identity file's LoRA ") and "diffusers layout" in message


def test_lora_check_is_the_one_used_before_a_render():
    good = lora_tensors()
    assert identity.check_lora_state_dict(good) == {"rank": 4, "layers": 3}
    paths = {k.removeprefix("unet.").rsplit(".lora_", 1)[0] for k in good}
    assert identity.check_lora_state_dict(good, dict.fromkeys(paths, (32, 32)))["layers"] == 3
    with pytest.raises(errors.IdentityFileError, match="does not fit the base model"):
        identity.check_lora_state_dict(good, dict.fromkeys(paths, (64, 64)))
    with pytest.raises(errors.IdentityFileError, match="that the base model does not have"):
        identity.check_lora_state_dict(good, {})


def test_save_refuses_inconsistent_identity(fake_identity):
    with pytest.raises(errors.IdentityFileError):
        identity.identity_to_bytes(replace(fake_identity, embedding=np.ones(D, dtype=np.float32)))
    with pytest.raises(errors.IdentityFileError):
        identity.identity_to_bytes(replace(fake_identity, method="lora", lora=None))
