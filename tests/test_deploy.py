"""Deployable on ZeroGPU: the card's Python and the pinned torch on the platform's supported lists, one
OpenCV build with its system libraries declared for the Space (``packages.txt``).

The lists are data in ``config.py`` with the date of the docs they come from; ``.ci/check_space_build.py``
(run by CI, it needs the package index) resolves ``requirements.txt`` for that Python on Linux x86_64.
Here, offline: the lists, the pins, and that script's checks on resolutions made up for the test.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from headshot import config

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_space_build", ROOT / ".ci" / "check_space_build.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

# System libraries (sonames) an OpenCV wheel may need -> the Debian package that provides them. Present in
# every Debian image: libc6, libstdc++6, libgcc-s1, zlib1g.
DEBIAN_BASE = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "ld-linux-x86-64.so.2",
               "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"}  # fmt: skip
DEBIAN_PACKAGES = {
    "libGL.so.1": "libgl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libXext.so.6": "libxext6",
    "libX11.so.6": "libx11-6",
    "libxcb.so.1": "libxcb1",
}


def test_the_supported_lists_are_dated_data():
    assert date.fromisoformat(config.ZEROGPU_DOCS_DATE) <= date.today()
    for versions in (config.ZEROGPU_PYTHON_VERSIONS, config.ZEROGPU_TORCH_VERSIONS):
        assert versions and all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in versions)
    assert config.ZEROGPU_QUOTA_SECONDS == {"unauthenticated": 120, "free": 300, "pro": 2400}


def test_the_card_python_and_the_torch_pin_are_on_zerogpus_lists():
    python, pinned = check.card_python(), check.pins()
    assert check.list_problems(python, pinned) == []
    assert check.supported_python(python) == "3.12.12"  # the newer of the two


def test_leaving_the_lists_fails():
    pinned = check.pins()
    assert check.supported_python("3.11") is None and check.supported_python("3.1") is None
    problems = check.list_problems("3.11", {**pinned, "torch": "2.13.0"})
    assert len(problems) == 2 and "3.11" in problems[0] and "2.13.0" in problems[1]
    assert config.ZEROGPU_DOCS_DATE in problems[1]


def _report(**versions):
    return {"install": [{"metadata": {"name": n.replace("_", "-"), "version": v}} for n, v in versions.items()]}


def test_the_resolution_must_hold_the_pins_and_one_opencv_build():
    pinned = {"torch": "2.11.0", "opencv-python": "5.1.0.95"}
    assert check.resolved_problems(_report(torch="2.11.0", opencv_python="5.1.0.95", numpy="2.4.6"), pinned) == []
    two = check.resolved_problems(
        _report(torch="2.11.0", opencv_python="5.1.0.95", opencv_python_headless="5.0.0.93"), pinned
    )
    assert two == ["one OpenCV build must be installed, not ['opencv-python', 'opencv-python-headless'] "
                   "(each owns the cv2 package)"]  # fmt: skip
    assert check.resolved_problems(_report(torch="2.13.0", opencv_python="5.1.0.95"), pinned) == [
        "torch resolved to 2.13.0, not the pinned 2.11.0"
    ]


def test_one_opencv_build_the_one_insightface_needs():
    """insightface depends on opencv-python: pinning another build installs both, and the last one
    installed owns cv2. So the pin is opencv-python, alone."""
    builds = [name for name in check.pins() if name in check.OPENCV_BUILDS]
    needs = {
        re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower()
        for r in importlib.metadata.requires("insightface") or []
        if "extra ==" not in r
    }
    assert builds == [b for b in check.OPENCV_BUILDS if b in needs] == ["opencv-python"]


def _needed(path: Path) -> set[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out))


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) reads the libraries cv2 needs")
def test_packages_txt_declares_the_system_libraries_opencv_needs():
    """Every library the installed OpenCV build loads that is neither in its wheel nor in every Debian
    image is provided by a package in packages.txt (the Space installs those with apt)."""
    spec = importlib.util.find_spec("cv2")
    if spec is None or spec.origin is None:
        pytest.skip("OpenCV is not installed")
    package = Path(spec.origin).parent
    bundled = package.parent / "opencv_python.libs"
    if not bundled.is_dir():
        pytest.skip("cv2 here is not opencv-python's build")
    binaries = list(package.glob("cv2*.so")) + sorted(bundled.glob("*.so*"))
    own = {p.name for p in binaries}
    system = set().union(*(_needed(p) for p in binaries)) - own - DEBIAN_BASE
    unknown = system - DEBIAN_PACKAGES.keys()
    assert not unknown, f"add these libraries' Debian packages to packages.txt and to DEBIAN_PACKAGES: {unknown}"
    declared = set((ROOT / "packages.txt").read_text().split())
    assert {DEBIAN_PACKAGES[s] for s in system} <= declared
