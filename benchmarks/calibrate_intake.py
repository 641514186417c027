"""The intake checks on their development cases (tests/_hardcases.py) and on the shared photos.

For each category of tests/_hardcases.CATEGORIES, every variant drawn on several shared photos of
different people is validated, and the script prints how many got one of the expected error codes (or,
for the categories that must stay accepted, were accepted), per variant; then how many of the shared
photos that the manifest's tests accept are still accepted. ``--features`` prints the measures the rules
use (validation.occlusion_measures and friends) per case instead, to set thresholds with margin.

    HEADSHOT_TEST_DATA=../shared python benchmarks/calibrate_intake.py [--sources 6] [--only mask,cut]
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# One photo per person, at least 512 px, with the face large enough to draw on.
SOURCES = (
    "same_person/obama/obama.jpg",
    "same_person/deepface_p01/img1.jpg",
    "same_person/deepface_p02/img26.jpg",
    "same_person/deepface_p03/img47.jpg",
    "same_person/deepface_p04/img3.jpg",
    "same_person/deepface_p05/img59.jpg",
    "same_person/alex_lacamoire/img1.jpg",
    "same_person/biden/biden2.jpg",
    "same_person/deepface_p11/img20.jpg",
    "same_person/obama/obama2.jpg",
)


def jpeg(img, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    parser.add_argument("--sources", type=int, default=6, help="how many source photos (people)")
    parser.add_argument("--only", default="", help="comma-separated categories")
    parser.add_argument("--shared", action="store_true", help="also check the shared photos stay accepted")
    parser.add_argument("--features", action="store_true", help="print each case's measures")
    args = parser.parse_args(argv)
    data = Path(args.data)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(data / "models" / "faces-small"))
    import _hardcases as hc

    from headshot import imaging
    from headshot.faces import get_analyzer
    from headshot.validation import validate_selfies

    faces_dir = data / "testdata" / "faces"
    analyzer = get_analyzer()
    only = set(filter(None, args.only.split(",")))
    summary: dict[str, list[int]] = {}
    wrong: list[str] = []
    for rel in SOURCES[: args.sources]:
        img = imaging.load_image(faces_dir / rel)
        face = analyzer.detect(img, embed=1)[0]
        for category, (make, variants, expected) in hc.CATEGORIES.items():
            if only and category not in only:
                continue
            for v in range(variants):
                case = make(img, face.kps, v)
                report = validate_selfies([(f"{category}{v}.jpg", jpeg(case))], analyzer=analyzer).report
                (entry,) = report["selfies"]
                got = {i["code"] for i in entry["issues"] if i["severity"] == "error"}
                warned = {i["code"] for i in entry["issues"] if i["severity"] == "warning"}
                if expected is None:
                    ok = entry["accepted"]
                elif expected == {"filtered"}:
                    ok = "filtered" in warned or bool(got)
                else:
                    ok = bool(got & expected)
                summary.setdefault(category, [0, 0])
                summary[category][0] += ok
                summary[category][1] += 1
                if not ok:
                    wrong.append(f"{category}{v} {rel}: {sorted(got)} {sorted(warned)}")
                if args.features:
                    print(
                        json.dumps(
                            {
                                "case": f"{category}{v}",
                                "src": rel,
                                "errors": sorted(got),
                                "warnings": sorted(warned),
                                "m": entry.get("_measures"),
                            }
                        )
                    )
    for category, (ok, n) in summary.items():
        print(f"{category:11s} {ok}/{n}")
    for line in wrong:
        print("  wrong:", line)
    result = {"cases": summary}
    if args.shared:
        from test_validation import _cases

        counts = collections.Counter()
        for rel, expected, _ in _cases():
            if expected is not None:
                continue
            report = validate_selfies([faces_dir / rel], analyzer=analyzer).report
            (entry,) = report["selfies"]
            counts["accepted" if entry["accepted"] else "refused"] += 1
            new = [i["code"] for i in entry["issues"]]
            if not entry["accepted"] or new:
                print(f"  shared {rel}: accepted={entry['accepted']} {new}")
        print("shared photos that must stay accepted:", dict(counts))
        result["shared"] = dict(counts)
    return result


if __name__ == "__main__":
    csv.field_size_limit(1 << 20)
    main()
