"""The Gradio app's page: the Blocks (``build_demo``), its events, the look, and serving.

``build_demo()`` builds the page part by part (``layout``: the header, the three steps, privacy and
Delete) and then wires each step's events: to an endpoint (``endpoints``: the API and MCP surface, each
with its ``api_name``) or to the page's own callbacks (``callbacks``, ``cards``: ``api_visibility="private"``).
It only builds. ``serve()`` starts the preload and the sweeper and launches with the theme, the CSS and
``files``' private-upload middleware.
"""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from headshot import config, sessions, studio
from headshot.web.callbacks import (
    after_delete_page,
    backdrop_value,
    continue_headshots_page,
    continue_identity_page,
    create_identity_page,
    device_note,
    favourites_view,
    gallery_view,
    generate_pack_page,
    generate_page,
    identity_next,
    more_like_this_ui,
    next_after_check,
    pick_headshot,
    preview,
    refine_ui,
    regenerate_ui,
    require_consent,
    show_identity,
    show_it,
    style_blurb_text,
    style_choices,
)
from headshot.web.cards import selfie_cards_view
from headshot.web.endpoints import (
    API_CONSENT,
    continue_headshots,
    continue_identity,
    create_identity,
    delete_my_data,
    favourite,
    generate,
    generate_pack,
    list_options,
    list_styles,
    more_like_this,
    refine,
    regenerate,
    validate_selfies,
)
from headshot.web.files import PrivateFiles, release_quiet_states, use_mcp_sessions
from headshot.web.layout import (
    Page,
    Results,
    header,
    headshots_step,
    hidden_inputs,
    identity_step,
    privacy_and_delete,
    selfies_step,
)


def build_demo() -> gr.Blocks:
    """The Blocks app, its events and its queue settings. Starts nothing: no thread, no model load
    (``serve`` does that), so importing ``app`` or building the demo in a test has no side effects.

    The page is laid out first, part by part (``layout``), and wired after, step by step: the endpoints'
    events carry their ``api_name`` (the API and MCP tools), the page's own callbacks are private. The
    order of the builders is the order of the components and events in the page's config: keep it."""
    use_mcp_sessions()  # one MCP session (Mcp-Session-Id) is one app session (files)
    styles = style_choices()
    default_style = "corporate-grey" if any(v == "corporate-grey" for _, v in styles) else styles[0][1]

    with gr.Blocks(title="Headshot Studio", delete_cache=config.delete_cache()) as demo:
        # Every file the app keeps lives in a session's folder inside Gradio's cache, so that Gradio
        # serves it where it is (no shared content-addressed copies) and Delete removes what was served.
        sessions.set_work_root(Path(demo.GRADIO_CACHE) / "headshot-studio")
        device_md = header()
        with gr.Tabs(selected="selfies", elem_id="flow") as tabs:
            selfies = selfies_step()
            identity = identity_step()
            settings, results = headshots_step(styles, default_style)
        delete = privacy_and_delete()
        page = Page(tabs, selfies, identity, settings, results, delete, hidden_inputs())

        wire_selfies(page)
        wire_identity(page)
        wire_headshots(page)
        wire_chosen_headshot(page)
        wire_options(page)
        wire_delete(page)
        demo.load(device_note, None, device_md, api_visibility="private")
        check_image_panel(page.hidden.session)
    # A bounded queue (a full queue answers "busy" at once instead of piling up work), and no REST route
    # around it: Gradio leaves /gradio_api/run/<name> open off Spaces, which would skip the queue, its
    # size bound and the GPU concurrency limit. Settings only (no thread): they belong to the built demo,
    # whoever launches it (serve, `gradio app.py`, a test).
    demo.queue(
        max_size=queue_max_size(),
        default_concurrency_limit=config.QUEUE_CONCURRENCY_PER_GPU,
        api_open=False,
    )
    return demo


def gpu_slot() -> dict:
    """The GPU events' shared queue slot: at most ``config.QUEUE_CONCURRENCY_PER_GPU`` run at once."""
    return {"concurrency_id": "gpu", "concurrency_limit": config.QUEUE_CONCURRENCY_PER_GPU}


