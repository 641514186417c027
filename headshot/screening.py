"""Prompt screening (issue 7): what a person may type into a prompt.

:func:`check_prompt` refuses text longer than ``config.MAX_PROMPT_CHARS`` and text that asks for sexual or
degrading images of the person: whole words, case-insensitive, also when disguised ("n*de", "nak3d",
"s e x", look-alike letters, zero-width characters), while "Sussex" or "therapist" pass. ``styles`` checks
the extra text of every prompt it builds with it.
"""

from __future__ import annotations

import re
import unicodedata

from headshot import config, errors

# Whole words (after normalisation), each with an optional plural "s"/"es". Screening matches whole words
# only, so "Sussex", "Essex", "therapist", "class", "assessment", "analyst", "Scunthorpe" and "cocktail"
# pass. Names that are also ordinary words ("dick", "cock", "willy") are left out for the same reason.
_SEXUAL_WORDS = tuple(
    """
    nude nudes nudity naked nakedness nsfw topless bottomless undress undressed undressing unclothed
    sex sexy sexual sexually sexualized sexualised porn porno pornographic pornography erotic erotica
    xxx hentai lewd smut lingerie underwear panties cleavage boob boobs tits titty titties nipple nipples
    genital genitals genitalia penis vagina vulva pussy butthole seductive seducing horny orgasm orgy
    fetish bdsm bondage striptease stripper onlyfans playboy camgirl upskirt nipslip milf rape raped
    molest molested bukkake cumshot blowjob handjob masturbate masturbating
    """.split()  # noqa: SIM905 - a word list reads best as words
)
_SEXUAL_PHRASES = (
    r"no\s+(?:clothes|clothing)",
    r"without\s+(?:any\s+)?(?:clothes|clothing)",
    r"(?:take|takes|taking|took)\s+off\s+(?:his|her|their|my|the)\s+(?:clothes|clothing|shirt|top|bra)",
    r"see[\s-]*through\s+(?:shirt|blouse|dress|top|clothes|clothing|fabric)",
    r"wet\s+t[\s-]*shirt",
    r"in\s+(?:a\s+)?(?:bikini|bra|swimsuit)",
    r"spread\s+legs",
)
_DEGRADING_WORDS = tuple(
    """
    humiliate humiliated humiliating humiliation degrading demeaning mugshot whore slut skank bitch
    retard retarded blackface yellowface lynched bruised bloodied gory corpse decapitated mutilated
    dismembered vomiting urinating defecating enslaved nazi kkk
    """.split()  # noqa: SIM905 - a word list reads best as words
)
_DEGRADING_PHRASES = (
    r"dead\s+body",
    r"beaten\s+up",
    r"in\s+handcuffs",
    r"prison\s+jumpsuit",
    r"(?:make|making)\s+(?:him|her|them|me)\s+(?:look\s+)?ugly",
    r"black\s+eye",
    r"covered\s+in\s+(?:blood|vomit|feces|faeces|urine)",
    r"on\s+(?:his|her|their|my)\s+knees",
)

# Characters people use to dodge word lists: digits/symbols for letters, look-alike Cyrillic/Greek letters.
_LEET = dict(zip("01345789@$!|+€", "oieastbgasiite", strict=True))
_LOOKALIKES = str.maketrans(
    "асеорхуіјкмтвнАСЕОРХУІЈКМТВНαοεικνρτυχ", "aceopxyijkmtbhaceopxyijkmtbhaoeikvptux"
)
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# Single letters split by separators ("n u d e", "s.e.x", "n-a-k-e-d"): joined into one word as well.
_SPACED_LETTERS = re.compile(r"(?<![a-z*])(?:[a-z*][\s._\-]+){2,}[a-z*](?![a-z*])")


def _word_pattern(word: str) -> str:
    # Each letter may repeat ("nuuude") and, after the first, one may be masked with '*' ("n*de").
    first, rest = word[0], word[1:]
    return re.escape(first) + "+" + "".join(f"(?:{re.escape(c)}+|\\*)" for c in rest)


def _compile(words: tuple[str, ...], phrases: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = [_word_pattern(w) + "(?:e?s)?" for w in sorted(words, key=len, reverse=True)]
    alternatives += list(phrases)
    return re.compile(r"(?<![a-z])(?:" + "|".join(alternatives) + r")(?![a-z])")


_SCREENS = (
    ("sexual", _compile(_SEXUAL_WORDS, _SEXUAL_PHRASES)),
    ("degrading", _compile(_DEGRADING_WORDS, _DEGRADING_PHRASES)),
)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).translate(_LOOKALIKES)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.lower()


def _variants(text: str) -> list[str]:
    """The normalised text read with each meaning of the ambiguous symbols, plus spaced letters joined."""
    base = _normalise(text)
    out: list[str] = []
    for one in ("i", "l"):  # "1" and "|" stand for i or l
        mapping = {**_LEET, "1": one, "|": one}
        read = "".join(mapping.get(c, c) for c in base)
        joined = _SPACED_LETTERS.sub(lambda m: re.sub(r"[\s._\-]+", "", m.group()), read)
        out += [read, joined] if joined != read else [read]
    return out


def _masked_too_much(match: str) -> bool:
    letters = sum(c.isalpha() for c in match)
    return match.count("*") > max(1, letters // 3)


def screen_prompt(text: str) -> tuple[str, str] | None:
    """``(category, matched words)`` when the text asks for sexual or degrading imagery, else None."""
    for variant in _variants(text):
        for category, pattern in _SCREENS:
            for match in pattern.finditer(variant):
                if not _masked_too_much(match.group()):
                    return category, " ".join(match.group().split())
    return None


def check_prompt(text: str) -> str:
    """The user's prompt text, stripped, or :class:`errors.PromptRejected`.

    Refused: text longer than ``config.MAX_PROMPT_CHARS``, and text asking for sexual or degrading images
    of the person (whole words, case-insensitive, also when disguised as "n*de", "nak3d" or "s e x").
    """
    text = str(text or "").strip()
    if len(text) > config.MAX_PROMPT_CHARS:
        raise errors.PromptRejected(
            f"The prompt is {len(text)} characters long; the limit is {config.MAX_PROMPT_CHARS}. "
            "Please shorten it."
        )
    found = screen_prompt(text)
    if found is not None:
        category, words = found
        raise errors.PromptRejected(
            f"The prompt was refused: it asks for {category} content ({words!r}). Headshot Studio only "
            "makes respectful professional portraits of the person; please remove those words."
        )
    return text
