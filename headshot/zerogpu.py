"""An emulated ZeroGPU for tests and CI (``HEADSHOT_ZEROGPU_EMULATE=1``): the platform's rules, on a CPU.

Like ZeroGPU, each call of a GPU function runs in a forked worker process (which finds the models the
main process loaded), its arguments and every value it yields or returns cross the boundary by
pickle, a call that runs past the duration it asked for is killed, and a call is refused at
admission when the user's daily quota cannot cover its requested duration (charged as requested).
GPU functions are generators (``pipeline`` streams progress events through them), as ``spaces.GPU``
supports. ``HEADSHOT_ZEROGPU_QUOTA`` is the quota in seconds or a tier (``unauthenticated`` 120,
``free`` 210, ``pro`` 2400, the ZeroGPU docs' figures), ``HEADSHOT_ZEROGPU_QUOTA_WINDOW`` the time in
seconds after which used GPU time is given back (a day).
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from . import config, errors

QUOTA_TIERS = {"unauthenticated": 120.0, "free": 210.0, "pro": 2400.0}  # seconds a day (ZeroGPU docs)
DAY_SECONDS = 24 * 3600
GRACE_SECONDS = 2.0  # the worker's start-up is not the task's time

_context = multiprocessing.get_context("fork")


def enabled() -> bool:
    return config.zerogpu_emulated()


class Quota:
    """GPU seconds per window, charged at admission on the requested duration."""

    def __init__(self, seconds: float, window: float = DAY_SECONDS):
        self.seconds, self.window = float(seconds), float(window)
        self._charges: list[tuple[float, float]] = []  # (when, seconds)
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
        return cls(seconds, window)

    def left(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._charges = [(when, s) for when, s in self._charges if now - when < self.window]
            return self.seconds - sum(s for _, s in self._charges)

    def admit(self, requested: float) -> None:
        """Charge ``requested`` seconds, or raise :class:`errors.GpuQuotaExceeded` (charging nothing)."""
        now = time.monotonic()
        left = self.left(now)
        with self._lock:
            if requested > left:
                back = min((when + self.window - now for when, _ in self._charges), default=0.0)
                raise errors.GpuQuotaExceeded(
                    f"You have used your GPU time for today ({max(0, math.floor(left))} s left, this step "
                    f"needs {math.ceil(requested)} s). More is free again in {_words(back)}; logging in to "
                    "Hugging Face gives more.",
                    requested=requested, left=left, retry_after=back,
                )
            self._charges.append((now, float(requested)))


def _words(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds >= 3600:
        return f"about {seconds / 3600:.0f} h"
    if seconds >= 90:
        return f"about {seconds / 60:.0f} min"
    return f"{seconds} s"


_quota: Quota | None = None


def quota() -> Quota:
    global _quota
    if _quota is None:
        _quota = Quota.from_env()
    return _quota


def gpu(duration: float | Callable[..., float]) -> Callable[[Callable[..., Iterator]], Callable[..., Iterator]]:
    """``spaces.GPU(duration=...)`` for generator functions, emulated (see the module docstring)."""

    def decorate(task: Callable[..., Iterator]) -> Callable[..., Iterator]:
        @functools.wraps(task)
        def run(*args: Any, **kwargs: Any) -> Iterator:
            seconds = float(duration(*args, **kwargs) if callable(duration) else duration)
            payload = pickle.dumps((args, kwargs))  # what ZeroGPU sends: refuses what does not pickle
            quota().admit(seconds)
            yield from _call_in_worker(task, payload, seconds)

        run.zerogpu_emulated = True
        return run

    return decorate


def _worker(task: Callable[..., Iterator], payload: bytes, conn: Any) -> None:
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


def _call_in_worker(task: Callable[..., Iterator], payload: bytes, seconds: float) -> Iterator:
    receive, send = _context.Pipe(duplex=False)
    worker = _context.Process(target=_worker, args=(task, payload, send), daemon=True)
    worker.start()
    send.close()
    deadline = time.monotonic() + seconds + GRACE_SECONDS
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not receive.poll(left):
                raise errors.GpuAborted(
                    f"The GPU step ran past the {math.ceil(seconds)} s it asked for and was stopped. "
                    "Try again with fewer images or steps."
                )
            try:
                kind, value = pickle.loads(receive.recv_bytes())
            except EOFError:
                raise errors.GpuAborted("The GPU worker stopped unexpectedly. Try again.") from None
            if kind == "yield":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        receive.close()
        if worker.is_alive():
            worker.kill()
        worker.join(timeout=10)


__all__ = ["Quota", "enabled", "gpu", "quota"]
