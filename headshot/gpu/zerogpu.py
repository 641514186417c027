"""ZeroGPU's rules, emulated for tests and CI (``HEADSHOT_ZEROGPU_EMULATE=1``), and its refusals read back.

Like ZeroGPU, each call of a GPU function runs in a forked worker process (which finds the models the
main process loaded), its arguments and every value it yields or returns cross the boundary by
pickle, and a call that runs past the duration it asked for is killed. The daily quota works as the
platform's (hub docs of ``config.ZEROGPU_DOCS_DATE``, ``spaces`` 0.51.3): a call is admitted when its
requested duration (as ``spaces`` asks it: x ``config.ZEROGPU_DURATION_FACTOR`` on ``large``, x2 on
``xlarge``) fits in what is left, is reserved that much while it runs, and is then charged the seconds
it really ran (x2 on ``xlarge``); the quota comes back ``HEADSHOT_ZEROGPU_QUOTA_WINDOW`` seconds (a day)
after the first use. A refused call raises :class:`PlatformError` with the words ``spaces`` uses
(:func:`quota_message`), as ZeroGPU does; :func:`user_error` turns those words, from the platform or
from here, into the :mod:`errors` a person reads. ``HEADSHOT_ZEROGPU_QUOTA`` is the quota in seconds or
a tier (``unauthenticated`` 120, ``free`` 300, ``pro`` 2400). GPU functions are generators
(``pipeline`` streams progress events through them), as ``spaces.GPU`` supports.
"""

from __future__ import annotations

import functools
import itertools
import math
import multiprocessing
import os
import pickle
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from headshot import config, errors, progress

QUOTA_TIERS = dict(config.ZEROGPU_QUOTA_SECONDS)  # seconds a day per visitor tier
DAY_SECONDS = config.ZEROGPU_QUOTA_WINDOW
GRACE_SECONDS = 2.0  # the worker's start-up is not the task's time
# The tier -> spaces' AuthLevel (None: a visitor who is not logged in)
AUTH_LEVELS: dict[str, str | None] = {"unauthenticated": None, "free": "regular", "pro": "pro"}
QUOTA_TITLE = "ZeroGPU quota exceeded"  # the title of the gradio.Error spaces raises
ILLEGAL_DURATION_TITLE = "ZeroGPU illegal duration"
# spaces/zero/client.py (0.51.3): the links its refusals end with
TOKENS_SETTINGS_URL = "https://huggingface.co/settings/tokens"
SUBSCRIBE_TO_PRO_URL = "https://huggingface.co/subscribe/pro?from=ZeroGPU"
ADD_CREDITS_URL = "https://huggingface.co/settings/billing?add-credits=true"
PRO_QUOTA_MINUTES = 40

_context = multiprocessing.get_context("fork")


def enabled() -> bool:
    return config.zerogpu_emulated()


class PlatformError(Exception):
    """A call ZeroGPU refuses. ``spaces`` raises a ``gradio.Error`` with a ``title`` and this message;
    the emulation raises this instead (only ``ui.py`` imports gradio), with the same words."""

    def __init__(self, message: str, title: str = QUOTA_TITLE):
        super().__init__(message)
        self.message, self.title = message, title


def quota_message(requested: int, left: int, wait: timedelta, auth: str | None, api_call: bool = True) -> str:
    """The message of ``spaces.zero.client.schedule`` (0.51.3) for a call over the quota, word for word.

    ``requested`` and ``left`` are quota seconds, ``wait`` the time until it comes back, ``auth``
    ``None`` (not logged in), ``"regular"`` or ``"pro"``; an API call (not the Space's own page) gets
    the line about logging in, PRO or credits.
    """
    if wait == timedelta(0):
        message = "You have exceeded your ZeroGPU runs limit. "
    else:
        gpu = "Pro ZeroGPU" if auth == "pro" else ("free ZeroGPU" if auth == "regular" else "ZeroGPU")
        message = (
            f"You have exceeded your {gpu} quota "
            f"({requested}s requested vs. {left}s left). "
            f"Try again in {wait}. "
        )
    if api_call:
        if auth is None:
            message += f"Authenticate with a Hugging Face token for more quota - {TOKENS_SETTINGS_URL}"
        elif auth == "regular":
            message += (
                f"Subscribe to Hugging Face PRO to get {PRO_QUOTA_MINUTES} min of ZeroGPU quota a day - "
                f"{SUBSCRIBE_TO_PRO_URL}"
            )
        elif auth == "pro":
            message += (
                "Add credits to keep using ZeroGPU. $1 for 10 minutes of ZeroGPU inference - "
                f"{ADD_CREDITS_URL}"
            )
    return message


