"""The Selfies step's cards: one per checked selfie (a drawn pass/fail mark, the file name, the main reason
on one line and the whole reason a tap away), and the readiness text under them. Page only: the API's
/validate_selfies answers with the report these are drawn from.
"""

from __future__ import annotations

import html
from pathlib import Path

from headshot import config
from headshot.errors import HeadshotError
from headshot.web.endpoints import file_paths
from headshot.web.files import caller_session


def selfie_cards(selfies: list[str] | None, report: dict, session=None):
    """Thumbnails with a pass/fail caption per photo, and the overall readiness (written as files in
    the session's folder, so Delete removes them with the rest)."""
    from headshot import imaging

    own = caller_session(session, None)
    cards = []
    folder = None
    # The report lists the checked selfies in upload order (files past the limit are not in it).
    for path, entry in zip(own.adopt(file_paths(selfies)), report.get("selfies", []), strict=False):
        try:
            image = imaging.load_image(path)
            image.thumbnail((256, 256))
            folder = folder or own.new_dir("thumbnails")
            thumb = folder / f"{len(cards):02d}-{Path(path).stem}.png"
            image.save(thumb)
            own.record(thumb)
        except (HeadshotError, OSError):
            thumb = None
        if thumb is not None:
            mark = "Accepted" if entry.get("accepted") else "Refused"
            short, _ = card_reason(entry)
            cards.append((str(thumb), f"{mark} · {Path(path).name}" + (f" · {short}" if short else "")))
    return cards, readiness_text(report)


# The short line of a selfie card, by issue code; the whole message is one tap away (and in the list below).
SHORT_REASONS = {
    "unreadable_image": "Cannot be read",
    "too_large": "File too large",
    "no_face": "No face found",
    "multiple_faces": "More than one face",
    "low_resolution": "Resolution too low",
    "face_too_small": "Face too small",
    "blurry": "Blurry",
    "too_dark": "Too dark",
    "overexposed": "Too bright",
    "extreme_pose": "Face turned away",
    "duplicate": "Same photo twice",
    "different_person": "Looks like someone else",
    "background_faces": "Other faces behind you",
    "face_cut_off": "Face cut off by the edge",
    "eyes_covered": "Eyes covered",
    "face_covered": "Nose or mouth covered",
    "turned_upright": "Turned upright",
    "not_a_photo": "Not a photo",
    "screen_photo": "Photo of a screen or print",
    "filtered": "Filter or effect",
}


def card_reason(entry: dict) -> tuple[str, str]:
    """(the short line, the whole reason) of one checked selfie: its first error, or for an accepted one its
    first warning as a note; ("", "") for a clean pass."""
    accepted = bool(entry.get("accepted"))
    issues = [i for i in entry.get("issues", []) if i.get("severity") == ("warning" if accepted else "error")]
    if not issues:
        return ("", "") if accepted else ("Did not pass the checks", "This photo did not pass the checks.")
    first = issues[0]
    message = str(first.get("message", ""))
    short = SHORT_REASONS.get(first.get("code", "")) or message.split(":")[0].split(". ")[0].rstrip(".")
    if len(issues) > 1:
        short += f" (+{len(issues) - 1} more)"
    whole = " ".join(str(i.get("message", "")) for i in issues)
    return ("Note: " + short) if accepted else short, whole


# Pass and fail marks drawn in SVG (no emoji font needed), with their words for screen readers.
_MARKS = {
    True: '<svg viewBox="0 0 20 20" aria-hidden="true"><circle cx="10" cy="10" r="10"/>'
    '<path d="M5.5 10.5l3 3 6-7" fill="none" stroke="#fff" stroke-width="2.4" stroke-linecap="round" '
    'stroke-linejoin="round"/></svg>',
    False: '<svg viewBox="0 0 20 20" aria-hidden="true"><circle cx="10" cy="10" r="10"/>'
    '<path d="M6.5 6.5l7 7M13.5 6.5l-7 7" fill="none" stroke="#fff" stroke-width="2.4" '
    'stroke-linecap="round"/></svg>',
}


def selfie_cards_view(selfies: list[str] | None, report: dict, session=None):
    """The checked selfies as cards for the page (HTML): a drawn pass/fail mark with its word, the file
    name, the main reason on one line and the whole reason on a tap; and the readiness text below."""
    import base64

    cards, readiness = selfie_cards(selfies, report, session)
    entries = report.get("selfies", []) if isinstance(report, dict) else []
    html_cards = []
    for (thumb, _), entry in zip(cards, entries, strict=False):
        ok = bool(entry.get("accepted"))
        name = html.escape(str(entry.get("file") or Path(thumb).name))
        short, whole = card_reason(entry)
        data = base64.b64encode(Path(thumb).read_bytes()).decode("ascii")
        reason = ""
        if short:
            reason = (
                f'<details class="hs-reason"><summary><span>{html.escape(short)}</span></summary>'
                f"<p>{html.escape(whole)}</p></details>"
            )
        html_cards.append(
            f'<figure class="hs-card {"hs-ok" if ok else "hs-bad"}">'
            f'<img src="data:image/png;base64,{data}" alt="{name}">'
            f'<figcaption><span class="hs-mark">{_MARKS[ok]}{"Accepted" if ok else "Refused"}</span>'
            f'<span class="hs-file" title="{name}">{name}</span>{reason}</figcaption></figure>'
        )
    body = f'<div class="hs-cards">{"".join(html_cards)}</div>' if html_cards else ""
    return body, readiness


def readiness_text(report: dict) -> str:
    total = len(report.get("selfies", []))
    accepted = report.get("accepted", 0)
    lines = [f"**{accepted} of {total} selfies accepted.**"]

    def ready(flag) -> str:
        return "**ready**" if flag else "**not yet**"

    lines.append(
        f"Quick InstantID: {ready(report.get('ready'))} (needs {config.INSTANTID_MIN_ACCEPTED} or more) · "
        f"LoRA: {ready(report.get('ready_lora'))} (needs {config.LORA_MIN_ACCEPTED} or more)"
    )
    if report.get("set"):  # the set as a whole (issue 22): a verdict and at most two suggestions
        lines[0] += "\n\n**Your set:** " + " ".join([report["set"]["verdict"], *report["set"]["suggestions"]])
    for err in report.get("errors", []):
        lines.append(f"**Note:** {err.get('message', err) if isinstance(err, dict) else err}")
    rejected = [s for s in report.get("selfies", []) if not s.get("accepted")]
    for s in rejected:
        reasons = "; ".join(i["message"] for i in s["issues"] if i["severity"] == "error")
        lines.append(f"- **{s['file']}**: {reasons}")
    return "\n\n".join(lines[:2]) + ("\n\n" + "\n".join(lines[2:]) if len(lines) > 2 else "")
