"""Style presets (styles/*.toml): loading, checking, prompt building, negative prompts and prompt screening."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from headshot import config, errors, screening, styles

STYLES_DIR = Path(__file__).resolve().parent.parent / "styles"

GOOD = {
    "id": "demo",
    "name": "Demo",
    "description": "A demo style.",
    "prompt": "headshot of {subject}, {outfit}, {backdrop}, 85mm lens",
    "negative_prompt": "cartoon, blurry",
    "outfit_prompt": "wearing a dark suit",
    "backdrop_prompt": "grey backdrop",
    "aspect": "4:5",
    "steps": 30,
    "guidance": 5.0,
    "identity_strength": 0.8,
    "identitynet_strength": 0.8,
}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def write_style(folder: Path, stem: str = "demo", **changes) -> Path:
    """Write GOOD with ``changes`` applied (a value of None drops the field) to ``folder/<stem>.toml``."""
    data = {**GOOD, "id": stem, **changes}
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if value is not None]
    path = folder / f"{stem}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def estimate_clip_tokens(text: str) -> int:
    """A lower bound of CLIP's BPE token count: one per word and one per punctuation mark."""
    return len(re.findall(r"\w+|[^\w\s]", text))


# --------------------------------------------------------------------------------------
# The shipped presets
# --------------------------------------------------------------------------------------


def test_shipped_styles_load_and_are_complete():
    loaded = styles.load_styles()
    assert len(loaded) >= 12
    assert len(list(STYLES_DIR.glob("*.toml"))) == len(loaded)
    required = {
        "corporate-grey", "executive-office", "outdoor-natural", "tech-casual", "creative-color", "classic-bw",
        "medical", "legal-finance", "academic", "real-estate", "actor-editorial", "home-office",
    }  # fmt: skip
    assert required <= set(loaded)
    assert next(iter(loaded)) == "corporate-grey"  # the default comes first in the list
    names = [s.name for s in loaded.values()]
    assert len(set(names)) == len(names)
    for style_id, style in loaded.items():
        assert style.id == style_id
        assert (STYLES_DIR / f"{style_id}.toml").is_file()
        assert style.prompt.count("{subject}") == 1
        assert style.prompt.count("{outfit}") == 1 and style.prompt.count("{backdrop}") == 1
        assert style.outfit_prompt and style.backdrop_prompt
        # {expression} is optional in a style file, but every shipped style has one
        assert style.prompt.count("{expression}") == 1 and style.expression_prompt
        assert style.aspect in config.OUTPUT_SIZES
        assert 20 <= style.steps <= config.MAX_STEPS
        assert 3.0 <= style.guidance <= 8.0  # photoreal SDXL with InstantID burns at high guidance
        assert 0.6 <= style.identity_strength <= 0.9
        assert 0.6 <= style.identitynet_strength <= 0.9
        assert style.name and style.description and style.negative_prompt


def test_shipped_prompts_fit_clip_window():
    """Template plus a short subject stays inside CLIP's 77 tokens; safety plus style negative fits too."""
    for style in styles.load_styles().values():
        assert estimate_clip_tokens(style.build_prompt("a woman")) <= 70, style.id
        negative = styles.negative_prompt(style)
        assert estimate_clip_tokens(negative) <= 77, style.id


def test_shipped_prompts_pass_screening():
    for style in styles.load_styles().values():
        assert screening.screen_prompt(style.build_prompt("a person")) is None, style.id


def test_black_and_white_style_asks_for_monochrome():
    bw = styles.get_style("classic-bw")
    assert "black and white" in bw.prompt
    assert "color" in bw.negative_prompt


# --------------------------------------------------------------------------------------
# Loading, caching, lookup
# --------------------------------------------------------------------------------------


def test_load_styles_is_cached_and_returns_a_copy():
    first = styles.load_styles()
    first.pop("corporate-grey")
    second = styles.load_styles()
    assert "corporate-grey" in second
    assert second["academic"] is styles.load_styles()["academic"]  # same cached objects


def test_clear_cache_rereads_the_folder(tmp_path):
    write_style(tmp_path, "one")
    assert list(styles.load_styles(tmp_path)) == ["one"]
    write_style(tmp_path, "two")
    assert list(styles.load_styles(tmp_path)) == ["one"]  # cached
    styles.clear_cache()
    assert sorted(styles.load_styles(tmp_path)) == ["one", "two"]


def test_display_order_uses_order_then_name(tmp_path):
    write_style(tmp_path, "zeta", name="Zeta", order=1)
    write_style(tmp_path, "alpha", name="Alpha")
    write_style(tmp_path, "beta", name="Beta")
    assert list(styles.load_styles(tmp_path)) == ["zeta", "alpha", "beta"]


def test_get_style_and_unknown_style_lists_valid_ids():
    assert styles.get_style("academic").name == "Academic"
    assert styles.get_style(" academic ").id == "academic"
    with pytest.raises(errors.UnknownStyle) as info:
        styles.get_style("glamour")
    assert info.value.code == "unknown_style"
    assert "'glamour'" in str(info.value)
    for style_id in styles.load_styles():
        assert style_id in str(info.value)


def test_list_styles_matches_api_shape():
    listed = styles.list_styles()
    assert [item["id"] for item in listed] == list(styles.load_styles())
    assert all(set(item) == {"id", "name", "description"} for item in listed)


def test_style_size_follows_profile(monkeypatch):
    style = styles.get_style("corporate-grey")
    monkeypatch.setenv("HEADSHOT_PROFILE", "full")
    assert style.size() == config.OUTPUT_SIZES["4:5"]
    monkeypatch.setenv("HEADSHOT_PROFILE", "tiny")
    assert style.size() == config.TINY_OUTPUT_SIZES["4:5"]


# --------------------------------------------------------------------------------------
# Checking style files
# --------------------------------------------------------------------------------------

