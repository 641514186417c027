"""Typed, user-facing errors. Each has a stable ``code`` that the API and tests rely on.

The message of every error is a sentence a person understands; the UI shows it as it is.
"""

from __future__ import annotations


class HeadshotError(Exception):
    """Base class: ``code`` is stable, ``str(err)`` is the user-facing message."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnreadableImage(HeadshotError):
    code = "unreadable_image"


class ImageTooLarge(HeadshotError):
    code = "too_large"


class FaceModelsUnavailable(HeadshotError):
    """The face model pack is missing and cannot be downloaded."""

    code = "face_models_unavailable"


class ModelsUnavailable(HeadshotError):
    """Diffusion weights are missing and cannot be downloaded (offline machine)."""

    code = "models_unavailable"


class IdentityFileError(HeadshotError):
    """An identity file that cannot be used: not safetensors, foreign pack/base model, bad tensors."""

    code = "invalid_identity"


class NotEnoughSelfies(HeadshotError):
    code = "not_enough_selfies"


class UnknownStyle(HeadshotError):
    code = "unknown_style"


class StyleFileError(HeadshotError):
    code = "invalid_style"


class PromptRejected(HeadshotError):
    code = "prompt_rejected"


class InvalidRequest(HeadshotError):
    code = "invalid_request"


class GpuQuotaExceeded(HeadshotError):
    """ZeroGPU (or its emulation) refused a GPU call: the user's daily GPU time is used up.

    ``requested`` and ``left`` are the seconds the call asked for and the quota left, ``retry_after`` the
    seconds until GPU time returns (each ``None`` where the platform's answer did not say).
    """

    code = "gpu_quota"

    def __init__(
        self,
        message: str,
        *,
        requested: float | None = None,
        left: float | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.requested, self.left, self.retry_after = requested, left, retry_after


class GpuAborted(HeadshotError):
    """A GPU call ran past the duration it asked for and was stopped, or its worker died."""

    code = "gpu_aborted"


class TrainingPaused(HeadshotError):
    """LoRA training stopped between GPU calls (quota or abort); ``state`` continues it exactly."""

    code = "training_paused"

    def __init__(self, message: str, *, state=None, steps_done: int = 0, steps_total: int = 0):
        super().__init__(message)
        self.state, self.steps_done, self.steps_total = state, steps_done, steps_total

    def __reduce__(self):  # pickles without the (large) training state
        return (HeadshotError, (self.message,), {"code": self.code})


class RenderIncomplete(HeadshotError):
    """ZeroGPU refused (quota) or stopped (abort) a render's GPU call after earlier calls had made images.

    ``images`` holds them per request (image ``i`` of a request from its ``seed + i``; the rest of each request
    follows on from ``seed + len(images[r])``), ``refusal`` is the :class:`GpuQuotaExceeded` or
    :class:`GpuAborted` that stopped it; its message, ``retry_after``, ``requested`` and ``left`` are the same.
    """

    code = "render_incomplete"

    def __init__(self, refusal: HeadshotError, images: list):
        super().__init__(refusal.message)
        self.refusal, self.images = refusal, images
        self.requested, self.left = getattr(refusal, "requested", None), getattr(refusal, "left", None)
        self.retry_after = getattr(refusal, "retry_after", None)

    def __reduce__(self):  # pickles without the images
        return (HeadshotError, (self.message,), {"code": self.code})
