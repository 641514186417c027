"""The Gradio app's page: three steps (Selfies, Identity, Headshots), the look, and serving.

``build_demo()`` lays out the Blocks and wires each event to its handler: an endpoint (``endpoints``, the
API and MCP surface) or one of the page's own callbacks (``callbacks``, ``cards``); it only builds. ``serve()`` starts the preload and the sweeper and
launches with the theme, the CSS and ``webfiles``' private-upload middleware. Slider and number bounds
are the ``config`` limits.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from headshot import config, sessions, studio
from headshot.web.callbacks import (
    after_delete_page,
    continue_headshots_page,
    continue_identity_page,
    create_identity_page,
    device_note,
    empty_means,
    example_selfies,
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
    DEFAULT_LORA_SETTING,
    RANDOM_SEED,
    STYLE_STEPS,
    STYLE_VALUE,
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
from headshot.web.files import PrivateFiles, fix_list_schema, release_quiet_states, use_mcp_sessions

CONSENT_LABEL = "These are photos of me, or I have the person's permission to use them to make AI headshots."

HEADER = """
<div class="hs-header">
  <div class="hs-title">Headshot Studio</div>
  <div class="hs-tagline">Professional studio headshots from 3-6 selfies: business attire, studio or outdoor
  backdrops, good light. Three steps: your selfies, your face, your headshots.</div>
