"""Headshot style presets (``styles/*.toml``) and prompt building and screening.

Each style is one TOML file named ``<id>.toml`` with the fields of :class:`Style`. Every file is checked
when loaded: a wrong type, a value out of range, a prompt without exactly one ``{subject}``, ``{outfit}`` and
``{backdrop}`` slot (``{expression}``: at most one), a slot without the style's own wording for it
(``outfit_prompt``, ``backdrop_prompt``, ``expression_prompt``), a negative phrase in two places or an id that
differs from the file name raises :class:`errors.StyleFileError` naming the file and the field.

Prompts typed by users go through ``screening.check_prompt`` (length limit, and refusal of requests for sexual
or degrading images of the person), and every negative prompt built by :func:`negative_prompt` carries
:data:`SAFETY_NEGATIVE`, so such content is kept out of every style.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headshot import config, errors
from headshot.screening import check_prompt

STYLES_DIR = Path(__file__).resolve().parent.parent / "styles"
SUBJECT_SLOT = "{subject}"
# The outfit and backdrop slots of a style's prompt, each with the style's own wording for it (a style field).
# Keeping the style's outfit/backdrop fills the slot with that wording; choosing an option empties the slot
# (its clause is dropped), so the style's own outfit or backdrop never fights the chosen one (see compose).
SLOT_FIELDS = {
    "{outfit}": "outfit_prompt",
    "{backdrop}": "backdrop_prompt",
    "{expression}": "expression_prompt",
}
# {expression} is optional: a style may leave the expression to the model and to the person's expression hint
# (subject.toml group "expression"); with the slot it needs its own wording, like the other two.
OPTIONAL_SLOTS = ("{expression}",)
# The style's negative words that guard its own outfit / backdrop / expression ("suit and tie" for a sweater
# look, "grey background" for a white one): dropped with that slot when the person chooses an option, so they
# never forbid the chosen option's words. A phrase may guard two slots ("dark": a dark suit or a dark backdrop
# both fight it); it is dropped when either is chosen.
SLOT_NEGATIVES = {
    "{outfit}": "outfit_negative",
    "{backdrop}": "backdrop_negative",
    "{expression}": "expression_negative",
}
MAX_SLOT_CHARS = 200
ASPECTS = tuple(config.OUTPUT_SIZES)  # "square", "4:5", "3:4"

# Ranges a style may use: the same limits as a user's request (config), so any style value can be asked for.
STEPS_RANGE = (config.MIN_STEPS, config.MAX_STEPS)
GUIDANCE_RANGE = (config.MIN_GUIDANCE, config.MAX_GUIDANCE)
SCALE_RANGE = (config.MIN_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE)
MAX_NAME_CHARS = 60
MAX_DESCRIPTION_CHARS = 300
MAX_TEMPLATE_CHARS = 1000
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")

# Kept first in every negative prompt (see negative_prompt) so CLIP's 77-token window never cuts it off.
SAFETY_NEGATIVE = (
    "nudity, nsfw, sexual content, suggestive pose, cleavage, lingerie, underwear, shirtless, "
    "gore, blood, injury, degrading, humiliating, mocking, caricature, exaggerated features"
)


@dataclass(frozen=True)
class Style:
    """One headshot preset, as read from ``styles/<id>.toml``."""

    id: str
    name: str
    description: str
    prompt: str  # "{subject}", "{outfit}" and "{backdrop}" exactly once each, "{expression}" at most once
    negative_prompt: str  # the negative words that hold whatever is chosen (the slot negatives are apart)
    outfit_prompt: str  # the style's own outfit: fills "{outfit}" unless an outfit option is chosen
    backdrop_prompt: str  # the style's own backdrop: fills "{backdrop}" unless a backdrop option is chosen
    aspect: str  # "square" | "4:5" | "3:4"
    steps: int
    guidance: float
    identity_strength: float  # IP-adapter scale (face tokens in the UNet)
    identitynet_strength: float  # ControlNet conditioning scale (IdentityNet)
    order: int = 100  # position in the style list (then by name)
    backdrop: str = ""  # the closest backdrop of options/backdrops.toml: the style's preview swatch
    expression_prompt: str = ""  # the style's own expression: fills "{expression}" unless a hint is chosen
    outfit_negative: str = ""  # negative words guarding the style's own outfit: dropped when one is chosen
    backdrop_negative: str = ""  # ... its own backdrop
    expression_negative: str = ""  # ... its own expression

    def template(
        self, *, own_outfit: bool = True, own_backdrop: bool = True, own_expression: bool = True
    ) -> str:
        """The prompt with its ``{outfit}``, ``{backdrop}`` and ``{expression}`` slots filled by the style's own
        wording, or, where ``own_outfit`` / ``own_backdrop`` / ``own_expression`` is False (an option replaces
        it), with that slot's clause dropped. Only ``{subject}`` is left."""
        text = self.prompt
        owns = {"{outfit}": own_outfit, "{backdrop}": own_backdrop, "{expression}": own_expression}
        for slot, own in owns.items():
            if slot not in text:  # an optional slot the style does without
                continue
            if own:
                text = text.replace(slot, getattr(self, SLOT_FIELDS[slot]))
            else:  # a slot is a clause of its own (checked at load): drop it with one neighbouring comma
                first = text.lstrip().startswith(slot)
                pattern = r"^\s*" + re.escape(slot) + r"\s*,?\s*" if first else r"\s*,\s*" + re.escape(slot)
                text = re.sub(pattern, "", text, count=1)
        return text

    def build_prompt(
        self,
        subject: str,
        extra: str = "",
        *,
        own_outfit: bool = True,
        own_backdrop: bool = True,
        own_expression: bool = True,
    ) -> str:
        """The full positive prompt for ``subject`` (e.g. ``"a woman"`` or a LoRA token phrase).

        The user's ``extra`` text (checked with :func:`check_prompt`) goes right after the subject, where it
        describes the person ("with curly red hair and glasses") and stays inside CLIP's 77-token window;
        the style's clothing, setting and camera wording follows (``own_outfit`` / ``own_backdrop`` /
        ``own_expression`` False: without the style's outfit / backdrop / expression, see :meth:`template`).
        """
        subject = " ".join(str(subject).split())
        if not subject:
            raise errors.InvalidRequest("The prompt needs a subject, for example 'a woman' or 'a man'.")
        extra = _clean_clause(check_prompt(extra))
        filled = f"{subject}, {extra}" if extra else subject
        # The slots are filled from data first, the subject (the user's text) last, and with str.replace,
        # never str.format: braces in the user's text stay inert.
        template = self.template(
            own_outfit=own_outfit, own_backdrop=own_backdrop, own_expression=own_expression
        )
        return template.replace(SUBJECT_SLOT, filled)

    def slot_negative(
        self, *, own_outfit: bool = True, own_backdrop: bool = True, own_expression: bool = True
    ) -> str:
        """The style's slot negatives (``outfit_negative`` ...) of the slots it keeps, without any phrase that a
        replaced slot names (so "dark", guarding both outfit and backdrop, goes when either is chosen)."""
        owns = {"{outfit}": own_outfit, "{backdrop}": own_backdrop, "{expression}": own_expression}
        dropped = {p.lower() for slot, own in owns.items() if not own for p in _phrases(self._slot_neg(slot))}
        kept = [p for slot, own in owns.items() if own for p in _phrases(self._slot_neg(slot))]
        return ", ".join(_unique(p for p in kept if p.lower() not in dropped))

    def _slot_neg(self, slot: str) -> str:
        return getattr(self, SLOT_NEGATIVES[slot])

    def size(self) -> tuple[int, int]:
        """(width, height) of this style's aspect in the active profile."""
        return config.output_sizes()[self.aspect]

    def summary(self) -> dict[str, str]:
        """``{id, name, description}`` as ``/list_styles`` returns it."""
        return {"id": self.id, "name": self.name, "description": self.description}


