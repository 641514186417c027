"""The page's components, step by step: the header, the three steps (Selfies, Identity, Headshots), the
privacy notes with Delete, and the hidden inputs of the API.

Each builder lays out one part inside the Blocks being built and returns its components in a small
dataclass; ``ui.build_demo`` calls them in page order and then wires the events (``ui``). Nothing here
calls an endpoint. Slider and number bounds are the ``config`` limits; a number a person may leave empty
is ``empty_means``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import gradio as gr

from headshot import config
from headshot.styles import list_options
from headshot.web.callbacks import BRAND_COLOUR, example_selfies, preview, style_blurb_text
from headshot.web.endpoints import DEFAULT_LORA_SETTING, RANDOM_SEED, STYLE_STEPS, STYLE_VALUE
from headshot.web.files import fix_list_schema

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
# What each part hands to the wiring
# --------------------------------------------------------------------------------------


@dataclass
class SelfiesStep:
    selfies: gr.File
    consent: gr.Checkbox
    check_btn: gr.Button
    readiness: gr.Markdown
    cards: gr.HTML  # one card per checked selfie (cards.selfie_cards_view)
    next_1: gr.Button
    report: gr.JSON  # /validate_selfies' answer


@dataclass
class IdentityStep:
    method: gr.Radio
    lora_steps: gr.Number  # the API's hidden fields behind empty_means
    lora_rank: gr.Number
    lora_lr: gr.Number
    identity_seed: gr.Number
    create_btn: gr.Button
    continue_btn: gr.Button
    identity_notice: gr.Markdown  # after ZeroGPU refused or stopped the training
    reference: gr.Image
    identity_text: gr.Markdown
    identity_file: gr.File
    next_2: gr.Button
    identity_summary: gr.JSON


@dataclass
class Settings:
    """The Headshots step's left column: what /generate and /generate_pack are asked for."""

    style: gr.Dropdown
    style_blurb: gr.Markdown
    backdrop_choice: gr.Dropdown
    brand_colour: gr.ColorPicker
    backdrop: gr.Textbox  # what /generate gets: the chosen id, or the brand colour as #rrggbb
    outfit: gr.Dropdown
    swatch: gr.Image
    subject: gr.Dropdown
    prompt: gr.Textbox
    num_images: gr.Slider
    generate_btn: gr.Button
    negative: gr.Textbox
    seed: gr.Number
    fast: gr.Checkbox
    best_of: gr.Slider
    aspect: gr.Radio
    steps: gr.Number
    guidance: gr.Number
    identity_strength: gr.Number
    identitynet_strength: gr.Number
    lora_strength: gr.Slider
    ai_mark: gr.Checkbox
    linkedin: gr.Checkbox
    face_region_only: gr.Checkbox


@dataclass
class Results:
    """The Headshots step's right column: the gallery, the chosen headshot, favourites, the pack."""

    headshots_notice: gr.Markdown
    continue_headshots_btn: gr.Button
    gallery_filter: gr.Dropdown
    gallery: gr.Gallery
    picked: gr.Group  # the chosen headshot's panel
    picked_selfie: gr.Image
    picked_image: gr.Image
    picked_text: gr.Markdown
    favourite_btn: gr.Button
    more_btn: gr.Button
    regenerate_btn: gr.Button
    refine_btn: gr.Button
    refined_download: gr.Image
    picked_path: gr.Textbox
    favourites_section: gr.Accordion
    favourites: gr.Gallery
    favourites_zip: gr.File
    pack_styles: gr.CheckboxGroup
    per_style: gr.Slider
    pack_btn: gr.Button
    pack_zip: gr.File
    info: gr.JSON


@dataclass
class DeleteControls:
    delete_btn: gr.Button
    delete_confirm: gr.Group  # the question, shown by the button
    delete_yes: gr.Button
    delete_no: gr.Button


@dataclass
class Hidden:
    """What no step shows: /delete_my_data's links and answer, selfies and identities as text (data: URLs
    or links to this app's files) for API and MCP callers, and the session."""

    delete_links: gr.Textbox
    deleted: gr.JSON
    selfie_links: gr.Textbox
    identity_link: gr.Textbox
    session: gr.State


@dataclass
class Page:
    tabs: gr.Tabs
    selfies: SelfiesStep
    identity: IdentityStep
    settings: Settings
    results: Results
    delete: DeleteControls
    hidden: Hidden


# --------------------------------------------------------------------------------------
# The builders, in page order
# --------------------------------------------------------------------------------------


def header() -> gr.Markdown:
    """The title and tagline, and the note about the machine (filled on load)."""
    gr.HTML(HEADER, elem_id="header")
    return gr.Markdown(elem_id="device")


def empty_means(sentinel, **kwargs) -> gr.Number:
    """A number a person may leave empty (placeholder: what empty means), and behind it the API's parameter,
    hidden, which keeps the API's sentinel default (so API callers may still leave it out or send it):
    the visible field copies its value there, empty as the sentinel."""
    api = gr.Number(sentinel, visible=False, **kwargs)
    shown = {k: v for k, v in kwargs.items() if k != "elem_id"}
    field = gr.Number(None, elem_id=f"{kwargs['elem_id']}_field", **shown)
    field.change(lambda value: sentinel if value is None else value, field, api, api_visibility="private")
    return api


