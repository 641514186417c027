"""Shared fixtures: the offline tiny profile, the small face pack and the real test photos.

Test tiers (markers declared in pyproject.toml): plain ``pytest`` runs the fast tier; ``pytest -m slow``
runs the tests that start ``python app.py`` or a browser (they use the module-scoped ``app`` fixture
below, or tests/e2e.py directly); ``gpu`` tests need CUDA and full-size models.

Test data is found through ``HEADSHOT_TEST_DATA`` (a folder holding ``models/faces-small`` and
``testdata/faces``) or ``../shared`` beside the project; tests that need it skip with a reason
when it is absent. Nothing from there is ever copied into the project.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path | None:
    value = os.environ.get("HEADSHOT_TEST_DATA")
    candidates = [Path(value)] if value else []
    candidates.append(ROOT.parent / "shared")
    for path in candidates:
        if (path / "models" / "faces-small").is_dir() and (path / "testdata" / "faces").is_dir():
            return path.resolve()
    return None


SHARED = _shared_dir()
FACE_PACK = SHARED / "models" / "faces-small" if SHARED else None
FACES = SHARED / "testdata" / "faces" if SHARED else None

# Every test runs offline on the tiny profile with the small pack, and writes only to a temp cache.
os.environ["HEADSHOT_PROFILE"] = "tiny"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if FACE_PACK is not None:
    os.environ["HEADSHOT_FACE_MODELS"] = str(FACE_PACK)
# The styles' 30 steps render as 6 (config.style_steps, the tiny profile only; a request's own steps stay):
# the tiny images are noise either way, 30 steps of the tiny UNet made most of many tests' time, and a 30-step
# pack call under the emulated ZeroGPU once ran past its sized duration while two test processes shared the
# cores. The apps, CLIs and benchmarks the slow tests start inherit it.
os.environ.setdefault("HEADSHOT_TINY_STYLE_STEPS", "6")
if "HEADSHOT_CACHE_DIR" not in os.environ:
    os.environ["HEADSHOT_CACHE_DIR"] = str(ROOT / ".cache" / "test")


APP_FIXTURES = {"app", "client", "load_app"}  # each starts python app.py (tests/e2e.py)


def pytest_collection_modifyitems(config, items):
    """A test that starts the app must be marked slow, so that plain ``pytest`` never starts it."""
    unmarked = [
        item.nodeid
        for item in items
        if APP_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError("these tests start python app.py but are not marked slow: " + ", ".join(unmarked))
    # A forked worker cannot run autograd once its parent has started autograd's device threads (PyTorch's
    # "Autograd and Fork": the child raises "Unable to handle autograd's threading in combination with
    # fork-based multiprocessing"). The emulated ZeroGPU forks like the platform, and some earlier in-process
    # training in the test session starts those threads with the CUDA build of torch 2.11 (CI), not with the
    # CPU build: the tests that train in a forked worker run first, while the test process is still fresh.
    # (The app never trains in its main process: on ZeroGPU and under the emulation training runs in the call.)
    items.sort(key=lambda item: item.get_closest_marker("forks_training") is None)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if SHARED is None:
        pytest.skip("shared test data not found: set HEADSHOT_TEST_DATA or put it at ../shared")
    return SHARED


@pytest.fixture(scope="session")
def faces_dir(shared_dir) -> Path:
    return shared_dir / "testdata" / "faces"


@pytest.fixture(scope="session")
def face_pack(shared_dir) -> Path:
    return shared_dir / "models" / "faces-small"


@pytest.fixture(scope="session")
def manifest(faces_dir) -> list[dict]:
    with open(faces_dir / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def analyzer(face_pack):
    from headshot.faces.analyzer import get_analyzer

    return get_analyzer()


@pytest.fixture(scope="session")
def app(shared_dir):
    """``(url, process)`` of one ``python app.py`` (tiny profile, default settings) shared by the slow tests
    of a test process (each xdist worker starts one, when its first test needs it), as one server is shared
    by strangers: each test works in sessions of its own. Modules that need other settings start their own
    (tests/test_abuse.py, tests/test_load.py ...). Only slow tests may use it (tests/e2e.py starts it; the
    fast tier never does)."""
    from tests.e2e import running_app

    with running_app() as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def client(app):
    """A ``gradio_client`` on the module's app (plain HTTP on loopback: no SSL contexts to build)."""
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(app[0], verbose=False, ssl_verify=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP threads that
    wait for each other make steps many times slower: run the module single-threaded, then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright (no browser download); skips without it."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture
def emulated(monkeypatch):
    """ZeroGPU's rules for this test, with a generous quota (each test sets its own when it matters)."""
    from headshot.gpu import zerogpu

    monkeypatch.setenv("HEADSHOT_ZEROGPU_EMULATE", "1")
    monkeypatch.setattr(zerogpu, "_quota", zerogpu.Quota(10_000))
    return zerogpu


@pytest.fixture(scope="module")
def obama(faces_dir) -> list[Path]:
    return sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))
