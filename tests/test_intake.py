"""Issue 22's intake checks on development cases drawn from the shared photos (tests/_hardcases.py):
each rule across several renderings of its case, and the photos a person would not refuse stay accepted."""

from __future__ import annotations

import io

import _hardcases as hc
import cv2
import numpy as np
import pytest
from PIL import Image

from headshot import imaging
from headshot.faces.validation import validate_selfies


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_a_reduced_image_turns_with_its_whole_picture():
    arr = np.zeros((1200, 1600, 3), np.uint8)
    arr[:100, :200] = (255, 0, 0)  # a red block top-left
    data = jpeg(Image.fromarray(arr))
    reduced = imaging.load_reduced(data, min_long_side=640)
    assert reduced.reduction == 2
    turned = reduced.turned(1)  # a quarter turn counter-clockwise: top-left goes to bottom-left
    assert turned.full_size == (1200, 1600) and turned.image.size == (600, 800)
    full = turned.full()
    assert full.size == (1200, 1600)
    assert np.asarray(full)[-50, 50, 0] > 200 and np.asarray(full)[50, 50, 0] < 50
    assert turned.turned(3).full().size == (1600, 1200)


# Three people (different faces, sizes, light) for the drawn cases; benchmarks/calibrate_intake.py runs ten.
SOURCES = (
    "same_person/obama/obama.jpg",
    "same_person/deepface_p03/img47.jpg",
    "same_person/deepface_p05/img59.jpg",
)
# category -> share of its cases that must come out right (every variant on every source above)
# (the occlusion rules are fit on these cases drawn on ten people: see config.py for each one's results on
# renderings it was not fit on)
REQUIRED = {
    "rotated": 1.0,
    "benign": 1.0,
    "cut": 0.95,
    "sunglasses": 0.9,
    "mask": 0.75,
    "hand": 0.9,
    "screen": 1.0,
    # Renderings drawn after the rules were set ("*_new" in tests/_hardcases.py, other shapes, prints, skin
    # tones, phones, corner cuts); the occlusion models are fit on their even variants only (odd ones are
    # never fit on: see config.py for both parts).
    "sunglasses_new": 0.95,
    "mask_new": 0.85,
    "hand_new": 0.85,
    "cut_new": 0.85,
    # Outlined, flat-filled, posterised, comic and line-art renderings (see config.py): 71 of the whole
    # matrix's 160 (calibrate_intake.py); this sweep draws 16 of them, of which 6 or 7 are of those kinds.
    "cartoon": 0.37,
    "filter": 0.9,
}


@pytest.fixture(scope="module")
def sources(analyzer, faces_dir):
    out = []
    for rel in SOURCES:
        img = imaging.load_image(faces_dir / rel)
        out.append((rel, img, analyzer.detect(img, embed=1)[0].kps))
    return out


def outcome(analyzer, img: Image.Image, expected: set[str] | None) -> tuple[bool, dict]:
    (entry,) = validate_selfies([("case.jpg", jpeg(img))], analyzer=analyzer).report["selfies"]
    errors = {i["code"] for i in entry["issues"] if i["severity"] == "error"}
    warnings = {i["code"] for i in entry["issues"] if i["severity"] == "warning"}
    if expected is None:
        return entry["accepted"], entry
    if expected <= {"filtered"}:
        return bool(warnings & expected) or bool(errors), entry
    return bool(errors & expected), entry


# The filter and cartoon sweeps draw their renderings (bilateral, Kuwahara, mean-shift ...) on full-size photos:
# ~47 s of the fast tier's budget, so they run in the slow tier (as calibrate_intake.py's whole runs do). So do
# the "_new" sweeps (other ways of drawing sunglasses, masks, hands and cuts, kept to check that the rules
# generalise: ~35 s); each of those categories keeps its first sweep in the fast tier.
SLOW_SWEEPS = {"filter", "cartoon"} | {category for category in REQUIRED if category.endswith("_new")}


FULL_SWEEPS = {"benign", "rotated"}  # the photos that must come through: every variant on every person


def cases(category: str, sources: list) -> list[tuple[str, Image.Image, np.ndarray, int]]:
    """(source, image, landmarks, variant) of a sweep. The photos that must come through (FULL_SWEEPS) take
    every variant on every source; the sweeps of a fault draw each variant once, on the sources in turn
    (variant v on source v mod 3): every rendering and every person is met in a third of the time (the
    whole matrix took ~30 s of the fast tier and ~160 s of the slow one). The whole matrix, on ten people,
    is benchmarks/calibrate_intake.py's: run it when a rule changes."""
    _, variants, _ = hc.CATEGORIES[category]
    thin = category not in FULL_SWEEPS
    return [(rel, img, kps, v) for i, (rel, img, kps) in enumerate(sources) for v in range(variants)
            if not thin or v % len(sources) == i]  # fmt: skip