def selfies_step() -> SelfiesStep:
    """Step 1: the selfies, the consent box and Check; the readiness and a card per selfie; Next."""
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
                    gr.Examples(
                        examples, inputs=[selfies], label="Or try the example selfies (public domain)"
                    )
            with gr.Column(scale=2, min_width=300):
                gr.Markdown(TIPS, elem_classes="tips")
        readiness = gr.Markdown(elem_id="readiness")
        # One card per checked selfie: a drawn pass/fail mark, the file name, the reason (tap for all of it).
        cards = gr.HTML("", elem_id="cards")
        next_1 = gr.Button(
            "Next: learn my face →", variant="primary", visible=False, elem_id="next_1", elem_classes="next"
        )
        with gr.Accordion("Details", open=False, elem_id="details_1"):
            report = gr.JSON(label="Report", open=False)
    return SelfiesStep(selfies, consent, check_btn, readiness, cards, next_1, report)


def lora_settings() -> tuple[gr.Number, gr.Number, gr.Number, gr.Number]:
    """The LoRA training's optional settings (empty: the default): steps, rank, learning rate, seed."""
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
            0, label="Training seed", precision=0, minimum=0, maximum=config.MAX_SEED, elem_id="identity_seed"
        )
    return lora_steps, lora_rank, lora_lr, identity_seed


def identity_step() -> IdentityStep:
    """Step 2: how to learn the face, Create (and Continue a paused LoRA training), the face as the app
    sees it and the identity file; Next."""
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
                lora_steps, lora_rank, lora_lr, identity_seed = lora_settings()
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
            "Next: make my headshots →",
            variant="primary",
            visible=False,
            elem_id="next_2",
            elem_classes="next",
        )
        with gr.Accordion("Details", open=False, elem_id="details_2"):
            identity_summary = gr.JSON(label="Summary", open=False)
    return IdentityStep(
        method,
        lora_steps,
        lora_rank,
        lora_lr,
        identity_seed,
        create_btn,
        continue_btn,
        identity_notice,
        reference,
        identity_text,
        identity_file,
        next_2,
        identity_summary,
    )


def headshots_step(styles: list[tuple[str, str]], default_style: str) -> tuple[Settings, Results]:
    """Step 3: the settings on the left, the results on the right (below them on a phone)."""
    with gr.Tab("3 Headshots", id="generate", elem_id="tab_generate"):
        gr.Markdown(STEP_GENERATE, elem_classes="step-lead")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                choices = list_options()
                look = look_settings(styles, default_style, choices)
                subject, prompt, num_images, generate_btn = subject_and_count(choices)
                more = more_settings()
            with gr.Column(scale=3, min_width=300, elem_id="results"):
                results = results_column(styles, default_style)
    settings = Settings(
        **look, subject=subject, prompt=prompt, num_images=num_images, generate_btn=generate_btn, **more
    )
    return settings, results


def look_settings(styles: list[tuple[str, str]], default_style: str, choices: dict) -> dict:
    """The style with its words, the backdrop (with a brand colour) and the outfit, beside the backdrop's
    preview swatch."""
    style = gr.Dropdown(styles, value=default_style, label="Style", elem_id="style")
    style_blurb = gr.Markdown(style_blurb_text(default_style), elem_id="style_blurb")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=160):
            backdrop_choice = gr.Dropdown(
                [(o["name"], o["id"]) for o in choices["backdrops"]] + [("Your brand colour…", BRAND_COLOUR)],
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
    return {
        "style": style,
        "style_blurb": style_blurb,
        "backdrop_choice": backdrop_choice,
        "brand_colour": brand_colour,
        "backdrop": backdrop,
        "outfit": outfit,
        "swatch": swatch,
    }


def subject_and_count(choices: dict) -> tuple[gr.Dropdown, gr.Textbox, gr.Slider, gr.Button]:
    """About the person, their own words, how many, and the Generate button."""
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
    return subject, prompt, num_images, generate_btn


def more_settings() -> dict:
    """ "More settings": what to avoid, the seed, speed and candidates, the size, and the style's numbers."""
    with gr.Accordion("More settings", open=False, elem_id="more_settings"):
        negative = gr.Textbox("", label="Avoid (optional)", max_length=config.MAX_PROMPT_CHARS)
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
            [("The style's", "style"), *[(s, s) for s in config.OUTPUT_SIZES]], value="style", label="Size"
        )
        style_numbers = style_number_settings()
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
            label=f"Also make LinkedIn {config.LINKEDIN_SIZE}x{config.LINKEDIN_SIZE} crops", value=False
        )
        face_region_only = gr.Checkbox(
            label="Identity on the face only (outfit and backdrop follow the prompt)",
            value=True,
            elem_id="face_region_only",
        )
    return {
        "negative": negative,
        "seed": seed,
        "fast": fast,
        "best_of": best_of,
        "aspect": aspect,
        **style_numbers,
        "lora_strength": lora_strength,
        "ai_mark": ai_mark,
        "linkedin": linkedin,
        "face_region_only": face_region_only,
    }