def wire_selfies(page: Page) -> None:
    """Step 1: consent first, then the API endpoint, then the cards (UI only)."""
    step, hidden = page.selfies, page.hidden
    step.check_btn.click(require_consent, step.consent, None, api_visibility="private").success(
        validate_selfies,
        [step.selfies, hidden.selfie_links, hidden.session],
        step.report,
        api_name="validate_selfies",
        api_description=validate_selfies.__doc__ + "\n" + API_CONSENT,
        concurrency_limit=4,
    ).then(
        selfie_cards_view,
        [step.selfies, step.report, hidden.session],
        [step.cards, step.readiness],
        api_visibility="private",
    ).then(next_after_check, step.report, step.next_1, api_visibility="private")
    step.next_1.click(lambda: gr.Tabs(selected="identity"), None, page.tabs, api_visibility="private")
    step.consent.input(None, None, None, js=DISMISS_TOASTS)  # ticked: the reminder has done its job


def wire_identity(page: Page) -> None:
    """Step 2. The API endpoints raise on a GPU refusal (for programs); the page's buttons call the same
    code through *_page, which shows a refusal in the step (what is saved, when GPU time returns,
    Continue) instead of an error badge."""
    step, session = page.identity, page.hidden.session
    identity_inputs = [
        page.selfies.selfies,
        step.method,
        step.lora_steps,
        step.lora_rank,
        step.lora_lr,
        step.identity_seed,
        page.hidden.selfie_links,
        session,
    ]
    identity = [step.identity_file, step.identity_summary]
    gr.Button(visible=False).click(
        create_identity,
        identity_inputs,
        identity,
        api_name="create_identity",
        api_description=create_identity.__doc__ + "\n" + API_CONSENT,
        **gpu_slot(),
    )
    gr.Button(visible=False).click(
        continue_identity,
        [session],
        identity,
        api_name="continue_identity",
        api_description=continue_identity.__doc__,
        **gpu_slot(),
    )
    identity_outputs = [*identity, step.identity_notice, step.continue_btn]
    create_event = step.create_btn.click(
        require_consent, page.selfies.consent, None, api_visibility="private"
    ).success(create_identity_page, identity_inputs, identity_outputs, api_visibility="private", **gpu_slot())
    continue_event = step.continue_btn.click(
        continue_identity_page, [session], identity_outputs, api_visibility="private", **gpu_slot()
    )
    shown = [step.reference, step.identity_text]
    for event in (create_event, continue_event):
        event.success(show_identity, [step.identity_file, session], shown, api_visibility="private").success(
            identity_next, step.identity_file, step.next_2, api_visibility="private"
        )
    step.identity_file.upload(
        show_identity, [step.identity_file, session], shown, api_visibility="private"
    ).success(show_it, None, step.next_2, api_visibility="private")
    step.next_2.click(lambda: gr.Tabs(selected="generate"), None, page.tabs, api_visibility="private")


def headshot_inputs(page: Page) -> tuple[list, list]:
    """The inputs of /generate and of /generate_pack, in their parameters' order."""
    s, identity_file, hidden = page.settings, page.identity.identity_file, page.hidden
    generate_inputs = [
        identity_file,
        s.style,
        s.prompt,
        s.negative,
        s.num_images,
        s.seed,
        s.steps,
        s.guidance,
        s.identity_strength,
        s.identitynet_strength,
        s.aspect,
        s.fast,
        s.best_of,
        s.lora_strength,
        s.ai_mark,
        s.linkedin,
        hidden.identity_link,
        s.face_region_only,
        s.backdrop,
        s.outfit,
        s.subject,
        hidden.session,
    ]
    pack_inputs = [
        identity_file,
        page.results.pack_styles,
        page.results.per_style,
        s.prompt,
        s.negative,
        s.seed,
        s.fast,
        s.best_of,
        s.lora_strength,
        s.ai_mark,
        s.linkedin,
        hidden.identity_link,
        s.face_region_only,
        s.backdrop,
        s.outfit,
        s.subject,
        hidden.session,
    ]
    return generate_inputs, pack_inputs