# --------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------

_REQUIRED: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "name": (str,),
    "description": (str,),
    "prompt": (str,),
    "negative_prompt": (str,),
    "outfit_prompt": (str,),
    "backdrop_prompt": (str,),
    "aspect": (str,),
    "steps": (int,),
    "guidance": (int, float),
    "identity_strength": (int, float),
    "identitynet_strength": (int, float),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "order": (int,),
    "backdrop": (str,),
    "expression_prompt": (str,),
    **dict.fromkeys(SLOT_NEGATIVES.values(), (str,)),
}


def _fail(path: Path, field: str | None, problem: str) -> errors.StyleFileError:
    where = f"style file {path.name}" + (f", field '{field}'" if field else "")
    return errors.StyleFileError(f"The {where}: {problem}")


def _check_text(
    path: Path, data: dict[str, Any], field: str, max_chars: int, *, empty_ok: bool = False
) -> str:
    value = data[field].strip()
    if not value and not empty_ok:
        raise _fail(path, field, "must not be empty.")
    if len(value) > max_chars:
        raise _fail(path, field, f"is {len(value)} characters long; the limit is {max_chars}.")
    return value


def _check_number(path: Path, data: dict[str, Any], field: str, low: float, high: float) -> float:
    value = float(data[field])
    if not math.isfinite(value) or not low <= value <= high:
        raise _fail(path, field, f"must be between {low:g} and {high:g}, not {data[field]!r}.")
    return value


