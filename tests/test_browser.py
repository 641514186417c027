"""A person's path in a real browser: Debian's Chromium driven by Playwright.

Uploads selfies, ticks consent, checks them, creates an identity, generates, sees the gallery, and
saves a screenshot of each step under ``.cache/screenshots``.
"""

from __future__ import annotations

import zipfile

import pytest

from tests.e2e import ROOT

pytestmark = pytest.mark.slow
SHOTS = ROOT / ".cache" / "screenshots"


def test_selfies_to_gallery_in_the_browser(browser, app, faces_dir):
    selfies = sorted(str(p) for p in (faces_dir / "same_person" / "obama").glob("*.jpg"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    url = app[0]  # python app.py, started by the app fixture in conftest.py
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.set_default_timeout(120_000)
    page.goto(url)
    page.locator("#selfies input[type=file]").set_input_files(selfies)
    page.wait_for_timeout(1500)

    # Nothing is processed before consent.
    page.locator("#check").click()
    page.get_by_text("Please tick the consent box").first.wait_for()
    page.locator("#consent input[type=checkbox]").check()
    page.locator("#check").click()
    page.locator("#readiness").get_by_text(f"{len(selfies)} of {len(selfies)} selfies accepted").wait_for()
    page.screenshot(path=str(SHOTS / "1-selfies.png"), full_page=True)

    page.get_by_role("tab", name="2 Identity").click()
    page.locator("#create").click()
    page.locator("#identity_text").get_by_text("Identity ready").wait_for()
    page.screenshot(path=str(SHOTS / "2-identity.png"), full_page=True)

    page.get_by_role("tab", name="3 Headshots").click()
    page.locator("#generate").click()
    page.locator("#gallery img").first.wait_for()
    assert page.locator("#gallery img").count() >= 2
    page.screenshot(path=str(SHOTS / "3-generate.png"), full_page=True)

    # A pack of two styles, downloaded as a ZIP.
    page.get_by_text("Headshot pack: several styles at once").first.click()
    page.locator("#pack_styles").get_by_text("Outdoor natural light").click()
    page.locator("#pack").click()
    link = page.locator("#pack_zip a[download]").first
    link.wait_for()
    with page.expect_download() as download_info:
        link.click()
    target = SHOTS.parent / "pack.zip"
    download_info.value.save_as(target)
    with zipfile.ZipFile(target) as archive:
        pngs = [n for n in archive.namelist() if n.endswith(".png")]
    assert len(pngs) == 4  # two styles x two images
    page.screenshot(path=str(SHOTS / "4-pack.png"), full_page=True)
    page.close()