def run_outputs(results: Results) -> list:
    """What a run's page callback refreshes: the gallery, its filter, the info, the notice, Continue headshots."""
    return [
        results.gallery,
        results.gallery_filter,
        results.info,
        results.headshots_notice,
        results.continue_headshots_btn,
    ]


def wire_headshots(page: Page) -> None:
    """Step 3: the style's words follow the menus; /generate, /generate_pack and /continue_headshots for
    programs, and the page's buttons: every run adds to the session gallery (newest first); on a phone the
    results scroll into view as the run starts. A run cut short says so in the notice and shows Continue
    headshots."""
    s, r, session = page.settings, page.results, page.hidden.session
    for changed in (s.style, s.backdrop, s.outfit):
        changed.change(
            style_blurb_text, [s.style, s.backdrop, s.outfit], s.style_blurb, api_visibility="private"
        )
    generate_inputs, pack_inputs = headshot_inputs(page)
    gr.Button(visible=False).click(
        generate, generate_inputs, [r.gallery, r.info], api_name="generate", **gpu_slot()
    )
    gr.Button(visible=False).click(
        generate_pack, pack_inputs, [r.pack_zip, r.gallery, r.info], api_name="generate_pack", **gpu_slot()
    )
    # A generate or pack cut short by ZeroGPU returns what it made (info.incomplete); this finishes it.
    gr.Button(visible=False).click(
        continue_headshots,
        [session],
        [r.pack_zip, r.gallery, r.info],
        api_name="continue_headshots",
        api_description=continue_headshots.__doc__,
        **gpu_slot(),
    )
    shown = run_outputs(r)
    s.generate_btn.click(None, None, None, js=SCROLL_TO_RESULTS)
    s.generate_btn.click(generate_page, generate_inputs, shown, api_visibility="private", **gpu_slot())
    r.pack_btn.click(None, None, None, js=SCROLL_TO_RESULTS)
    r.pack_btn.click(
        generate_pack_page, pack_inputs, [r.pack_zip, *shown], api_visibility="private", **gpu_slot()
    )
    r.continue_headshots_btn.click(None, None, None, js=SCROLL_TO_RESULTS)
    r.continue_headshots_btn.click(
        continue_headshots_page, [session], [r.pack_zip, *shown], api_visibility="private", **gpu_slot()
    )
    r.gallery_filter.input(
        gallery_view, [session, r.gallery_filter], [r.gallery, r.gallery_filter], api_visibility="private"
    )


def wire_chosen_headshot(page: Page) -> None:
    """A chosen headshot: next to the selfie, with its likeness; favourites (also /favourite in the API);
    Refine, More like this and Regenerate as endpoints and as the panel's buttons."""
    r, identity_file, session = page.results, page.identity.identity_file, page.hidden.session
    r.gallery.select(
        pick_headshot,
        [r.gallery, identity_file, page.hidden.identity_link, session],
        [
            r.picked_path,
            r.picked_selfie,
            r.picked_image,
            r.picked_text,
            r.picked,
            r.favourite_btn,
            r.refined_download,
        ],
        api_visibility="private",
    )
    r.favourite_btn.click(
        favourite, [r.picked_path, session], [r.favourites, r.favourites_zip], api_name="favourite"
    ).then(
        favourites_view,
        [r.picked_path, session],
        [r.favourites_section, r.favourite_btn],
        api_visibility="private",
    )
    chosen_headshot_endpoints(page)
    # The same three for the chosen headshot in the page: the new headshots join the session gallery,
    # a regenerated one becomes the chosen one, the refined picture shows beside it with its download.
    chosen_inputs = [identity_file, r.picked_path, page.hidden.identity_link, session]
    shown = run_outputs(r)
    r.more_btn.click(more_like_this_ui, chosen_inputs, shown, api_visibility="private", **gpu_slot())
    r.regenerate_btn.click(
        regenerate_ui,
        chosen_inputs,
        [*shown, r.picked_path, r.picked_image, r.picked_text],
        api_visibility="private",
        **gpu_slot(),
    )
    r.refine_btn.click(
        refine_ui, chosen_inputs, [r.refined_download, *shown], api_visibility="private", **gpu_slot()
    )


