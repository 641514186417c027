"""faces.pack and faces.analyzer: pack resolution, detection on real photos, tight crops, pose, embeddings."""

from __future__ import annotations

import math
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headshot import config, errors, imaging
from headshot.faces import analyzer as faces
from headshot.faces import pack as faces_pack

NO_FACE = [
    "no_face/dlib_eagle.jpg",
    "no_face/dlib_horses.jpg",
    "no_face/faceapi_white.png",
    "no_face/facenet_pilatus800.jpg",
    "no_face/insightface_mask_black.jpg",
    "no_face/skimage_chelsea.png",
]


def load(faces_dir: Path, rel: str) -> Image.Image:
    return imaging.load_image(faces_dir / rel)


def link_pack(src: Path, dest: Path, names: dict[str, str] | None = None) -> Path:
    """A pack folder of symlinks to the shared ONNX files (nothing is copied into the project)."""
    dest.mkdir(parents=True, exist_ok=True)
    for onnx in sorted(src.glob("*.onnx")):
        (dest / (names or {}).get(onnx.name, onnx.name)).symlink_to(onnx)
    return dest


# --------------------------------------------------------------------------------------
# Pack resolution
# --------------------------------------------------------------------------------------


def test_configured_pack_loads_with_its_thresholds(analyzer, face_pack):
    assert analyzer.pack_id == "faces-small"
    assert analyzer.embedding_size == 128
    assert analyzer.folder == face_pack.resolve()
    table = faces.PACK_THRESHOLDS["faces-small"]
    assert analyzer.same_person_threshold == table.same_person
    assert analyzer.duplicate_threshold == table.duplicate
    assert 0 < analyzer.same_person_threshold < analyzer.duplicate_threshold < 1
    assert faces.get_analyzer() is analyzer  # cached per process
    assert set(analyzer._app.models) == {"detection", "recognition"}  # nothing else is loaded


def test_any_folder_layout_loads_in_place(face_pack, tmp_path):
    # Not inside a `models` folder, a space in the name, ONNX files one level down.
    pack = link_pack(face_pack, tmp_path / "my face pack" / "inner")
    assert faces_pack.find_onnx_dir(tmp_path / "my face pack") == pack
    analyzer = faces.FaceAnalyzer(tmp_path / "my face pack")
    assert analyzer.pack_id == "faces-small"  # recognised by its recognizer file, whatever the folder name
    assert analyzer.embedding_size == 128


def test_damaged_model_file_is_a_clear_error(face_pack, tmp_path):
    pack = link_pack(face_pack, tmp_path / "damaged")
    (pack / "zz_broken.onnx").write_bytes(b"this is not an ONNX model")
    with pytest.raises(errors.FaceModelsUnavailable, match="could not be loaded"):
        faces.FaceAnalyzer(pack)


def test_unknown_pack_gets_default_thresholds(face_pack, tmp_path):
    pack = link_pack(face_pack, tmp_path / "custom", {"mobilefacenet_128d_dynbatch.onnx": "rec.onnx"})
    assert faces_pack.pack_id_for(pack) == "custom"
    assert faces.FaceAnalyzer(pack).same_person_threshold == faces.DEFAULT_THRESHOLDS.same_person


def test_folder_without_models_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.FaceModelsUnavailable, match="HEADSHOT_FACE_MODELS"):
        faces_pack.find_onnx_dir(tmp_path / "empty")
    with pytest.raises(errors.FaceModelsUnavailable, match="does not exist"):
        faces_pack.find_onnx_dir(tmp_path / "missing")
    (tmp_path / "two" / "a").mkdir(parents=True)
    (tmp_path / "two" / "b").mkdir()
    (tmp_path / "two" / "a" / "x.onnx").write_bytes(b"")
    (tmp_path / "two" / "b" / "y.onnx").write_bytes(b"")
    with pytest.raises(errors.FaceModelsUnavailable, match="several"):
        faces_pack.find_onnx_dir(tmp_path / "two")


