"""A chosen headshot next to the selfie, and favourites: a session's own files only, kept in order,
zipped with their metadata, gone on Delete."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from headshot import results, sessions, studio
from headshot.errors import InvalidRequest


@pytest.fixture(scope="module")
def made(faces_dir, analyzer, tmp_path_factory):
    sessions.set_work_root(tmp_path_factory.mktemp("cache") / "headshot-studio")
    obama = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))
    identity = studio.create_identity(obama[:3], "instantid", analyzer=analyzer).identity
    session = sessions.Session()
    options = studio.GenerateOptions(num_images=2, seed=21, steps=2)
    result = studio.generate(identity, "corporate-grey", options, analyzer=analyzer, session=session)
    return identity, session, result


def test_comparison_shows_the_selfie_and_the_headshots_own_likeness(made, analyzer):
    identity, session, result = made
    shot = result.headshots[0]
    reference, pick = results.comparison(session, identity, shot.path, analyzer)
    assert reference.is_file() and session.owns(reference)
    assert (pick.style, pick.seed, pick.verdict) == ("corporate-grey", shot.seed, shot.verdict)
    if shot.likeness is None:
        assert pick.likeness is None and "No face" in pick.text(analyzer.same_person_threshold)
    else:
        assert pick.likeness == pytest.approx(shot.likeness, abs=1e-4)
        assert f"{shot.likeness:.2f}" in pick.text(analyzer.same_person_threshold)


def test_favourites_toggle_keep_order_and_zip_with_metadata(made, analyzer):
    _, session, result = made
    first, second = (h.path for h in result.headshots)
    assert results.toggle_favourite(session, second) is True
    assert results.toggle_favourite(session, first.name) is True  # by name, as /generate's info gives it
    assert results.favourites(session) == [second, first]
    archive = results.favourites_zip(session, analyzer)
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        info = json.loads(z.read("info.json"))
    assert names == [f"01-{second.name}", f"02-{first.name}", "info.json"]
    assert [f["seed"] for f in info["favourites"]] == [result.headshots[1].seed, result.headshots[0].seed]
    assert results.toggle_favourite(session, second) is False
    assert results.favourites(session) == [first]


def test_another_sessions_headshot_or_a_stray_file_is_refused(made, tmp_path):
    _, session, result = made
    stranger = sessions.Session()
    with pytest.raises(InvalidRequest, match="another session"):
        results.toggle_favourite(stranger, result.headshots[0].path)
    with pytest.raises(InvalidRequest, match="not one of the headshots"):
        results.toggle_favourite(stranger, result.headshots[0].path.name)
    stray = tmp_path / "x.png"
    stray.write_bytes(b"")
    with pytest.raises(InvalidRequest, match="not one of the headshots"):
        results.toggle_favourite(session, stray)
    with pytest.raises(InvalidRequest, match="Choose a headshot"):
        results.toggle_favourite(session, "")


def test_a_session_file_that_is_not_a_headshot_is_refused(made, analyzer):
    identity, session, _ = made
    reference, _ = results.comparison(session, identity, made[2].headshots[0].path, analyzer)
    with pytest.raises(InvalidRequest, match="not a headshot made by this app"):
        results.read_pick(Path(reference), analyzer)


def test_delete_forgets_the_favourites(faces_dir, analyzer, made):
    identity, _, _ = made
    session = sessions.Session()
    result = studio.generate(identity, "classic-bw", studio.GenerateOptions(seed=3, steps=2), analyzer=analyzer,
                             session=session)
    results.toggle_favourite(session, result.headshots[0].path)
    session.delete()
    assert session.favourites == [] and results.favourites(session) == []