def chosen_headshot_endpoints(page: Page) -> None:
    """Refine / More like this / Regenerate as API endpoints (hidden inputs: files or links)."""
    r, identity_file, identity_link, session = (
        page.results,
        page.identity.identity_file,
        page.hidden.identity_link,
        page.hidden.session,
    )
    chosen = gr.File(None, file_types=[".png"], visible=False, elem_id="chosen_headshot")
    chosen_link = gr.Textbox("", visible=False)  # the headshot as a data: URL or link (MCP agents)
    refine_scale = gr.Number(0, visible=False)  # 0: config.REFINE_SCALE
    refine_strength = gr.Number(0, visible=False)  # 0: config.REFINE_STRENGTH
    like_count = gr.Number(4, visible=False, precision=0)
    like_strength = gr.Number(0, visible=False)  # 0: config.VARIATION_STRENGTH
    refined_file = gr.File(None, visible=False, interactive=False)
    gr.Button(visible=False).click(
        refine,
        [identity_file, chosen, refine_scale, refine_strength, identity_link, chosen_link, session],
        [r.gallery, refined_file, r.info],
        api_name="refine",
        **gpu_slot(),
    )
    gr.Button(visible=False).click(
        more_like_this,
        [identity_file, chosen, like_count, like_strength, identity_link, chosen_link, session],
        [r.gallery, r.info],
        api_name="more_like_this",
        **gpu_slot(),
    )
    gr.Button(visible=False).click(
        regenerate,
        [identity_file, chosen, identity_link, chosen_link, session],
        [r.gallery, r.info],
        api_name="regenerate",
        **gpu_slot(),
    )


def wire_options(page: Page) -> None:
    """/list_styles and /list_options; the backdrop /generate gets from the menu (or the brand colour), and
    the preview swatch following the style and the backdrop."""
    s = page.settings
    gr.api(list_styles, api_name="list_styles")
    gr.api(list_options, api_name="list_options")
    for changed in (s.backdrop_choice, s.brand_colour):
        changed.change(
            backdrop_value,
            [s.backdrop_choice, s.brand_colour],
            [s.backdrop, s.brand_colour],
            api_visibility="private",
        )
    for changed in (s.style, s.backdrop):
        changed.change(preview, [s.style, s.backdrop], s.swatch, api_visibility="private")


def wire_delete(page: Page) -> None:
    """Delete asks first. The API endpoint answers {deleted_files, message}; the page then empties every
    field that showed the session's files, the consent box and the notices."""
    d, hidden = page.delete, page.hidden
    d.delete_btn.click(lambda: gr.update(visible=True), None, d.delete_confirm, api_visibility="private")
    d.delete_no.click(lambda: gr.update(visible=False), None, d.delete_confirm, api_visibility="private")
    d.delete_yes.click(
        delete_my_data, [hidden.delete_links, hidden.session], hidden.deleted, api_name="delete_my_data"
    ).then(after_delete_page, hidden.deleted, emptied_by_delete(page), api_visibility="private")


def emptied_by_delete(page: Page) -> list:
    """What ``callbacks.after_delete_page`` empties, in its order."""
    s, i, r = page.selfies, page.identity, page.results
    return [
        s.selfies,
        i.identity_file,
        r.gallery,
        r.pack_zip,
        s.cards,
        i.reference,
        i.identity_text,
        s.readiness,
        s.report,
        r.info,
        s.next_1,
        i.next_2,
        r.picked,
        r.picked_path,
        r.favourites,
        r.favourites_zip,
        r.favourites_section,
        r.refined_download,
        s.consent,
        i.identity_summary,
        i.identity_notice,
        i.continue_btn,
        r.headshots_notice,
        r.gallery_filter,
        r.picked_selfie,
        r.picked_image,
        page.delete.delete_confirm,
        r.continue_headshots_btn,
    ]