@pytest.mark.parametrize(
    "category",
    [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_SWEEPS else c for c in sorted(REQUIRED)],
)
def test_each_category_across_its_variants(analyzer, sources, category):
    make, variants, expected = hc.CATEGORIES[category]
    results, drawn = [], set()
    for rel, img, kps, v in cases(category, sources):
        ok, entry = outcome(analyzer, make(img, kps, v), expected)
        results.append((ok, f"{rel} variant {v}: {[i['code'] for i in entry['issues']]}"))
        drawn.add(v)
    right = sum(ok for ok, _ in results)
    assert right >= REQUIRED[category] * len(results), [what for ok, what in results if not ok]
    assert drawn == set(range(variants))  # every variant, thinned or not


@pytest.mark.parametrize("scale", [1.8, pytest.param(2.6, marks=pytest.mark.slow)])
def test_ordinary_photos_come_through_at_any_size(analyzer, sources, scale):
    """The benign variants of bigger photos, decoded at 1/2 or 1/4 (imaging.load_reduced): JPEG's blocks
    there are 4 or 2 px, so the blockiness that keeps a quality-6 copy from reading as flat paint
    (measures._blockiness) must see them at that size too. Before it did, 5 of these 60 were refused as
    not_a_photo (the JPEG q6 copies)."""
    from headshot.faces.measures import _blockiness

    for rel, img, kps in sources:
        big = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        big_kps = np.asarray(kps) * scale
        for v in range(6):
            ok, entry = outcome(analyzer, hc.benign(big, big_kps, v), None)
            assert ok, (rel, scale, v, [i["code"] for i in entry["issues"]])
    # 2-px blocks (a 1/4 decode) read over the line; the same picture without blocks reads ~1.
    flat = np.kron(np.random.default_rng(0).integers(60, 200, (32, 32)), np.ones((2, 2))).astype(np.uint8)
    photo = np.asarray(hc.benign(img, kps, 0).convert("L"))
    assert _blockiness(flat, block=2) > 2.5 > 1.2 > _blockiness(photo, block=2)


def test_a_hand_over_one_eye_is_told_by_the_eyes_probed_one_at_a_time(analyzer, sources, monkeypatch):
    """measures.one_eye_measures: blurring the covered eye alone changes the embedding little, the other
    eye's blur a lot. Of the later hands and phones (hand_new) that the eye models leave under their line,
    the one-eye lines catch several, each refused as eyes_covered; the photos themselves read under the
    lines (or are not probed)."""
    from headshot.faces import validation
    from headshot.faces.measures import eye_models_score, one_eye_covered

    seen: list = []
    original = validation.check_faces
    monkeypatch.setattr(validation, "check_faces", lambda selfie: (seen.append(selfie), original(selfie))[1])
    for _, img, kps in sources:
        validate_selfies([("plain.jpg", jpeg(img))], analyzer=analyzer)
        for v in range(hc.CATEGORIES["hand_new"][1]):
            validate_selfies([("hand.jpg", jpeg(hc.hand_new(img, kps, v)))], analyzer=analyzer)

    plain = [selfie for selfie in seen if selfie.name == "plain.jpg"]
    assert len(plain) == len(sources)
    assert all(selfie.accepted and not one_eye_covered(selfie.occlusion or {}) for selfie in plain)
    caught_by_it = 0
    for selfie in seen:
        m = selfie.occlusion or {}
        if selfie.name == "hand.jpg" and one_eye_covered(m):
            assert selfie.has("eyes_covered")
            caught_by_it += eye_models_score(m) <= 0
    assert caught_by_it >= 2, caught_by_it