BAD_FILES = [
    ({"prompt": None}, "prompt", "missing"),
    ({"steps": "30"}, "steps", "must be int"),
    ({"steps": 30.5}, "steps", "must be int"),
    ({"steps": True}, "steps", "must be int"),
    ({"steps": 0}, "steps", "between"),
    ({"steps": config.MAX_STEPS + 1}, "steps", "between"),
    ({"guidance": config.MAX_GUIDANCE + 0.01}, "guidance", "between"),
    ({"guidance": -0.01}, "guidance", "between"),
    ({"guidance": "high"}, "guidance", "must be int or float"),
    ({"identity_strength": -0.1}, "identity_strength", "between"),
    ({"identitynet_strength": config.MAX_ADAPTER_SCALE + 0.01}, "identitynet_strength", "between"),
    ({"identity_strength": config.MAX_ADAPTER_SCALE + 0.01}, "identity_strength", "between"),
    ({"identitynet_strength": float("nan")}, "identitynet_strength", "between"),
    ({"prompt": "headshot, {outfit}, {backdrop}"}, "prompt", "{subject} exactly once (found 0)"),
    ({"prompt": "{subject} and {subject}, {outfit}, {backdrop}"}, "prompt", "{subject} exactly once (found 2)"),
    ({"prompt": "headshot of {subjet} {subject}, {outfit}, {backdrop}"}, "prompt", "brace"),
    # The outfit and backdrop slots: each once, a clause of its own, with the style's own wording for it.
    ({"prompt": "headshot of {subject}, grey backdrop"}, "prompt", "{outfit} exactly once (found 0)"),
    ({"prompt": "headshot of {subject}, {outfit}"}, "prompt", "{backdrop} exactly once (found 0)"),
    ({"prompt": "{subject}, {outfit}, {backdrop}, {backdrop}"}, "prompt", "{backdrop} exactly once (found 2)"),
    ({"prompt": "{subject}, {outfit}, {backdrop}, {outfits}"}, "prompt", "brace"),
    ({"prompt": "{subject} {outfit}, {backdrop}"}, "prompt", "{outfit} must be a clause of its own"),
    ({"prompt": "{subject}, {outfit}, in front of {backdrop}"}, "prompt", "{backdrop} must be a clause of its own"),
    ({"outfit_prompt": None}, "outfit_prompt", "missing: the style's own wording for the {outfit} slot"),
    ({"backdrop_prompt": None}, "backdrop_prompt", "missing: the style's own wording for the {backdrop} slot"),
    ({"outfit_prompt": "  "}, "outfit_prompt", "empty"),
    ({"backdrop_prompt": "grey {subject}"}, "backdrop_prompt", "braces"),
    ({"backdrop_prompt": "x" * 201}, "backdrop_prompt", "limit is 200"),
    ({"outfit_prompt": 3}, "outfit_prompt", "must be str"),
    # {expression} is optional, but with its own wording when there, and a clause of its own.
    ({"expression_prompt": "calm smile"}, "expression_prompt", "prompt has none"),
    ({"prompt": "{subject}, {outfit}, {expression}, {backdrop}"}, "expression_prompt", "missing: the style"),
    ({"prompt": "{subject}, {outfit}, {expression}, {backdrop}, {expression}", "expression_prompt": "calm"},
     "prompt", "{expression} at most once (found 2)"),
    ({"prompt": "{subject}, {outfit}, in {expression}, {backdrop}", "expression_prompt": "calm"}, "prompt",
     "{expression} must be a clause of its own"),
    ({"prompt": "{subject}, {outfit}, {expression}, {backdrop}", "expression_prompt": "a {smile}"},
     "expression_prompt", "braces"),
    # Slot negatives: text without braces, and a phrase in one place only (else it would never be dropped).
    ({"outfit_negative": "suit, blurry"}, "outfit_negative", "'blurry' is in negative_prompt too"),
    ({"backdrop_negative": "dark {x}"}, "backdrop_negative", "braces"),
    ({"expression_negative": ["frown"]}, "expression_negative", "must be str"),
    ({"negative_prompt": "blurry {x}"}, "negative_prompt", "braces"),
    ({"aspect": "16:9"}, "aspect", "square"),
    ({"name": "   "}, "name", "empty"),
    ({"description": "x" * 301}, "description", "limit is 300"),
    ({"id": "other"}, "id", "file name"),
    ({"id": "Demo Style"}, "id", "lower-case"),
    ({"colour": "teal"}, "colour", "not a style field"),
    ({"order": 1.5}, "order", "must be int"),
]


@pytest.mark.parametrize(("changes", "field", "problem"), BAD_FILES)
def test_bad_style_file_names_file_and_field(tmp_path, changes, field, problem):
    path = write_style(tmp_path, "demo", **changes)
    with pytest.raises(errors.StyleFileError) as info:
        styles.read_style_file(path)
    message = str(info.value)
    assert info.value.code == "invalid_style"
    assert "demo.toml" in message
    assert f"'{field}'" in message
    assert problem in message


def test_style_files_use_the_same_limits(tmp_path):
    """A style may use any value a user may ask for (the config limits), and nothing beyond."""
    top = {"steps": config.MAX_STEPS, "guidance": config.MAX_GUIDANCE}
    top |= {"identity_strength": config.MAX_ADAPTER_SCALE, "identitynet_strength": config.MAX_ADAPTER_SCALE}
    styles.read_style_file(write_style(tmp_path, "demo", **top))
    for field, value in top.items():
        above = value + 1 if field == "steps" else value + 0.01
        with pytest.raises(errors.StyleFileError, match=f"'{field}'.*between"):
            styles.read_style_file(write_style(tmp_path, "demo", **{**top, field: above}))


def test_bad_file_fails_the_whole_folder(tmp_path):
    write_style(tmp_path, "good")
    write_style(tmp_path, "bad", aspect="wide")
    with pytest.raises(errors.StyleFileError, match=r"bad\.toml"):
        styles.load_styles(tmp_path)