</div>
"""

SELFIES_LABEL = "Your selfies (3-6 work best)"
STEP_SELFIES = (
    "**Step 1 of 3.** Add 3-6 selfies, tick the consent box and press **Check my selfies**: "
    "each photo gets a pass or a reason it was refused."
)
STEP_IDENTITY = (
    "**Step 2 of 3.** Press **Create my identity**: the app learns your face from the accepted selfies. "
    "Download the identity file to come back later without uploading your selfies again."
)
STEP_GENERATE = (
    "**Step 3 of 3.** Pick a style and press **Generate headshots**. The best likeness comes first; "
    "click an image to see it large and download it."
)

TIPS = f"""
**Tips for good selfies.** Face the camera, eyes open, in soft daylight (face a window).
Use different days, outfits and backgrounds, but only you in the picture. No sunglasses, hats or
heavy filters. Hold the phone at eye level and tap to focus on your face. JPEG, PNG, WebP and
iPhone HEIC photos are fine, up to {config.MAX_SELFIES} at a time.
"""

PRIVACY = f"""
**Your photos stay yours.** Nothing is processed before you tick the consent box. Uploads and results
are deleted from the server within {sum(config.DELETE_CACHE) // 60} minutes, nothing is kept
beyond that, and **Delete my data** removes everything of this session now (every link to it then
answers "not found"). Your files are kept in a folder of this session's own, never shared with another
visitor. The identity file is yours to download and upload again later. Every image is labelled as AI-generated
in its metadata (IPTC `trainedAlgorithmicMedia`). Calling the API asserts the same consent.
"""

# The README's licence table: on a Space its page (SPACE_ID is set there), else the README next to app.py.
_README_LICENCES = (
    f"https://huggingface.co/spaces/{os.environ['SPACE_ID']}/blob/main/README.md#licences"
    if os.environ.get("SPACE_ID")
    else "README.md#licences"
)
LICENCES = f"""
**Licences.** The app's code is Apache-2.0, but some of the models it runs are not free for business use:
InstantID's checkpoints are released for research only and insightface's antelopev2 face models for
non-commercial research only. Before using this app or its images commercially, read the
[licence table]({_README_LICENCES}) and the terms of each model.
"""


# --------------------------------------------------------------------------------------
# Handlers (each one is an API endpoint or the UI glue around one)
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Sessions: whose files these are (see sessions.Session)
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Files on the HTTP layer: private uploads, 404 for deleted files, an MCP schema without $ref
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------


def build_demo() -> gr.Blocks:
    """The Blocks app, its events and its queue settings. Starts nothing: no thread, no model load
    (``serve`` does that), so importing ``app`` or building the demo in a test has no side effects."""
    use_mcp_sessions()  # one MCP session (Mcp-Session-Id) is one app session (webfiles)
    styles = style_choices()
    default_style = "corporate-grey" if any(v == "corporate-grey" for _, v in styles) else styles[0][1]

    with gr.Blocks(title="Headshot Studio", delete_cache=config.delete_cache()) as demo:
        # Every file the app keeps lives in a session's folder inside Gradio's cache, so that Gradio
        # serves it where it is (no shared content-addressed copies) and Delete removes what was served.
        sessions.set_work_root(Path(demo.GRADIO_CACHE) / "headshot-studio")
        gr.HTML(HEADER, elem_id="header")
        device_md = gr.Markdown(elem_id="device")
        with gr.Tabs(selected="selfies", elem_id="flow") as tabs:
            with gr.Tab("1 Selfies", id="selfies", elem_id="tab_selfies"):
                gr.Markdown(STEP_SELFIES, elem_classes="step-lead")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=300):
                        selfies = gr.File(
                            label=SELFIES_LABEL,
                            file_count="multiple",
                            file_types=["image", ".heic", ".heif", ".avif"],
                            elem_id="selfies",
                        )
                        fix_list_schema(selfies)
                        consent = gr.Checkbox(label=CONSENT_LABEL, value=False, elem_id="consent")
                        check_btn = gr.Button("Check my selfies", variant="primary", elem_id="check")
                        examples = example_selfies()
                        if examples:
                            gr.Examples(examples, inputs=[selfies], label="Or try the example selfies (public domain)")
                    with gr.Column(scale=2, min_width=300):
                        gr.Markdown(TIPS, elem_classes="tips")
                readiness = gr.Markdown(elem_id="readiness")
                # One card per checked selfie: a drawn pass/fail mark, the file name, the reason (tap for all of it).
                cards = gr.HTML("", elem_id="cards")
                next_1 = gr.Button(
                    "Next: learn my face →", variant="primary", visible=False, elem_id="next_1",
                    elem_classes="next",
                )
                with gr.Accordion("Details", open=False, elem_id="details_1"):
                    report = gr.JSON(label="Report", open=False)

            with gr.Tab("2 Identity", id="identity", elem_id="tab_identity"):
                gr.Markdown(STEP_IDENTITY, elem_classes="step-lead")
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        method = gr.Radio(
                            [
                                ("Quick: InstantID (seconds)", "instantid"),
                                ("Closer likeness: LoRA (minutes, 3+ selfies)", "lora"),
                            ],
                            value="instantid",
                            label="How to learn your face",
                        )
                        with gr.Accordion("LoRA settings (optional)", open=False):
                            lora_steps = empty_means(
                                DEFAULT_LORA_SETTING,
                                label="Training steps",
                                placeholder="the default",
                                precision=0,
                                minimum=DEFAULT_LORA_SETTING,
                                maximum=config.MAX_LORA_STEPS,
                                elem_id="lora_steps",
                            )
                            lora_rank = empty_means(
                                DEFAULT_LORA_SETTING,
                                label="Rank",
                                placeholder="the default",
                                precision=0,
                                minimum=DEFAULT_LORA_SETTING,
                                maximum=config.MAX_LORA_RANK,
                                elem_id="lora_rank",
                            )
                            lora_lr = empty_means(
                                DEFAULT_LORA_SETTING,
                                label="Learning rate",
                                placeholder="the default",
                                minimum=DEFAULT_LORA_SETTING,
                                maximum=config.MAX_LORA_LEARNING_RATE,
                                step=1e-5,
                                elem_id="lora_lr",
                            )
                            identity_seed = gr.Number(
                                0,
                                label="Training seed",
                                precision=0,
                                minimum=0,
                                maximum=config.MAX_SEED,
                                elem_id="identity_seed",
                            )
                        create_btn = gr.Button("Create my identity", variant="primary", elem_id="create")
                        continue_btn = gr.Button(
                            "Continue LoRA training", visible=False, variant="primary", elem_id="continue"
                        )
                        # After ZeroGPU refused or stopped the training: what is saved, when GPU time returns
                        # (right under the button pressed, so a phone shows it without scrolling).
                        identity_notice = gr.Markdown("", elem_id="identity_notice", elem_classes="notice")
                    with gr.Column(min_width=300):
                        reference = gr.Image(
                            label="Your face, as the app sees it",
                            interactive=False,
                            type="filepath",
                            height=260,
                            elem_id="reference",
                        )
                        identity_text = gr.Markdown(elem_id="identity_text")
                        identity_file = gr.File(
                            label="Your identity file (keep it to come back later)",
                            file_types=[".safetensors"],
                            elem_id="identity_file",
                        )
                next_2 = gr.Button(
                    "Next: make my headshots →", variant="primary", visible=False, elem_id="next_2",
                    elem_classes="next",
                )
                with gr.Accordion("Details", open=False, elem_id="details_2"):
                    identity_summary = gr.JSON(label="Summary", open=False)

            with gr.Tab("3 Headshots", id="generate", elem_id="tab_generate"):
                gr.Markdown(STEP_GENERATE, elem_classes="step-lead")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        style = gr.Dropdown(styles, value=default_style, label="Style", elem_id="style")
                        style_blurb = gr.Markdown(style_blurb_text(default_style), elem_id="style_blurb")
                        choices = studio.list_options()
                        with gr.Row(equal_height=False):
                            with gr.Column(scale=3, min_width=160):
                                backdrop_choice = gr.Dropdown(
                                    [(o["name"], o["id"]) for o in choices["backdrops"]]
                                    + [("Your brand colour…", BRAND_COLOUR)],
                                    value="style",
                                    label="Backdrop",
                                    elem_id="backdrop",
                                )
                                brand_colour = gr.ColorPicker(
                                    choices["custom_backdrop"]["example"],
                                    label="Brand colour",
                                    visible=False,
                                    elem_id="brand_colour",
                                )
                                # What /generate gets as `backdrop`: the chosen id, or the brand colour as #rrggbb.
                                backdrop = gr.Textbox("style", visible=False)
                                outfit = gr.Dropdown(
                                    [(o["name"], o["id"]) for o in choices["outfits"]],
                                    value="style",
                                    label="Outfit",
                                    elem_id="outfit",
                                )
                            with gr.Column(scale=2, min_width=110):
                                swatch = gr.Image(
                                    preview(default_style, "style"),
                                    type="pil",
                                    label="Backdrop preview",
                                    interactive=False,
                                    show_label=False,
                                    height=170,
                                    elem_id="swatch",
                                    elem_classes="swatch",
                                )
                        subject = gr.Dropdown(
                            [(f"{o['name']} ({o['group']})", o["id"]) for o in choices["subject"]],
                            value=[],
                            multiselect=True,
                            label="About you (optional: one per kind, e.g. Woman, 30s, Keep my glasses, Smile)",
                            elem_id="subject",
                        )
                        prompt = gr.Textbox(
                            "",
                            label="Your own touch (optional)",
                            placeholder="e.g. navy blazer, warm smile, glasses",
                            max_length=config.MAX_PROMPT_CHARS,
                        )
                        with gr.Row():
                            num_images = gr.Slider(
                                config.MIN_IMAGES,
                                config.MAX_IMAGES_PER_REQUEST,
                                value=2,
                                step=1,
                                label="How many headshots",
                                elem_id="num_images",
                            )
                        generate_btn = gr.Button("Generate headshots", variant="primary", elem_id="generate")
                        with gr.Accordion("More settings", open=False, elem_id="more_settings"):
                            negative = gr.Textbox(
                                "", label="Avoid (optional)", max_length=config.MAX_PROMPT_CHARS
                            )
                            seed = empty_means(
                                RANDOM_SEED,
                                label="Seed (leave empty for a random one)",
                                placeholder="random",
                                precision=0,
                                minimum=RANDOM_SEED,
                                maximum=config.MAX_SEED,
                                elem_id="seed",
                            )
                            fast = gr.Checkbox(label="Fast mode (fewer steps, a little less detail)", value=False)
                            best_of = gr.Slider(
                                1,
                                config.MAX_BEST_OF,
                                value=1,
                                step=1,
                                label="Candidates per headshot (the best likeness is kept)",
                                elem_id="best_of",
                            )
                            aspect = gr.Radio(
                                [("The style's", "style"), *[(s, s) for s in config.OUTPUT_SIZES]],
                                value="style",
                                label="Size",
                            )
                            steps = empty_means(
                                STYLE_STEPS,
                                label="Steps",
                                placeholder="the style's",
                                precision=0,
                                minimum=STYLE_STEPS,
                                maximum=config.MAX_STEPS,
                                elem_id="steps",
                            )
                            guidance = empty_means(
                                STYLE_VALUE,
                                label="Guidance",
                                placeholder="the style's",
                                minimum=STYLE_VALUE,
                                maximum=config.MAX_GUIDANCE,
                                step=0.5,
                                elem_id="guidance",
                            )
                            identity_strength = empty_means(
                                STYLE_VALUE,
                                label="Identity strength",
                                placeholder="the style's",
                                minimum=STYLE_VALUE,
                                maximum=config.MAX_ADAPTER_SCALE,
                                step=0.05,
                                elem_id="identity_strength",
                            )
                            identitynet_strength = empty_means(
                                STYLE_VALUE,
                                label="Face-shape strength (IdentityNet)",
                                placeholder="the style's",
                                minimum=STYLE_VALUE,
                                maximum=config.MAX_ADAPTER_SCALE,
                                step=0.05,
                                elem_id="identitynet_strength",
                            )
                            lora_strength = gr.Slider(
                                config.MIN_ADAPTER_SCALE,
                                config.MAX_ADAPTER_SCALE,
                                value=1.0,
                                step=0.05,
                                label="LoRA strength (LoRA identities only)",
                                elem_id="lora_strength",
                            )
                            ai_mark = gr.Checkbox(label="Add a visible 'AI-generated' mark", value=False)
                            linkedin = gr.Checkbox(
                                label=f"Also make LinkedIn {config.LINKEDIN_SIZE}x{config.LINKEDIN_SIZE} crops",
                                value=False,
                            )
                            face_region_only = gr.Checkbox(
                                label="Identity on the face only (outfit and backdrop follow the prompt)",
                                value=True,
                                elem_id="face_region_only",
                            )
                    with gr.Column(scale=3, min_width=300, elem_id="results"):
                        headshots_notice = gr.Markdown("", elem_id="headshots_notice", elem_classes="notice")
                        # A run ZeroGPU cut short partway: what it made is in the gallery; this makes the rest.
                        continue_headshots_btn = gr.Button(
                            "Continue headshots", visible=False, variant="primary", elem_id="continue_headshots"
                        )
                        gallery_filter = gr.Dropdown(
                            [("All your headshots", "all")], value="all", label="Show", visible=False,
                            elem_id="gallery_filter",
                        )
                        gallery = gr.Gallery(
                            label="Your headshots (newest run first, best likeness first)",
                            columns=2,
                            height="auto",
                            format="png",
                            interactive=False,
                            elem_id="gallery",
                        )
                        # Click a headshot: it next to your selfie, its likeness, and what to do with it.
                        with gr.Group(visible=False, elem_id="picked") as picked:
                            with gr.Row(equal_height=True):
                                picked_selfie = gr.Image(
                                    label="Your selfie", type="filepath", interactive=False, height=300,
                                    elem_id="picked_selfie",
                                )
                                picked_image = gr.Image(
                                    label="This headshot", type="filepath", interactive=False, height=300,
                                    elem_id="picked_image",
                                )
                            picked_text = gr.Markdown(elem_id="picked_text", elem_classes="picked-text")
                            with gr.Row(elem_classes="pick-actions"):
                                favourite_btn = gr.Button(
                                    "☆ Add to favourites", size="sm", elem_id="favourite", min_width=120
                                )
                                more_btn = gr.Button("More like this", size="sm", elem_id="more", min_width=120)
                                regenerate_btn = gr.Button(
                                    "Regenerate this one", size="sm", elem_id="regenerate", min_width=120
                                )
                                refine_btn = gr.Button(
                                    f"High resolution ({config.REFINE_SCALE:g}x)", size="sm", elem_id="refine",
                                    min_width=120,
                                )
                            refined_download = gr.Image(
                                label="High resolution (PNG)",
                                type="filepath", format="png", visible=False, interactive=False,
                                buttons=["download", "fullscreen"], elem_id="refined_download",
                            )
                        picked_path = gr.Textbox("", visible=False)
                        with gr.Accordion("★ Your favourites", open=True, visible=False,
                                          elem_id="favourites_section") as favourites_section:
                            favourites = gr.Gallery(
                                label="Favourites", show_label=False, columns=4, height="auto",
                                interactive=False, elem_id="favourites",
                            )
                            favourites_zip = gr.File(
                                label="Download your favourites (ZIP)", interactive=False, elem_id="favourites_zip"
                            )
                        with gr.Accordion("Headshot pack: several styles at once, as a ZIP", open=False,
                                          elem_id="pack_section"):
                            pack_styles = gr.CheckboxGroup(
                                styles, value=[default_style], label="Styles", elem_id="pack_styles"
                            )
                            per_style = gr.Slider(
                                config.MIN_IMAGES,
                                config.MAX_IMAGES_PER_REQUEST,
                                value=2,
                                step=1,
                                label="Headshots per style",
                                elem_id="per_style",
                            )
                            pack_btn = gr.Button("Generate pack", variant="primary", elem_id="pack")
                            pack_zip = gr.File(label="Your pack (ZIP of PNGs)", interactive=False, elem_id="pack_zip")
                        with gr.Accordion("Details", open=False, elem_id="details_3"):
                            info = gr.JSON(label="Seeds, likeness and settings", open=False)
        with gr.Accordion("Privacy and licences", open=False, elem_id="privacy"):
            gr.Markdown(PRIVACY)
            gr.Markdown(LICENCES, elem_id="licences")
        delete_btn = gr.Button("Delete my data", variant="stop", size="sm", elem_id="delete")
        # Delete asks first: the question and its two answers, shown by the button above.
        with gr.Group(visible=False, elem_id="delete_confirm") as delete_confirm:
            gr.Markdown(
                "**Delete everything of this session?** Your selfies, identity and every headshot go from "
                "the server and from this page. Download what you want to keep first.",
                elem_classes="notice",
            )
            with gr.Row():
                delete_yes = gr.Button("Yes, delete everything", variant="stop", size="sm", elem_id="delete_yes")
                delete_no = gr.Button("Cancel", size="sm", elem_id="delete_no")
        # /delete_my_data's optional links (for callers without a lasting session) and its answer.
        delete_links = gr.Textbox("", visible=False)
        deleted = gr.JSON(None, visible=False)
        # Selfies and identities as text (data: URLs or links to this app's files) for API and MCP callers.
        selfie_links = gr.Textbox("", visible=False)
        identity_link = gr.Textbox("", visible=False)
        # This session's files on the server: {"files": sessions.Session}, one per Gradio session (a tab, an
        # API client; Gradio deep-copies the empty dict for each), made on first use and changed in place
        # by the handlers (no State outputs: Gradio's MCP server cannot relay those). Never shared, not
        # part of the API. The sweeper removes the files of sessions that never press Delete.
        session = gr.State({})

        # Step 1: consent first, then the API endpoint, then the cards (UI only).
        check_btn.click(require_consent, consent, None, api_visibility="private").success(
            validate_selfies,
            [selfies, selfie_links, session],
            report,
            api_name="validate_selfies",
            api_description=validate_selfies.__doc__ + "\n" + API_CONSENT,
            concurrency_limit=4,
        ).then(
            selfie_cards_view, [selfies, report, session], [cards, readiness], api_visibility="private"
        ).then(next_after_check, report, next_1, api_visibility="private")
        next_1.click(lambda: gr.Tabs(selected="identity"), None, tabs, api_visibility="private")
        consent.input(None, None, None, js=DISMISS_TOASTS)  # ticked: the reminder has done its job

        gpu = {"concurrency_id": "gpu", "concurrency_limit": config.QUEUE_CONCURRENCY_PER_GPU}
        # Step 2. The API endpoints raise on a GPU refusal (for programs); the page's buttons call the same
        # code through *_page, which shows a refusal in the step (what is saved, when GPU time returns,
        # Continue) instead of an error badge.
        identity_inputs = [selfies, method, lora_steps, lora_rank, lora_lr, identity_seed, selfie_links, session]
        gr.Button(visible=False).click(
            create_identity,
            identity_inputs,
            [identity_file, identity_summary],
            api_name="create_identity",
            api_description=create_identity.__doc__ + "\n" + API_CONSENT,
            **gpu,
        )
        gr.Button(visible=False).click(
            continue_identity,
            [session],
            [identity_file, identity_summary],
            api_name="continue_identity",
            api_description=continue_identity.__doc__,
            **gpu,
        )
        identity_outputs = [identity_file, identity_summary, identity_notice, continue_btn]
        create_event = create_btn.click(require_consent, consent, None, api_visibility="private").success(
            create_identity_page, identity_inputs, identity_outputs, api_visibility="private", **gpu
        )
        continue_event = continue_btn.click(
            continue_identity_page, [session], identity_outputs, api_visibility="private", **gpu
        )
        for event in (create_event, continue_event):
            event.success(
                show_identity,
                [identity_file, session],
                [reference, identity_text],
                api_visibility="private",
            ).success(identity_next, identity_file, next_2, api_visibility="private")
        identity_file.upload(
            show_identity,
            [identity_file, session],
            [reference, identity_text],
            api_visibility="private",
        ).success(show_it, None, next_2, api_visibility="private")
        next_2.click(lambda: gr.Tabs(selected="generate"), None, tabs, api_visibility="private")

        # Step 3
        for changed in (style, backdrop, outfit):
            changed.change(style_blurb_text, [style, backdrop, outfit], style_blurb, api_visibility="private")
        generate_inputs = [
            identity_file,
            style,
            prompt,
            negative,
            num_images,
            seed,
            steps,
            guidance,
            identity_strength,
            identitynet_strength,
            aspect,
            fast,
            best_of,
            lora_strength,
            ai_mark,
            linkedin,
            identity_link,
            face_region_only,
            backdrop,
            outfit,
            subject,
            session,
        ]
        pack_inputs = [
            identity_file,
            pack_styles,
            per_style,
            prompt,
            negative,
            seed,
            fast,
            best_of,
            lora_strength,
            ai_mark,
            linkedin,
            identity_link,
            face_region_only,
            backdrop,
            outfit,
            subject,
            session,
        ]
        gr.Button(visible=False).click(
            generate, generate_inputs, [gallery, info], api_name="generate", **gpu
        )
        gr.Button(visible=False).click(
            generate_pack, pack_inputs, [pack_zip, gallery, info], api_name="generate_pack", **gpu
        )
        # A generate or pack cut short by ZeroGPU returns what it made (info.incomplete); this finishes it.
        gr.Button(visible=False).click(
            continue_headshots,
            [session],
            [pack_zip, gallery, info],
            api_name="continue_headshots",
            api_description=continue_headshots.__doc__,
            **gpu,
        )
        # The page: every run adds to the session gallery (newest first); on a phone the results scroll
        # into view as the run starts. A run cut short says so in the notice and shows Continue headshots.
        shown = [gallery, gallery_filter, info, headshots_notice, continue_headshots_btn]
        generate_btn.click(None, None, None, js=SCROLL_TO_RESULTS)
        generate_btn.click(generate_page, generate_inputs, shown, api_visibility="private", **gpu)
        pack_btn.click(None, None, None, js=SCROLL_TO_RESULTS)
        pack_btn.click(generate_pack_page, pack_inputs, [pack_zip, *shown], api_visibility="private", **gpu)
        continue_headshots_btn.click(None, None, None, js=SCROLL_TO_RESULTS)
        continue_headshots_btn.click(
            continue_headshots_page, [session], [pack_zip, *shown], api_visibility="private", **gpu
        )
        gallery_filter.input(gallery_view, [session, gallery_filter], [gallery, gallery_filter],
                             api_visibility="private")
        # A chosen headshot: next to the selfie, with its likeness; favourites (also /favourite in the API).
        gallery.select(
            pick_headshot,
            [gallery, identity_file, identity_link, session],
            [picked_path, picked_selfie, picked_image, picked_text, picked, favourite_btn, refined_download],
            api_visibility="private",
        )
        favourite_btn.click(
            favourite, [picked_path, session], [favourites, favourites_zip], api_name="favourite"
        ).then(favourites_view, [picked_path, session], [favourites_section, favourite_btn], api_visibility="private")
        # Refine / More like this / Regenerate as API endpoints (hidden inputs: files or links).
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
            [gallery, refined_file, info],
            api_name="refine",
            **gpu,
        )
        gr.Button(visible=False).click(
            more_like_this,
            [identity_file, chosen, like_count, like_strength, identity_link, chosen_link, session],
            [gallery, info],
            api_name="more_like_this",
            **gpu,
        )
        gr.Button(visible=False).click(
            regenerate,
            [identity_file, chosen, identity_link, chosen_link, session],
            [gallery, info],
            api_name="regenerate",
            **gpu,
        )
        # The same three for the chosen headshot in the page: the new headshots join the session gallery,
        # a regenerated one becomes the chosen one, the refined picture shows beside it with its download.
        chosen_inputs = [identity_file, picked_path, identity_link, session]
        more_btn.click(more_like_this_ui, chosen_inputs, shown, api_visibility="private", **gpu)
        regenerate_btn.click(
            regenerate_ui, chosen_inputs, [*shown, picked_path, picked_image, picked_text],
            api_visibility="private", **gpu,
        )
        refine_btn.click(refine_ui, chosen_inputs, [refined_download, *shown], api_visibility="private", **gpu)
        gr.api(list_styles, api_name="list_styles")
        gr.api(list_options, api_name="list_options")
        for changed in (backdrop_choice, brand_colour):
            changed.change(
                _backdrop_value, [backdrop_choice, brand_colour], [backdrop, brand_colour], api_visibility="private"
            )
        for changed in (style, backdrop):
            changed.change(preview, [style, backdrop], swatch, api_visibility="private")

        # Delete asks first. The API endpoint answers {deleted_files, message}; the page then empties every
        # field that showed the session's files, the consent box and the notices.
        delete_btn.click(lambda: gr.update(visible=True), None, delete_confirm, api_visibility="private")
        delete_no.click(lambda: gr.update(visible=False), None, delete_confirm, api_visibility="private")
        delete_yes.click(
            delete_my_data,
            [delete_links, session],
            deleted,
            api_name="delete_my_data",
        ).then(
            after_delete_page,
            deleted,
            [selfies, identity_file, gallery, pack_zip, cards, reference, identity_text, readiness, report, info,
             next_1, next_2, picked, picked_path, favourites, favourites_zip, favourites_section, refined_download,
             consent, identity_summary, identity_notice, continue_btn, headshots_notice, gallery_filter,
             picked_selfie, picked_image, delete_confirm, continue_headshots_btn],
            api_visibility="private",
        )
        demo.load(device_note, None, device_md, api_visibility="private")
        check_image_panel(session)
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


def check_image_panel(session: gr.State) -> None:
    """"Check an image": any image's Content Credentials (C2PA), and the ``/verify`` endpoint (API, MCP).

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


BRAND_COLOUR = "brand-colour"  # the Backdrop menu's "Your brand colour…": the colour picker decides


def _backdrop_value(choice: str | None, colour: str | None):
    """The backdrop /generate gets (an id, or the picked colour as #rrggbb) and the picker shown with it."""
    if choice != BRAND_COLOUR:
        return choice or "style", gr.update(visible=False)
    return _hex(colour), gr.update(visible=True)


def _hex(colour: str | None) -> str:
    """The colour picker's value as #rrggbb (browsers may send rgb()/rgba() or #rgb)."""
    import re

    text = (colour or "").strip().lower()
    found = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+).*\)", text)
    if found:
        return "#" + "".join(f"{min(255, round(float(v))):02x}" for v in found.groups())
    if re.fullmatch(r"#[0-9a-f]{3}", text):
        return "#" + "".join(c * 2 for c in text[1:])
    return text[:7]


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