def test_a_regular_pattern_across_the_face_reads_as_a_screen(analyzer, sources):
    """periodic_peak: the photo itself and its JPEG q6, grey and mirrored copies stay far under the line; a
    faint grating of any period from 3 to 11 px at any angle (not one of the drawn screens) goes over it,
    and so do gratings that fall on the axes of the spectrum (straight stripes, scan lines)."""
    from headshot import config
    from headshot.faces.measures import periodic_peak

    for rel, img, kps in sources:
        face = analyzer.detect(img, embed=0)[0]
        for v in (0, 1, 5):  # mirrored, grey, JPEG q6
            plain = np.asarray(hc.benign(img, kps, v))
            assert periodic_peak(plain, face) < config.SCREEN_PEAK_ERROR / 1.3, (rel, v)
        rgb = np.asarray(img).astype(np.float32)
        yy, xx = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]].astype(np.float32)
        for period, degrees in ((3.2, 0.0), (4.5, 90.0), (6.0, 33.0), (8.5, -61.0), (11.0, 14.0)):
            a = np.radians(degrees)
            grating = 1 + 0.06 * np.cos(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period)
            shown = Image.fromarray(np.clip(rgb * grating[..., None], 0, 255).astype(np.uint8))
            shown = imaging.load_image(jpeg(shown))
            assert periodic_peak(np.asarray(shown), face) > config.SCREEN_PEAK_ERROR * 1.3, (rel, period)
    tiny = analyzer.detect(img, embed=0)[0].scaled(0.2)  # too small a face to tell: not judged
    assert periodic_peak(np.asarray(img), tiny) is None


def test_drawn_lines_and_flat_tones_read_as_a_drawing(analyzer, sources):
    """drawing_measures scored by config.NOT_A_PHOTO_MODEL (or paper-white past config.DRAWING_PAPER): the photo, its grey, JPEG q6 (flat 8x8 blocks),
    beauty-filtered and noisy (grain of sigma 20) copies stay under the line; the same face drawn in two
    ways that are not among the development renderings goes over it: black lines traced from its edges on
    white paper, and its grey shading cut into four flat tones."""
    from headshot import config
    from headshot.faces.measures import drawing_measures, linear_score

    def score(picture: Image.Image) -> float:  # at the face of the photo (a line drawing may show none)
        m = drawing_measures(np.asarray(imaging.load_image(jpeg(picture))), face)
        return linear_score(m, config.NOT_A_PHOTO_MODEL) if m["paper"] < config.DRAWING_PAPER else 9.0

    rng = np.random.default_rng(7)
    for rel, img, kps in sources:
        face = analyzer.detect(img, embed=0)[0]
        rgb = np.asarray(img)
        noisy = Image.fromarray(np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8))
        for photo in (
            img,
            hc.benign(img, kps, 1),
            hc.benign(img, kps, 5),
            hc.beauty_filter(img, kps, 0),
            noisy,
        ):
            assert score(photo) < -0.5, rel
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(cv2.GaussianBlur(gray, (0, 0), 1.5), 40, 90)
        lines = np.where(cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0, 25, 248).astype(np.uint8)
        tones = (np.digitize(cv2.GaussianBlur(gray, (0, 0), 2.0), (60, 110, 170)) * 70 + 30).astype(np.uint8)
        for drawing in (lines, tones):
            assert score(Image.fromarray(drawing).convert("RGB")) > 0.5, rel


def test_a_drawing_is_refused_as_not_a_photo(analyzer, sources):
    _, img, kps = sources[0]
    ok, entry = outcome(analyzer, hc.cartoon(img, kps, 1), {"not_a_photo"})  # cel shading with outlines
    assert ok and not entry["accepted"]
    (issue,) = [i for i in entry["issues"] if i["code"] == "not_a_photo"]
    assert "drawing" in issue["message"] and "real photo" in issue["message"]


def test_a_face_cut_by_the_frame(analyzer, sources):
    _, img, kps = sources[0]
    ok, entry = outcome(analyzer, hc.cut_off(img, kps, 4), {"face_cut_off"})  # 40% off the left
    assert ok and not entry["accepted"]
    (issue,) = [i for i in entry["issues"] if i["code"] == "face_cut_off"]
    assert "outside the photo" in issue["message"] and "%" in issue["message"]


def test_a_beauty_filter_is_a_warning_and_compression_is_not_one(analyzer, sources):
    """filtered keeps the photo (a warning that says what to do); JPEG q6, which also wipes out the skin's
    fine detail (in 8x8 blocks), and a slightly soft copy are not taken for a filter."""
    _, img, kps = sources[0]
    ok, entry = outcome(analyzer, hc.beauty_filter(img, kps, 0), {"filtered"})
    assert ok and entry["accepted"]
    (issue,) = [i for i in entry["issues"] if i["code"] == "filtered"]
    assert issue["severity"] == "warning" and "beauty filter" in issue["message"] and "unfiltered" in issue["message"]
    for copy in (hc.benign(img, kps, 5), hc.soft_or_small(img, kps, 0)):
        (entry,) = validate_selfies([("case.jpg", jpeg(copy))], analyzer=analyzer).report["selfies"]
        assert entry["accepted"] and "filtered" not in {i["code"] for i in entry["issues"]}