def test_invalid_toml_names_file(tmp_path):
    (tmp_path / "broken.toml").write_text('id = "broken"\nname = \n', encoding="utf-8")
    with pytest.raises(errors.StyleFileError, match=r"broken\.toml.*not valid TOML"):
        styles.load_styles(tmp_path)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(errors.StyleFileError, match="no style files"):
        styles.load_styles(tmp_path)
    with pytest.raises(errors.StyleFileError, match="does not exist"):
        styles.load_styles(tmp_path / "nope")


def test_good_file_round_trips_values(tmp_path):
    style = styles.read_style_file(write_style(tmp_path, "demo", guidance=6, steps=25))
    assert style == styles.Style(**{**GOOD, "guidance": 6.0, "steps": 25})
    assert isinstance(style.guidance, float)


# --------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------


def test_build_prompt_inserts_subject_and_extra():
    style = styles.get_style("corporate-grey")
    plain = style.build_prompt("a woman")
    assert plain.startswith("professional corporate headshot of a woman, wearing")
    assert "{subject}" not in plain
    extra = style.build_prompt("  a   woman ", "  with curly red hair and round glasses.  ")
    assert extra.startswith(
        "professional corporate headshot of a woman, with curly red hair and round glasses, "
    )
    assert extra.endswith(plain.split("a woman", 1)[1])
    assert style.build_prompt("a woman", " ,. ") == plain  # punctuation only: nothing added


def test_build_prompt_keeps_user_braces_inert():
    style = styles.get_style("academic")
    prompt = style.build_prompt("a man", "{subject} {0} {name} {outfit} {backdrop}")
    assert "a man, {subject} {0} {name} {outfit} {backdrop}, wearing" in prompt
    assert prompt.count("{outfit}") == 1 and style.outfit_prompt in prompt  # the slot was filled before
    prompt = style.build_prompt("a man", "{backdrop}", own_backdrop=False)
    assert "a man, {backdrop}, wearing" in prompt and style.backdrop_prompt not in prompt


def test_slots_get_the_styles_own_wording_or_drop_their_clause(tmp_path):
    style = styles.read_style_file(write_style(tmp_path, "demo"))
    assert style.template() == "headshot of {subject}, wearing a dark suit, grey backdrop, 85mm lens"
    assert style.template(own_outfit=False) == "headshot of {subject}, grey backdrop, 85mm lens"
    assert style.template(own_backdrop=False) == "headshot of {subject}, wearing a dark suit, 85mm lens"
    assert style.template(own_outfit=False, own_backdrop=False) == "headshot of {subject}, 85mm lens"
    # A slot first or last in the prompt drops with its one comma too.
    style = styles.read_style_file(write_style(tmp_path, "demo", prompt="{outfit} , {subject},{backdrop}"))
    assert style.template() == "wearing a dark suit , {subject},grey backdrop"
    assert style.template(own_outfit=False, own_backdrop=False) == "{subject}"
    assert style.build_prompt("a man", own_outfit=False, own_backdrop=False) == "a man"
    # The optional {expression} slot works the same way; a style without it just has nothing to drop.
    prompt = "headshot of {subject}, {outfit}, {expression}, {backdrop}, 85mm lens"
    style = styles.read_style_file(write_style(tmp_path, "demo", prompt=prompt, expression_prompt="calm"))
    assert style.template() == "headshot of {subject}, wearing a dark suit, calm, grey backdrop, 85mm lens"
    assert style.template(own_expression=False) == style.template().replace(" calm,", "")
    assert styles.compose(style, "a man", hints="neutral")[0] == (
        "headshot of a man, calm neutral expression, lips closed, wearing a dark suit, grey backdrop, "
        "85mm lens"
    )
    plain = styles.read_style_file(write_style(tmp_path, "plain"))
    assert plain.expression_prompt == "" and plain.template(own_expression=False) == plain.template()
    assert styles.compose(plain, "a man", hints="smile")[0] == (
        "headshot of a man, warm natural smile, wearing a dark suit, grey backdrop, 85mm lens"
    )


def test_slot_negatives_are_dropped_with_their_slot(tmp_path):
    """A style's outfit/backdrop/expression guard words go when that slot is replaced; a phrase guarding two
    slots goes when either is."""
    style = styles.read_style_file(write_style(
        tmp_path, "demo", prompt="{subject}, {outfit}, {expression}, {backdrop}", expression_prompt="grin",
        outfit_negative="suit and tie, dark", backdrop_negative="dark, gloomy", expression_negative="frown",
    ))  # fmt: skip
    assert style.slot_negative() == "suit and tie, dark, gloomy, frown"
    assert style.slot_negative(own_outfit=False) == "gloomy, frown"
    assert style.slot_negative(own_backdrop=False) == "suit and tie, frown"
    assert style.slot_negative(own_expression=False) == "suit and tie, dark, gloomy"
    assert style.slot_negative(own_outfit=False, own_backdrop=False, own_expression=False) == ""
    expected = f"{styles.SAFETY_NEGATIVE}, suit and tie, dark, gloomy, frown, cartoon, blurry"
    assert styles.negative_prompt(style) == expected
    _, negative = styles.compose(style, "a man", outfit="smart-casual", hints="neutral")
    assert negative == "big smile, laughing, open mouth, suit, tie, lab coat, formal wear, gloomy"


def test_build_prompt_screens_extra_and_needs_subject():
    style = styles.get_style("academic")
    with pytest.raises(errors.PromptRejected):
        style.build_prompt("a man", "topless")
    with pytest.raises(errors.PromptRejected):
        style.build_prompt("a man", "x" * (config.MAX_PROMPT_CHARS + 1))
    with pytest.raises(errors.InvalidRequest):
        style.build_prompt("   ")