def test_antelopev2_zip_is_unpacked_once_whatever_its_nesting(face_pack, tmp_path, monkeypatch):
    # The real zip unpacks to antelopev2/antelopev2/*.onnx with three more models we do not need.
    zip_path = tmp_path / "antelopev2.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.write(face_pack / "det_2.5g.onnx", "antelopev2/antelopev2/scrfd_10g_bnkps.onnx")
        zf.write(face_pack / "mobilefacenet_128d_dynbatch.onnx", "antelopev2/antelopev2/glintr100.onnx")
        zf.writestr("antelopev2/antelopev2/genderage.onnx", b"not needed")
        zf.writestr("../../evil.onnx", b"must not escape")
    calls = []

    def fake_download(dest_dir):
        calls.append(dest_dir)
        return zip_path

    monkeypatch.setenv("HEADSHOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HEADSHOT_FACE_MODELS", raising=False)
    monkeypatch.setattr(faces_pack, "_download_zip", fake_download)
    monkeypatch.setattr(config, "ANTELOPEV2_SHA256", {})  # a stand-in zip (digests: test_publish.py)
    pack_id, folder = faces_pack.resolve_pack()
    assert pack_id == "antelopev2"
    assert folder == tmp_path / "cache" / "face_packs" / "antelopev2"
    assert sorted(p.name for p in folder.iterdir()) == ["glintr100.onnx", "scrfd_10g_bnkps.onnx"]
    assert not (tmp_path / "evil.onnx").exists() and not (tmp_path / "cache" / "evil.onnx").exists()
    assert faces_pack.resolve_pack() == (pack_id, folder)
    assert len(calls) == 1  # downloaded once, then served from the cache
    assert faces.FaceAnalyzer(folder).pack_id == "antelopev2"


def test_offline_without_a_pack_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HEADSHOT_FACE_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the release URL must not be tried while HF_HUB_OFFLINE is set")

    monkeypatch.setattr(faces_pack.urllib.request, "urlopen", no_network)
    with pytest.raises(errors.FaceModelsUnavailable) as info:
        faces.get_analyzer()
    assert "HEADSHOT_FACE_MODELS" in str(info.value)
    assert info.value.code == "face_models_unavailable"


def test_cpu_provider_when_forced(monkeypatch):
    monkeypatch.setenv("HEADSHOT_DEVICE", "cpu")
    assert faces.onnx_providers() == ["CPUExecutionProvider"]


# --------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", NO_FACE)
def test_animals_landscapes_and_textures_are_not_faces(analyzer, faces_dir, rel):
    assert analyzer.detect(load(faces_dir, rel)) == []


@pytest.mark.parametrize("size", [(1, 1), (1, 3000), (3000, 2), (16, 16), (2000, 40)])
def test_degenerate_images_have_no_faces_and_do_not_fail(analyzer, size):
    assert analyzer.detect(Image.new("RGB", size, (120, 110, 100))) == []


def test_group_photo_faces_come_largest_first(analyzer, faces_dir):
    found = analyzer.detect(load(faces_dir, "group/facenet_pytorch_multiface.jpg"))
    assert len(found) == 6
    areas = [f.area for f in found]
    assert areas == sorted(areas, reverse=True)
    for f in found:
        assert f.embedding is not None and f.embedding.shape == (128,)
        assert f.kps.shape == (5, 2) and 0.5 <= f.score <= 1.0
    only_first = analyzer.detect(load(faces_dir, "group/facenet_pytorch_multiface.jpg"), embed=1)
    assert only_first[0].embedding is not None and all(f.embedding is None for f in only_first[1:])


