"""What a person sees, in headless Chromium, at 1280 px and on a 390 px phone.

Walks the whole flow (selfies, identity, headshots) with the Next buttons, and asserts what a person sees:
result areas are results (no "Drop" upload prompt), raw JSON is folded away, every step is reachable on
the phone (no tab hidden behind an overflow menu), refusals say why; a chosen headshot's actions, and a
pack downloaded as a ZIP. Screenshots of every step go to
``.cache/screenshots/flow-<width>-<step>.png`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import zipfile

import pytest

from tests.e2e import ROOT

pytestmark = pytest.mark.slow
SHOTS = ROOT / ".cache" / "screenshots"
RESULT_AREAS = (
    "#cards", "#gallery", "#pack_zip", "#reference", "#picked_selfie", "#picked_image", "#favourites",
    "#favourites_zip", "#refined_download",
)
STEP_TABS = ("1 Selfies", "2 Identity", "3 Headshots")


def _shot(page, width: int, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"flow-{width}-{name}.png"), full_page=True)


def _no_upload_prompt_in_results(page) -> None:
    for area in RESULT_AREAS:
        found = page.locator(area)
        if found.count():
            text = found.first.inner_text()
            assert "Drop" not in text and "Click to Upload" not in text, (area, text)


def _no_open_json(page) -> None:
    """Raw JSON only inside a closed Details section: none visible by default."""
    visible = [el for el in page.locator(".json-holder, [data-testid=json]").all() if el.is_visible()]
    assert not visible, "a raw JSON panel is open"


def _tabs_all_visible(page) -> None:
    for name in STEP_TABS:
        tab = page.get_by_role("tab", name=name)
        assert tab.count() == 1 and tab.is_visible(), f"tab {name!r} is hidden (overflow menu?)"
        box = tab.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"] + 1, name


@pytest.mark.parametrize("width", [1280, 390])
def test_the_flow_as_a_person_sees_it(browser, app, faces_dir, width):
    selfies = sorted(str(p) for p in (faces_dir / "same_person" / "obama").glob("*.jpg"))[:3]
    phone = width < 600
    context = browser.new_context(
        viewport={"width": width, "height": 900 if phone else 1000},
        device_scale_factor=1,
        is_mobile=phone,
        has_touch=phone,
    )
    page = context.new_page()
    page.set_default_timeout(180_000)
    page.goto(app[0])
    page.locator("#check").wait_for()
    _tabs_all_visible(page)
    assert "3-6" in page.locator("#selfies").inner_text()  # the box says what the intro says
    _no_upload_prompt_in_results(page)
    _no_open_json(page)
    assert not page.locator("#next_1").is_visible()  # Next appears once the step is done
    _shot(page, width, "0-start")

    page.locator("#selfies input[type=file]").set_input_files(selfies)
    page.wait_for_timeout(1500)
    page.locator("#check").click()
    toast = page.locator(".toast-body").filter(has_text="tick the consent box").first
    toast.wait_for()
    assert "Consent needed" in toast.inner_text() and "Error" not in toast.inner_text()
    assert page.locator(".toast-body.error").count() == 0
    page.locator("#consent input[type=checkbox]").check()
    page.locator("#check").click()
    page.locator("#readiness").get_by_text(f"{len(selfies)} of {len(selfies)} selfies accepted").wait_for()
    page.locator("#cards img").first.wait_for()
    _no_upload_prompt_in_results(page)
    _no_open_json(page)
    _shot(page, width, "1-selfies")

    page.locator("#next_1").click()
    page.locator("#create").wait_for(state="visible")
    page.locator("#create").click()
    page.locator("#identity_text").get_by_text("Identity ready").wait_for()
    body = page.locator("body").inner_text()
    assert "/root/" not in body and "/tmp/" not in body and ".cache/" not in body  # no server paths
    _no_open_json(page)
    _shot(page, width, "2-identity")

    page.locator("#next_2").click()
    page.locator("#generate").wait_for(state="visible")
    # Any brand colour: the menu's last choice shows a colour picker, and the preview follows it.
    swatch = page.locator("#swatch img").get_attribute("src")
    assert not page.locator("#brand_colour").is_visible()
    page.locator("#backdrop input").click()
    page.get_by_role("option", name="Your brand colour…").click()
    page.locator("#brand_colour").wait_for(state="visible")
    page.wait_for_function(f"document.querySelector('#swatch img').src != {swatch!r}")
    page.locator("#generate").click()
    page.locator("#gallery img").first.wait_for()
    assert page.locator("#gallery img").count() >= 2
    _no_upload_prompt_in_results(page)
    _no_open_json(page)
    _shot(page, width, "3-headshots")

    # A chosen headshot: next to the selfie, with its likeness; then a favourite, ready to download.
    assert not page.locator("#picked").is_visible() and not page.locator("#favourites_section").is_visible()
    page.locator("#gallery img").first.click()
    page.locator("#picked_text").get_by_text("Style: corporate-grey").wait_for()
    page.locator("#picked_selfie img").wait_for()
    page.locator("#picked_image img").wait_for()
    assert "ikeness" in page.locator("#picked_text").inner_text() or "No face" in page.locator("#picked_text").inner_text()
    page.locator("#favourite").click()
    page.locator("#favourites img").first.wait_for()
    page.locator("#favourite").get_by_text("In your favourites").wait_for()
    assert "favourite-headshots" in page.locator("#favourites_zip").inner_text()
    _no_upload_prompt_in_results(page)
    _shot(page, width, "4-pick")

    # What to do with it: on the phone the buttons are there and fit; they run once, on the desktop.
    for button in ("#more", "#regenerate", "#refine"):
        box = page.locator(button).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, button
    if not phone:
        _actions_and_pack(page, width)

    # Every step stays reachable from the tabs.
    for name, marker in zip(STEP_TABS, ("#check", "#create", "#generate"), strict=True):
        page.get_by_role("tab", name=name).click()
        page.locator(marker).wait_for(state="visible")
    context.close()


def _actions_and_pack(page, width: int) -> None:
    """More like this (4 variations first in the gallery), regenerate in its place, a high-resolution
    download, then a pack of two styles downloaded as a ZIP (on the desktop: the same page on the phone)."""
    items = "new Set([...document.querySelectorAll('#gallery img')].map(e => e.src)).size"  # preview + strip
    before = page.evaluate(items)
    seed_text = page.locator("#picked_text").inner_text()
    page.locator("#more").click()
    page.wait_for_function(f"{items} == {before + 4}", timeout=180_000)
    page.locator("#regenerate").click()
    page.wait_for_function(
        "t => !document.querySelector('#picked_text').innerText.includes(t)", arg=seed_text.split("seed")[-1].strip(),
        timeout=180_000,
    )
    assert page.evaluate(items) == before + 4  # in its place, not added
    page.locator("#refine").click()
    page.locator("#refined_download").get_by_text(".png").first.wait_for()
    _no_upload_prompt_in_results(page)
    _no_open_json(page)
    _shot(page, width, "5-actions")

    # A pack of two styles, downloaded as a ZIP.
    page.get_by_text("Headshot pack: several styles at once").first.click()
    page.locator("#pack_styles").get_by_text("Outdoor natural light").click()
    page.locator("#pack").click()
    link = page.locator("#pack_zip a[download]").first
    link.wait_for()
    with page.expect_download() as download_info:
        link.click()
    target = SHOTS / "pack.zip"
    download_info.value.save_as(target)
    with zipfile.ZipFile(target) as archive:
        pngs = [n for n in archive.namelist() if n.endswith(".png")]
    assert len(pngs) == 4  # two styles x two images
    _shot(page, width, "6-pack")


def test_the_api_says_which_photo_was_refused_and_why(client, faces_dir):
    from gradio_client import handle_file

    eagle = faces_dir / "no_face" / "dlib_eagle.jpg"
    with pytest.raises(Exception, match=r"No human face was found in 'dlib_eagle.jpg'"):
        client.predict(selfies=[handle_file(str(eagle))], method="instantid", api_name="/create_identity")


def test_list_options_and_the_choices_change_the_prompt_and_the_image(client, faces_dir):
    from gradio_client import handle_file
    from PIL import Image

    options = client.predict(api_name="/list_options")
    assert {"styles", "backdrops", "outfits", "subject"} <= set(options)
    selfie = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))[0]
    identity, _ = client.predict(selfies=[handle_file(str(selfie))], api_name="/create_identity")
    common = {"identity": handle_file(identity), "style": "corporate-grey", "num_images": 1, "seed": 7}
    plain, _ = client.predict(**common, api_name="/generate")
    chosen, info = client.predict(
        **common, backdrop="white", outfit="blazer", subject=["woman", "smile"], api_name="/generate"
    )
    assert (info["backdrop"], info["outfit"], info["subject"]) == ("white", "blazer", "woman,smile")
    from headshot.disclosure import read_png_metadata

    before, after = (read_png_metadata(item[0]["image"]) for item in (plain, chosen))
    assert "mottled grey" in before["Description"] and "bright white studio backdrop" not in before["Description"]
    assert "bright white studio backdrop" in after["Description"] and "navy blazer" in after["Description"]
    assert "mottled grey" not in after["Description"] and "charcoal suit" not in after["Description"]  # replaced
    assert after["Description"].startswith("professional corporate headshot of a woman")
    pixels = [Image.open(item[0]["image"]).convert("RGB").tobytes() for item in (plain, chosen)]
    assert pixels[0] != pixels[1]  # same seed, another prompt: another image


def test_favourites_through_the_api(client, faces_dir):
    """A client stars a headshot by the file name /generate's info gives, gets a ZIP, unstars it again."""
    import zipfile

    from gradio_client import handle_file

    selfie = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))[0]
    identity, _ = client.predict(selfies=[handle_file(str(selfie))], api_name="/create_identity")
    _, info = client.predict(identity=handle_file(identity), num_images=2, seed=5, api_name="/generate")
    name = info["images"][1]["file"]
    starred, archive = client.predict(image=name, api_name="/favourite")
    assert len(starred) == 1 and archive
    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == [f"01-{name}", "info.json"]
    starred, archive = client.predict(image=name, api_name="/favourite")
    assert starred == [] and archive is None
    with pytest.raises(Exception, match="not one of the headshots"):
        client.predict(image="someone-else.png", api_name="/favourite")