def test_negative_prompt_always_carries_safety_terms_first():
    for style in styles.load_styles().values():
        negative = styles.negative_prompt(style)
        assert negative.startswith(styles.SAFETY_NEGATIVE)
        assert style.negative_prompt in negative
    style = styles.get_style("tech-casual")
    with_user = styles.negative_prompt(style, "  hats,  sunglasses , ")
    own = style.slot_negative()  # nothing chosen: the style's slot negatives, all of them
    assert own == "suit and tie, dark, gloomy"
    assert with_user == f"{styles.SAFETY_NEGATIVE}, {own}, {style.negative_prompt}, hats, sunglasses"
    # Unwanted content named in a negative prompt is welcome: it is not screened.
    assert styles.negative_prompt(style, "nude, naked").endswith("nude, naked")
    with pytest.raises(errors.PromptRejected, match="negative prompt"):
        styles.negative_prompt(style, "x" * (config.MAX_PROMPT_CHARS + 1))


def test_safety_negative_covers_the_brief():
    for term in ("nudity", "sexual", "cleavage", "lingerie", "gore", "degrading", "caricature"):
        assert term in styles.SAFETY_NEGATIVE


# --------------------------------------------------------------------------------------
# Prompt screening (issue 7)
# --------------------------------------------------------------------------------------

REFUSED = [
    "nude",
    "NAKED on the beach",
    "make her look sexy",
    "topless headshot",
    "wearing lingerie",
    "showing cleavage",
    "n*de",
    "n*ked portrait",
    "nak3d",
    "s3xy",
    "$exy",
    "p0rn star",
    "n u d e",
    "s.e.x appeal",
    "n-a-k-e-d",
    "nüde",
    "\uff4e\uff55\uff44\uff45",  # full-width letters
    "nud\u0435",  # Cyrillic ie
    "nu\u200bde",  # zero-width space
    "nuuuude",
    "nudes",
    "take off her clothes",
    "with no clothes",
    "see-through blouse",
    "in a bikini",
    "humiliated and crying",
    "degrading photo",
    "as a mugshot",
    "covered in blood",
    "in handcuffs",
    "make him look ugly",
]

ALLOWED = [
    "",
    "lives in Sussex",
    "a therapist in her office",
    "first class business look",
    "Scunthorpe United scarf",
    "financial analyst",
    "risk assessment expert",
    "holding a cocktail glass",
    "Essex, Middlesex, sextant, sextet",
    "Gore-Tex jacket",
    "suit with a breast pocket square",
    "weather-beaten fisherman look",
    "flame retardant jacket",
    "rapeseed field behind",
    "a blue tit on the window sill",
    "sexton at the church",
    "Dick Whittington costume",
    "grapes on the table",
    "passport style, 4:5, 85mm, f/1.8, 3x zoom",
    "glasses, curly red hair, navy blazer, smiling",
    "The Shard in the background",
    "big bass guitar",
]


@pytest.mark.parametrize("text", REFUSED)
def test_check_prompt_refuses_sexual_or_degrading(text):
    with pytest.raises(errors.PromptRejected) as info:
        screening.check_prompt(text)
    assert info.value.code == "prompt_rejected"
    message = str(info.value)
    assert message.startswith("The prompt was refused")
    assert "sexual" in message or "degrading" in message


@pytest.mark.parametrize("text", ALLOWED)
def test_check_prompt_allows_innocent_words(text):
    assert screening.check_prompt(f"  {text}  ") == text.strip()


def test_check_prompt_category_in_message():
    with pytest.raises(errors.PromptRejected, match=r"sexual content .'nude'."):
        screening.check_prompt("Nude")
    with pytest.raises(errors.PromptRejected, match="degrading content"):
        screening.check_prompt("humiliating")


def test_check_prompt_length_limit():
    limit = config.MAX_PROMPT_CHARS
    assert screening.check_prompt("a" * limit) == "a" * limit
    assert screening.check_prompt("  " + "a" * limit + "  ") == "a" * limit  # counted after stripping
    with pytest.raises(errors.PromptRejected, match=f"limit is {limit}"):
        screening.check_prompt("a" * (limit + 1))


def test_check_prompt_none_is_empty():
    assert screening.check_prompt(None) == ""  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Choices on top of a style: backdrops, outfits, subject hints (styles/options)
# --------------------------------------------------------------------------------------


def test_the_options_load_and_every_style_has_a_known_backdrop():
    from headshot import styles

    options = styles.list_options()
    assert {"styles", "backdrops", "outfits", "subject"} <= set(options)
    backdrops = {b["id"] for b in options["backdrops"]}
    assert {"style", "studio-grey", "white", "dark", "office", "outdoor"} <= backdrops
    assert any(b.startswith("brand-") for b in backdrops)
    assert {"style", "suit", "blazer", "smart-casual", "medical"} <= {o["id"] for o in options["outfits"]}
    assert {"woman", "man", "person", "glasses", "smile", "neutral"} <= {o["id"] for o in options["subject"]}
    assert all(s["backdrop"] in backdrops for s in options["styles"])


def test_options_change_the_composed_prompt_by_data():
    from headshot import styles

    style = styles.get_style("corporate-grey")
    plain, _ = styles.compose(style, "a person")
    assert plain == style.build_prompt("a person")
    prompt, negative = styles.compose(
        style, "a person", "navy tie", backdrop="white", outfit="medical", hints="woman, age-30s, glasses"
    )
    assert prompt.startswith("professional corporate headshot of a woman, in their thirties, wearing their own glasses")
    assert "white medical lab coat" in prompt and "bright white studio backdrop" in prompt and "navy tie" in prompt
    assert "mottled grey" not in prompt and "charcoal suit" not in prompt  # the style's own outfit and backdrop
    assert prompt.endswith(plain.split("confident friendly smile", 1)[1].replace(", mottled grey studio backdrop", ""))
    assert "grey backdrop" in negative and "suit" in negative
    full = styles.negative_prompt(style, "hats", negative)
    assert full.startswith(styles.SAFETY_NEGATIVE) and full.endswith("hats") and "grey backdrop" in full


