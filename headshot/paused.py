"""Runs that ZeroGPU cut short between their GPU calls, held by the session until they go on.

On ZeroGPU a run is several GPU calls, and a later one can be refused (the quota ran out) or stopped (past its
duration). What the earlier calls made is kept, never thrown away:

* a quick LoRA's training keeps its state (:class:`PausedTraining`, ``errors.TrainingPaused``):
  ``studio.continue_identity`` goes on from the step it reached;
* a generate or pack keeps the headshots it made (written and returned) and what is left of it
  (:class:`PausedRender`): ``studio.continue_headshots`` renders the rest with the seeds those images would
  have had, so the run ends with the same headshots as one never stopped. :func:`incomplete_info` is what
  the run's info says meanwhile.

Each is held by its session (``sessions.hold``: the training in slot ``""``, the render in
:data:`RENDER_SLOT`), and dropped when it finishes, on Delete my data and by the sweep after the file age.
``studio`` runs and continues them; this module keeps what each holds. Plain Python like ``studio``: no
Gradio, no torch (the training itself runs in ``gpu.pipeline``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from headshot import progress as progress_
from headshot import sessions
from headshot.errors import GpuQuotaExceeded, HeadshotError, InvalidRequest, TrainingPaused
from headshot.faces.identity import Identity
from headshot.sessions import Session
from headshot.styles import Style

# --------------------------------------------------------------------------------------
# A LoRA identity's training
# --------------------------------------------------------------------------------------

TRAINING_SLOT = ""  # the session's slot for a paused training (sessions.hold)


@dataclass
class PausedTraining:
    """A LoRA identity whose training ZeroGPU stopped between calls: everything needed to go on."""

    identity: Identity
    images: list
    bboxes: list
    settings: Any  # lora.LoraSettings
    report: dict
    started: float
    state: Any = None  # lora.LoraState of the last finished GPU call (None: nothing trained yet)


def train_lora(paused: PausedTraining, session: Session | None, progress: progress_.Progress | None) -> Any:
    """Train the LoRA of ``paused`` from the step it reached, on the GPU; the trained LoRA (``lora.LoraResult``).

    When ZeroGPU stops it between calls, ``paused`` is held for ``session`` and ``TrainingPaused`` raised;
    once trained, it is dropped."""
    from headshot.gpu import pipeline, sizing

    total = int(paused.settings.steps)
    done = 0 if paused.state is None else int(paused.state.step)
    eta = progress_.Eta(sizing.expected_train_seconds(total - done), start=done / max(1, total))
    try:
        lora = pipeline.train_identity_lora(
            paused.images,
            paused.bboxes,
            paused.settings,
            resume=paused.state,
            progress=progress_.tracked(progress_.scaled(progress, 0.1, 0.95), eta),
            face_embedding=paused.identity.embedding,
        )
    except TrainingPaused as exc:
        paused.state = exc.state
        if session is not None:
            sessions.hold(session, paused, TRAINING_SLOT)
        raise
    forget_paused(session)
    return lora


def held_training(session: Session | None) -> PausedTraining:
    """This session's paused LoRA training; InvalidRequest when there is none."""
    paused = sessions.held(session, TRAINING_SLOT)
    if not isinstance(paused, PausedTraining):
        raise InvalidRequest(
            "There is no paused LoRA training in this session to continue. Create the identity again."
        )
    return paused


def paused_training(session: Session | None) -> dict | None:
    """Where this session's paused training stands (``{"steps_done", "steps_total"}``), or None."""
    paused = sessions.held(session, TRAINING_SLOT)
    if not isinstance(paused, PausedTraining):
        return None
    done = 0 if paused.state is None else int(paused.state.step)
    return {"steps_done": done, "steps_total": paused.settings.steps}


def forget_paused(session: Session | None) -> int:
    """Drop this session's paused training."""
    return sessions.release(session, TRAINING_SLOT)


# --------------------------------------------------------------------------------------
# A generate or pack
# --------------------------------------------------------------------------------------

RENDER_SLOT = "render"  # the session's slot for a run cut short (sessions.hold)
_CONTINUE_LOCK = threading.Lock()


