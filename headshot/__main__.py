"""Command line: a folder of selfies and a list of styles in, a folder of headshots out.

    python -m headshot --selfies my_selfies/ --styles corporate-grey,outdoor-natural --out headshots/

By running it you assert that the photos are of you, or that the person agreed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from headshot import config, sessions

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m headshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--selfies", type=Path, help="folder of selfies (3-6 work best)")
    parser.add_argument("--identity", type=Path, help="an identity file to reuse instead of --selfies")
    parser.add_argument(
        "--styles", default="corporate-grey", help="comma-separated style ids (see --list-styles)"
    )
    parser.add_argument("--out", type=Path, default=Path("headshots"), help="output folder")
    parser.add_argument("--method", choices=("instantid", "lora"), default="instantid")
    parser.add_argument(
        "--images-per-style", type=int, default=2, help=f"1-{config.MAX_IMAGES_PER_REQUEST} images per style"
    )
    parser.add_argument(
        "--seed", type=int, default=-1, help=f"0-{config.MAX_SEED}; -1 picks a random seed (printed)"
    )
    parser.add_argument("--prompt", default="", help="extra prompt text for every style")
    parser.add_argument("--fast", action="store_true", help="few-step fast mode")
    parser.add_argument(
        "--best-of",
        type=int,
        default=1,
        help=f"render N (1-{config.MAX_BEST_OF}) candidates per image, keep the best",
    )
    parser.add_argument(
        "--linkedin", action="store_true", help="also write 400x400 crops centred on the face"
    )
    parser.add_argument("--ai-mark", action="store_true", help="add a visible 'AI-generated' mark")
    parser.add_argument("--list-styles", action="store_true", help="print the style ids and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from headshot import studio, styles
    from headshot.errors import HeadshotError

    args = parse_args(argv)
    if args.list_styles:
        for style in styles.list_styles():
            print(f"{style['id']:<20} {style['name']}: {style['description']}")
        return 0
    if not args.selfies and not args.identity:
        print("error: give --selfies FOLDER (or --identity FILE)", file=sys.stderr)
        return 2

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed}")

    def progress(fraction: float, desc: str = "") -> None:
        bar.set_description(desc[:40])
        bar.update(max(0, round(fraction * 100) - bar.n))

    try:
        args.out.mkdir(parents=True, exist_ok=True)
        if args.identity:
            identity = studio.open_identity(args.identity)
        else:
            files = sorted(p for p in args.selfies.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            created = studio.create_identity(files, args.method, seed=max(args.seed, 0), progress=progress)
            for selfie in created.report["selfies"]:
                if not selfie["accepted"]:
                    reasons = "; ".join(i["message"] for i in selfie["issues"] if i["severity"] == "error")
                    tqdm.write(f"skipped {selfie['file']}: {reasons}")
            identity = created.identity
            shutil.copy2(created.path, args.out / created.path.name)
        options = studio.GenerateOptions(
            prompt=args.prompt,
            seed=None if args.seed < 0 else args.seed,
            fast=args.fast,
            best_of=args.best_of,
            linkedin=args.linkedin,
            ai_mark=args.ai_mark,
        )
        bar.reset()
        result = studio.generate_pack(
            identity, args.styles.split(","), args.images_per_style, options, progress=progress
        )
        bar.update(100 - bar.n)
        bar.close()
        for shot in result.headshots:
            for path in (shot.path, shot.linkedin_path):
                if path:
                    shutil.copy2(path, args.out / path.name)
        shutil.copy2(result.zip_path, args.out / result.zip_path.name)
        (args.out / "info.json").write_text(json.dumps(result.info, indent=2))
        sessions.delete_paths([result.zip_path])
    except HeadshotError as err:
        bar.close()
        print(f"error: {err.message}", file=sys.stderr)
        return 1
    print(f"{len(result.headshots)} headshots in {args.out} (seed {result.info['seed']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
