"""Shared fixtures: the offline tiny profile, the small face pack and the real test photos.

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
if "HEADSHOT_CACHE_DIR" not in os.environ:
    os.environ["HEADSHOT_CACHE_DIR"] = str(ROOT / ".cache" / "test")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device and full-size models (off by default)")
    config.addinivalue_line("markers", "slow: end-to-end tests that start the app or a browser")


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
    from headshot.faces import get_analyzer

    return get_analyzer()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP threads that
    wait for each other make steps many times slower: run the module single-threaded, then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