@dataclass
class PausedRender:
    """A generate or pack and what is left of it: each style's whole request (candidates from ``seed``), how
    many candidates of each are rendered, those not handed out yet (a best-of style keeps its best only once
    all its candidates are made), and the headshots handed out so far. ``refusal``: why it last stopped."""

    kind: str  # the run's folder kind: "headshots" (generate) or "pack"
    identity: Identity
    styles: list[Style]
    options: Any  # studio.GenerateOptions
    seed: int
    keep: int  # headshots kept per style
    requests: list  # per style, the whole request (all its candidates)
    rendered: list[int] = field(default_factory=list)
    waiting: list[list] = field(default_factory=list)
    shown: list = field(default_factory=list)  # the studio.Headshot handed out so far
    refusal: HeadshotError | None = None
    parts: int = 0  # runs so far: 1 for the first, 2 after one Continue, ...
    busy: bool = False

    @property
    def total(self) -> int:
        return self.keep * len(self.styles)

    @property
    def best_of(self) -> bool:
        """Whether each kept headshot is the best of several candidates."""
        return self.requests[0].num_images > self.keep

    def rest(self) -> list[tuple[int, Any]]:
        """(style index, the request for its candidates not rendered yet, with the seeds they would have had)."""
        return [
            (i, replace(request, seed=request.seed + done, num_images=request.num_images - done))
            for i, (request, done) in enumerate(zip(self.requests, self.rendered, strict=True))
            if done < request.num_images
        ]

    def add(self, index: int, images: list) -> tuple[int, list] | None:
        """Count ``images`` as rendered for style ``index``. Once they may be handed out (at once, or for a
        best-of style once all its candidates are made), take them: (the seed offset of the first, images)."""
        self.rendered[index] += len(images)
        self.waiting[index].extend(images)
        if self.best_of and self.rendered[index] < self.requests[index].num_images:
            return None
        images, self.waiting[index] = self.waiting[index], []
        return self.rendered[index] - len(images), images

    def incomplete(self, can_continue: bool) -> dict:
        """``info["incomplete"]`` of this run cut short (see :func:`incomplete_info`)."""
        made, total = len(self.shown), self.total
        if can_continue:
            when = "once GPU time returns" if isinstance(self.refusal, GpuQuotaExceeded) else "now"
            todo = (
                f"The other {total - made} are saved: call continue_headshots from this session {when} to "
                "render them with the seeds they would have had."
            )
        else:
            todo = f"Run it again later with seed {self.seed} to make all {total}."
        info = incomplete_info(self.refusal, made, total, todo, can_continue=can_continue)
        info["candidates_saved"] = sum(len(w) for w in self.waiting)
        return info

    def settle(self, session: Session) -> None:
        """Held by ``session`` while cut short; dropped once finished."""
        if self.refusal is not None:
            sessions.hold(session, self, RENDER_SLOT)
        elif sessions.held(session, RENDER_SLOT) is self:
            sessions.release(session, RENDER_SLOT)


def incomplete_info(refusal: HeadshotError, made: int, total: int, todo: str, *, can_continue: bool) -> dict:
    """What the info of a run cut short says (``info["incomplete"]``): how many headshots of how many, the
    refusal in a person's words (with when GPU time returns) and ``todo``, what to do; the GPU seconds asked
    and left, and when GPU time returns, where ZeroGPU said."""
    retry = getattr(refusal, "retry_after", None)
    back = None if retry is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + retry))
    return {
        "made": made,
        "requested": total,
        "left": total - made,
        "code": refusal.code,
        "gpu_seconds_requested": getattr(refusal, "requested", None),
        "gpu_seconds_left": getattr(refusal, "left", None),
        "retry_after_s": None if retry is None else round(float(retry)),
        "gpu_back_at": back,
        "can_continue": can_continue,
        "message": f"Incomplete: {made} of {total} headshots were made. {refusal.message} {todo}",
    }


def paused_render(session: Session | None) -> dict | None:
    """Where this session's run cut short stands (``{"kind", "made", "requested"}``), or None."""
    paused = sessions.held(session, RENDER_SLOT)
    if not isinstance(paused, PausedRender):
        return None
    return {"kind": paused.kind, "made": len(paused.shown), "requested": paused.total}


@contextmanager
def continuing(session: Session | None) -> Iterator[PausedRender]:
    """This session's run cut short, for one Continue at a time; InvalidRequest when there is none or it is
    being finished already."""
    paused = sessions.held(session, RENDER_SLOT)
    if not isinstance(paused, PausedRender):
        raise InvalidRequest(
            "There are no headshots left to finish in this session: every run was complete (or its data was "
            "deleted). Make new ones with Generate."
        )
    with _CONTINUE_LOCK:
        if paused.busy:
            raise InvalidRequest("These headshots are being finished already: wait for that run.")
        paused.busy = True
    try:
        yield paused
    finally:
        paused.busy = False