def illegal_duration_message(requested: int, auth: str | None, api_call: bool = True) -> str:
    """``spaces``' message for a call that asks more than one call may have (0.51.3, as it is)."""
    message = f"The requested GPU duration ({requested}s) is larger than the maximum allowed"
    if api_call and auth in (None, "regular"):
        message += (
            f"Subscribe to Hugging Face PRO to allow GPU tasks up to {PRO_QUOTA_MINUTES} min - "
            f"{SUBSCRIBE_TO_PRO_URL}"
        )
    return message


def requested_quota(duration: float, size: str = config.ZEROGPU_GPU_SIZE) -> int:
    """The quota seconds a call asking ``duration`` seconds requests, computed as ``spaces`` does
    (``get_duration_seconds`` then ``schedule``): whole seconds, x the duration factor on ``large``,
    x2 on ``xlarge``."""
    seconds = float(timedelta(seconds=duration).seconds)
    if size != "xlarge":
        seconds *= config.ZEROGPU_DURATION_FACTOR
    return round(seconds) * (config.ZEROGPU_XLARGE_QUOTA_FACTOR if size == "xlarge" else 1)


def allowed_seconds(duration: float, size: str = config.ZEROGPU_GPU_SIZE) -> float:
    """How long a call asking ``duration`` may run (``spaces`` gives ``large`` the duration factor)."""
    seconds = float(timedelta(seconds=duration).seconds)
    return seconds * (config.ZEROGPU_DURATION_FACTOR if size != "xlarge" else 1)


class Quota:
    """One visitor's GPU seconds per window, as ZeroGPU counts them (see the module docstring)."""

    def __init__(
        self,
        seconds: float,
        window: float = DAY_SECONDS,
        *,
        tier: str | None = None,
        api_call: bool = True,
    ):
        self.seconds, self.window = float(seconds), float(window)
        self.auth = AUTH_LEVELS.get(tier or "")
        self.api_call = api_call
        self.charges: list[tuple[int, float]] = []  # (requested, charged) per settled call, for tests
        self.used = 0.0  # effective seconds charged since the window started
        self.started: float | None = None  # the first use in this window (time.monotonic)
        self._reserved: dict[int, float] = {}
        self._tickets = itertools.count()
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Quota:
        value = os.environ.get("HEADSHOT_ZEROGPU_QUOTA", "").strip().lower() or "unauthenticated"
        seconds = QUOTA_TIERS.get(value)
        if seconds is None:
            try:
                seconds = float(value)
            except ValueError:
                raise errors.InvalidRequest(
                    f"HEADSHOT_ZEROGPU_QUOTA must be seconds or one of {', '.join(QUOTA_TIERS)}, not {value!r}."
                ) from None
        window = float(os.environ.get("HEADSHOT_ZEROGPU_QUOTA_WINDOW", "").strip() or DAY_SECONDS)
        return cls(seconds, window, tier=value if value in QUOTA_TIERS else None)

    def _roll(self, now: float) -> None:
        if self.started is not None and now - self.started >= self.window:
            self.used, self.started = 0.0, None

    def left(self, now: float | None = None) -> float:
        """Quota seconds left: the quota less what was charged and what running calls reserved."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._roll(now)
            return self.seconds - self.used - sum(self._reserved.values())

    def wait(self, now: float | None = None) -> float:
        """Seconds until the used quota comes back (0 when nothing is used)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._roll(now)
            return 0.0 if self.started is None else max(0.0, self.started + self.window - now)

    def admit(self, duration: float, size: str = config.ZEROGPU_GPU_SIZE) -> int:
        """Admit a call asking ``duration`` seconds: reserve its requested quota and return a ticket for
        :meth:`settle`, or raise :class:`PlatformError` in ``spaces``' words (reserving nothing)."""
        requested = requested_quota(duration, size)
        now = time.monotonic()
        left, wait = self.left(now), self.wait(now)
        with self._lock:
            if requested > self.seconds:
                raise PlatformError(
                    illegal_duration_message(requested, self.auth, self.api_call), ILLEGAL_DURATION_TITLE
                )
            if requested > left:
                back = timedelta(seconds=max(1, math.ceil(wait)))
                raise PlatformError(quota_message(requested, max(0, math.floor(left)), back, self.auth, self.api_call))
            if self.started is None:
                self.started = now
            ticket = next(self._tickets)
            self._reserved[ticket] = float(requested)
            return ticket

    def settle(self, ticket: int, effective_seconds: float, size: str = config.ZEROGPU_GPU_SIZE) -> float:
        """End a call: drop its reservation and charge the seconds it ran (x2 on ``xlarge``); returns
        the charge."""
        factor = config.ZEROGPU_XLARGE_QUOTA_FACTOR if size == "xlarge" else 1
        charge = max(0.0, float(effective_seconds)) * factor
        with self._lock:
            if ticket not in self._reserved:  # settled already
                return 0.0
            requested = self._reserved.pop(ticket)
            self.used += charge
            self.charges.append((int(requested), charge))
        return charge


