#!/usr/bin/env python3
"""Would the Space build on ZeroGPU? Resolve requirements.txt as the Space installs it, against the package index.

The README card's ``python_version`` and the ``torch`` pin must be on ZeroGPU's supported lists
(``headshot/config.py``, from the hub docs of ``config.ZEROGPU_DOCS_DATE``); then pip resolves every pin for
that Python on Linux x86_64, wheels only (``pip install --dry-run --report``: metadata only, nothing is
installed), and the resolved set must hold the pinned versions, that torch, and exactly one OpenCV build.
Needs the package index (CI has it). Exit status 0 when the Space would build; the problems otherwise.

    python .ci/check_space_build.py [--report resolved.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from headshot import config  # noqa: E402 (stdlib only)

OPENCV_BUILDS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
# The Space image's glibc allows manylinux_2_28 wheels (and every older manylinux tag, which pip does not
# infer from --platform by itself).
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def card_python(readme: Path = ROOT / "README.md") -> str:
    match = re.search(r"^python_version:\s*\"?([0-9.]+)\"?\s*$", readme.read_text(encoding="utf-8"), re.M)
    if not match:
        raise SystemExit("README.md's card has no python_version")
    return match.group(1)


def pins(requirements: Path = ROOT / "requirements.txt") -> dict[str, str]:
    out = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[normalise(re.sub(r"\[.*\]", "", name).strip())] = version.strip()
    return out


def supported_python(version: str) -> str | None:
    """The ZeroGPU Python a card's ``python_version`` selects ("3.12" -> "3.12.12"), or None."""
    for full in config.ZEROGPU_PYTHON_VERSIONS:
        if version == full or full.startswith(version + "."):
            return full
    return None


def list_problems(python_version: str, pinned: dict[str, str]) -> list[str]:
    """The card's Python and the torch pin against ZeroGPU's supported lists."""
    problems = []
    docs = f"ZeroGPU's supported versions (hub docs of {config.ZEROGPU_DOCS_DATE})"
    if supported_python(python_version) is None:
        problems.append(f"python_version {python_version} is not one of {docs}: {config.ZEROGPU_PYTHON_VERSIONS}")
    if pinned.get("torch") not in config.ZEROGPU_TORCH_VERSIONS:
        problems.append(f"torch=={pinned.get('torch')} is not one of {docs}: {config.ZEROGPU_TORCH_VERSIONS}")
    return problems


def resolved_problems(report: dict, pinned: dict[str, str]) -> list[str]:
    """What pip's resolution (its ``--report``) says against the pins: versions, torch, one OpenCV build."""
    resolved = {normalise(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    problems = [
        f"{name} resolved to {resolved.get(name)}, not the pinned {version}"
        for name, version in pinned.items()
        if resolved.get(name) != version
    ]
    builds = sorted(name for name in resolved if name in OPENCV_BUILDS)
    if len(builds) != 1:
        problems.append(f"one OpenCV build must be installed, not {builds or 'none'} (each owns the cv2 package)")
    return problems


def resolve(python: str, requirements: Path) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", ".".join(python.split(".")[:2]),
            *(f"--platform={platform}" for platform in PLATFORMS),
            "--report", str(report), "-r", str(requirements),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"pip could not resolve {requirements.name} for Python {python} on Linux x86_64:\n"
                             + done.stderr[-4000:])
        return json.loads(report.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="also write the resolved set (name==version per line) here")
    args = parser.parse_args()
    python, pinned = card_python(), pins()
    problems = list_problems(python, pinned)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    full = supported_python(python)
    report = resolve(full, ROOT / "requirements.txt")
    problems = resolved_problems(report, pinned)
    resolved = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in report["install"])
    if args.report:
        args.report.write_text("\n".join(resolved) + "\n")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    opencv = next(name for name in resolved if normalise(name.split("==")[0]) in OPENCV_BUILDS)
    print(f"The Space resolves on Python {full} (card: {python}), Linux x86_64, wheels only: {len(resolved)} "
          f"packages, torch=={pinned['torch']} (ZeroGPU, docs of {config.ZEROGPU_DOCS_DATE}), one OpenCV: {opencv}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
