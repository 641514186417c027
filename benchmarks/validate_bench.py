"""Median validation time per selfie with the small face pack (the README's number; target < 100 ms).

Each timed call is ``validate_selfies([one photo])`` on the file: decode (a JPEG at the reduced size the
checks need, EXIF, colour), downscale, detection, the plausibility gate (with the orientation check where
the detector is not sure), embedding, face measures and the report, i.e. everything a selfie costs except
the cross-photo checks (a few microseconds per pair). The whole picture, decoded later for an identity's
crops, is not part of it. The photos are the good single-person photos of
``shared/testdata/faces`` (same_person/, at least 512 px on the short side: what users upload), each timed
``--repeats`` times after one warm-up pass (which creates the ONNX sessions). The median over all calls is
printed last as JSON: ``{"name": "validate_ms_per_selfie", "value": ..., "unit": "ms"}``; with
``--verbose`` the per-photo medians go to stderr.

    HEADSHOT_TEST_DATA=../shared python benchmarks/validate_bench.py [--repeats 3] [--limit 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    data = Path(args.data)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(data / "models" / "faces-small"))
    from PIL import Image

    from headshot import config
    from headshot.faces.analyzer import get_analyzer
    from headshot.faces.validation import validate_selfies

    faces_dir = data / "testdata" / "faces"
    with open(faces_dir / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["path"].startswith("same_person/")]
    photos = []
    for row in rows:
        with Image.open(faces_dir / row["path"]) as img:
            if min(img.size) >= config.MIN_SHORT_SIDE:
                photos.append(faces_dir / row["path"])
    if args.limit:
        photos = photos[: args.limit]

    analyzer = get_analyzer()
    for path in photos:  # warm-up: ONNX sessions per detector input shape, file cache
        validate_selfies([path], analyzer=analyzer)
    times: list[float] = []
    for path in photos:
        mine = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            report = validate_selfies([path], analyzer=analyzer).report
            mine.append((time.perf_counter() - start) * 1000.0)
        times.extend(mine)
        if args.verbose:
            print(
                f"{path.relative_to(faces_dir)}: {statistics.median(mine):.1f} ms accepted={report['accepted']}",
                file=sys.stderr,
            )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{len(photos)} photos x {args.repeats}: median {statistics.median(times):.1f} ms, "
        f"p90 {sorted(times)[int(0.9 * (len(times) - 1))]:.1f} ms, pack={analyzer.pack_id}, "
        f"providers={analyzer.providers}, cpus={os.cpu_count()}, load average {load:.2f}",
        file=sys.stderr,
    )
    result = {"name": "validate_ms_per_selfie", "value": round(statistics.median(times), 1), "unit": "ms"}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