_quota: Quota | None = None


def quota() -> Quota:
    global _quota
    if _quota is None:
        _quota = Quota.from_env()
    return _quota


# --------------------------------------------------------------------------------------
# The platform's refusals, read back (from spaces on ZeroGPU, or from the emulation)
# --------------------------------------------------------------------------------------

_QUOTA_WORDS = re.compile(
    r"You have exceeded your (?:(?P<tier>Pro|free) )?ZeroGPU quota \((?P<requested>\d+)s requested vs\. "
    r"(?P<left>-?\d+)s left\)\. Try again in (?:(?P<days>\d+) days?, )?"
    r"(?P<hours>\d+):(?P<minutes>\d\d):(?P<seconds>\d\d(?:\.\d+)?)"
)
_ILLEGAL_WORDS = re.compile(r"The requested GPU duration \((?P<requested>\d+)s\) is larger than the maximum allowed")
_RUNS_WORDS = "You have exceeded your ZeroGPU runs limit"
_SPACE_LIMIT_WORDS = "Space app has reached its GPU limit"
_PENDING_WORDS = "You have too many ZeroGPU credits allocated to running tasks"
_NO_GPU_WORDS = "No GPU was available"
_ABORT_WORDS = ("GPU task aborted", "ZeroGPU worker error")
_MORE_QUOTA = {  # what a person of each tier can do for more GPU time
    None: " Logging in to Hugging Face gives you more (5 min a day with a free account, 40 min with PRO).",
    "free": " A Hugging Face PRO account gets 40 min a day.",
    "Pro": "",
}


def _platform_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # gradio.Error keeps its message there (its str() is a repr)
    return message if isinstance(message, str) else str(exc)


def user_error(exc: BaseException) -> errors.HeadshotError | None:
    """The :mod:`errors` a person reads for a ZeroGPU refusal or abort (``spaces``' ``gradio.Error``, or
    :class:`PlatformError` from the emulation), with the seconds requested, left and until GPU time
    returns where the platform said them; None for any other exception."""
    text = _platform_text(exc).strip()
    found = _QUOTA_WORDS.search(text)
    if found:
        requested, left = int(found["requested"]), max(0, int(found["left"]))
        retry_after = (
            int(found["days"] or 0) * 86400
            + int(found["hours"]) * 3600
            + int(found["minutes"]) * 60
            + float(found["seconds"])
        )
        now, then = time.gmtime(), time.gmtime(time.time() + retry_after)
        back = time.strftime("%H:%M UTC", then) + (" tomorrow" if then.tm_yday != now.tm_yday else "")
        return errors.GpuQuotaExceeded(
            f"Your GPU time on this Space is used up for now: this step needs {requested} s of GPU time and "
            f"{left} s are left. More GPU time is yours again in {progress.words_for(retry_after)} (at {back})."
            + _MORE_QUOTA.get(found["tier"], ""),
            requested=float(requested),
            left=float(left),
            retry_after=retry_after,
        )
    found = _ILLEGAL_WORDS.search(text)
    if found:
        requested = int(found["requested"])
        return errors.GpuQuotaExceeded(
            f"This step asks for {requested} s of GPU time, more than one GPU step may have here. Ask for "
            "fewer images or steps at a time.",
            requested=float(requested),
        )
    if _RUNS_WORDS in text:
        return errors.GpuQuotaExceeded(
            "You have started as many GPU steps as this Space allows for today. Try again tomorrow, or log in "
            "to Hugging Face for more."
        )
    if _SPACE_LIMIT_WORDS in text:
        return errors.GpuQuotaExceeded(
            "This Space has used the GPU time it may use for now. Try again in a while."
        )
    if _PENDING_WORDS in text:
        return errors.GpuQuotaExceeded(
            "Too many of your GPU steps are running at once. Try again when they have finished."
        )
    if _NO_GPU_WORDS in text:
        return errors.GpuAborted("No GPU was free for this step in time. Try again in a minute.")
    if any(words in text for words in _ABORT_WORDS):
        return errors.GpuAborted(f"The GPU step was stopped ({text}). Try again.")
    return None