def check_image_panel(session: gr.State) -> None:
    """ "Check an image": any image's Content Credentials (C2PA), and the ``/verify`` endpoint (API, MCP).

    A file input, not an image one: the bytes must arrive as they are, since re-encoding drops them."""
    from headshot.web.callbacks import verify_text
    from headshot.web.endpoints import verify

    with gr.Accordion("Check an image: Content Credentials", open=False, elem_id="check_image"):
        gr.Markdown(
            "Every headshot this app makes carries signed Content Credentials (C2PA): that AI made it, with "
            "which software and style, and when. Drop any image here to read what its credentials say."
        )
        with gr.Row():
            checked = gr.File(None, label="Image to check", file_types=["image"], elem_id="check_file")
            checked_link = gr.Textbox("", visible=False)  # MCP agents: a data: URL or a link
            with gr.Column():
                check_btn = gr.Button("Check", elem_id="check_btn")
                verdict = gr.Markdown(elem_id="check_verdict")
        details = gr.JSON(label="What the credentials say", visible=True, elem_id="check_details")
    check_btn.click(verify, [checked, checked_link, session], details, api_name="verify").then(
        verify_text, details, verdict, api_visibility="private"
    )


# Close the toasts on the page (Gradio's own close buttons): the consent reminder once the box is ticked.
DISMISS_TOASTS = "() => document.querySelectorAll('.toast-close').forEach(button => button.click())"

# On a phone the results column sits below the settings: bring it into view as a run starts.
SCROLL_TO_RESULTS = """() => {
  if (window.innerWidth < 700) {
    const results = document.querySelector('#results');
    if (results) results.scrollIntoView({behavior: 'smooth', block: 'start'});
  }
}"""


def queue_max_size() -> int:
    """How many requests may wait in the queue: ``config.QUEUE_MAX_SIZE``, or ``HEADSHOT_QUEUE_MAX_SIZE``."""
    return max(1, config.env_int("HEADSHOT_QUEUE_MAX_SIZE", config.QUEUE_MAX_SIZE))


# Gradio refuses bigger uploads outright (and gradio_client before sending them). It sits above our own
# per-file limits (a selfie: MAX_UPLOAD_BYTES, an identity file: MAX_IDENTITY_BYTES) so that a file just
# over one of those gets our message, which names the file and the limit, rather than Gradio's.
UPLOAD_HEADROOM_BYTES = 16 * 1024 * 1024
GRADIO_MAX_FILE_SIZE = max(config.MAX_UPLOAD_BYTES, config.MAX_IDENTITY_BYTES) + UPLOAD_HEADROOM_BYTES


_MIDDLEWARE = [Middleware(PrivateFiles)]  # private upload paths, 404 for deleted files (see PrivateFiles)


