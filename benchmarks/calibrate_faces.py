"""Print the distributions the face thresholds were tuned from (faces.py's PACK_THRESHOLDS, the quality
limits in config.py and the rules in validation.py).

    HEADSHOT_FACE_MODELS=../shared/models/faces-small python benchmarks/calibrate_faces.py [--data ../shared]

Sections: detection scores (faces vs non-faces), head pose of single-face photos, cosine similarity of
same-person and different-person pairs and of resized re-encoded copies (with image-hash distances),
face sharpness / brightness of good photos vs degraded copies, and the secondary faces of every photo
(size ratio to the largest, score, share of the box inside the frame, sharpness relative to the largest).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values, qs=(0, 5, 25, 50, 75, 95, 100)) -> str:
    if not len(values):
        return "n=0"
    arr = np.asarray(values, dtype=float)
    return f"n={arr.size:3d} " + " ".join(f"p{q}={np.percentile(arr, q):.3f}" for q in qs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    args = parser.parse_args()
    data = Path(args.data)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(data / "models" / "faces-small"))
    from headshot import config, imaging
    from headshot.faces.analyzer import ORIENTATION_MARGIN, cosine, det_size_for, get_analyzer
    from headshot.faces.measures import face_quality

    faces_dir = data / "testdata" / "faces"
    with open(faces_dir / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    analyzer = get_analyzer()
    print(f"pack={analyzer.pack_id} dim={analyzer.embedding_size} thresholds={analyzer.thresholds}")

    results = {}
    for row in rows:
        img = imaging.load_image(faces_dir / row["path"])
        faces = analyzer.detect(img)
        small, _ = imaging.downscale(img, config.ANALYSIS_MAX_SIDE)
        results[row["path"]] = (row, img, faces, imaging.dhash(small))

    print(f"\n== detection: best score per photo (threshold {analyzer.det_threshold:.2f})")
    by_cat = defaultdict(list)
    for path, (_row, _img, faces, _) in results.items():
        cat = path.split("/")[0] if "/derived/" not in path else "derived"
        by_cat[cat].append(faces[0].score if faces else 0.0)
    for cat, scores in by_cat.items():
        print(f"{cat:12s} {pct(scores)}  none={sum(s == 0 for s in scores)}")
    # Below-threshold candidates on the no-face photos: how close do animals and textures come?
    low = []
    for path, (_row, img, _, _) in results.items():
        if path.startswith("no_face/") or "scream" in path or "upside_down" in path:
            small, _ = imaging.downscale(img, config.ANALYSIS_MAX_SIDE)
            bgr = imaging.to_bgr(small)
            for side in (320, 640):
                size = det_size_for(bgr.shape[1], bgr.shape[0], side)
                bboxes, _ = analyzer._det.detect(bgr, input_size=size, det_thresh=0.05)
                low.append((path, side, float(bboxes[:, 4].max()) if len(bboxes) else 0.0))
    for path, side, best in low:
        print(f"  {path:60s} at {side} px: best candidate score={best:.3f}")

    print("\n== pose of single-face photos (same_person + hard, not derived)")
    yaws, pitches, rolls = [], [], []
    for path, (row, _, faces, _) in results.items():
        if faces and row["num_faces_expected"] == "1" and "/derived/" not in path:
            yaws.append(faces[0].yaw)
            pitches.append(faces[0].pitch)
            rolls.append(faces[0].roll)
    print("yaw   ", pct(yaws))
    print("pitch ", pct(pitches))
    print("roll  ", pct(rolls))
    for path in [p for p in results if "upside_down" in p or "exif" in p or "camera" in p or "partial" in p]:
        faces = results[path][2]
        if faces:
            f = faces[0]
            print(f"  {path:60s} yaw={f.yaw:6.1f} pitch={f.pitch:6.1f} roll={f.roll:7.1f}")

    print("\n== orientation check: best score turned by 180 degrees minus as it is (largest face)")
    margins: dict[str, list[float]] = {"upright": [], "upside down": []}
    for path, (row, img, _, _) in results.items():
        if row["num_faces_expected"] != "1" or "/derived/" in path:
            continue
        for label, photo in (("upright", img), ("upside down", img.rotate(180))):
            small, _ = imaging.downscale(photo, config.ANALYSIS_MAX_SIDE)
            bgr = imaging.to_bgr(small)
            dets = analyzer._detect_bgr(bgr, det_size_for(bgr.shape[1], bgr.shape[0], 320))
            if dets:
                largest = max(dets, key=lambda d: (d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1]))
                as_is, turned = analyzer._orientation_scores(bgr, largest)
                margins[label].append(turned - as_is)
    for label, values in margins.items():
        print(f"{label:12s} {pct(values)}  (upside down when > {ORIENTATION_MARGIN})")

    print("\n== cosine similarity (largest face) by identity")
    ident = defaultdict(list)
    for path, (row, _, faces, dh) in results.items():
        if (
            row["identity"]
            and faces
            and "/derived/" not in path
            and not path.startswith("hard/face_recognition")
        ):
            ident[row["identity"]].append((path, faces[0].embedding, dh))
    same, diff, same_dh, diff_dh = [], [], [], []
    for (ia, la), (ib, lb) in itertools.combinations_with_replacement(ident.items(), 2):
        for (pa, ea, ha), (pb, eb, hb) in itertools.product(la, lb):
            if pa >= pb:
                continue
            c = cosine(ea, eb)
            (same if ia == ib else diff).append(c)
            (same_dh if ia == ib else diff_dh).append(imaging.hamming(ha, hb))
    print("same person     ", pct(same, (0, 1, 5, 10, 50, 90, 100)))
    print("different people", pct(diff, (50, 90, 99, 99.9, 100)))
    print("dhash same person", pct(same_dh, (0, 1, 5, 50)), " different", pct(diff_dh, (0, 1, 5, 50)))
    for name, items in ident.items():
        mat = np.array([[cosine(a[1], b[1]) for b in items] for a in items])
        np.fill_diagonal(mat, np.nan)
        print(f"  {name:22s} n={len(items):2d} mean={np.nanmean(mat):.3f} min={np.nanmin(mat):.3f}")

    print("\n== resized + re-encoded copies of the same photo")
    copy_cos, copy_dh = [], []
    for path, (row, img, faces, dh) in results.items():
        if not faces or "/derived/" in path or min(img.size) < 300 or not row["identity"]:
            continue
        for scale, quality in ((0.5, 70), (0.8, 40)):
            small = img.resize(
                (round(img.width * scale), round(img.height * scale)), Image.Resampling.BILINEAR
            )
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=quality)
            copy = imaging.load_image(buf.getvalue(), name="copy.jpg")
            cf = analyzer.detect(copy, embed=1)
            if cf:
                copy_cos.append(cosine(faces[0].embedding, cf[0].embedding))
                copy_dh.append(
                    imaging.hamming(dh, imaging.dhash(imaging.downscale(copy, config.ANALYSIS_MAX_SIDE)[0]))
                )
    print("copy cosine", pct(copy_cos, (0, 1, 5, 50)))
    print("copy dhash ", pct(copy_dh, (50, 95, 99, 100)))
    chips = [results[p] for p in results if "dlib_john_salley" in p]
    frame_dh = [imaging.hamming(a[3], b[3]) for a, b in itertools.combinations(chips, 2)]
    frame_cos = [cosine(a[2][0].embedding, b[2][0].embedding) for a, b in itertools.combinations(chips, 2)]
    print(
        "video-like frames (dlib_john_salley) dhash",
        pct(frame_dh, (0, 5, 50)),
        "cos",
        pct(frame_cos, (50, 95, 100)),
    )

    print("\n== face quality (largest face): good photos vs degraded copies")
    quality = defaultdict(list)
    for path, (row, img, faces, _) in results.items():
        if not faces or row["num_faces_expected"] not in ("1", "~1"):
            continue
        kind = "good"
        if "/derived/" in path:
            kind = next(k for k in ("blur", "dark", "tiny", "jpeg", "noise", "exif", "upside") if k in path)
        q = face_quality(img, faces[0])
        quality[kind].append(q)
        if kind != "good":
            print(
                f"  {kind:7s} {path:62s} sharp={q['sharpness']:.3f} bright={q['brightness']:.3f} "
                f"p99={q['highlight']:.3f} clip={q['clipped']:.3f} noise={q['noise']:.1f} "
                f"block={q['blockiness']:.2f}"
            )
    for kind, qs in quality.items():
        for key in ("sharpness", "brightness", "highlight", "clipped", "noise", "blockiness"):
            print(f"{kind:7s} {key:10s} {pct([q[key] for q in qs], (0, 5, 50, 95, 100))}")

    print("\n== secondary faces: ratio to the largest, score, share inside the frame, relative sharpness")
    for path, (row, img, faces, _) in results.items():
        if len(faces) < 2:
            continue
        main = face_quality(img, faces[0])["sharpness"]
        parts = []
        for f in faces[1:6]:
            ratio = f.size / faces[0].size
            x0, y0, x1, y1 = f.bbox
            inside = (min(x1, img.width) - max(x0, 0)) * (min(y1, img.height) - max(y0, 0)) / max(f.area, 1.0)
            rel = face_quality(img, f)["sharpness"] / max(main, 1e-6)
            parts.append(f"{ratio:.2f}/{f.score:.2f}/{inside:.2f}/{rel:.2f}")
        print(f"  {path:55s} n={len(faces):3d} exp={row['num_faces_expected']:4s} " + " ".join(parts))


if __name__ == "__main__":
    main()