def style_number_settings() -> dict:
    """Steps, guidance and the two identity strengths: empty keeps the style's own."""
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
    return {
        "steps": steps,
        "guidance": guidance,
        "identity_strength": identity_strength,
        "identitynet_strength": identitynet_strength,
    }


def results_column(styles: list[tuple[str, str]], default_style: str) -> Results:
    """The notice and Continue of a run cut short, the gallery with its filter, the chosen headshot, the
    favourites, the pack and the details."""
    headshots_notice = gr.Markdown("", elem_id="headshots_notice", elem_classes="notice")
    # A run ZeroGPU cut short partway: what it made is in the gallery; this makes the rest.
    continue_headshots_btn = gr.Button(
        "Continue headshots", visible=False, variant="primary", elem_id="continue_headshots"
    )
    gallery_filter = gr.Dropdown(
        [("All your headshots", "all")], value="all", label="Show", visible=False, elem_id="gallery_filter"
    )
    gallery = gr.Gallery(
        label="Your headshots (newest run first, best likeness first)",
        columns=2,
        height="auto",
        format="png",
        interactive=False,
        elem_id="gallery",
    )
    chosen = picked_panel()
    picked_path = gr.Textbox("", visible=False)
    favourites_section, favourites, favourites_zip = favourites_panel()
    with gr.Accordion("Headshot pack: several styles at once, as a ZIP", open=False, elem_id="pack_section"):
        pack_styles = gr.CheckboxGroup(styles, value=[default_style], label="Styles", elem_id="pack_styles")
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
    return Results(
        headshots_notice=headshots_notice,
        continue_headshots_btn=continue_headshots_btn,
        gallery_filter=gallery_filter,
        gallery=gallery,
        **chosen,
        picked_path=picked_path,
        favourites_section=favourites_section,
        favourites=favourites,
        favourites_zip=favourites_zip,
        pack_styles=pack_styles,
        per_style=per_style,
        pack_btn=pack_btn,
        pack_zip=pack_zip,
        info=info,
    )


def picked_panel() -> dict:
    """Click a headshot: it next to your selfie, its likeness, and what to do with it."""
    with gr.Group(visible=False, elem_id="picked") as picked:
        with gr.Row(equal_height=True):
            picked_selfie = gr.Image(
                label="Your selfie", type="filepath", interactive=False, height=300, elem_id="picked_selfie"
            )
            picked_image = gr.Image(
                label="This headshot", type="filepath", interactive=False, height=300, elem_id="picked_image"
            )
        picked_text = gr.Markdown(elem_id="picked_text", elem_classes="picked-text")
        with gr.Row(elem_classes="pick-actions"):
            favourite_btn = gr.Button("☆ Add to favourites", size="sm", elem_id="favourite", min_width=120)
            more_btn = gr.Button("More like this", size="sm", elem_id="more", min_width=120)
            regenerate_btn = gr.Button("Regenerate this one", size="sm", elem_id="regenerate", min_width=120)
            refine_btn = gr.Button(
                f"High resolution ({config.REFINE_SCALE:g}x)", size="sm", elem_id="refine", min_width=120
            )
        refined_download = gr.Image(
            label="High resolution (PNG)",
            type="filepath",
            format="png",
            visible=False,
            interactive=False,
            buttons=["download", "fullscreen"],
            elem_id="refined_download",
        )
    return {
        "picked": picked,
        "picked_selfie": picked_selfie,
        "picked_image": picked_image,
        "picked_text": picked_text,
        "favourite_btn": favourite_btn,
        "more_btn": more_btn,
        "regenerate_btn": regenerate_btn,
        "refine_btn": refine_btn,
        "refined_download": refined_download,
    }


def favourites_panel() -> tuple[gr.Accordion, gr.Gallery, gr.File]:
    """The starred headshots and their ZIP, shown while there are any."""
    with gr.Accordion(
        "★ Your favourites", open=True, visible=False, elem_id="favourites_section"
    ) as favourites_section:
        favourites = gr.Gallery(
            label="Favourites",
            show_label=False,
            columns=4,
            height="auto",
            interactive=False,
            elem_id="favourites",
        )
        favourites_zip = gr.File(
            label="Download your favourites (ZIP)", interactive=False, elem_id="favourites_zip"
        )
    return favourites_section, favourites, favourites_zip


def privacy_and_delete() -> DeleteControls:
    """The privacy notes and licences, and Delete my data, which asks first."""
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
    return DeleteControls(delete_btn, delete_confirm, delete_yes, delete_no)


def hidden_inputs() -> Hidden:
    """The inputs no step shows (see ``Hidden``)."""
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
    return Hidden(delete_links, deleted, selfie_links, identity_link, session)