# Every style's prompt as it was before the {outfit} / {backdrop} slots (captured from styles/*.toml then):
# with the style's own outfit and backdrop kept, the composed prompt must be this text, word for word.
PROMPTS_BEFORE_SLOTS = {
    "academic": (
        "university faculty headshot of {subject}, wearing a tweed blazer over a knit sweater, "
        "thoughtful friendly expression, university library bookshelves softly blurred behind, "
        "warm window light, 85mm lens, f/2.8, shallow depth of field, sharp focus on the eyes, "
        "natural skin texture, photorealistic"
    ),
    "actor-editorial": (
        "theatrical actor headshot of {subject}, simple dark top, "
        "natural expressive look straight into the camera, soft window light with subtle catchlights, "
        "neutral light grey textured backdrop, 85mm lens, f/2.8, shallow depth of field, "
        "razor sharp eyes, true to life unretouched skin texture"
    ),
    "bright-white": (
        "clean high key headshot of {subject}, wearing a simple navy blazer, pleasant relaxed smile, "
        "pure white seamless studio backdrop, even clamshell lighting, 85mm lens, f/8, "
        "crisp detail from eyes to shoulders, natural skin texture, professional studio photograph"
    ),
    "classic-bw": (
        "classic black and white studio portrait of {subject}, dark crew-neck sweater, "
        "calm thoughtful expression, Rembrandt lighting, deep charcoal backdrop, "
        "monochrome film photograph, rich tonal range, fine grain, 85mm lens, f/4, "
        "sharp focus on the eyes, detailed skin texture"
    ),
    "corporate-grey": (
        "professional corporate headshot of {subject}, "
        "wearing a tailored charcoal suit and crisp shirt, confident friendly smile, "
        "mottled grey studio backdrop, soft key light with gentle fill, 85mm lens, f/4, "
        "shallow depth of field, sharp focus on the eyes, natural skin texture, high detail"
    ),
    "creative-color": (
        "creative studio headshot of {subject}, stylish minimal outfit, confident expression, "
        "seamless bold teal paper backdrop, colourful rim light, softbox key light, 85mm lens, f/5.6, "
        "crisp detail, editorial magazine portrait, natural skin texture"
    ),
    "dramatic-low-key": (
        "cinematic low key portrait of {subject}, dark tailored jacket, confident composed expression, "
        "near-black backdrop, dramatic side light with a subtle rim light, rich deep colours, "
        "85mm lens, f/2.8, sharp focus on the eyes, detailed natural skin texture, "
        "high end editorial photograph"
    ),
    "executive-office": (
        "executive portrait of {subject}, wearing a navy suit, poised and approachable expression, "
        "standing in a modern glass corner office, city skyline softly blurred through the windows, "
        "warm window light, 85mm lens, f/2.8, bokeh, sharp focus on the eyes, realistic skin texture, "
        "high detail"
    ),
    "home-office": (
        "relaxed remote worker headshot of {subject}, wearing a soft knit cardigan, "
        "warm natural smile, cosy tidy home office with bookshelves and a plant softly blurred behind, "
        "warm lamp light mixed with window light, 50mm lens, f/2, shallow depth of field, sharp focus, "
        "natural skin texture, photorealistic"
    ),
    "legal-finance": (
        "formal professional headshot of {subject}, wearing a dark pinstripe suit, white shirt, "
        "composed trustworthy expression, "
        "wood panelled law library with bookshelves softly blurred behind, warm soft key light, "
        "85mm lens, f/2.8, sharp focus on the eyes, realistic skin texture, high detail"
    ),
    "medical": (
        "professional healthcare headshot of {subject}, "
        "wearing a crisp white lab coat over a light blue shirt, stethoscope around the neck, "
        "warm reassuring smile, bright modern clinic softly blurred behind, soft diffused light, "
        "85mm lens, f/2.8, sharp focus, natural skin texture, high detail"
    ),
    "outdoor-natural": (
        "outdoor headshot of {subject}, smart casual blazer, warm genuine smile, "
        "natural light in open shade, soft golden hour backlight, "
        "green park trees as creamy bokeh background, 85mm lens, f/2, shallow depth of field, "
        "sharp focus on the eyes, natural skin texture, photorealistic"
    ),
    "real-estate": (
        "friendly real estate agent headshot of {subject}, smart blazer over a light top, "
        "big warm approachable smile, bright clean white studio backdrop, high key lighting, "
        "soft beauty dish light, 85mm lens, f/5.6, crisp detail, natural skin texture, "
        "polished commercial portrait"
    ),
    "tech-casual": (
        "modern startup team headshot of {subject}, wearing a plain crew-neck sweater, "
        "relaxed confident smile, bright airy loft office with plants softly blurred behind, "
        "large window light, 50mm lens, f/2.2, shallow depth of field, sharp focus, "
        "natural skin texture, candid editorial photo"
    ),
}


def test_keeping_the_styles_own_outfit_and_backdrop_gives_todays_prompt():
    loaded = styles.load_styles()
    assert set(loaded) == set(PROMPTS_BEFORE_SLOTS)
    for style in loaded.values():
        before = PROMPTS_BEFORE_SLOTS[style.id]
        for subject in ("a woman", "ohwx person"):
            expected = before.replace("{subject}", subject)
            assert styles.compose(style, subject)[0] == expected, style.id
            assert styles.compose(style, subject, backdrop="style", outfit="style")[0] == expected, style.id
            assert style.build_prompt(subject) == expected, style.id
        # The style's own wording is exactly what left its prompt.
        assert style.outfit_prompt in before and style.backdrop_prompt in before, style.id


