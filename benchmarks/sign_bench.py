"""What Content Credentials add to writing a headshot: median ms per image to sign (target < 50 ms).

The PNG is encoded first, as ``studio`` writes it (``disclosure.png_bytes``: pixels, metadata, XMP,
settings); each timed call is then ``credentials.sign_png`` on those bytes, i.e. everything signing adds
before the (same) file write: the manifest with its actions, the hash of the file, the ES256 signature,
the rewrite with the manifest chunk. The pictures are a real photo of the shared test data resized to
the app's sizes: a 1024x1280 headshot (4:5, what a render writes), a 400x400 LinkedIn crop, and a
2048x2560 refine that also embeds its source (a signed 1024x1280 headshot) as the parent ingredient.
Each size is timed ``--repeats`` times after one warm-up call; every signed result is checked with
``credentials.verify``. One JSON line per size, ``sign_ms_per_image`` (the 1024 px headshot) first;
the time to encode the PNG itself (unchanged by signing) is in the notes for scale.

    HEADSHOT_TEST_DATA=../shared python benchmarks/sign_bench.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = (("sign_ms_per_image", (1024, 1280), False), ("sign_ms_linkedin_crop", (400, 400), False),
         ("sign_ms_refine_with_parent", (2048, 2560), True))  # fmt: skip


def _photo(data: Path):
    from PIL import Image

    candidates = sorted((data / "testdata" / "faces" / "same_person").glob("*/*.jpg"))
    if not candidates:
        raise SystemExit(f"no photos under {data / 'testdata' / 'faces'}: pass --data or HEADSHOT_TEST_DATA")
    with Image.open(candidates[0]) as img:
        return img.convert("RGB")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("HEADSHOT_TEST_DATA", str(ROOT.parent / "shared")))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    from PIL import ImageOps

    from benchmarks.run import Emitter
    from headshot import credentials, disclosure

    work = Path(tempfile.mkdtemp(prefix="sign-bench-"))
    os.environ.setdefault("HEADSHOT_CACHE_DIR", str(work / "cache"))
    state = credentials.status(reload=True)
    if state.key is None:
        raise SystemExit(f"no signing key: {state.message}")
    print(state.message, file=sys.stderr)
    photo = _photo(Path(args.data))
    settings = json.dumps({"version": 1, "kind": "generate", "style": "corporate-grey", "seed": 1})
    meta = {"software": "Headshot Studio", "style": "corporate-grey", "seed": 1, "settings": settings}
    parent = disclosure.save_png(
        ImageOps.fit(photo, (1024, 1280)), work / "parent.png", meta, credentials.signer_for(style="corporate-grey")
    )
    emit = Emitter()
    results = []
    for name, size, with_parent in SIZES:
        image = ImageOps.fit(photo, size)
        kind, source = ("refine", parent) if with_parent else ("generate", None)
        started = time.perf_counter()
        data = disclosure.png_bytes(image, meta)
        encode_ms = (time.perf_counter() - started) * 1000
        times = []
        for attempt in range(args.repeats + 1):
            started = time.perf_counter()
            signed = credentials.sign_png(data, style="corporate-grey", kind=kind, parent=source)
            if attempt:  # the first call warms up (the library, the file cache)
                times.append((time.perf_counter() - started) * 1000)
        report = credentials.verify(signed)
        assert report["valid"] and report["ours"], report["message"]
        notes = (
            f"{size[0]}x{size[1]} PNG ({len(data) >> 10} KiB, +{(len(signed) - len(data)) >> 10} KiB of manifest), "
            f"median of {args.repeats}, p90 {sorted(times)[int(0.9 * (len(times) - 1))]:.1f} ms; "
            f"encoding the PNG itself took {encode_ms:.0f} ms"
            + ("; the source as parent ingredient" if with_parent else "")
        )
        added = statistics.median(times)
        results.append(emit(name, added, "ms", notes=notes))
    return results


if __name__ == "__main__":
    main()