def parse_style(path: Path, data: dict[str, Any]) -> Style:
    """Check one parsed TOML table and build its :class:`Style`; raises :class:`errors.StyleFileError`."""
    _check_fields(path, data)
    style_id = _check_id(path, data)
    prompt, own = _check_prompt(path, data)
    negative, slot_negatives = _check_negatives(path, data)
    aspect = data["aspect"].strip()
    if aspect not in ASPECTS:
        raise _fail(path, "aspect", f"must be one of {', '.join(ASPECTS)}, not {aspect!r}.")
    steps = data["steps"]
    if not STEPS_RANGE[0] <= steps <= STEPS_RANGE[1]:
        raise _fail(path, "steps", f"must be between {STEPS_RANGE[0]} and {STEPS_RANGE[1]}, not {steps}.")

    return Style(
        id=style_id,
        name=_check_text(path, data, "name", MAX_NAME_CHARS),
        description=_check_text(path, data, "description", MAX_DESCRIPTION_CHARS),
        prompt=prompt,
        negative_prompt=negative,
        **own,
        aspect=aspect,
        steps=steps,
        guidance=_check_number(path, data, "guidance", *GUIDANCE_RANGE),
        identity_strength=_check_number(path, data, "identity_strength", *SCALE_RANGE),
        identitynet_strength=_check_number(path, data, "identitynet_strength", *SCALE_RANGE),
        order=data.get("order", 100),
        backdrop=data.get("backdrop", "").strip(),
        **slot_negatives,
    )


def _check_fields(path: Path, data: dict[str, Any]) -> None:
    """Every required field is there, and every field is a style field of the right type."""
    for field in _REQUIRED:
        if field not in data:
            slot = next((s for s, f in SLOT_FIELDS.items() if f == field), None)
            why = f": the style's own wording for the {slot} slot of its prompt" if slot else ""
            raise _fail(path, field, f"is missing{why}.")
    for field, value in data.items():
        types = _REQUIRED.get(field) or _OPTIONAL.get(field)
        if types is None:
            known = ", ".join([*_REQUIRED, *_OPTIONAL])
            raise _fail(path, field, f"is not a style field (known fields: {known}).")
        # bool is an int subclass in Python; a style never means True by a number.
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise _fail(path, field, f"must be {wanted}, not {type(value).__name__} ({value!r}).")


def _check_id(path: Path, data: dict[str, Any]) -> str:
    """The style's id: a short lower-case name, equal to its file's name."""
    style_id = data["id"].strip()
    if not _ID_RE.match(style_id):
        raise _fail(path, "id", f"{style_id!r} must be lower-case letters, digits, '-' or '_' (at most 48).")
    if style_id != path.stem:
        raise _fail(path, "id", f"{style_id!r} must equal the file name without '.toml' ({path.stem!r}).")
    return style_id


