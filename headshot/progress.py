"""Progress a person can trust: what is happening, N of M, and how long is left.

A long step reports ``progress(fraction, desc)`` (``gr.Progress``'s call). :class:`Eta` says how many
seconds are left: at first from the estimate the GPU request itself uses (``sizing.expected_seconds``,
the same figure a ZeroGPU call asks for), then, as the work goes on, more and more from the pace
measured so far, so a slower or faster machine corrects the estimate within the first images or steps.
:func:`tracked` wraps a progress callback so every report carries the label and the time left;
:func:`pack_label` names the image of a pack ("Style 2 of 3, Executive office: image 1 of 2").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

Progress = Callable[[float, str], None]

# The measured pace counts from this much of the work done (before it, the first step's one-off costs,
# such as moving the models to the GPU, would make it wildly pessimistic)...
PACE_FROM_FRACTION = 0.05
# ...and takes over from the estimate linearly until this much is done.
PACE_ONLY_FROM_FRACTION = 0.3


class Eta:
    """Seconds left for a piece of work, from an up-front estimate blended into the measured pace."""

    def __init__(
        self,
        estimate: float | None = None,
        start: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``estimate``: seconds for the work left (None: unknown); ``start``: the fraction already done
        (a resumed training), so the pace counts only what this run did."""
        self.estimate = None if estimate is None or not math.isfinite(estimate) or estimate <= 0 else estimate
        self.start = min(0.99, max(0.0, float(start)))
        self.clock = clock
        self.started = clock()

    def left(self, fraction: float) -> float | None:
        """Seconds left when ``fraction`` (0..1) of the work is done; None while nothing tells yet."""
        fraction = min(1.0, max(0.0, float(fraction)))
        if fraction >= 1.0:
            return 0.0
        elapsed = self.clock() - self.started
        from_estimate = None if self.estimate is None else max(0.0, self.estimate - elapsed)
        done = (fraction - self.start) / (1.0 - self.start)  # of this run's work
        if done < PACE_FROM_FRACTION:
            return from_estimate
        from_pace = elapsed / done * (1.0 - done)
        if from_estimate is None:
            return from_pace
        weight = min(1.0, (done - PACE_FROM_FRACTION) / (PACE_ONLY_FROM_FRACTION - PACE_FROM_FRACTION))
        return weight * from_pace + (1.0 - weight) * from_estimate


def eta_text(seconds: float | None) -> str:
    """ "about 40 s left", "about 3 min left", "almost done"; "" when nothing is known yet."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 3:
        return "almost done"
    if seconds < 90:
        return f"about {max(5, round(seconds / 5.0) * 5)} s left"
    return f"about {round(seconds / 60.0)} min left"


def words_for(seconds: float) -> str:
    """A duration as a person says it: "45 s", "about 12 min", "about 3 h 20 min"."""
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h" + (f" {minutes} min" if minutes else "")


def tracked(
    progress: Progress | None,
    eta: Eta,
    label: Callable[[float, str], str] | None = None,
) -> Progress | None:
    """``progress`` with each report's text replaced by ``label(fraction, desc)`` (the report's own text
    when None) followed by the time left."""
    if progress is None:
        return None

    def report(fraction: float, desc: str = "") -> None:
        text = label(fraction, desc) if label is not None else desc
        left = eta_text(eta.left(fraction))
        progress(fraction, f"{text} · {left}" if text and left else (text or left))

    return report


def pack_label(names: Sequence[str], per_style: int, what: str = "image") -> Callable[[float, str], str]:
    """The label of a render of ``per_style`` images for each of ``names`` (styles), from the fraction
    done: "Style 2 of 3, Executive office: image 1 of 2", or "Image 2 of 4" for a single style."""
    total = max(1, len(names) * per_style)

    def label(fraction: float, _desc: str = "") -> str:
        index = min(total - 1, int(max(0.0, fraction) * total))
        style, image = divmod(index, max(1, per_style))
        if len(names) <= 1:
            return f"{what.capitalize()} {index + 1} of {total}"
        return f"Style {style + 1} of {len(names)}, {names[style]}: {what} {image + 1} of {per_style}"

    return label


def report(progress: Progress | None, fraction: float, desc: str) -> None:
    """Call ``progress`` (if any) with ``fraction`` kept within 0..1."""
    if progress is not None:
        progress(max(0.0, min(1.0, fraction)), desc)


def scaled(progress: Progress | None, start: float, end: float, prefix: str = "") -> Progress | None:
    """``progress`` for a part of the work: its 0..1 maps to ``start``..``end``, each text after ``prefix``."""
    if progress is None:
        return None

    def inner(fraction: float, desc: str = "") -> None:
        progress(start + (end - start) * max(0.0, min(1.0, fraction)), prefix + (desc or ""))

    return inner