THEME_HUE = "indigo"
CSS = """
.gradio-container { max-width: 1200px !important; margin: 0 auto !important; }
.hs-header { padding: 18px 4px 6px; }
.hs-title { font-size: 1.9rem; font-weight: 700; letter-spacing: -0.01em; }
.hs-tagline { font-size: 1.02rem; opacity: 0.8; margin-top: 4px; max-width: 60rem; }
.step-lead { font-size: 1.02rem; }
.next { max-width: 420px; margin-left: auto; }
#flow > .tab-wrapper button[role=tab] { font-size: 1.0rem; font-weight: 600; padding-left: 14px; padding-right: 14px; }
#gallery .grid-wrap { min-height: 0 !important; height: auto !important; }
.hs-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px;
  align-items: start; }
.hs-card { margin: 0; border: 1px solid var(--border-color-primary); border-radius: 12px; overflow: hidden;
  background: var(--background-fill-primary); display: flex; flex-direction: column; min-width: 0; }
.hs-card img { width: 100%; aspect-ratio: 1 / 1; object-fit: cover; display: block; }
.hs-card figcaption { padding: 8px 10px 10px; display: flex; flex-direction: column; gap: 2px; min-width: 0;
  font-size: 0.9rem; line-height: 1.3; }
.hs-mark { display: inline-flex; align-items: center; gap: 6px; font-weight: 700; }
.hs-mark svg { width: 18px; height: 18px; flex: none; }
.hs-ok .hs-mark { color: #15803d; } .hs-ok .hs-mark svg circle { fill: #16a34a; }
.hs-bad .hs-mark { color: #b91c1c; } .hs-bad .hs-mark svg circle { fill: #dc2626; }
.hs-bad { border-color: #fca5a5; }
.hs-file { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; opacity: 0.85; }
.hs-reason summary { cursor: pointer; list-style: none; display: flex; gap: 4px; min-width: 0; }
.hs-reason summary span { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.hs-reason summary::-webkit-details-marker { display: none; }
.hs-reason summary::after { content: "\\25B8"; flex: none; opacity: 0.7; }  /* a text triangle, no emoji */
.hs-reason[open] summary::after { content: "\\25BE"; }
.hs-reason p { margin: 4px 0 0; font-size: 0.85rem; }
.notice:has(p):not(:has(.notice)) { border-left: 4px solid var(--color-accent); padding: 6px 12px;
  background: var(--background-fill-secondary); border-radius: 6px; }
#picked_selfie, #picked_image, #refined_download { padding-top: 34px; }  /* labels clear of the icons */
#pack_section > .label-wrap > span, #pack_section button > span:first-child { padding-right: 28px; }
#readiness ul { margin-top: 4px; }
#favourites .grid-wrap { min-height: 0 !important; height: auto !important; }
#favourites .grid-container { grid-template-columns: repeat(auto-fill, minmax(110px, 1fr)) !important; }
#picked_selfie img, #picked_image img { width: 100%; height: 100%; object-fit: contain; }
.picked-text { padding: 6px 12px; }
.swatch img { border-radius: 10px; }
@media (max-width: 640px) {
  .hs-title { font-size: 1.5rem; }
  #flow > .tab-wrapper button[role=tab] { padding-left: 8px; padding-right: 8px; }
  .hs-cards { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 8px; }
  .next { max-width: none; }
  /* Toasts at the bottom on a phone, so they never cover the file list or the buttons under it. */
  .toast-wrap { top: auto !important; bottom: 12px !important; }
}
"""


@functools.cache
def theme():
    """The app's look: Gradio's Soft theme in indigo, the Space card's colour."""
    return gr.themes.Soft(primary_hue=THEME_HUE, secondary_hue="slate", radius_size="lg")


def launch_kwargs() -> dict:
    """What ``python app.py`` passes to ``launch``: the upload size limit, the MCP server, error messages,
    and the ``PrivateFiles`` middleware.

    No ``allowed_paths``: the app's files live in session folders inside Gradio's cache (names with 128
    random bits), which Gradio serves where they are; nothing outside the cache is served.
    """
    return {
        "max_file_size": GRADIO_MAX_FILE_SIZE,
        "mcp_server": True,
        "show_error": True,
        "app_kwargs": {"middleware": _MIDDLEWARE},
        "theme": theme(),
        "css": CSS,
    }


def serve(demo: gr.Blocks | None = None, **launch_overrides) -> None:
    """Run the app (``python app.py``): preload the models where it pays, start the sweeper, launch.

    On a GPU (and on ZeroGPU, where the models must be loaded in the main process at startup) the models
    load and warm up now, so no user waits for it; elsewhere torch is not even imported until the first
    render. The sweeper removes request folders after ``config.DELETE_CACHE[1]`` s even when no request
    comes. Blocks until the server stops.
    """
    if config.on_zerogpu() or Path("/proc/driver/nvidia/version").exists():
        studio.start_preload()
    from headshot import credentials

    credentials.startup_check()  # which key signs the headshots, or why none can (renders go on)
    demo = build_demo() if demo is None else demo
    release_quiet_states(demo)  # the sweep frees Gradio's state of quiet sessions too
    sessions.start_sweeper()
    demo.launch(**{**launch_kwargs(), **launch_overrides})