def _check_prompt(path: Path, data: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The prompt template (each slot once, an optional one at most once, nothing else in braces) and the
    style's own wording for each of its slots, each a clause of its own."""
    prompt = _check_text(path, data, "prompt", MAX_TEMPLATE_CHARS)
    rest = prompt
    for slot in (SUBJECT_SLOT, *SLOT_FIELDS):
        count = prompt.count(slot)
        if slot in OPTIONAL_SLOTS and count > 1:
            raise _fail(path, "prompt", f"may contain {slot} at most once (found {count}).")
        if slot not in OPTIONAL_SLOTS and count != 1:
            raise _fail(path, "prompt", f"must contain {slot} exactly once (found {count}).")
        rest = rest.replace(slot, "")
    if "{" in rest or "}" in rest:
        raise _fail(
            path,
            "prompt",
            f"has a brace that is not one of the slots {SUBJECT_SLOT}, {', '.join(SLOT_FIELDS)} (a typo?).",
        )
    own: dict[str, str] = {}
    for slot, field in SLOT_FIELDS.items():
        if slot in OPTIONAL_SLOTS and slot not in prompt:
            if field in data:
                raise _fail(path, field, f"is the wording for a {slot} slot, but the prompt has none.")
            continue
        if slot in OPTIONAL_SLOTS and field not in data:
            raise _fail(
                path, field, f"is missing: the style's own wording for the {slot} slot of its prompt."
            )
        if not re.search(r"(?:^|,)\s*" + re.escape(slot) + r"\s*(?:,|$)", prompt):
            raise _fail(
                path,
                "prompt",
                f"{slot} must be a clause of its own, between commas (so that a chosen option can drop it).",
            )
        own[field] = _check_text(path, data, field, MAX_SLOT_CHARS)
        if "{" in own[field] or "}" in own[field]:
            raise _fail(path, field, "must not contain braces.")
    return prompt, own


def _check_negatives(path: Path, data: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The negative prompt and the slots' own negatives (no braces; no phrase in both)."""
    negative = _check_text(path, data, "negative_prompt", MAX_TEMPLATE_CHARS, empty_ok=True)
    if "{" in negative or "}" in negative:
        raise _fail(path, "negative_prompt", "must not contain braces.")
    slot_negatives: dict[str, str] = {}
    general = {p.lower() for p in _phrases(negative)}
    for field in SLOT_NEGATIVES.values():
        if field not in data:
            continue
        value = _clean_clause(_check_text(path, data, field, MAX_SLOT_CHARS, empty_ok=True))
        if "{" in value or "}" in value:
            raise _fail(path, field, "must not contain braces.")
        twice = next((p for p in _phrases(value) if p.lower() in general), None)
        if twice is not None:  # it would stay in the negative prompt whatever is chosen
            raise _fail(path, field, f"{twice!r} is in negative_prompt too: keep it in one place.")
        slot_negatives[field] = value
    return negative, slot_negatives


def read_style_file(path: str | Path) -> Style:
    """Read and check one ``<id>.toml`` file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, None, f"is not valid TOML ({exc}).") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, None, f"cannot be read ({exc}).") from exc
    return parse_style(path, data)


@functools.lru_cache(maxsize=8)
def _load_folder(folder: Path) -> tuple[Style, ...]:
    if not folder.is_dir():
        raise errors.StyleFileError(f"The styles folder {folder} does not exist.")
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise errors.StyleFileError(f"The styles folder {folder} holds no style files (*.toml).")
    styles: dict[str, Style] = {}
    backdrops = (
        _load_options(folder / OPTIONS_FOLDER)["backdrop"] if (folder / OPTIONS_FOLDER).is_dir() else None
    )
    for path in files:
        style = read_style_file(path)
        if style.backdrop and backdrops is not None and style.backdrop not in backdrops:
            raise _fail(
                path,
                "backdrop",
                f"{style.backdrop!r} is not a backdrop of {OPTIONS_FOLDER}/backdrops.toml "
                f"(known: {', '.join(backdrops)}).",
            )
        if style.id in styles:  # ids equal file stems, so only a case-insensitive file system gets here
            raise _fail(path, "id", f"{style.id!r} is used by another style file too.")
        styles[style.id] = style
    return tuple(sorted(styles.values(), key=lambda s: (s.order, s.name.lower(), s.id)))


def load_styles(folder: str | Path | None = None) -> dict[str, Style]:
    """All styles of ``folder`` (default: ``<repo>/styles``) by id, in display order.

    Read once per folder and cached (:func:`clear_cache` forgets); a bad file raises
    :class:`errors.StyleFileError` naming the file and the field.
    """
    folder = Path(folder).expanduser().resolve() if folder is not None else STYLES_DIR
    return {style.id: style for style in _load_folder(folder)}


def clear_cache() -> None:
    """Forget loaded styles and options (tests, or after editing style files)."""
    _load_folder.cache_clear()
    _load_options.cache_clear()
    _load_colours.cache_clear()
    brand_colour.cache_clear()


def get_style(style_id: str, folder: str | Path | None = None) -> Style:
    """The style with this id, or :class:`errors.UnknownStyle` listing the valid ids."""
    styles = load_styles(folder)
    key = str(style_id).strip() if style_id is not None else ""
    if key not in styles:
        raise errors.UnknownStyle(f"There is no style {key!r}. Choose one of: {', '.join(styles)}.")
    return styles[key]


def list_styles(folder: str | Path | None = None) -> list[dict[str, str]]:
    """``[{id, name, description}, ...]`` in display order (the ``/list_styles`` answer)."""
    return [style.summary() for style in load_styles(folder).values()]


def negative_prompt(style: Style, user_negative: str = "", options_negative: str | None = None) -> str:
    """The negative prompt for a render: :data:`SAFETY_NEGATIVE`, the options', the style's, then the user's.

    ``options_negative`` is what :func:`compose` returns with the prompt: the chosen options' negative words
    and the style's slot negatives of the slots it keeps. None (nothing composed) means the style's defaults:
    all of its slot negatives.

    The safety terms are always included and come first, so that CLIP's 77-token truncation can only ever
    drop the end of the user's text, never the safety terms. The user's text is length-checked only: a
    negative prompt naming unwanted content is welcome.
    """
    user_negative = " ".join(str(user_negative or "").split())
    if len(user_negative) > config.MAX_PROMPT_CHARS:
        raise errors.PromptRejected(
            f"The negative prompt is {len(user_negative)} characters long; "
            f"the limit is {config.MAX_PROMPT_CHARS}. Please shorten it."
        )
    # The chosen options' words (backdrop, outfit, subject hints: data, never the user's) and the style's kept
    # slot negatives come next, so that the style's own backdrop or outfit is kept out before the generic terms.
    if options_negative is None:
        options_negative = style.slot_negative()
    parts = [
        SAFETY_NEGATIVE,
        _clean_clause(options_negative),
        style.negative_prompt,
        _clean_clause(user_negative),
    ]
    return ", ".join(part for part in parts if part)


def _clean_clause(text: str) -> str:
    """Collapse whitespace and strip commas/periods at the ends, so the clause joins with ', '."""
    return " ".join(text.split()).strip(" ,;.")


def _phrases(text: str) -> list[str]:
    """The comma-separated phrases of a negative prompt, cleaned, empty ones left out."""
    return [p for p in (_clean_clause(part) for part in str(text or "").split(",")) if p]


def _unique(phrases) -> list[str]:
    """Phrases without repeats (case-insensitive), first one kept."""
    seen: set[str] = set()
    return [p for p in phrases if not (p.lower() in seen or seen.add(p.lower()))]


# --------------------------------------------------------------------------------------
# Choices on top of a style: backdrop, outfit, subject hints (styles/options/*.toml)
# --------------------------------------------------------------------------------------

OPTIONS_FOLDER = "options"
STYLE_CHOICE = "style"  # backdrop / outfit id meaning "the style's own" (the default)
OPTION_KINDS = {"backdrop": "backdrops.toml", "outfit": "outfits.toml", "subject": "subject.toml"}
SUBJECT_GROUPS = ("person", "age", "glasses", "expression")
LIGHTS = ("soft", "bright", "dark", "window", "outdoor")
MAX_OPTION_CHARS = 200
_COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
_OPTION_FIELDS: dict[str, dict[str, bool]] = {  # field: required
    "backdrop": {
        "name": True,
        "prompt": True,
        "negative": False,
        "colour": True,
        "colour2": False,
        "light": True,
    },
    "outfit": {"name": True, "prompt": True, "negative": False},
    "subject": {"name": True, "prompt": True, "negative": False, "group": True},
}


@dataclass(frozen=True)
class Option:
    """One backdrop, outfit or subject hint, as read from ``styles/options/<kind>s.toml``."""

    kind: str
    id: str
    name: str
    prompt: str  # words put after the subject
    negative: str = ""  # words added to the negative prompt
    group: str = ""  # subject hints: person, age, glasses or expression (one per group)
    colour: str = ""  # backdrops: the swatch colour (#rrggbb)
    colour2: str = ""  # backdrops: a second colour for scenes (office, outdoor)
    light: str = ""  # backdrops: soft, bright, dark, window or outdoor

    def summary(self) -> dict[str, str]:
        out = {"id": self.id, "name": self.name, "prompt": self.prompt}
        if self.kind == "subject":
            out["group"] = self.group
        if self.kind == "backdrop":
            out["colour"] = self.colour
        return out


def _parse_option(path: Path, kind: str, option_id: str, data: Any) -> Option:
    where = f"options file {path.name}, entry [{option_id}]"
    if not isinstance(data, dict):
        raise errors.StyleFileError(f"The {where}: must be a table of fields.")
    if not _ID_RE.match(option_id) or option_id == STYLE_CHOICE:
        raise errors.StyleFileError(
            f"The {where}: the id must be lower-case letters, digits, '-' or '_' and not {STYLE_CHOICE!r}."
        )
    fields = _OPTION_FIELDS[kind]
    for name, required in fields.items():
        if required and name not in data:
            raise errors.StyleFileError(f"The {where}, field '{name}': is missing.")
    values: dict[str, str] = {}
    for name, value in data.items():
        if name not in fields:
            raise errors.StyleFileError(f"The {where}, field '{name}': unknown (known: {', '.join(fields)}).")
        if (
            not isinstance(value, str)
            or len(value.strip()) > MAX_OPTION_CHARS
            or "{" in value
            or "}" in value
        ):
            raise errors.StyleFileError(
                f"The {where}, field '{name}': must be text without braces, at most {MAX_OPTION_CHARS} characters."
            )
        values[name] = value.strip()
    if not values["name"] or not values["prompt"]:
        raise errors.StyleFileError(f"The {where}: name and prompt must not be empty.")
    for name in ("colour", "colour2"):
        if values.get(name) and not _COLOUR_RE.match(values[name]):
            raise errors.StyleFileError(
                f"The {where}, field '{name}': must be #rrggbb, not {values[name]!r}."
            )
    if kind == "backdrop" and values["light"] not in LIGHTS:
        raise errors.StyleFileError(f"The {where}, field 'light': must be one of {', '.join(LIGHTS)}.")
    if kind == "subject" and values["group"] not in SUBJECT_GROUPS:
        raise errors.StyleFileError(
            f"The {where}, field 'group': must be one of {', '.join(SUBJECT_GROUPS)}."
        )
    return Option(kind=kind, id=option_id, **values)


def _read_options_file(path: Path, missing: str, invalid: str) -> dict:
    """An options file's TOML, or a StyleFileError naming the file (``missing``/``invalid``: how to name it)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise errors.StyleFileError(f"The {missing} is missing.") from None
    except tomllib.TOMLDecodeError as exc:
        raise errors.StyleFileError(f"The {invalid} is not valid TOML ({exc}).") from exc


@functools.lru_cache(maxsize=8)
def _load_options(folder: Path) -> dict[str, dict[str, Option]]:
    out: dict[str, dict[str, Option]] = {}
    for kind, name in OPTION_KINDS.items():
        path = folder / name
        data = _read_options_file(path, f"options file {path}", f"options file {name}")
        out[kind] = {key: _parse_option(path, kind, key, value) for key, value in data.items()}
    return out


def load_options(folder: str | Path | None = None) -> dict[str, dict[str, Option]]:
    """``{"backdrop": {id: Option}, "outfit": {...}, "subject": {...}}`` from ``styles/options`` (cached)."""
    base = Path(folder).expanduser().resolve() if folder is not None else STYLES_DIR / OPTIONS_FOLDER
    return _load_options(base)


def get_option(kind: str, option_id: str | None) -> Option | None:
    """The backdrop or outfit with this id; None for the style's own (``"style"``, empty or None).

    A backdrop may also be any brand colour as ``#rrggbb`` (see :func:`brand_colour`)."""
    key = str(option_id or "").strip().lower()
    if key in ("", STYLE_CHOICE):
        return None
    if kind == "backdrop" and key.startswith("#"):
        return brand_colour(key)
    known = load_options()[kind]
    if key not in known:
        also = (
            f", or any brand colour as {COLOUR_FORMAT} (e.g. {COLOUR_EXAMPLE})" if kind == "backdrop" else ""
        )
        raise errors.InvalidRequest(
            f"There is no {kind} {key!r}. Choose one of: {', '.join([STYLE_CHOICE, *known])}{also}."
        )
    return known[key]


# --------------------------------------------------------------------------------------
# Any brand colour as a backdrop: "#rrggbb", named by the nearest of options/colours.toml
# --------------------------------------------------------------------------------------

COLOURS_FILE = "colours.toml"
COLOUR_FORMAT = "#rrggbb"
COLOUR_EXAMPLE = "#1f4f8f"
_COLOUR_NAME_RE = re.compile(r"^[a-z][a-z -]{0,38}[a-z]$")


@dataclass(frozen=True)
class Palette:
    """``options/colours.toml``: the brand colour backdrop's prompt (with ``{colour}``), its negative, and the
    colour names with their Lab values."""

    prompt: str
    negative: str
    names: tuple[tuple[str, str, tuple[float, float, float]], ...]  # (name, "#rrggbb", Lab)


def _lab(colour: str) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB ``#rrggbb``."""
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    xyz = (
        (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047,
        0.2126729 * r + 0.7151522 * g + 0.0721750 * b,
        (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883,
    )
    fx, fy, fz = [t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29 for t in xyz]
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


@functools.lru_cache(maxsize=8)
def _load_colours(path: Path) -> Palette:
    where = f"options file {path.name}"
    data = _read_options_file(path, where, where)
    unknown = set(data) - {"prompt", "negative", "names"}
    if unknown:
        raise errors.StyleFileError(f"The {where}: unknown field(s) {', '.join(sorted(unknown))}.")
    prompt, negative, names = data.get("prompt"), data.get("negative", ""), data.get("names")
    if (
        not isinstance(prompt, str)
        or prompt.count("{colour}") != 1
        or prompt.replace("{colour}", "").count("{")
    ):
        raise errors.StyleFileError(
            f"The {where}, field 'prompt': must be text with {{colour}} exactly once."
        )
    if not isinstance(negative, str) or "{" in negative or "}" in negative:
        raise errors.StyleFileError(f"The {where}, field 'negative': must be text without braces.")
    if not isinstance(names, dict) or len(names) < 2:
        raise errors.StyleFileError(f'The {where}, table [names]: must hold colour names = "#rrggbb".')
    entries = []
    for name, value in names.items():
        if not _COLOUR_NAME_RE.match(name) or not isinstance(value, str) or not _COLOUR_RE.match(value):
            raise errors.StyleFileError(
                f'The {where}, [names] entry {name!r}: must be lower-case words = "#rrggbb", not {value!r}.'
            )
        entries.append((name, value.lower(), _lab(value)))
    return Palette(prompt=prompt.strip(), negative=_clean_clause(negative), names=tuple(entries))


def load_colours(folder: str | Path | None = None) -> Palette:
    """The colour names of ``styles/options/colours.toml`` (cached)."""
    base = Path(folder).expanduser().resolve() if folder is not None else STYLES_DIR / OPTIONS_FOLDER
    return _load_colours(base / COLOURS_FILE)


def colour_name(colour: str, folder: str | Path | None = None) -> str:
    """The nearest colour name of ``options/colours.toml`` to ``#rrggbb`` (distance in CIELAB)."""
    lab = _lab(colour)
    # CIE76 (straight Lab distance): with this palette it named vivid colours better than CIE94, whose chroma
    # tolerance let lightness win (pure orange came out "mustard yellow", turquoise "mint green").
    return min(load_colours(folder).names, key=lambda entry: math.dist(lab, entry[2]))[0]


@functools.lru_cache(maxsize=256)
def brand_colour(colour: str) -> Option:
    """The backdrop option for any brand colour ``#rrggbb``: "Brand colour #1f4f8f", "in front of a solid deep
    blue studio backdrop" (the nearest colour name), the brand colours' negative and a swatch in that colour.
    Anything else is refused with :class:`errors.InvalidRequest` saying the format."""
    value = str(colour or "").strip().lower()
    if not _COLOUR_RE.match(value):
        raise errors.InvalidRequest(
            f"A brand colour backdrop must be {COLOUR_FORMAT}: '#' and six hex digits 0-9 or a-f "
            f"(e.g. {COLOUR_EXAMPLE}), not {colour!r}."
        )
    palette, name = load_colours(), colour_name(value)
    words = set(re.findall(r"[a-z]+", name))
    # The brand negative keeps greys and white out; not when the colour asked for is one of them.
    negative = [p for p in _phrases(palette.negative) if not words & set(re.findall(r"[a-z]+", p.lower()))]
    return Option(
        kind="backdrop",
        id=value,
        name=f"Brand colour {value}",
        prompt=palette.prompt.replace("{colour}", name),
        negative=", ".join(negative),
        colour=value,
        light="soft",
    )


def parse_subject(text: str | None) -> list[Option]:
    """Subject hint ids separated by commas or spaces (``"woman, age-30s, glasses"``), at most one per group."""
    known = load_options()["subject"]
    hints: list[Option] = []
    for key in re.split(r"[,\s]+", str(text or "").strip().lower()):
        if not key:
            continue
        if key not in known:
            raise errors.InvalidRequest(f"There is no subject hint {key!r}. Choose from: {', '.join(known)}.")
        hint = known[key]
        clash = next((h for h in hints if h.group == hint.group), None)
        if clash is not None and clash.id != hint.id:
            raise errors.InvalidRequest(
                f"The subject hints {clash.id!r} and {hint.id!r} are both about {hint.group}: choose one."
            )
        if clash is None:
            hints.append(hint)
    return sorted(hints, key=lambda h: SUBJECT_GROUPS.index(h.group))


def compose(
    style: Style,
    subject: str,
    extra: str = "",
    *,
    backdrop: str | None = None,
    outfit: str | None = None,
    hints: str | None = None,
) -> tuple[str, str]:
    """The positive prompt and the extra negative words for a style with the chosen options, by data.

    Kept ("style", the default): the style's ``{outfit}`` / ``{backdrop}`` / ``{expression}`` slot gets its own
    wording, so the prompt is the style's as written. Chosen (a backdrop, an outfit, an expression hint): that
    slot's clause is dropped (the style's own outfit, backdrop or expression is gone, so the option's
    ``negative`` words fight nothing left in the positive prompt) and the option's words go right after the
    subject and hints, before the user's text. The negative words returned (for :func:`negative_prompt`) are
    the chosen options' and the style's slot negatives of the slots kept: a chosen slot's guard words
    (``outfit_negative`` ...) are dropped, so they never forbid the chosen option's words.

    Why there and not in the slot: SDXL's text encoders read only CLIP's first 77 tokens (75 after the start
    and end tokens) and drop the rest. Subject, hints (<= ~22 tokens), outfit (<= ~13) and backdrop (<= ~15)
    fit in about the first 60 tokens whatever follows. In the slot, the backdrop would sit after the user's
    text (up to config.MAX_PROMPT_CHARS = 400 characters, easily 70+ tokens) and the style's expression
    words, so a long personal touch would push the person's explicit choice out of the window, while the
    style's tail (light, lens, texture) is the part best lost. The shipped presets' slots are near the front
    too, so with no extra text the two placements differ only in order.
    """
    chosen_outfit, chosen_backdrop = get_option("outfit", outfit), get_option("backdrop", backdrop)
    chosen = [o for o in (*parse_subject(hints), chosen_outfit, chosen_backdrop) if o is not None]
    person = next((o for o in chosen if o.kind == "subject" and o.group == "person"), None)
    expression = next((o for o in chosen if o.kind == "subject" and o.group == "expression"), None)
    owns = {
        "own_outfit": chosen_outfit is None,
        "own_backdrop": chosen_backdrop is None,
        "own_expression": expression is None,
    }
    words = " ".join(str(subject).split())
    if person is not None:
        words = person.prompt if words == "a person" else f"{words}, {person.prompt}"
    clauses = [o.prompt for o in chosen if o is not person]
    filled = ", ".join([words, *clauses])
    prompt = style.build_prompt(filled, extra, **owns)
    negatives = [p for o in chosen for p in _phrases(o.negative)] + _phrases(style.slot_negative(**owns))
    return prompt, ", ".join(_unique(negatives))


def list_options() -> dict[str, list[dict[str, str]]]:
    """What ``/list_options`` answers: styles, backdrops, outfits and subject hints, each with id and name,
    and ``custom_backdrop``: the backdrop also takes any brand colour as ``#rrggbb``."""
    options = load_options()
    return {
        "styles": [{**s.summary(), "backdrop": s.backdrop} for s in load_styles().values()],
        "backdrops": [{"id": STYLE_CHOICE, "name": "The style's own"}]
        + [o.summary() for o in options["backdrop"].values()],
        "outfits": [{"id": STYLE_CHOICE, "name": "The style's own"}]
        + [o.summary() for o in options["outfit"].values()],
        "subject": [o.summary() for o in options["subject"].values()],
        # Not a list entry (the lists hold ids to pick from): any colour as a backdrop id.
        "custom_backdrop": {
            "id": COLOUR_FORMAT,
            "name": f"Brand colour {COLOUR_FORMAT}",
            "example": COLOUR_EXAMPLE,
            "note": f"backdrop also takes any colour as {COLOUR_FORMAT}: a solid studio backdrop named by the "
            f"nearest of {len(load_colours().names)} common colour names, the swatch in the exact colour",
        },
    }


def swatch(backdrop_id: str | None, size: tuple[int, int] = (160, 200)):
    """A preview of a backdrop's colour and light (a small PIL image, no GPU): a soft radial light on the
    colour, a second colour for scenes (office, outdoor: a blurred horizon), a dark vignette for low key.
    A brand colour ``#rrggbb`` is drawn in exactly that colour (as the fixed brand colours are)."""
    from PIL import Image, ImageDraw, ImageFilter

    option = get_option("backdrop", backdrop_id) or get_option("backdrop", "studio-grey")
    width, height = size
    image = Image.new("RGB", size, option.colour)
    if option.colour2:
        draw = ImageDraw.Draw(image)
        horizon = int(height * (0.55 if option.light == "outdoor" else 0.62))
        draw.rectangle(
            [0, horizon, width, height], fill=option.colour2 if option.light == "window" else option.colour
        )
        if option.light == "outdoor":
            draw.rectangle([0, 0, width, horizon], fill=option.colour2)
        elif option.light == "window":
            draw.rectangle(
                [int(width * 0.08), int(height * 0.1), int(width * 0.45), int(height * 0.55)], fill="#eef3f7"
            )
    glow = Image.new("L", size, 0)
    ImageDraw.Draw(glow).ellipse([width * 0.1, height * 0.05, width * 0.9, height * 0.75], fill=255)
    glow = glow.filter(ImageFilter.GaussianBlur(min(size) / 5))
    strength = {"soft": 0.35, "bright": 0.6, "dark": 0.18, "window": 0.3, "outdoor": 0.35}[option.light]
    light = Image.new("RGB", size, "#ffffff")
    image = Image.composite(light, image, glow.point(lambda v: int(v * strength)))
    if option.light in ("dark", "soft"):
        edge = Image.new("L", size, 0)
        ImageDraw.Draw(edge).rectangle([0, 0, width, height], outline=255, width=int(min(size) / 6))
        edge = edge.filter(ImageFilter.GaussianBlur(min(size) / 6))
        image = Image.composite(Image.new("RGB", size, "#000000"), image, edge.point(lambda v: int(v * 0.45)))
    image = image.filter(ImageFilter.GaussianBlur(2 if option.colour2 else 0))
    # A head-and-shoulders silhouette, so the swatch reads as a portrait backdrop.
    draw = ImageDraw.Draw(image)
    figure = "#3a3f47" if option.light != "dark" else "#50555d"
    draw.ellipse([width * 0.36, height * 0.28, width * 0.64, height * 0.58], fill=figure)
    draw.ellipse([width * 0.14, height * 0.62, width * 0.86, height * 1.25], fill=figure)
    return image


def style_blurb(style_id: str | None, backdrop: str | None = "style", outfit: str | None = "style") -> str:
    """What the chosen look is, in words: the style's description, or, once a backdrop or outfit of the
    options replaces the style's own, the outfit, backdrop and light as they will be rendered ("" for an
    unknown style)."""
    try:
        style = get_style(style_id)
    except errors.HeadshotError:
        return ""

    def option(kind: str, value: str | None):
        try:
            return get_option(kind, value)
        except errors.HeadshotError:
            return None

    chosen_backdrop, chosen_outfit = option("backdrop", backdrop), option("outfit", outfit)
    if chosen_backdrop is None and chosen_outfit is None:
        return style.description
    wearing = chosen_outfit.name if chosen_outfit else style.outfit_prompt.removeprefix("wearing ")
    behind = chosen_backdrop.name if chosen_backdrop else style.backdrop_prompt
    return (
        f"Outfit: {wearing[0].upper() + wearing[1:]}. Backdrop: {behind[0].upper() + behind[1:]}. "
        "The style's light, lens and framing stay."
    )


def preview_swatch(style_id: str | None, backdrop_id: str | None, size: tuple[int, int] = (200, 250)):
    """The preview of a backdrop, or of the style's own backdrop for "style" (a small image, no GPU)."""
    chosen = backdrop_id if backdrop_id and backdrop_id != STYLE_CHOICE else None
    if chosen is None:
        try:
            chosen = get_style(style_id).backdrop or None
        except errors.HeadshotError:
            chosen = None
    return swatch(chosen, size)
