"""The product flows with real face models on the tiny profile: likeness ranking and marking, packs,
disclosure metadata in every PNG, privacy clean-up, and the command line end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from headshot import disclosure, imaging, sessions, studio, styles
from headshot.errors import InvalidRequest, NotEnoughSelfies, PromptRejected
from headshot.gpu import pipeline

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def identity(obama, analyzer):
    return studio.create_identity(obama[:3], "instantid", analyzer=analyzer).identity


def _load(path) -> Image.Image:
    return imaging.load_image(path)


def test_create_identity_needs_accepted_selfies(faces_dir, analyzer):
    with pytest.raises(NotEnoughSelfies, match="accepted"):
        studio.create_identity([faces_dir / "no_face" / "dlib_eagle.jpg"], "instantid", analyzer=analyzer)
    with pytest.raises(InvalidRequest):
        studio.create_identity([faces_dir / "no_face" / "dlib_eagle.jpg"], "dreambooth", analyzer=analyzer)


def test_outputs_are_ranked_by_likeness_and_marked_not_hidden(monkeypatch, identity, obama, faces_dir, analyzer):
    """Render returns real photos here, so the real face models score them: the person first, an
    intruder marked as low likeness, an image without a face marked and last."""
    intruder = _load(faces_dir / "same_person" / "biden" / "biden.jpg")
    person = _load(obama[3])
    noise = Image.effect_noise((256, 256), 64).convert("RGB")
    monkeypatch.setattr(pipeline, "render_all", lambda requests, progress=None: [[noise, intruder, person]])

    result = studio.generate(identity, "corporate-grey", studio.GenerateOptions(num_images=3, seed=10),
                             analyzer=analyzer)

    verdicts = [h.verdict for h in result.headshots]
    assert verdicts == ["good", "low_likeness", "no_face"]
    assert [h.seed for h in result.headshots] == [12, 11, 10]  # seed + index of the rendered image
    assert result.headshots[0].likeness > analyzer.same_person_threshold > result.headshots[1].likeness
    assert result.info["likeness"][2] is None and len(result.info["images"]) == 3


def test_best_of_renders_more_candidates_and_keeps_the_best(monkeypatch, identity, obama, faces_dir, analyzer):
    intruder = _load(faces_dir / "same_person" / "biden" / "biden.jpg")
    person = _load(obama[3])
    asked = []

    def fake_render(requests, progress=None):
        asked.extend(r.num_images for r in requests)
        return [[intruder, person, intruder, intruder][: r.num_images] for r in requests]

    monkeypatch.setattr(pipeline, "render_all", fake_render)
    result = studio.generate(identity, "corporate-grey", studio.GenerateOptions(num_images=1, best_of=4, seed=0),
                             analyzer=analyzer)
    assert asked == [4]
    assert len(result.headshots) == 1 and result.headshots[0].verdict == "good"


def test_pack_zip_has_every_style_with_metadata(identity, analyzer, tmp_path):
    options = studio.GenerateOptions(seed=3, steps=2, linkedin=True, prompt="navy blazer")
    result = studio.generate_pack(identity, ["corporate-grey", "classic-bw"], 2, options, analyzer=analyzer)

    with zipfile.ZipFile(result.zip_path) as archive:
        names = sorted(archive.namelist())
        archive.extractall(tmp_path)
    assert names == sorted([
        "classic-bw_3.png", "classic-bw_3_linkedin.png", "classic-bw_4.png", "classic-bw_4_linkedin.png",
        "corporate-grey_3.png", "corporate-grey_3_linkedin.png", "corporate-grey_4.png",
        "corporate-grey_4_linkedin.png", "info.json",
    ])
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["styles"] == ["corporate-grey", "classic-bw"] and len(info["images"]) == 4
    for png in tmp_path.glob("*.png"):
        meta = disclosure.read_png_metadata(png)
        assert meta["digital_source_type"].endswith("trainedAlgorithmicMedia"), png.name
        assert meta["headshot:seed"] in {"3", "4"}
        assert "navy blazer" in meta["Description"] and meta["Software"].startswith("Headshot Studio")
    with Image.open(tmp_path / "classic-bw_3_linkedin.png") as crop:
        assert crop.size == (400, 400)


def test_same_seed_same_pack_and_ai_mark_is_visible(identity, analyzer):
    plain = studio.generate(identity, "tech-casual", studio.GenerateOptions(seed=8, steps=2), analyzer=analyzer)
    again = studio.generate(identity, "tech-casual", studio.GenerateOptions(seed=8, steps=2), analyzer=analyzer)
    marked = studio.generate(identity, "tech-casual", studio.GenerateOptions(seed=8, steps=2, ai_mark=True),
                             analyzer=analyzer)
    a, b, m = (_load(r.headshots[0].path) for r in (plain, again, marked))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != m.tobytes()


def test_requests_are_checked_before_the_gpu(identity, analyzer, monkeypatch):
    monkeypatch.setattr(pipeline, "render_all", lambda *a, **k: pytest.fail("render must not run"))
    with pytest.raises(PromptRejected):
        studio.generate(identity, "corporate-grey", studio.GenerateOptions(prompt="nude photo"), analyzer=analyzer)
    with pytest.raises(InvalidRequest):
        studio.generate(identity, "corporate-grey", studio.GenerateOptions(num_images=9), analyzer=analyzer)
    with pytest.raises(InvalidRequest, match="candidates"):
        studio.generate(identity, "corporate-grey", studio.GenerateOptions(num_images=8, best_of=4),
                        analyzer=analyzer)
    with pytest.raises(InvalidRequest):
        studio.generate_pack(identity, ["corporate-grey"], 1, studio.GenerateOptions(best_of=5), analyzer=analyzer)
    with pytest.raises(InvalidRequest):
        studio.generate_pack(identity, [], 1, analyzer=analyzer)
    with pytest.raises(InvalidRequest, match="at most"):
        studio.generate_pack(identity, [s["id"] for s in styles.list_styles()], 4, analyzer=analyzer)


def test_a_requested_zero_is_honoured_and_none_is_the_styles_value(identity):
    """0 is a value (never "use the style's"): honoured where it is in range, refused where it is not."""
    from headshot import config
    from headshot.styles import get_style

    style = get_style("corporate-grey")
    zero = studio.build_request(
        identity,
        style,
        studio.GenerateOptions(guidance=0, identity_strength=0, identitynet_strength=0, lora_strength=0),
        seed=0,
        count=1,
    )
    assert (zero.guidance, zero.identity_strength, zero.identitynet_strength) == (0.0, 0.0, 0.0)
    assert zero.seed == 0
    pipeline.check_request(zero)

    unset = studio.build_request(identity, style, studio.GenerateOptions(), seed=0, count=1)
    assert (unset.steps, unset.guidance) == (config.style_steps(style.steps), style.guidance)
    assert (unset.identity_strength, unset.identitynet_strength) == (
        style.identity_strength,
        style.identitynet_strength,
    )
    assert (unset.width, unset.height) == config.output_sizes()[style.aspect]

    for options in (
        studio.GenerateOptions(steps=0),  # below config.MIN_STEPS: refused, not the style's steps
        studio.GenerateOptions(aspect=""),  # an unknown size, not the style's
    ):
        with pytest.raises(InvalidRequest):
            studio.build_request(identity, style, options, seed=0, count=1)
    assert studio._resolve_seed(studio.GenerateOptions(seed=0)) == 0  # seed 0 is a seed, not "random"


def test_the_tiny_profile_caps_only_the_styles_steps_where_asked(identity, monkeypatch):
    """HEADSHOT_TINY_STYLE_STEPS (the end-to-end tests' 6): a style's 30 steps render as 6 on the tiny
    profile; steps a request asks for itself stay as asked, and without the setting nothing changes."""
    from headshot import config
    from headshot.styles import get_style

    style = get_style("corporate-grey")
    assert style.steps > 6

    def steps(options: studio.GenerateOptions) -> int:
        return studio.build_request(identity, style, options, seed=0, count=1).steps

    monkeypatch.delenv("HEADSHOT_TINY_STYLE_STEPS", raising=False)
    assert steps(studio.GenerateOptions()) == style.steps
    monkeypatch.setenv("HEADSHOT_TINY_STYLE_STEPS", "6")
    assert steps(studio.GenerateOptions()) == 6 and steps(studio.GenerateOptions(steps=12)) == 12
    monkeypatch.setattr(config, "profile", lambda: "full")
    assert config.style_steps(style.steps) == style.steps  # never on the full profile


def test_zero_counts_are_refused_not_defaulted(identity, analyzer, monkeypatch):
    monkeypatch.setattr(pipeline, "render_all", lambda *a, **k: pytest.fail("render must not run"))
    for options in (studio.GenerateOptions(num_images=0), studio.GenerateOptions(best_of=0)):
        with pytest.raises(InvalidRequest):
            studio.generate(identity, "corporate-grey", options, analyzer=analyzer)
    with pytest.raises(InvalidRequest):
        studio.generate_pack(identity, ["corporate-grey"], 0, analyzer=analyzer)


def test_delete_my_data_removes_request_folders(identity, analyzer):
    result = studio.generate(identity, "corporate-grey", studio.GenerateOptions(seed=1), analyzer=analyzer)
    assert result.headshots[0].path.exists()
    assert sessions.delete_paths([result.headshots[0].path]) == 1
    assert not result.workdir.exists()
    assert sessions.delete_paths(["/etc/passwd", None]) == 0  # only our own request folders


@pytest.mark.slow  # a `python -m headshot` process
def test_cli_end_to_end(obama, tmp_path):
    selfies = tmp_path / "selfies"
    selfies.mkdir()
    for path in obama[:3]:
        (selfies / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "headshot", "--selfies", str(selfies), "--styles", "corporate-grey,medical",
         "--images-per-style", "1", "--seed", "21", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.png")) == ["corporate-grey_21.png", "medical_21.png"]
    assert (out / "headshots-21.zip").exists() and (out / "identity-instantid.safetensors").exists()
    assert json.loads((out / "info.json").read_text())["seed"] == 21
    assert "100%" in proc.stderr  # the progress bar ran to the end


@pytest.mark.slow  # a `python -m headshot` process
def test_cli_reports_a_bad_folder_clearly(tmp_path):
    (tmp_path / "note.jpg").write_text("not a photo")
    proc = subprocess.run(
        [sys.executable, "-m", "headshot", "--selfies", str(tmp_path), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "selfie" in proc.stderr


def test_a_refused_identity_names_each_photo_and_why(faces_dir, analyzer):
    eagle = faces_dir / "no_face" / "dlib_eagle.jpg"
    with pytest.raises(NotEnoughSelfies) as refused:
        studio.create_identity([eagle], "instantid", analyzer=analyzer)
    message = refused.value.message
    assert "No human face was found in 'dlib_eagle.jpg'" in message
    assert "0 of the 1 photo you sent passed the checks" in message
    assert "See the Selfies step" not in message


def test_the_cli_says_why_selfies_were_refused(tmp_path, faces_dir, capsys):
    from headshot.__main__ import main

    folder = tmp_path / "selfies"
    folder.mkdir()
    (folder / "coffee.jpg").write_bytes((faces_dir / "no_face" / "dlib_eagle.jpg").read_bytes())
    assert main(["--selfies", str(folder), "--out", str(tmp_path / "out")]) == 1
    assert "No human face was found in 'coffee.jpg'" in capsys.readouterr().err
