"""validation.py on the real photos: per-photo codes by manifest category, cross-photo checks, the schema."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from headshot import config, imaging
from headshot.validation import ISSUE_CODES, validate_selfies

try:  # the manifest is read at collection time to parametrise; tests skip when the data is absent
    from conftest import FACES
except ImportError:  # pragma: no cover
    FACES = None

REPORT_KEYS = {"ready", "ready_lora", "readiness", "accepted", "selfies", "errors"}
SELFIE_KEYS = {"file", "accepted", "issues", "face"}
FACE_KEYS = {"bbox", "score", "yaw", "pitch", "sharpness", "brightness"}
DERIVED = {  # degradation -> (error codes of which one must be present, or None: the photo is accepted)
    "blur_gauss8": {"blurry"},
    "dark_x0.12": {"too_dark"},
    "tiny_96px": {"low_resolution"},
    "upside_down": {"extreme_pose", "no_face"},
    "exif_orient6": None,
    "jpeg_q4": None,
    "noise_sigma40": None,
}
FIXED = {  # hard/ photos whose outcome the manifest notes settle
    "hard/dlib_scream.jpg": {"no_face"},  # a painting
    "hard/face_recognition_32bit.png": None,  # RGBA PNG of a good photo
    "hard/dlib_Tom_Cruise_avp_2014_4.jpg": None,
    "hard/face_recognition_obama-480p.jpg": {"low_resolution"},
    "hard/skimage_camera.png": {"face_too_small", "extreme_pose"},  # small 3/4 view behind a camera
    "hard/ultralight_masked_img3.jpg": {"multiple_faces"},
    "hard/facenet_pytorch_aligned_kate_siegel.png": {"low_resolution"},
}


def _cases() -> list:
    """(path, expected error codes or None for accepted, face expected or None for either) from the
    manifest's categories."""
    if FACES is None:
        return []
    with open(FACES / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    chips_seen: set[str] = set()
    cases = []
    for row in rows:
        path = row["path"]
        category = path.split("/")[0]
        if category == "no_face":
            cases.append((path, {"no_face"}, False))
        elif category == "group":
            cases.append((path, {"multiple_faces"}, True))
        elif "/derived/" in path:
            kind = next(k for k in DERIVED if k in path)
            cases.append((path, DERIVED[kind], None if kind == "upside_down" else True))
        elif path in FIXED:
            cases.append((path, FIXED[path], path != "hard/dlib_scream.jpg"))
        elif category == "same_person":
            with Image.open(FACES / path) as img:
                short = min(img.size)
            if short >= config.MIN_SHORT_SIDE:
                cases.append((path, None, True))  # a good photo of one person
            elif min(img.size) > 200 or Path(path).parent.name not in chips_seen:  # one chip per person
                chips_seen.add(Path(path).parent.name)
                cases.append((path, {"low_resolution"}, True))  # refused, but the face is found
    return cases


CASES = _cases()


def codes(entry: dict, severity: str | None = None) -> set[str]:
    return {i["code"] for i in entry["issues"] if severity is None or i["severity"] == severity}


def by_file(report: dict) -> dict[str, dict]:
    return {s["file"]: s for s in report["selfies"]}


def jpeg_bytes(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(faces_dir):
    def get(rel: str) -> str:
        return str(faces_dir / rel)

    return get


# --------------------------------------------------------------------------------------
# Per photo, by manifest category
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rel", "expected", "has_face"), CASES, ids=[c[0] for c in CASES])
def test_codes_on_real_photos(analyzer, faces_dir, rel, expected, has_face):
    report = validate_selfies([faces_dir / rel], analyzer=analyzer).report
    (entry,) = report["selfies"]
    assert entry["file"] == Path(rel).name
    errors = codes(entry, "error")
    if expected is None:
        assert entry["accepted"], entry["issues"]
        assert not errors
        assert report["ready"] and report["accepted"] == 1
    else:
        assert not entry["accepted"]
        assert errors & expected, (errors, expected)
    if has_face is not None:  # None: either (an upside-down face may be found and refused, or not found)
        assert (entry["face"] is not None) == has_face


def test_background_faces_only_warn(analyzer, photo):
    # Issue 16 changed this: background faces used to pass silently (img54) or give a multiple_faces
    # warning (img62); now both give a background_faces warning, and multiple_faces is only an error.
    report = validate_selfies(
        [photo("same_person/deepface_p04/img54.jpg"), photo("same_person/deepface_p05/img62.jpg")],
        analyzer=analyzer,
    ).report
    entries = by_file(report)
    assert "multiple_faces" not in codes(entries["img54.jpg"])  # three small faces far behind
    assert "background_faces" in codes(entries["img54.jpg"], "warning")
    assert entries["img54.jpg"]["accepted"]
    assert "background_faces" in codes(entries["img62.jpg"], "warning")  # blurred, cut by the frame
    assert "multiple_faces" not in codes(entries["img62.jpg"])
    (issue,) = [i for i in entries["img54.jpg"]["issues"] if i["code"] == "background_faces"]
    assert "largest sharp face" in issue["message"]


def test_a_turned_photo_is_an_extreme_pose(analyzer, photo):
    img = imaging.load_image(photo("same_person/obama/obama.jpg"))
    report = validate_selfies(
        [("sideways.jpg", jpeg_bytes(img.rotate(90, expand=True)))], analyzer=analyzer
    ).report
    assert "extreme_pose" in codes(report["selfies"][0], "error")


def test_burnt_out_face_is_overexposed(analyzer, photo):
    img = imaging.load_image(photo("same_person/obama/obama.jpg"))
    bright = img.point(lambda v: min(255, int(v * 2.6)))
    report = validate_selfies([("bright.jpg", jpeg_bytes(bright))], analyzer=analyzer).report
    (entry,) = report["selfies"]
    assert "overexposed" in codes(entry, "error")
    assert entry["face"]["brightness"] > 0.8


def test_quality_warnings_keep_the_photo(analyzer, photo):
    img = imaging.load_image(photo("same_person/alex_lacamoire/img1.jpg"))
    report = validate_selfies([("q4.jpg", jpeg_bytes(img, quality=4))], analyzer=analyzer).report
    (entry,) = report["selfies"]
    assert entry["accepted"]
    assert "blurry" in codes(entry, "warning")  # lost detail: heavy compression
    assert all(len(i["message"]) > 30 and i["message"].endswith(".") for i in entry["issues"])


# --------------------------------------------------------------------------------------
# Across photos
# --------------------------------------------------------------------------------------


def test_an_intruder_is_the_odd_one_out(analyzer, photo):
    files = [photo(f"same_person/deepface_p01/{n}") for n in ("img1.jpg", "img2.jpg", "img4.jpg", "img6.jpg")]
    files.insert(2, photo("same_person/deepface_p02/img26.jpg"))
    report = validate_selfies(files, analyzer=analyzer).report
    entries = by_file(report)
    assert "different_person" in codes(entries["img26.jpg"], "error")
    assert not entries["img26.jpg"]["accepted"]
    for name in ("img1.jpg", "img2.jpg", "img4.jpg", "img6.jpg"):
        assert entries[name]["accepted"] and "different_person" not in codes(entries[name]), name
    assert report["accepted"] == 4 and report["ready_lora"]


def test_an_intruder_among_face_chips_is_found_too(analyzer, faces_dir):
    salley = sorted((faces_dir / "same_person" / "dlib_john_salley").glob("*.jpg"))[:3]
    savage = sorted((faces_dir / "same_person" / "dlib_john_savage").glob("*.jpg"))[0]
    report = validate_selfies([*salley[:2], savage, salley[2]], analyzer=analyzer).report
    entries = by_file(report)
    assert "different_person" in codes(entries[savage.name], "error")
    for path in salley:
        assert "different_person" not in codes(entries[path.name])
        assert "low_resolution" in codes(entries[path.name], "error")


def test_two_photos_that_disagree_both_get_a_warning(analyzer, photo):
    report = validate_selfies(
        [photo("same_person/obama/obama.jpg"), photo("same_person/biden/biden2.jpg")], analyzer=analyzer
    ).report
    for entry in report["selfies"]:
        assert "different_person" in codes(entry, "warning")
        assert entry["accepted"]
    assert report["accepted"] == 2


def test_without_a_majority_nobody_is_refused_as_a_stranger(analyzer, photo):
    files = [
        photo("same_person/obama/obama.jpg"),
        photo("same_person/obama/obama1.jpg"),
        photo("same_person/biden/biden2.jpg"),
        photo("same_person/deepface_p01/img1.jpg"),
    ]
    report = validate_selfies(files, analyzer=analyzer).report  # 2 + 1 + 1: two of four agree
    for entry in report["selfies"]:
        assert "different_person" in codes(entry, "warning")
        assert "different_person" not in codes(entry, "error")
    assert report["accepted"] == 4


def test_same_person_photos_pass_the_identity_check(analyzer, photo):
    names = ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg")
    report = validate_selfies([photo(f"same_person/obama/{n}") for n in names], analyzer=analyzer).report
    assert [s["accepted"] for s in report["selfies"]] == [True] * 4
    assert not any(codes(s) & {"different_person", "duplicate"} for s in report["selfies"])
    assert report == {**report, "ready": True, "ready_lora": True, "accepted": 4}
    assert report["readiness"] == {"instantid": True, "lora": True}


def test_a_resized_reencoded_copy_is_a_duplicate(analyzer, photo):
    img = imaging.load_image(photo("same_person/obama/obama.jpg"))
    copy = img.resize((img.width * 6 // 10, img.height * 6 // 10), Image.Resampling.BILINEAR)
    report = validate_selfies(
        [
            photo("same_person/obama/obama.jpg"),
            photo("same_person/obama/obama1.jpg"),
            ("copy.jpg", jpeg_bytes(copy, 70)),
        ],
        analyzer=analyzer,
    ).report
    entries = by_file(report)
    dup = [i for i in entries["copy.jpg"]["issues"] if i["code"] == "duplicate"]
    assert dup and dup[0]["severity"] == "error" and "obama.jpg" in dup[0]["message"]
    assert entries["obama.jpg"]["accepted"] and entries["obama1.jpg"]["accepted"]
    assert report["accepted"] == 2


def test_the_good_copy_is_kept_when_the_first_copy_is_refused(analyzer, photo):
    img = imaging.load_image(photo("same_person/obama/obama.jpg"))
    small = img.resize((img.width * 400 // img.height, 400), Image.Resampling.LANCZOS)  # low_resolution
    report = validate_selfies(
        [("small.jpg", jpeg_bytes(small)), photo("same_person/obama/obama.jpg")], analyzer=analyzer
    ).report
    entries = by_file(report)
    assert {"low_resolution", "duplicate"} <= codes(entries["small.jpg"], "error")
    assert entries["obama.jpg"]["accepted"]


def test_a_corrupt_file_fails_alone(analyzer, photo):
    broken = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00garbage" * 50
    report = validate_selfies(
        [photo("same_person/obama/obama.jpg"), ("broken.jpg", broken), photo("same_person/obama/obama1.jpg")],
        analyzer=analyzer,
    ).report
    entries = by_file(report)
    assert [i["code"] for i in entries["broken.jpg"]["issues"]] == ["unreadable_image"]
    assert entries["broken.jpg"]["face"] is None and not entries["broken.jpg"]["accepted"]
    assert "broken.jpg" in entries["broken.jpg"]["issues"][0]["message"]
    assert entries["obama.jpg"]["accepted"] and entries["obama1.jpg"]["accepted"]
    assert report["accepted"] == 2


def test_a_file_over_the_size_limit_is_too_large(analyzer, photo, monkeypatch):
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 10_000)
    report = validate_selfies([photo("same_person/obama/obama.jpg")], analyzer=analyzer).report
    assert codes(report["selfies"][0], "error") == {"too_large"}
    assert not report["ready"]


def test_files_past_the_limit_are_listed_not_analysed(analyzer):
    files = [(f"f{i}.jpg", b"not an image") for i in range(config.MAX_SELFIES + 2)]
    report = validate_selfies(files, analyzer=analyzer).report
    assert len(report["selfies"]) == config.MAX_SELFIES
    assert [e["file"] for e in report["errors"]] == [
        f"f{config.MAX_SELFIES}.jpg",
        f"f{config.MAX_SELFIES + 1}.jpg",
    ]
    assert all(str(config.MAX_SELFIES) in e["message"] for e in report["errors"])
    assert report["accepted"] == 0 and not report["ready"]


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


def test_report_schema(analyzer, photo):
    blurred = imaging.load_image(photo("same_person/obama/obama1.jpg")).filter(ImageFilter.GaussianBlur(8))
    with open(photo("same_person/biden/biden2.jpg"), "rb") as fh:
        result = validate_selfies(
            [
                Path(photo("same_person/obama/obama.jpg")),
                ("blur.jpg", jpeg_bytes(blurred)),
                fh,
                ("x.png", b""),
            ],
            analyzer=analyzer,
        )
    report = json.loads(json.dumps(result.report))  # JSON-serialisable
    assert set(report) == REPORT_KEYS
    assert [s["file"] for s in report["selfies"]] == ["obama.jpg", "blur.jpg", "biden2.jpg", "x.png"]
    for entry in report["selfies"]:
        assert set(entry) == SELFIE_KEYS
        assert entry["accepted"] == (not codes(entry, "error"))
        for issue in entry["issues"]:
            assert set(issue) == {"code", "severity", "message"}
            assert issue["code"] in ISSUE_CODES and issue["severity"] in ("error", "warning")
            assert len(issue["message"]) > 30 and issue["message"].endswith("."), issue
        if entry["face"] is not None:
            assert set(entry["face"]) == FACE_KEYS
            assert len(entry["face"]["bbox"]) == 4
            assert 0 <= entry["face"]["sharpness"] <= 1 and 0 <= entry["face"]["brightness"] <= 1
    assert report["errors"] == []
    assert report["accepted"] == sum(s["accepted"] for s in report["selfies"]) == len(result.accepted)
    assert (
        report["ready"]
        == report["readiness"]["instantid"]
        == (report["accepted"] >= config.INSTANTID_MIN_ACCEPTED)
    )
    assert (
        report["ready_lora"]
        == report["readiness"]["lora"]
        == (report["accepted"] >= config.LORA_MIN_ACCEPTED)
    )
    entries = by_file(report)
    assert "blurry" in codes(entries["blur.jpg"], "error")
    assert codes(entries["x.png"]) == {"unreadable_image"}


def test_accepted_selfies_carry_the_upright_photo_and_its_face(analyzer, photo):
    path = photo("same_person/deepface_p03/img49.jpg")  # 4352x2903, analysed at 1024 px
    result = validate_selfies([path], analyzer=analyzer)
    (selfie,) = result.accepted
    assert selfie.name == "img49.jpg"
    assert selfie.image.size == (4352, 2903) and selfie.image.mode == "RGB"
    assert selfie.face.size > 600 and selfie.face.embedding is not None
    assert result.report["selfies"][0]["face"]["bbox"] == [round(float(v), 1) for v in selfie.face.bbox]
