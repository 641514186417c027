"""The intake checks on their development cases (tests/_hardcases.py) and on the shared photos.

For each category of tests/_hardcases.CATEGORIES, every variant drawn on several shared photos of
different people is validated, and the script prints how many got one of the expected error codes (or,
for the categories that must stay accepted, were accepted), per variant; then how many of the shared
photos that the manifest's tests accept are still accepted. The categories include the renderings drawn
after the rules were set (``sunglasses_new``, ``mask_new``, ``hand_new``, ``cut_new``; ``--only`` picks them). ``--features`` prints the measures the rules
use (face_measures.occlusion_measures and friends) per case instead, to set thresholds with margin.

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


def _sources(analyzer, faces_dir: Path, count: int):
    """``(rel, image, largest face)`` of the first ``count`` SOURCES: the photos the cases are drawn on."""
    from headshot import imaging

    for rel in SOURCES[:count]:
        img = imaging.load_image(faces_dir / rel)
        yield rel, img, analyzer.detect(img, embed=1)[0]


def _drawn(img, face, categories):
    """``(category, variant, case)`` of every variant of each of ``categories`` drawn on ``img``."""
    import _hardcases as hc

    for category in categories:
        make, variants, _ = hc.CATEGORIES[category]
        for v in range(variants):
            yield category, v, make(img, face.kps, v)


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

    from headshot.faces.analyzer import get_analyzer
    from headshot.faces.validation import validate_selfies

    faces_dir = data / "testdata" / "faces"
    analyzer = get_analyzer()
    only = set(filter(None, args.only.split(",")))
    summary: dict[str, list[int]] = {}
    wrong: list[str] = []
    for rel, img, face in _sources(analyzer, faces_dir, args.sources):
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


class _probe_always:
    """The probe on every face while fitting (config's PROBE_* gate off), so the models see every case."""

    def __enter__(self):
        from headshot import config

        self.saved = config.PROBE_EYE_DETAIL, config.PROBE_LOWER_TEXTURE, config.PROBE_LOWER_SKIN
        config.PROBE_EYE_DETAIL = config.PROBE_LOWER_TEXTURE = config.PROBE_LOWER_SKIN = float("inf")

    def __exit__(self, *exc):
        from headshot import config

        config.PROBE_EYE_DETAIL, config.PROBE_LOWER_TEXTURE, config.PROBE_LOWER_SKIN = self.saved


# Each occlusion model: its covered categories (the "*_new" renderings of tests/_hardcases.CATEGORIES_NEW
# join the fit only for the variants --fit-new names; the others stay out, to measure it on drawings it
# was not fit on).
_MODELS = (
    ("SUNGLASSES_MODEL", ("sunglasses", "sunglasses_new")),
    ("HAND_OVER_EYE_MODEL", ("hand", "hand_new")),
    ("FACE_COVERED_MODEL", ("mask", "mask_new")),
)
_ORDINARY = ("shared", "benign")
_OTHERS = ("filter", "cartoon", "screen")


def _measure_rows(args) -> list[dict]:
    """The occlusion measures (probe on) of every drawn case on ``args.sources`` people and of the shared
    photos of one person (manifest), cached in ``args.cache`` when given."""
    import numpy as np

    cached = Path(args.cache) if args.cache else None
    if cached and cached.is_file():
        return json.loads(cached.read_text())

    from headshot import imaging
    from headshot.faces.analyzer import get_analyzer
    from headshot.faces.measures import occlusion_measures

    analyzer = get_analyzer()
    faces_dir = Path(args.data) / "testdata" / "faces"
    rows: list[dict] = []

    def measure(img, cat, v, src):
        found = analyzer.detect(img, embed=1)
        if found:
            with _probe_always():
                m = occlusion_measures(analyzer, np.asarray(img.convert("RGB")), found[0])
            rows.append({"cat": cat, "v": v, "src": src, **m})

    cats = [c for _, pos in _MODELS for c in pos] + ["benign", *_OTHERS]
    for rel, img, face in _sources(analyzer, faces_dir, args.sources):
        for cat, v, case in _drawn(img, face, cats):
            measure(imaging.load_image(jpeg(case)), cat, v, rel)
    with open(faces_dir / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            single = row["path"].startswith(("same_person/", "hard/")) and row["num_faces_expected"] == "1"
            if single and "upside_down" not in row["path"]:
                measure(imaging.load_image(faces_dir / row["path"]), "shared", 0, row["path"])
    if cached:
        cached.write_text(json.dumps(rows))
    return rows


def _logistic(x, y, l2=0.01, steps=4000):
    """Logistic regression (classes weighted equally, L2) on standardised measures: (w, b, mean, scale)."""
    import numpy as np

    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    w, b = np.zeros(z.shape[1]), 0.0
    cw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = (p - y) * cw
        w -= 0.1 * (z.T @ g / len(y) + l2 * w)
        b -= 0.1 * g.mean()
    return w, b, mean, scale


def fit_occlusion_models(argv: list[str] | None = None) -> None:
    """``--fit``: the occlusion models of config.py (SUNGLASSES_MODEL, HAND_OVER_EYE_MODEL,
    FACE_COVERED_MODEL) from the measures of face_measures.occlusion_measures: a logistic regression of
    the covered cases of one kind against every ordinary photo (the shared photos of one person and their
    benign variants) and the other renderings; the bias is then moved so that the highest ordinary photo
    scores ``-margin``. The "*_new" renderings join the fit only for the variants ``--fit-new`` names
    (``even``: 0, 2, 4...; ``none``; ``all``); the rest are scored as drawings it was not fit on. Also prints
    leave-one-rendering-out results: each rendering (old and new) scored by a model fit without it."""
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--l2", type=float, default=0.003)
    parser.add_argument("--fit-new", default="even", choices=("even", "none", "all"))
    parser.add_argument("--drop", default="", help="comma-separated measures to leave out of the models")
    parser.add_argument("--keep", default="", help="comma-separated measures: only these (default: all)")
    parser.add_argument("--models", default="", help="comma-separated model names to fit (default: all)")
    parser.add_argument("--cache", default="", help="a JSON file for the measures (read when present)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(Path(args.data) / "models" / "faces-small"))
    rows = _measure_rows(args)
    drop = set(filter(None, args.drop.split(",")))
    keep = set(filter(None, args.keep.split(",")))
    names = [k for k in rows[0] if k not in ("cat", "v", "src") and k not in drop and (not keep or k in keep)]

    def matrix(rs):
        return np.array([[r[n] for n in names] for r in rs], dtype=np.float64)

    def fitted(r) -> bool:
        if not r["cat"].endswith("_new"):
            return True
        return args.fit_new == "all" or (args.fit_new == "even" and r["v"] % 2 == 0)

    ordinary = [r for r in rows if r["cat"] in _ORDINARY]
    negatives = [r for r in rows if r["cat"] in (*_ORDINARY, *_OTHERS)]
    for model, positive in _MODELS:
        if args.models and model not in args.models.split(","):
            continue
        pos = [r for r in rows if r["cat"] in positive]

        def score(train, test):
            w, b, mean, scale = _logistic(
                np.r_[matrix(train), matrix(negatives)],
                np.r_[np.ones(len(train)), np.zeros(len(negatives))],
                l2=args.l2,
            )
            top = max(((matrix(ordinary) - mean) / scale) @ w + b)
            return ((matrix(test) - mean) / scale) @ w + b - top - args.margin, (
                w,
                b - top - args.margin,
                mean,
                scale,
            )

        held = []
        for key in sorted({(r["cat"], r["v"]) for r in pos}):
            train = [r for r in pos if (r["cat"], r["v"]) != key and fitted(r)]
            s, _ = score(train, [r for r in pos if (r["cat"], r["v"]) == key])
            held.append((key, int((s > 0).sum()), len(s)))
        train = [r for r in pos if fitted(r)]
        _, (w, bias, mean, scale) = score(train, train)
        _print_model(model, names, w, bias, mean, scale)
        groups = {}
        for r in rows:
            part = "" if not r["cat"].endswith("_new") else (" (fit)" if fitted(r) else " (held out)")
            groups.setdefault(r["cat"] + part, []).append(r)
        for c, rs in groups.items():
            sc = ((matrix(rs) - mean) / scale) @ w + bias
            print(
                f"#   {c:24s} covered {int((sc > 0).sum())}/{len(sc)}  (score max {sc.max():.2f}, min {sc.min():.2f})"
            )
        print("#   leave one rendering out:", ", ".join(f"{c}{v} {k}/{n}" for (c, v), k, n in held))


def _print_model(model, names, w, bias, mean, scale) -> None:
    print(f"{model} = {{")
    print(f'    "bias": {bias:.3f},')
    print('    "weights": {')
    for n, wi, mi, si in zip(names, w, mean, scale, strict=True):
        print(f'        "{n}": ({wi:.3f}, {mi:.4f}, {si:.4f}),')
    print("    },\n}")


def _drawing_rows(data: Path, sources: int, cache: Path | None) -> list[dict]:
    """drawing_measures of every case as validation sees it (the JPEG decoded at the reduced size, the
    largest face): the cartoons, the ordinary photos and the other categories, and the shared photos of
    one person; cached in ``cache`` when given."""
    if cache and cache.is_file():
        return json.loads(cache.read_text())
    import _hardcases as hc
    import numpy as np
    from PIL import Image

    from headshot import config, imaging
    from headshot.faces.analyzer import get_analyzer
    from headshot.faces.measures import drawing_measures

    analyzer = get_analyzer()
    faces_dir = data / "testdata" / "faces"
    rows: list[dict] = []

    def measure(encoded: bytes, cat: str, v: int, src: str) -> None:
        img = imaging.load_reduced(encoded, min_long_side=config.DECODE_MIN_LONG_SIDE).image
        found = analyzer.detect(img, embed=1)
        m = drawing_measures(np.asarray(img.convert("RGB")), found[0]) if found else None
        if m is not None:
            rows.append({"cat": cat, "v": v, "src": src, **m})

    for rel in SOURCES[:sources]:
        img = imaging.load_image(faces_dir / rel)
        face = analyzer.detect(img, embed=1)[0]
        for cat, (make, variants, _) in hc.CATEGORIES.items():
            if cat not in ("cut", "rotated"):
                for v in range(variants):
                    measure(jpeg(make(img, face.kps, v)), cat, v, rel)
        for v, side in enumerate((600, 520, 400)):  # small photos, scaled down with a good filter
            r = side / min(img.size)
            small = img.resize((round(img.width * r), round(img.height * r)), Image.Resampling.LANCZOS)
            measure(jpeg(small), "small", v, rel)
    with open(faces_dir / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            single = row["path"].startswith(("same_person/", "hard/")) and row["num_faces_expected"] == "1"
            if single and "upside_down" not in row["path"]:
                measure((faces_dir / row["path"]).read_bytes(), "shared", 0, row["path"])
    if cache:
        cache.write_text(json.dumps(rows))
    return rows


def fit_not_a_photo(argv: list[str] | None = None) -> None:
    """``--fit-drawing``: config.NOT_A_PHOTO_MODEL, a logistic regression (classes weighted equally, L2) of
    face_measures.drawing_measures of the cartoons (tests/_hardcases.cartoon, every rendering on every
    source) against everything else (the shared photos of one person, their benign, small, filtered, screen
    and covered variants); the bias is then moved so that the highest of these scores ``-margin``. Also
    prints leave-one-rendering-out: each rendering scored by a model fit without it, against the same line
    (how the rule does on a kind of drawing it has not seen)."""
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--cache", default="", help="a JSON file for the measures (read when present)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(data / "models" / "faces-small"))
    rows = _drawing_rows(data, args.sources, Path(args.cache) if args.cache else None)
    from headshot import config

    names = ["ink_lines", "flat_tones"]  # paper-white is a line of its own (config.DRAWING_PAPER)
    pos = [r for r in rows if r["cat"] == "cartoon"]
    neg = [r for r in rows if r["cat"] != "cartoon"]

    def matrix(rs):
        return np.array([[r[n] for n in names] for r in rs], dtype=np.float64)

    def fit(rs_pos):
        x = np.r_[matrix(rs_pos), matrix(neg)]
        y = np.r_[np.ones(len(rs_pos)), np.zeros(len(neg))]
        mean, scale = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / scale
        w, b = np.zeros(z.shape[1]), 0.0
        cw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
        for _ in range(4000):
            g = (1 / (1 + np.exp(-(z @ w + b))) - y) * cw
            w -= 0.1 * (z.T @ g / len(y) + 0.01 * w)
            b -= 0.1 * g.mean()
        top = max(((matrix(neg) - mean) / scale) @ w + b)
        return w, b - top - args.margin, mean, scale  # (every other case is under DRAWING_PAPER: printed)

    def scored(rs, model):  # over 0: a drawing (the model, or paper-white past its own line)
        w, b, mean, scale = model
        paper = np.array([r["paper"] for r in rs]) > config.DRAWING_PAPER
        return np.where(paper, np.inf, ((matrix(rs) - mean) / scale) @ w + b)

    held = []
    for v in sorted({r["v"] for r in pos}):
        test = [r for r in pos if r["v"] == v]
        held.append((v, int((scored(test, fit([r for r in pos if r["v"] != v])) > 0).sum()), len(test)))
    model = fit(pos)
    w, bias, mean, scale = model
    print("NOT_A_PHOTO_MODEL = {")
    print(f'    "bias": {bias:.3f},')
    print('    "weights": {')
    for n, wi, mi, si in zip(names, w, mean, scale, strict=True):
        print(f'        "{n}": ({wi:.3f}, {mi:.4f}, {si:.4f}),')
    print("    },\n}")
    for c in dict.fromkeys(r["cat"] for r in rows):
        for v in sorted({r["v"] for r in rows if r["cat"] == c}) if c == "cartoon" else [None]:
            rs = [r for r in rows if r["cat"] == c and (v is None or r["v"] == v)]
            sc = scored(rs, model)
            label = f"{c}{'' if v is None else v}"
            print(
                f"#   {label:10s} drawing {int((sc > 0).sum())}/{len(sc)}  (score max {sc.max():.2f}, min {sc.min():.2f})"
            )
    print("#   paper-white of the others: max", max(r["paper"] for r in neg))
    print("#   leave one rendering out:", ", ".join(f"cartoon{v} {k}/{n}" for v, k, n in held))


def _filter_rows(analyzer, faces_dir: Path, sources: int) -> list[dict]:
    """filter_measures of every drawn filter, benign variant, soft/small copy, cartoon and screen on
    ``sources`` people, and of every shared photo of one person (as validation measures them: the photo
    decoded at its reduced size, the face's surroundings)."""
    import _hardcases as hc
    import numpy as np
    from test_validation import _cases

    from headshot import config, imaging
    from headshot.faces.measures import filter_measures

    rows = []

    def measure(data, cat, v, src):
        decoded = imaging.load_reduced(data, min_long_side=config.DECODE_MIN_LONG_SIDE)
        found = analyzer.detect(decoded.image, embed=0)
        if not found:
            return
        face, img = found[0], decoded.image
        x0, y0, x1, y1 = (float(c) for c in face.bbox)
        side = max(x1 - x0, y1 - y0)
        box = (max(0, int(x0 - side)), max(0, int(y0 - side)), min(img.width, int(x1 + side) + 1),
               min(img.height, int(y1 + side) + 1))  # fmt: skip
        m = filter_measures(np.asarray(img.crop(box).convert("RGB")), face.scaled(1.0, offset=box[:2]))
        if m:
            rows.append({"cat": cat, "v": v, "src": src, **m})

    makers = {c: hc.CATEGORIES[c][:2] for c in ("filter", "benign", "cartoon", "screen")}
    makers["soft"] = (hc.soft_or_small, 6)
    for rel in SOURCES[:sources]:
        img = imaging.load_image(faces_dir / rel)
        kps = analyzer.detect(img, embed=1)[0].kps
        for cat, (make, variants) in makers.items():
            for v in range(variants):
                measure(jpeg(make(img, kps, v)), cat, v, rel)
    for rel, expected, _ in _cases():
        if expected is None:
            measure((faces_dir / rel).read_bytes(), "shared", 0, rel)
    return rows


def fit_filter_model(argv: list[str] | None = None) -> None:
    """``--fit-filter``: config.FILTERED_MODEL from face_measures.filter_measures: a logistic regression
    (classes weighted equally, L2) of the drawn filters against the ordinary photos (shared photos of one
    person, their benign variants, soft/small/recompressed copies); the bias is then moved so that the
    highest ordinary photo scores ``-margin``. Prints each category's count over the line and each
    rendering's count under a model fit without it (leave one rendering out)."""
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--cache", default="", help="a JSON file for the measures (read when present)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(data / "models" / "faces-small"))
    from headshot.faces.analyzer import get_analyzer

    cached = Path(args.cache) if args.cache else None
    if cached and cached.is_file():
        rows = json.loads(cached.read_text())
    else:
        rows = _filter_rows(get_analyzer(), data / "testdata" / "faces", args.sources)
        if cached:
            cached.write_text(json.dumps(rows))
    names = ("filter_gap", "filter_eyes", "filter_around", "filter_grain")

    def matrix(rs):
        return np.array([[r[n] for n in names] for r in rs], dtype=np.float64)

    def fit(pos, neg, l2=0.01, steps=3000):
        x, y = np.r_[matrix(pos), matrix(neg)], np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        mean, scale = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / scale
        w, b = np.zeros(z.shape[1]), 0.0
        cw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
        for _ in range(steps):
            g = (1 / (1 + np.exp(-(z @ w + b))) - y) * cw
            w -= 0.1 * (z.T @ g / len(y) + l2 * w)
            b -= 0.1 * g.mean()
        top = max(((matrix(neg) - mean) / scale) @ w + b)
        return w, b - top - args.margin, mean, scale

    def score(rs, model):
        w, b, mean, scale = model
        return ((matrix(rs) - mean) / scale) @ w + b

    pos = [r for r in rows if r["cat"] == "filter"]
    ordinary = [r for r in rows if r["cat"] in ("shared", "benign", "soft")]
    held = []
    for v in sorted({r["v"] for r in pos}):
        model = fit([r for r in pos if r["v"] != v], ordinary)
        held.append(f"filter{v} {int((score([r for r in pos if r['v'] == v], model) > 0).sum())}/{len(pos) // 12}")
    model = fit(pos, ordinary)
    w, b, mean, scale = model
    print(f'FILTERED_MODEL = {{\n    "bias": {b:.3f},\n    "weights": {{')
    for n, wi, mi, si in zip(names, w, mean, scale, strict=True):
        print(f'        "{n}": ({wi:.3f}, {mi:.4f}, {si:.4f}),')
    print("    },\n}")
    for cat in dict.fromkeys(r["cat"] for r in rows):
        sc = score([r for r in rows if r["cat"] == cat], model)
        print(f"#   {cat:8s} over the line {int((sc > 0).sum())}/{len(sc)}  (score max {sc.max():.2f}, min {sc.min():.2f})")
    for v in sorted({r["v"] for r in pos}):
        sc = score([r for r in pos if r["v"] == v], model)
        print(f"#   filter{v} {int((sc > 0).sum())}/{len(sc)}", end="")
    print("\n#   leave one rendering out:", ", ".join(held))


def one_eye_report(argv: list[str] | None = None) -> dict:
    """The one-eye probe (measures.one_eye_measures, config.ONE_EYE_*) on every drawn case, every face
    probed whatever the gates say, and on the source photos lit from one side: per category the gap
    between the two eyes' cosines and the higher cosine (min / median / max), and how many are over both
    lines. ``python benchmarks/calibrate_intake.py --one-eye [--sources 10]``"""
    import numpy as np

    parser = argparse.ArgumentParser(description="the one-eye probe per category")
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    parser.add_argument("--sources", type=int, default=10)
    args = parser.parse_args(argv)
    data = Path(args.data)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(data / "models" / "faces-small"))
    import _hardcases as hc
    from PIL import Image

    from headshot import config, imaging
    from headshot.faces.analyzer import align_face, cosine, get_analyzer

    analyzer = get_analyzer()
    faces_dir = data / "testdata" / "faces"
    found: dict[str, list[tuple[float, float]]] = {}

    def measure(img, cat):
        faces = analyzer.detect(imaging.load_image(jpeg(img)), embed=1)
        if not faces:
            return
        face = faces[0]
        crop = align_face(np.asarray(img.convert("RGB")), face.kps)[:, :, ::-1].copy()
        a, b = (cosine(e, face.embedding) for e in analyzer.eye_probe(crop))
        found.setdefault(cat, []).append((abs(a - b), max(a, b)))

    cats = ("hand", "hand_new", "sunglasses", "sunglasses_new", "mask", "mask_new", "benign", "filter", "screen")
    for _, img, face in _sources(analyzer, faces_dir, args.sources):
        for cat, _, case in _drawn(img, face, cats):
            measure(case, cat)
        for v in range(6):
            measure(hc.soft_or_small(img, face.kps, v), "soft")
        arr = np.asarray(img).astype(np.float32)
        t = np.clip((np.arange(img.width) - face.bbox[0]) / max(face.bbox[2] - face.bbox[0], 1.0), 0, 1)
        for low in (0.45, 0.25):
            for ramp in (t, t[::-1]):
                lit = arr * (1 - (1 - low) * ramp)[None, :, None]
                measure(Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8)), "side_lit")
    with open(faces_dir / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["path"].startswith("same_person/") and row["num_faces_expected"] == "1":
                measure(imaging.load_image(faces_dir / row["path"]), "shared")
    out = {}
    for cat, values in found.items():
        gap, top = np.array(values).T
        over = int(((gap > config.ONE_EYE_GAP) & (top > config.ONE_EYE_MAX)).sum())
        out[cat] = over
        print(
            f"{cat:15s} n={len(values):3d} gap {gap.min():.3f}/{np.median(gap):.3f}/{gap.max():.3f} "
            f"max {top.min():.3f}/{np.median(top):.3f}/{top.max():.3f}  over both lines {over}"
        )
    return out


if __name__ == "__main__":
    if "--one-eye" in sys.argv:
        one_eye_report([a for a in sys.argv[1:] if a != "--one-eye"])
    elif "--fit-drawing" in sys.argv:
        fit_not_a_photo([a for a in sys.argv[1:] if a != "--fit-drawing"])
    elif "--fit-filter" in sys.argv:
        fit_filter_model([a for a in sys.argv[1:] if a != "--fit-filter"])
    elif "--fit" in sys.argv:
        fit_occlusion_models([a for a in sys.argv[1:] if a != "--fit"])
    else:
        main()
