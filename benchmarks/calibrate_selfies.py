"""Print the measurements behind the selfie checks of issue 16 (config.py's "Selfie checks" block):

* the plausibility gate: for the largest detection of every photo, the detector score, the score of the
  face re-framed at a standard size, as it is or turned (``frame_score``), the keypoint shape error and the recogniser's raw
  norm; human photos (shared photos, also degraded and occluded copies) against non-human ones (animals
  and a CG creature from the installed packages' own data, the shared no-face photos) at a lowered
  detector threshold, so near misses show;
* orientation: the detector score of upright against upside-down faces (when the orientation check can
  be skipped);
* second faces: size ratio to the largest, relative sharpness, distance (in face sizes) and whether they
  fall in the headshot crop, for the group photos (two or more people) and for portraits with people in
  the background (the shared ones, and composites made in memory).

    HEADSHOT_FACE_MODELS=../shared/models/faces-small python benchmarks/calibrate_selfies.py [--data ../shared]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values, qs=(0, 1, 5, 50, 95, 100)) -> str:
    if not len(values):
        return "n=0"
    arr = np.asarray(values, dtype=float)
    return f"n={arr.size:3d} " + " ".join(f"p{q}={np.percentile(arr, q):.3f}" for q in qs)


def package_animals() -> list[Path]:
    """Non-human photos shipped inside installed packages (never copied into the project)."""
    found = []
    try:
        import skimage.data

        found.append(Path(skimage.data.__file__).parent / "chelsea.png")  # a cat
    except ImportError:
        pass
    try:
        import gradio

        base = Path(gradio.__file__).parent
        for rel in ("media_assets/images/cheetah.jpg", "media_assets/images/lion.jpg",
                    "media_assets/images/groot.jpeg", "test_data/cheetah2.jpg"):  # fmt: skip
            if (base / rel).is_file():
                found.append(base / rel)
    except ImportError:
        pass
    return found


def occlude(img: Image.Image, face, kind: str) -> Image.Image:
    """Sunglasses (dark ellipses over the eyes) or a face mask (a pale shape over nose and mouth)."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    kps = np.asarray(face.kps)
    eye_d = float(np.linalg.norm(kps[1] - kps[0]))
    if kind == "sunglasses":
        r = 0.32 * eye_d
        for x, y in kps[:2]:
            draw.ellipse((x - r, y - 0.8 * r, x + r, y + 0.8 * r), fill=(15, 15, 20))
        draw.line((tuple(kps[0]), tuple(kps[1])), fill=(15, 15, 20), width=max(2, round(eye_d / 15)))
    else:
        x0, _, x1, y1 = face.bbox
        top = float(kps[2][1]) - 0.25 * eye_d
        draw.rounded_rectangle((x0 + 0.05 * (x1 - x0), top, x1 - 0.05 * (x1 - x0), y1), radius=eye_d / 3,
                               fill=(170, 200, 225))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    args = parser.parse_args()
    data = Path(args.data)
    os.environ.setdefault("HEADSHOT_FACE_MODELS", str(data / "models" / "faces-small"))
    from headshot import config, imaging
    from headshot.faces import analyzer as faces
    from headshot.faces.measures import face_quality

    faces_dir = data / "testdata" / "faces"
    with open(faces_dir / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    analyzer = faces.get_analyzer()

    def measures(img: Image.Image, threshold: float):
        """Every detection of the quick and full passes with the gate's measures (no gate applied)."""
        bgr, _ = faces._analysis_bgr(img)
        h, w = bgr.shape[:2]
        out = []
        for side in (faces.QUICK_DET_SIDE, faces.DET_SIZE[0]):
            with analyzer._lock:
                boxes, kpss = analyzer._det.detect(
                    bgr, input_size=faces.det_size_for(w, h, side), max_num=0, det_thresh=threshold
                )
            for i in range(boxes.shape[0]):
                det = faces._Detection(boxes[i, :4], float(boxes[i, 4]), kpss[i])
                _, norm = analyzer._embed_raw(bgr, det.kps)
                as_is, turned = analyzer._orientation_scores(bgr, det)
                out.append({"score": det.score, "frame": max(as_is, turned), "turned": turned, "norm": norm,
                            "shape": faces.kps_shape_error(det.kps), "size": faces._short_side(det)})  # fmt: skip
        return out

    def show(label, items):
        for key in ("score", "frame", "shape", "norm"):
            print(f"  {label:34s} {key:6s} {pct([m[key] for m in items])}")

    print(f"pack={analyzer.pack_id} thresholds={analyzer.thresholds}")
    print("\n== plausibility gate: largest detection (score >= 0.5) of photos of people")
    human, occluded, upright_scores, turned_scores = [], {"sunglasses": [], "mask": []}, [], []
    for row in rows:
        if row["path"].startswith("no_face/") or row["num_faces_expected"] in ("0", "~0"):
            continue
        if any(k in row["path"] for k in ("ultralight_22", "masked_img1", "upside_down")):
            continue  # CG faces, cartoon faces; upside-down copies are measured below
        img = imaging.load_image(faces_dir / row["path"])
        found = measures(img, analyzer.det_threshold)
        if not found:
            continue
        largest = max(found, key=lambda m: m["size"])
        human.append(largest)
        if row["path"].startswith("same_person/") and min(img.size) >= config.MIN_SHORT_SIDE:
            upright_scores.append(max(m["score"] for m in found))
            turned = measures(img.rotate(180), analyzer.det_threshold)
            if turned:
                turned_scores.append(max(m["score"] for m in turned))
            face = analyzer.embed_largest(img)
            for kind in occluded:
                covered = measures(occlude(img, face, kind), analyzer.det_threshold)
                if covered:
                    occluded[kind].append(max(covered, key=lambda m: m["size"]))
    show("people (largest face)", human)
    show("people, face >= 112 px", [m for m in human if m["size"] >= 112])
    for kind, items in occluded.items():
        show(f"people wearing {kind} (drawn)", items)
    print("\n== non-human photos: every detection at threshold 0.25")
    nonhuman = [faces_dir / r["path"] for r in rows if r["path"].startswith("no_face/")]
    nonhuman += [faces_dir / "hard" / "dlib_scream.jpg", *package_animals()]
    for path in nonhuman:
        img = imaging.load_image(path)
        for variant, photo in (("as is", img), ("x3", img.resize((img.width * 3, img.height * 3)))):
            for m in measures(photo, 0.25):
                print(
                    f"  {path.name:32s} {variant:5s} score={m['score']:.2f} frame={m['frame']:.2f} "
                    f"shape={m['shape']:.3f} norm={m['norm']:.1f} size={m['size']:.0f}"
                )
    print("\n== orientation: best detector score of good photos, upright and turned by 180 degrees")
    print(f"  upright     {pct(upright_scores)}")
    print(f"  upside down {pct(turned_scores)}")

    print("\n== second faces: size ratio / relative sharpness / distance in face sizes / in the crop")

    def second_faces(img: Image.Image) -> list[str]:
        found = analyzer.detect(img, embed=1)
        if len(found) < 2:
            return []
        main = found[0]
        main_sharp = face_quality(img, main)["sharpness"]
        crop = imaging.headshot_crop_box(main.bbox, img.size)
        parts = []
        for f in found[1:6]:
            cx, cy = (f.bbox[0] + f.bbox[2]) / 2, (f.bbox[1] + f.bbox[3]) / 2
            mx, my = (main.bbox[0] + main.bbox[2]) / 2, (main.bbox[1] + main.bbox[3]) / 2
            dist = float(np.hypot(cx - mx, cy - my)) / main.size
            in_crop = crop[0] <= cx <= crop[2] and crop[1] <= cy <= crop[3]
            rel = face_quality(img, f)["sharpness"] / max(main_sharp, 1e-6)
            parts.append(f"{f.size / main.size:.2f}/{rel:.2f}/{dist:.1f}/{'in' if in_crop else 'out'}")
        return parts

    for row in rows:
        if row["path"].startswith(
            ("group/", "same_person/deepface_p04/img54", "same_person/deepface_p05/img62")
        ):
            parts = second_faces(imaging.load_image(faces_dir / row["path"]))
            print(f"  {row['path']:48s} " + " ".join(parts))
    portrait = imaging.load_image(faces_dir / "same_person" / "obama" / "obama.jpg")
    for name, comp in composites(portrait, faces_dir, imaging).items():
        print(f"  composite: {name:37s} " + " ".join(second_faces(comp)))


def composites(portrait: Image.Image, faces_dir: Path, imaging) -> dict[str, Image.Image]:
    """A sharp portrait with other people's faces pasted into its background, as a phone with a wide
    aperture would see them: smaller, blurred, away from the subject (or, last, right beside it)."""
    other = imaging.load_image(faces_dir / "same_person" / "biden" / "biden2.jpg")
    out = {}
    for name, scale, blur, where in (
        ("small sharp, far", 0.25, 0, "corner"),
        ("half size, blurred, far", 0.5, 6, "corner"),
        ("half size, sharp, far", 0.5, 0, "corner"),
        ("same size, blurred, beside", 0.9, 6, "beside"),
        ("same size, sharp, beside", 0.9, 0, "beside"),
        ("small blurred x3", 0.3, 4, "row"),
    ):
        canvas = Image.new("RGB", (portrait.width * 2, portrait.height), (90, 90, 90))
        canvas.paste(portrait, (portrait.width // 2, 0))
        piece = other.resize((round(other.width * scale * portrait.height / other.height),
                              round(scale * portrait.height)))  # fmt: skip
        if blur:
            piece = piece.filter(ImageFilter.GaussianBlur(blur))
        spots = {"corner": [(0, 0)], "beside": [(portrait.width * 3 // 2 - piece.width // 4, 0)],
                 "row": [(0, 0), (canvas.width - piece.width, 0), (0, canvas.height - piece.height)]}  # fmt: skip
        for spot in spots[where]:
            canvas.paste(piece, spot)
        out[name] = canvas
    return out


if __name__ == "__main__":
    main()