# Every style's negative prompt as it was before the slot negatives (captured from styles/*.toml then): with
# nothing chosen, the final negative prompt holds the same phrases (the slot negatives come first now).
NEGATIVES_BEFORE_SLOTS = {
    "corporate-grey": (
        "cartoon, illustration, painting, 3d render, cgi, anime, plastic skin, airbrushed, oversaturated,"
        " blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, bad teeth, watermark, text, "
        "logo"
    ),
    "executive-office": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, harsh shadows, "
        "cluttered desk, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text,"
        " logo"
    ),
    "outdoor-natural": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, harsh midday sun, "
        "squinting, overexposed, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, "
        "watermark, text"
    ),
    "tech-casual": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, suit and tie, dark, "
        "gloomy, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text, logo"
    ),
    "creative-color": (
        "cartoon, illustration, painting, 3d render, cgi, anime, plastic skin, airbrushed, muddy colours,"
        " blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text, logo"
    ),
    "classic-bw": (
        "colour, color, sepia tint, cartoon, illustration, painting, 3d render, cgi, plastic skin, "
        "airbrushed, flat lighting, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, "
        "watermark, text"
    ),
    "medical": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, blood, hospital bed, "
        "surgical mask, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text, "
        "logo"
    ),
    "legal-finance": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, casual clothes, harsh"
        " shadows, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text, logo"
    ),
    "academic": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, graduation gown, "
        "cluttered, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text, logo"
    ),
    "real-estate": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, dark, moody, serious "
        "frown, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text, logo"
    ),
    "actor-editorial": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, heavy makeup, props, "
        "busy background, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text"
    ),
    "home-office": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, messy room, webcam "
        "quality, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, watermark, text, logo"
    ),
    "bright-white": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, grey background, "
        "shadows on background, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, "
        "watermark, text, logo"
    ),
    "dramatic-low-key": (
        "cartoon, illustration, painting, 3d render, cgi, plastic skin, airbrushed, flat lighting, "
        "crushed blacks on the face, blurry, lowres, jpeg artifacts, deformed face, asymmetric eyes, "
        "watermark, text"
    ),
}


@functools.cache
def _whole_words(phrase: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(phrase) + r"\b", re.IGNORECASE)


def _phrases(text: str) -> set[str]:
    return {p.strip() for p in text.split(",") if p.strip()}


def test_keeping_the_styles_own_choices_gives_todays_negative_phrases():
    loaded = styles.load_styles()
    assert set(loaded) == set(NEGATIVES_BEFORE_SLOTS)
    for style in loaded.values():
        expected = _phrases(styles.SAFETY_NEGATIVE) | _phrases(NEGATIVES_BEFORE_SLOTS[style.id])
        _, options_negative = styles.compose(style, "a person")
        assert options_negative == style.slot_negative(), style.id
        assert _phrases(styles.negative_prompt(style, "", options_negative)) == expected, style.id
        assert _phrases(styles.negative_prompt(style)) == expected, style.id


def _all_choices(expressions=(None,)):
    """Every style x every backdrop x every outfit; and each colour name's "#rrggbb" as the backdrop with the
    style's own outfit and with a suit (the colour's words only differ by its name, which no outfit names)."""
    options = styles.load_options()
    colours = [colour for _, colour, _ in styles.load_colours().names]
    for style in styles.load_styles().values():
        for backdrop in [styles.STYLE_CHOICE, *options["backdrop"], *colours]:
            outfits = [styles.STYLE_CHOICE, *options["outfit"]] if backdrop in options["backdrop"] else ["style", "suit"]
            for outfit in outfits:
                for expression in expressions:
                    found = styles.get_option("backdrop", backdrop), styles.get_option("outfit", outfit)
                    yield (style, *found, expression) if expressions != (None,) else (style, *found)


def test_a_chosen_option_replaces_the_styles_own_wording():
    for style, backdrop, outfit in _all_choices():
        prompt, _ = styles.compose(
            style, "a person", backdrop=backdrop and backdrop.id, outfit=outfit and outfit.id
        )
        for option, own in ((backdrop, style.backdrop_prompt), (outfit, style.outfit_prompt)):
            if option is None:
                assert own in prompt, (style.id, own)
            else:
                assert option.prompt in prompt, (style.id, option.id)
                # the style's own is gone (studio-grey's own words may contain corporate-grey's)
                assert own not in prompt.replace(option.prompt, ""), (style.id, option.id)
        assert "{" not in prompt and ", ," not in prompt and not prompt.endswith(","), prompt


def test_no_option_negative_contradicts_the_composed_positive_prompt():
    """All styles x all backdrops x all outfits (with the style's own for either): no phrase of a chosen
    option's ``negative`` appears, as whole words, in the positive prompt it is composed with."""
    clashes = []
    for style, backdrop, outfit in _all_choices():
        prompt, negative = styles.compose(
            style, "a person", backdrop=backdrop and backdrop.id, outfit=outfit and outfit.id
        )
        for phrase in filter(None, (p.strip() for p in negative.split(","))):
            if re.search(r"\b" + re.escape(phrase) + r"\b", prompt, re.IGNORECASE):
                clashes.append((style.id, backdrop and backdrop.id, outfit and outfit.id, phrase))
    assert not clashes


def test_no_negative_phrase_forbids_a_chosen_options_words():
    """All styles x all backdrops x all outfits x expression hints (the style's own for any): no phrase of the
    final negative prompt (safety, options' and style's negatives) appears, as whole words, in a chosen
    option's positive words. The style's slot negatives are what makes this hold ("dark" in tech-casual's
    negatives against the dark suit's "tailored dark suit")."""
    clashes = []
    for style, backdrop, outfit, expression in _all_choices((None, "smile", "neutral")):
        prompt, options_negative = styles.compose(
            style, "a person", backdrop=backdrop and backdrop.id, outfit=outfit and outfit.id,
            hints=expression,
        )
        negative = styles.negative_prompt(style, "", options_negative)
        chosen = [o for o in (backdrop, outfit, expression and styles.parse_subject(expression)[0]) if o]
        for phrase in _phrases(negative):
            for option in chosen:
                assert option.prompt in prompt
                if _whole_words(phrase).search(option.prompt):
                    clashes.append((style.id, option.id, phrase))
    assert not clashes