def test_the_most_basic_reason_comes_first(analyzer):
    cup = Image.new("RGB", (600, 400), (180, 120, 90))  # no face AND too small: no face is said first
    (entry,) = validate_selfies([("cup.jpg", jpeg(cup))], analyzer=analyzer).report["selfies"]
    assert [i["code"] for i in entry["issues"]] == ["no_face", "low_resolution"]


def test_issues_are_ordered_errors_first_then_most_basic(analyzer, sources):
    _, img, kps = sources[0]
    covered = hc.sunglasses(img, kps, 0)
    small = covered.resize((500, round(500 * img.height / img.width)))  # covered eyes, under 512 px
    (entry,) = validate_selfies([("small.jpg", jpeg(small))], analyzer=analyzer).report["selfies"]
    found = [i["code"] for i in entry["issues"]]
    assert found.index("eyes_covered") < found.index("low_resolution"), found
    severities = [i["severity"] for i in entry["issues"]]
    assert severities == sorted(severities, key=lambda s: s != "error")


def test_the_set_verdict(analyzer, faces_dir, sources):
    # Different days, places and angles: a good set, nothing to suggest about variety.
    varied = sorted((faces_dir / "same_person" / "deepface_p01").glob("*.jpg"))[:5]
    report = validate_selfies(varied, analyzer=analyzer).report
    assert report["accepted"] >= 3
    assert "Good variety" in report["set"]["verdict"] and len(report["set"]["suggestions"]) <= 2
    # Three shots of one moment (crops of one photo): said so, and the first suggestion is another day.
    _, img, _ = sources[0]
    w, h = img.size
    moment = [
        img.crop((0, 0, w, h)),
        img.crop((w // 10, 0, w, h * 9 // 10)),
        img.crop((0, h // 12, w * 8 // 9, h)),
    ]
    report = validate_selfies(
        [(f"m{i}.jpg", jpeg(m, 92 - 3 * i)) for i, m in enumerate(moment)], analyzer=analyzer
    ).report
    assert report["accepted"] == 3, [s["issues"] for s in report["selfies"]]
    assert "same moment" in report["set"]["verdict"]
    assert report["set"]["suggestions"][0].startswith("Add photos from another day")
    assert len(report["set"]["suggestions"]) == 2
    # Nothing accepted: a verdict that says what to upload.
    report = validate_selfies(
        [("cup.jpg", jpeg(Image.new("RGB", (600, 400), (90, 90, 90))))], analyzer=analyzer
    ).report
    assert report["set"]["verdict"] == "No usable photos yet." and report["set"]["suggestions"]


def test_the_selfies_step_shows_the_set_verdict():
    from headshot.web.cards import readiness_text

    report = {
        "ready": True,
        "ready_lora": False,
        "accepted": 1,
        "selfies": [{"file": "a.jpg", "accepted": True, "issues": []}],
        "errors": [],
        "set": {"verdict": "1 usable photo: enough to start.", "suggestions": ["Add 2 or more photos."]},
    }
    text = readiness_text(report)
    assert "1 usable photo: enough to start. Add 2 or more photos." in text
    assert text.index("1 of 1 selfies accepted") < text.index("usable photo")


def test_the_cheap_measures_send_every_new_covering_to_the_probe(analyzer, sources):
    """The probe (face_measures.occlusion_parts) runs when a cheap measure looks covered: a mask of any
    print leaves no skin-coloured lower face (lower_skin), a hand or a phone over one eye and cheek makes
    the two sides of the face unlike (side_match); the plain photos keep a skin-coloured chin and alike
    sides, so most of them skip it."""
    from headshot import config
    from headshot.faces.measures import occlusion_parts

    def parts(img):
        face = analyzer.detect(img, embed=0)[0]
        return occlusion_parts(analyzer, np.asarray(img), face)

    for rel, img, kps in sources[:2]:
        plain = parts(img)
        assert plain["lower_skin"] > 2 * config.PROBE_LOWER_SKIN, rel
        for v in (0, 3, 5, 6, 7):  # blue and black surgical, flowers, a check, a paisley bandana
            covered = parts(imaging.load_image(jpeg(hc.mask_new(img, kps, v))))
            assert covered["lower_skin"] <= config.PROBE_LOWER_SKIN and "_mouth_blurred" in covered, (rel, v)
        for v in (0, 3, 5):  # a light hand, a very dark hand, a black phone
            covered = parts(imaging.load_image(jpeg(hc.hand_new(img, kps, v))))
            assert "_eyes_blurred" in covered, (rel, v, covered["side_match"])
