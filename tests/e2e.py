"""Start ``python app.py`` the way a user does, on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(timeout: float = 180.0, extra_env: dict | None = None):
    """Yield (url, process) of ``python app.py`` on the tiny profile; stop it afterwards."""
    port = free_port()
    # Each app its own Gradio cache: an app with a short sweep (tests/test_abuse.py) would otherwise remove
    # the files of another test module's app running beside it (pytest -n 2).
    own_cache = tempfile.mkdtemp(prefix=f"gradio-{port}-")
    env = {
        "GRADIO_TEMP_DIR": own_cache,
        **os.environ,
        "HEADSHOT_PROFILE": "tiny",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        # One thread per process: on a 2-core machine shared by the test runner, the app and the
        # client, torch's default thread pool makes tiny renders several times slower.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **(extra_env or {}),
    }
    (ROOT / ".cache").mkdir(exist_ok=True)
    with open(ROOT / ".cache" / f"app-{port}.log", "w") as log:  # kept for reading when a test fails
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield _wait_until_serving(proc, f"http://127.0.0.1:{port}/", timeout), proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            shutil.rmtree(own_cache, ignore_errors=True)


def _wait_until_serving(proc: subprocess.Popen, url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as response:
                if response.status == 200:
                    return url
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"app.py did not answer on {url} within {timeout} s")
        time.sleep(0.25)