# Negative words that fight a chosen option by meaning, not by the same words (so the whole-word test above
# cannot see them): each is one of the style's slot negatives and goes with its slot.
SEMANTIC_CLASHES = [
    ("bright-white", {"backdrop": "studio-grey"}, ["grey background", "shadows on background"]),
    ("tech-casual", {"outfit": "suit"}, ["suit and tie", "dark"]),
    ("tech-casual", {"backdrop": "dark"}, ["dark", "gloomy"]),
    ("legal-finance", {"outfit": "smart-casual"}, ["casual clothes"]),
    ("real-estate", {"backdrop": "dark"}, ["dark", "moody"]),
    ("real-estate", {"hints": "neutral"}, ["serious frown"]),
    ("executive-office", {"backdrop": "outdoor"}, ["cluttered desk"]),
    ("outdoor-natural", {"backdrop": "white"}, ["harsh midday sun"]),
]


@pytest.mark.parametrize(("style_id", "choice", "gone"), SEMANTIC_CLASHES)
def test_a_chosen_option_drops_the_style_negatives_that_forbid_it(style_id, choice, gone):
    style = styles.get_style(style_id)
    assert set(gone) <= _phrases(styles.negative_prompt(style))  # there by default
    _, options_negative = styles.compose(style, "a person", **choice)
    assert not set(gone) & _phrases(styles.negative_prompt(style, "", options_negative))


def test_chosen_expression_replaces_the_styles_own():
    hints = [o for o in styles.load_options()["subject"].values() if o.group == "expression"]
    assert {"smile", "neutral"} <= {h.id for h in hints}
    for style in styles.load_styles().values():
        for hint in hints:
            prompt, _ = styles.compose(style, "a person", hints=hint.id)
            assert hint.prompt in prompt, (style.id, hint.id)
            assert style.expression_prompt not in prompt.replace(hint.prompt, "", 1), (style.id, hint.id)
            assert prompt.startswith(style.prompt.split("{subject}")[0] + f"a person, {hint.prompt}, ")
        # other hint groups keep it
        assert style.expression_prompt in styles.compose(style, "a person", hints="woman, glasses")[0]


def test_chosen_options_stay_inside_the_clip_window():
    """The option words go right after the subject and hints, before the user's text (see styles.compose):
    even with every hint group and the longest personal touch they end well inside CLIP's 75 content tokens
    (a lower-bound count, so leave room for words BPE splits)."""
    longest_hints = "woman, age-60s, no-glasses, neutral"
    extra = "with " + "curly red hair " * 40
    for style, backdrop, outfit in _all_choices():
        chosen = [o for o in (outfit, backdrop) if o is not None]
        if not chosen:
            continue
        prompt, _ = styles.compose(
            style, "ohwx person", extra[: config.MAX_PROMPT_CHARS].strip(), backdrop=backdrop and backdrop.id,
            outfit=outfit and outfit.id, hints=longest_hints,
        )
        end = max(prompt.index(o.prompt) + len(o.prompt) for o in chosen)
        assert estimate_clip_tokens(prompt[:end]) <= 60, (style.id, prompt[:end])


def test_unknown_or_clashing_options_are_refused_with_the_choices():
    from headshot import styles

    style = styles.get_style("corporate-grey")
    with pytest.raises(errors.InvalidRequest, match=r"no backdrop 'beach'.*studio-grey"):
        styles.compose(style, "a person", backdrop="beach")
    with pytest.raises(errors.InvalidRequest, match="both about person"):
        styles.compose(style, "a person", hints="woman,man")


def test_every_backdrop_has_a_swatch_without_a_gpu():
    from headshot import styles

    seen = set()
    for backdrop in styles.list_options()["backdrops"]:
        image = styles.swatch(backdrop["id"], (80, 100))
        assert image.size == (80, 100)
        seen.add(image.tobytes())
    assert len(seen) == len(styles.list_options()["backdrops"]) - 1  # "style" draws the default backdrop


def test_a_bad_options_file_is_refused_naming_the_entry(tmp_path):
    import shutil

    from headshot import styles

    folder = tmp_path / "options"
    shutil.copytree(styles.STYLES_DIR / "options", folder)
    (folder / "backdrops.toml").write_text('[pink]\nname = "Pink"\nprompt = "pink {wall}"\ncolour = "#ff00ff"\nlight = "soft"\n')
    with pytest.raises(errors.StyleFileError, match=r"\[pink\].*prompt"):
        styles.load_options(folder)
    (folder / "backdrops.toml").write_text('[pink]\nname = "Pink"\nprompt = "pink wall"\ncolour = "pink"\nlight = "soft"\n')
    styles.clear_cache()
    with pytest.raises(errors.StyleFileError, match="colour"):
        styles.load_options(folder)
    styles.clear_cache()


# --------------------------------------------------------------------------------------
# Any brand colour as a backdrop: "#rrggbb" (styles/options/colours.toml)
# --------------------------------------------------------------------------------------


def test_a_hex_colour_is_a_backdrop_named_by_the_nearest_colour():
    blue = styles.get_option("backdrop", "brand-blue")
    option = styles.get_option("backdrop", " #1F4F8F ")
    assert option == styles.Option(
        kind="backdrop", id="#1f4f8f", name="Brand colour #1f4f8f",
        prompt="in front of a solid deep blue studio backdrop", negative=blue.negative, colour="#1f4f8f",
        light="soft",
    )  # fmt: skip
    assert styles.load_colours().negative == blue.negative  # the same negative as the fixed brand colours
    # The fixed brand entries' colours get the names their own prompts use.
    for brand in ("brand-blue", "brand-green", "brand-burgundy"):
        fixed = styles.get_option("backdrop", brand)
        named = styles.get_option("backdrop", fixed.colour)
        assert set(styles.colour_name(fixed.colour).split()) <= set(fixed.prompt.split()), brand
        assert named.prompt.replace("solid ", "") in fixed.prompt.replace("solid ", "").replace(" green", "")
    common = {"#13294b": "navy blue", "#ff0000": "bright red", "#e30613": "bright red", "#808080": "mid grey",
              "#ffffff": "white", "#000000": "black", "#008080": "teal", "#ffa500": "tangerine orange",
              "#40e0d0": "turquoise", "#800020": "burgundy", "#228b22": "emerald green", "#f5f5dc": "ivory"}  # fmt: skip
    assert {c: styles.colour_name(c) for c in common} == common


