"""The whole flow through Gradio's API: selfies -> report -> identity -> headshots -> pack ZIP.

    python app.py &                                   # or a Space: Client("user/headshot-studio")
    python examples/api_flow.py http://127.0.0.1:7860 examples/astronaut.jpg examples/astronaut-mirrored.jpg

Calling the API asserts that the photos are of you, or that the person agreed.
"""

from __future__ import annotations

import json
import sys

from gradio_client import Client, handle_file


def main(url: str, photos: list[str]) -> None:
    client = Client(url, verbose=False)

    # The style presets.
    styles = client.predict(api_name="/list_styles")
    print("styles:", ", ".join(s["id"] for s in styles))

    # 1. Check the selfies: a report per photo.
    report = client.predict(selfies=[handle_file(p) for p in photos], api_name="/validate_selfies")
    for selfie in report["selfies"]:
        codes = [i["code"] for i in selfie["issues"]]
        print(f"{selfie['file']}: {'accepted' if selfie['accepted'] else 'refused'} {codes}")
    if not report["ready"]:
        sys.exit("no usable selfie: see the messages above")

    # 2. Identity (InstantID: seconds). method="lora" trains a quick LoRA instead (3+ selfies).
    identity_file, summary = client.predict(
        selfies=[handle_file(p) for p in photos], method="instantid", api_name="/create_identity"
    )
    print("identity:", identity_file, json.dumps(summary))

    # 3. Headshots of one style, best likeness first.
    gallery, info = client.predict(
        identity=handle_file(identity_file),
        style=styles[0]["id"],
        prompt="navy blazer",
        num_images=2,
        seed=42,
        api_name="/generate",
    )
    for item, image in zip(info["images"], gallery, strict=True):
        print(f"seed {item['seed']} likeness {item['likeness']}: {image['image']}")

    # 4. A pack: several styles in one run, as a ZIP of PNGs.
    zip_path, _, pack_info = client.predict(
        identity=handle_file(identity_file),
        styles=[s["id"] for s in styles[:3]],
        images_per_style=1,
        seed=7,
        api_name="/generate_pack",
    )
    print("pack:", zip_path, f"{len(pack_info['images'])} images")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