def test_coordinates_are_in_original_pixels(analyzer, faces_dir):
    big = load(faces_dir, "same_person/deepface_p03/img49.jpg")  # 4352x2903, analysed at 1024
    half = big.resize((big.width // 2, big.height // 2), Image.Resampling.LANCZOS)
    a, b = analyzer.embed_largest(big), analyzer.embed_largest(half)
    assert a is not None and b is not None
    assert a.size > 600  # the face box of the full-size photo, not of the 1024 px analysis copy
    np.testing.assert_allclose(a.bbox, b.bbox * 2, atol=0.03 * a.size)
    np.testing.assert_allclose(a.kps, b.kps * 2, atol=0.03 * a.size)
    x0, y0, x1, y1 = a.bbox
    for x, y in a.kps:  # eyes, nose, mouth inside the face box
        assert x0 <= x <= x1 and y0 <= y <= y1


@pytest.mark.parametrize(
    "rel",
    [
        "same_person/faceapi_amy/amy1.png",
        "same_person/dlib_john_salley/000179_02159509.jpg",
        "hard/facenet_pytorch_aligned_kate_siegel.png",
    ],
)
def test_faces_filling_the_whole_frame_are_found(analyzer, faces_dir, rel):
    img = load(faces_dir, rel)
    found = analyzer.detect(img)
    assert len(found) == 1
    face = found[0]
    assert face.size >= 0.6 * min(img.size)
    assert -0.1 * img.width <= face.bbox[0] < face.bbox[2] <= 1.1 * img.width
    assert abs(face.roll) < 25


def test_upside_down_face_reads_upside_down(analyzer, faces_dir):
    img = load(faces_dir, "same_person/deepface_p01/img1.jpg")
    upright = analyzer.embed_largest(img)
    turned = analyzer.embed_largest(img.rotate(180))
    sideways = analyzer.embed_largest(img.rotate(90, expand=True))
    assert upright is not None and abs(upright.roll) < 15
    assert turned is None or abs(turned.roll) > 150
    assert sideways is not None and 60 < abs(sideways.roll) < 120


# --------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------


def test_embeddings_tell_people_apart(analyzer, faces_dir):
    def emb(rel):
        face = analyzer.embed_largest(load(faces_dir, rel))
        assert face is not None
        assert math.isclose(float(np.linalg.norm(face.embedding)), 1.0, rel_tol=1e-4)
        assert face.embedding.dtype == np.float32
        return face.embedding

    obama, obama1, biden = (
        emb("same_person/obama/obama.jpg"),
        emb("same_person/obama/obama1.jpg"),
        emb("same_person/biden/biden2.jpg"),
    )
    assert faces.cosine(obama, obama1) >= analyzer.same_person_threshold
    assert analyzer.same_person(obama, obama1)
    assert faces.cosine(obama, biden) < analyzer.same_person_threshold
    assert faces.cosine(obama, obama) == pytest.approx(1.0, abs=1e-5)
    assert faces.cosine(obama, np.zeros_like(obama)) == 0.0


# --------------------------------------------------------------------------------------
# Pose
# --------------------------------------------------------------------------------------


def project(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The 5 points of the 3-D face model turned by the given angles, seen from the front, in pixels."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    points = faces.FACE_MODEL_3D @ (rz @ rx @ ry).T
    return points[:, :2] * 4.0 + 300.0


@pytest.mark.parametrize("yaw", [-60, -30, -10, 0, 15, 45])
def test_yaw_is_recovered(yaw):
    got_yaw, got_pitch, got_roll = faces.pose_from_kps(project(yaw, 0, 0))
    assert got_yaw == pytest.approx(yaw, abs=1.5)
    assert abs(got_pitch) < 1.5 and abs(got_roll) < 0.5


@pytest.mark.parametrize("pitch", [-30, -15, 0, 15, 30])
def test_pitch_has_the_right_sign_and_size(pitch):
    got_yaw, got_pitch, _ = faces.pose_from_kps(project(0, pitch, 0))
    assert abs(got_yaw) < 1.5
    if pitch == 0:
        assert abs(got_pitch) < 1.0
    elif pitch > 0:  # chin up: close to the truth
        assert got_pitch == pytest.approx(pitch, abs=5)
    else:  # chin down: reads low (the nose drop saturates), never the wrong way
        assert pitch - 1 < got_pitch < pitch / 2


@pytest.mark.parametrize("roll", [-40, -10, 25, 90, 180])
def test_roll_is_recovered_even_upside_down(roll):
    _, _, got_roll = faces.pose_from_kps(project(0, 0, roll))
    assert abs(((got_roll - roll) + 180) % 360 - 180) < 1.0


def test_real_frontal_photos_read_near_zero(analyzer, faces_dir):
    for rel in (
        "same_person/deepface_p01/img1.jpg",
        "same_person/obama/obama.jpg",
        "hard/faceapi_neutral.jpg",
    ):
        face = analyzer.embed_largest(load(faces_dir, rel))
        assert face is not None
        assert abs(face.yaw) < 15 and abs(face.pitch) < 20 and abs(face.roll) < 10, rel


def test_a_three_quarter_view_reads_as_turned(analyzer, faces_dir):
    face = analyzer.embed_largest(load(faces_dir, "hard/skimage_camera.png"))
    assert face is not None and abs(face.yaw) > 45


def test_detector_size_follows_the_aspect():
    assert faces.det_size_for(1024, 768) == (640, 512)
    assert faces.det_size_for(768, 1024) == (512, 640)
    assert faces.det_size_for(900, 900) == (640, 640)
    assert faces.det_size_for(2000, 500) == (640, 320)


# --------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------


def test_concurrent_detection_gives_the_same_answers(analyzer, faces_dir):
    imgs = [load(faces_dir, rel) for rel in ("same_person/obama/obama.jpg", "group/deepface_couple.jpg")]
    expected = [[f.bbox.round(1).tolist() for f in analyzer.detect(img)] for img in imgs]
    results: dict[int, list] = {}

    def work(i):
        results[i] = [f.bbox.round(1).tolist() for f in analyzer.detect(imgs[i % 2])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(4)] == [expected[0], expected[1]] * 2


def test_get_analyzer_is_shared_between_threads(analyzer):
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(faces.get_analyzer())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a is analyzer for a in seen)


# --------------------------------------------------------------------------------------
# The plausibility gate (issue 16)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"), [(0, 0, 0), (-60, 0, 10), (45, 25, -30), (20, -30, 90), (0, 10, 180)]
)
def test_human_head_poses_have_a_small_shape_error(yaw, pitch, roll):
    assert faces.kps_shape_error(project(yaw, pitch, roll)) < 0.02
    assert faces.kps_shape_error(project(yaw, pitch, roll)) < config.FACE_MAX_SHAPE_ERROR


@pytest.mark.parametrize(
    "layout",
    [
        # (in half-eye-distance units) eyes wide apart, a long muzzle, "mouth corners" beside the nose
        [[-1, 0], [1, 0], [0, 1.3], [-0.35, 1.6], [0.35, 1.6]],
        [[-1, 0], [1, 0], [0, 0.9], [-0.25, 1.15], [0.25, 1.15]],
    ],
)
def test_animal_keypoint_layouts_fail_the_shape_check(layout):
    assert faces.kps_shape_error(np.array(layout, float) * 40 + 200) > config.FACE_MAX_SHAPE_ERROR


def test_is_human_uses_every_measure(analyzer):
    base = faces.Face(np.array([0, 0, 100, 100], np.float32), 0.7, project(0, 0, 0), None)
    ok = replace(base, frame_score=0.85, embedding_norm=15.0, shape_error=0.05)
    assert analyzer.is_human(ok)
    assert not analyzer.is_human(replace(ok, frame_score=0.3))  # no face when looked at again
    assert not analyzer.is_human(replace(ok, shape_error=0.3))  # no human head pose fits
    assert not analyzer.is_human(replace(ok, embedding_norm=2.0))  # the recogniser sees no face
    assert analyzer.is_human(replace(ok, score=0.9, frame_score=0.0))  # sure: no second look needed


def test_animal_near_misses_fail_the_gate(face_pack):
    # With the detector's threshold lowered to 0.25, the face-like spots of a cheetah, a lion, an eagle
    # and a painting are detected; the gate must refuse every one of them (their re-framed score stays
    # under 0.4, a human face's over 0.7: benchmarks/calibrate_selfies.py).
    gradio = pytest.importorskip("gradio")
    base = Path(gradio.__file__).parent
    low = faces.FaceAnalyzer(
        face_pack, thresholds=faces.PackThresholds(same_person=0.4, duplicate=0.85, det_score=0.25)
    )
    photos = [base / "test_data" / "cheetah2.jpg", base / "media_assets" / "images" / "lion.jpg"]
    photos = [p for p in photos if p.is_file()]
    assert photos
    for path in photos:
        img = imaging.load_image(path)
        img = img.resize((img.width * 3, img.height * 3))
        assert low.detect(img) == [], path.name
    # ... and they are there before the gate: with the gate open, the cheetah has a "face".
    low.is_human = lambda face: True
    assert low.detect(imaging.load_image(photos[0]).resize((2286, 2361)))