def test_cielab_conversion():
    for colour, lab in {"#ffffff": (100, 0, 0), "#000000": (0, 0, 0), "#ff0000": (53.24, 80.09, 67.20),
                        "#0000ff": (32.30, 79.19, -107.86), "#808080": (53.59, 0, 0)}.items():  # fmt: skip
        assert styles._lab(colour) == pytest.approx(lab, abs=0.05), colour


def test_the_colour_names_are_sound():
    palette = styles.load_colours()
    names = [name for name, _, _ in palette.names]
    assert 30 <= len(names) <= 50 and len(set(names)) == len(names)
    assert len({colour for _, colour, _ in palette.names}) == len(names)
    for name, colour, _ in palette.names:
        assert styles.colour_name(colour) == name  # every name is reachable: none hides behind another
        assert screening.screen_prompt(name) is None
        option = styles.brand_colour(colour)
        # The negative never forbids the colour asked for: "light grey" drops "grey backdrop".
        assert not set(name.split()) & set(re.findall(r"[a-z]+", option.negative)), name
    assert "grey backdrop" not in styles.brand_colour("#c4c6c8").negative  # light grey
    assert "white background" not in styles.brand_colour("#ffffff").negative


@pytest.mark.parametrize("bad", ["#12", "#gggggg", "#1f4f8f0", "#", "#1f 4f8"])
def test_a_bad_hex_colour_is_refused_with_the_format(bad):
    with pytest.raises(errors.InvalidRequest, match=r"#rrggbb.*e\.g\. #1f4f8f"):
        styles.get_option("backdrop", bad)
    with pytest.raises(errors.InvalidRequest, match=r"#rrggbb"):
        styles.compose(styles.get_style("corporate-grey"), "a person", backdrop=bad)


@pytest.mark.parametrize("bad", ["red", "1f4f8f", "navy blue"])
def test_an_unknown_backdrop_names_the_choices_and_the_colour_format(bad):
    with pytest.raises(errors.InvalidRequest, match=r"no backdrop .*studio-grey.*any brand colour as #rrggbb"):
        styles.get_option("backdrop", bad)
    with pytest.raises(errors.InvalidRequest) as info:  # outfits take no colours
        styles.get_option("outfit", "#1f4f8f")
    assert "#rrggbb" not in str(info.value)


def test_a_hex_backdrop_composes_like_any_backdrop():
    style = styles.get_style("bright-white")
    prompt, negative = styles.compose(style, "a person", backdrop="#800020")
    assert prompt.startswith("clean high key headshot of a person, in front of a solid burgundy studio backdrop, ")
    assert style.backdrop_prompt not in prompt
    assert "grey background" not in negative and "grey backdrop" in negative


def test_a_hex_backdrop_swatch_is_that_colour():
    assert styles.swatch("#1f4f8f").tobytes() == styles.swatch("brand-blue").tobytes()
    assert styles.swatch("#6e1f2e").tobytes() == styles.swatch("brand-burgundy").tobytes()
    image = styles.swatch("#e30613", (80, 100))
    assert image.size == (80, 100) and image.tobytes() != styles.swatch("#e30614", (80, 100)).tobytes()
    red, green, blue = image.getpixel((40, 3))  # the backdrop above the head: the colour, lit a little
    assert red > 150 and green < 90 and blue < 90


def test_list_options_says_backdrops_take_a_hex_colour():
    options = styles.list_options()
    custom = options["custom_backdrop"]
    assert custom["id"] == "#rrggbb" and custom["example"] == "#1f4f8f" and "#rrggbb" in custom["note"]
    assert styles.get_option("backdrop", custom["example"]).name == "Brand colour #1f4f8f"
    assert all(set(b) == {"id", "name"} for b in options["backdrops"][:1])  # "the style's own"
    assert all(set(b) == {"id", "name", "prompt", "colour"} for b in options["backdrops"][1:])  # unchanged
    assert {"brand-blue", "brand-green", "brand-burgundy"} <= {b["id"] for b in options["backdrops"]}


BAD_COLOURS = [
    ('prompt = "solid backdrop"\n[names]\nred = "#ff0000"\nblue = "#0000ff"\n', "'prompt'.*{colour}"),
    ('prompt = "a {colour} {x}"\n[names]\nred = "#ff0000"\nblue = "#0000ff"\n', "'prompt'.*{colour}"),
    ('prompt = "a {colour}"\nnegative = "x {y}"\n[names]\nred = "#ff0000"\nblue = "#0000ff"\n', "'negative'"),
    ('prompt = "a {colour}"\n[names]\nred = "#ff0000"\n', r"\[names\]"),
    ('prompt = "a {colour}"\n[names]\nred = "#ff0000"\nblue = "blue"\n', "'blue'.*#rrggbb"),
    ('prompt = "a {colour}"\n[names]\nred = "#ff0000"\n"Blue 2" = "#0000ff"\n', "'Blue 2'"),
    ('prompt = "a {colour}"\nextra = 1\n[names]\nred = "#ff0000"\nblue = "#0000ff"\n', "unknown field"),
    ('prompt = "a {colour}\n', "not valid TOML"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_COLOURS)
def test_a_bad_colours_file_is_refused(tmp_path, text, problem):
    (tmp_path / "colours.toml").write_text(text, encoding="utf-8")
    try:
        with pytest.raises(errors.StyleFileError, match=r"colours\.toml.*" + problem):
            styles.load_colours(tmp_path)
    finally:
        styles.clear_cache()