# --------------------------------------------------------------------------------------
# The emulated calls
# --------------------------------------------------------------------------------------

_fork_locks: list[Any] = []  # locks no fork may happen under (pipeline's GPU lock)


def guard_forks(lock: Any) -> None:
    """Fork workers only while ``lock`` is free, holding it: the worker then starts from a consistent
    state (no render half-configured in another thread) and with the lock free (its copy is released)."""
    _fork_locks.append(lock)


def gpu(
    duration: float | Callable[..., float], size: str = config.ZEROGPU_GPU_SIZE
) -> Callable[[Callable[..., Iterator]], Callable[..., Iterator]]:
    """``spaces.GPU(duration=..., size=...)`` for generator functions, emulated (see the module docstring)."""

    def decorate(task: Callable[..., Iterator]) -> Callable[..., Iterator]:
        @functools.wraps(task)
        def run(*args: Any, **kwargs: Any) -> Iterator:
            seconds = float(duration(*args, **kwargs) if callable(duration) else duration)
            payload = pickle.dumps((args, kwargs))  # what ZeroGPU sends: refuses what does not pickle
            account = quota()
            ticket = account.admit(seconds, size)
            try:
                yield from _call_in_worker(task, payload, seconds, allowed_seconds(seconds, size), account, ticket, size)
            finally:
                account.settle(ticket, 0.0, size)  # a call that never started is charged nothing

        run.zerogpu_emulated = True
        return run

    return decorate


def _worker(task: Callable[..., Iterator], payload: bytes, conn: Any) -> None:
    for lock in _fork_locks:  # held by the parent while it forked: this process's copies are free
        lock.release()
    try:
        args, kwargs = pickle.loads(payload)
        for value in task(*args, **kwargs):
            conn.send_bytes(pickle.dumps(("yield", value)))
        conn.send_bytes(pickle.dumps(("done", None)))
    except BaseException as exc:  # everything goes back to the caller, as ZeroGPU does
        try:
            message = pickle.dumps(("error", exc))
        except Exception:
            message = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        conn.send_bytes(message)
        traceback.print_exc()
    finally:
        conn.close()


def _call_in_worker(
    task: Callable[..., Iterator],
    payload: bytes,
    asked: float,
    allowed: float,
    account: Quota,
    ticket: int,
    size: str,
) -> Iterator:
    receive, send = _context.Pipe(duplex=False)
    worker = _context.Process(target=_worker, args=(task, payload, send), daemon=True)
    held = []
    try:
        for lock in _fork_locks:
            lock.acquire()
            held.append(lock)
        worker.start()
    finally:
        for lock in reversed(held):
            lock.release()
    started = time.monotonic()
    send.close()
    deadline = started + allowed + GRACE_SECONDS
    ended: float | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not receive.poll(left):
                raise errors.GpuAborted(
                    f"The GPU step ran past the {math.ceil(asked)} s it asked for and was stopped. "
                    "Try again with fewer images or steps."
                )
            try:
                kind, value = pickle.loads(receive.recv_bytes())
            except EOFError:
                raise errors.GpuAborted("The GPU worker stopped unexpectedly. Try again.") from None
            if kind == "yield":
                yield value
            else:
                ended = time.monotonic()
                if kind == "error":
                    raise value
                return
    finally:
        ended = time.monotonic() if ended is None else ended
        receive.close()
        if worker.is_alive():
            worker.kill()
        worker.join(timeout=10)
        account.settle(ticket, ended - started, size)  # the effective time the call ran


__all__ = [
    "PlatformError",
    "Quota",
    "enabled",
    "gpu",
    "guard_forks",
    "quota",
    "quota_message",
    "requested_quota",
    "user_error",
]
