"""Content Credentials (``credentials``): every handed-out PNG carries a signed C2PA manifest that
``c2pa-python``'s own reader accepts (in this process and in a separate one), a refine or a variation
names its source as the parent ingredient, a changed pixel fails validation, a re-saved copy has none,
and the signing key comes from the deployer's settings or the cache (a broken one never fails a render).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import c2pa
import numpy as np
import pytest
from PIL import Image

from headshot import credentials, disclosure, results, sessions, studio

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SECRET = "jane-doe-private-selfie"  # a file name that must never reach a manifest


@pytest.fixture
def signing(tmp_path, monkeypatch):
    """Signing with a self-made chain in a fresh cache folder, no deployer settings."""
    monkeypatch.setenv("HEADSHOT_CACHE_DIR", str(tmp_path / "cache"))
    for name in (credentials.ENV_CERT, credentials.ENV_KEY, credentials.ENV_SWITCH, credentials.ENV_TSA):
        monkeypatch.delenv(name, raising=False)
    yield credentials.status(reload=True)
    credentials._STATUS = None  # the next user loads the key of its own settings


def headshot_png(folder: Path, name: str = SECRET, colour=(90, 110, 130), **options) -> Path:
    """A PNG written as studio writes one: disclosure metadata and settings, then the signature."""
    rng = np.random.default_rng(sum(colour))
    pixels = np.clip(rng.normal(colour, 20, size=(80, 64, 3)), 0, 255).astype(np.uint8)
    settings = {"version": 1, "kind": options.get("kind", "generate"), "style": "corporate-grey", "seed": 7}
    meta = {"style": "corporate-grey", "seed": 7, "settings": json.dumps(settings)}
    return disclosure.save_png(
        Image.fromarray(pixels), folder / f"{name}.png", meta, credentials.signer_for(style="corporate-grey", **options)
    )


def read(path_or_bytes) -> tuple[str, dict, dict]:
    """(validation state, active manifest, the whole store) as c2pa-python's Reader gives them."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        return reader.get_validation_state(), reader.get_active_manifest(), json.loads(reader.json())


def actions(manifest: dict) -> list[dict]:
    return [a for s in manifest["assertions"] if s["label"].startswith("c2pa.actions") for a in s["data"]["actions"]]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def with_pixel_changed(data: bytes) -> bytes:
    """The same PNG, every chunk (text, XMP, the C2PA manifest) kept, with one pixel changed: a valid PNG."""
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()
    image[10, 10] = 255 - image[10, 10]
    raw = b"".join(b"\x00" + row.tobytes() for row in image)
    out, replaced = [data[:8]], False
    for kind, body in png_chunks(data):
        if kind == b"IDAT":
            if replaced:
                continue
            kind, body, replaced = b"IDAT", zlib.compress(raw), True
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(out)


# --------------------------------------------------------------------------------------
# Signing and reading back
# --------------------------------------------------------------------------------------


def test_a_signed_headshot_reads_back_with_the_library_reader(signing, tmp_path):
    assert signing.key is not None and signing.key.source == "self-made"
    path = headshot_png(tmp_path)
    state, manifest, _ = read(path)
    assert state in ("Valid", "Trusted")
    created = actions(manifest)[0]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == DST
    assert created["softwareAgent"]["name"] == disclosure.SOFTWARE
    assert created["softwareAgent"]["version"] == credentials.__version__
    assert created["parameters"]["style"] == "corporate-grey" and created["when"]
    assert manifest["claim_generator_info"][0]["name"] == disclosure.SOFTWARE
    # Nothing personal: not the file's name, no thumbnail (a copy of the picture), no ingredient.
    assert SECRET not in json.dumps(manifest) and "thumbnail" not in manifest
    assert not manifest.get("ingredients")
    # The PNG fields and IPTC are still there, and results reads the recipe of the signed file.
    meta = disclosure.read_png_metadata(path)
    assert meta["digital_source_type"] == DST and meta["headshot:style"] == "corporate-grey"
    assert "trainedAlgorithmicMedia" in meta["xmp"]
    assert results.read_settings(path)["seed"] == 7


def test_verify_says_valid_ours_when_and_the_action_chain(signing, tmp_path):
    report = credentials.verify(headshot_png(tmp_path))
    assert report["status"] == "valid" and report["valid"] and report["ours"] and report["ai_generated"]
    assert report["made"] and report["problems"] == []
    assert [a["action"] for step in report["history"] for a in step["actions"]] == ["c2pa.created"]
    assert "Valid Content Credentials" in report["message"] and "signed by this app" in report["message"]


def test_a_refine_names_its_source_as_parent_ingredient(signing, tmp_path):
    first = headshot_png(tmp_path, "first")
    _, first_manifest, _ = read(first)
    refined = headshot_png(tmp_path, "refined", colour=(120, 90, 60), kind="refine", parent=first)
    state, manifest, store = read(refined)
    assert state in ("Valid", "Trusted")
    parents = [i for i in manifest["ingredients"] if i["relationship"] == "parentOf"]
    assert len(parents) == 1 and parents[0]["active_manifest"] == first_manifest["label"]
    assert parents[0]["title"] == credentials.PARENT_TITLE  # not the source's file name
    assert first_manifest["label"] in store["manifests"]  # the parent's own credentials came along
    opened, edited = actions(manifest)
    assert opened["action"] == "c2pa.opened" and edited["action"] == "c2pa.edited"
    assert edited["digitalSourceType"] == DST
    report = credentials.verify(refined)
    chain = [a["action"] for step in report["history"] for a in step["actions"]]
    assert chain == ["c2pa.created", "c2pa.opened", "c2pa.edited"] and report["ours"]


def test_a_linkedin_crop_says_it_was_cropped(signing, tmp_path):
    _, manifest, _ = read(headshot_png(tmp_path, crop=True))
    assert [a["action"] for a in actions(manifest)] == ["c2pa.created", "c2pa.cropped"]


def test_a_changed_pixel_fails_validation(signing, tmp_path):
    tampered = with_pixel_changed(headshot_png(tmp_path).read_bytes())
    Image.open(io.BytesIO(tampered)).load()  # still a valid PNG
    state, _, _ = read(tampered)
    assert state == "Invalid"
    report = credentials.verify(tampered)
    assert report["status"] == "tampered" and not report["valid"] and not report["ours"]
    assert any("dataHash.mismatch" in p["code"] for p in report["problems"])
    assert "Tampered" in report["message"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_resaved_copy_has_no_credentials(signing, tmp_path, fmt):
    buffer = io.BytesIO()
    Image.open(headshot_png(tmp_path)).convert("RGB").save(buffer, fmt)
    report = credentials.verify(buffer.getvalue())
    assert report["status"] == "none" and not report["valid"] and report["history"] == []
    assert "No Content Credentials" in report["message"]


def test_not_an_image_is_plainly_unsupported(signing, tmp_path):
    report = credentials.verify(b"this is not an image at all")
    assert report["status"] == "unsupported" and not report["valid"]


def test_another_apps_key_is_valid_but_not_ours(signing, tmp_path, monkeypatch):
    path = headshot_png(tmp_path)
    monkeypatch.setenv("HEADSHOT_CACHE_DIR", str(tmp_path / "another-install"))
    credentials.status(reload=True)
    report = credentials.verify(path)
    assert report["status"] == "valid" and report["valid"] and not report["ours"]
    assert "not by this app's key" in report["message"]


# --------------------------------------------------------------------------------------
# The key: the cache, the deployer's, a broken one, off
# --------------------------------------------------------------------------------------


def test_the_self_made_chain_is_kept_in_the_cache(signing, tmp_path):
    folder = tmp_path / "cache" / credentials.FOLDER
    assert (folder / credentials.KEY_FILE).stat().st_mode & 0o077 == 0  # the key: this user only
    assert credentials.status(reload=True).key.serial == signing.key.serial  # reused, not made again


def test_a_deployer_key_from_the_environment_signs(signing, tmp_path, monkeypatch):
    _, chain, key = credentials.make_chain(tmp_path / "deployer")
    monkeypatch.setenv(credentials.ENV_CERT, chain.read_text())  # as a Space secret: the PEM text
    monkeypatch.setenv(credentials.ENV_KEY, str(key))  # or a path to the PEM file
    state = credentials.status(reload=True)
    assert state.key.source == "deployer" and not state.problem and "deployer" in state.message
    report = credentials.verify(headshot_png(tmp_path))
    assert report["ours"] and report["signed_by"] == credentials.ORGANISATION


@pytest.mark.parametrize(
    "cert, key, says",
    [
        ("garbage", "garbage", "not a PEM certificate"),
        ("chain", "other-key", "does not belong"),
        ("chain", None, "HEADSHOT_C2PA_KEY is not"),
        ("chain", "/nonexistent/key.pem", "neither PEM text nor a readable file"),
    ],
)
def test_a_broken_deployer_key_is_a_clear_message_and_never_a_failed_render(
    signing, tmp_path, monkeypatch, capsys, cert, key, says
):
    _, chain, _ = credentials.make_chain(tmp_path / "a")
    _, _, other = credentials.make_chain(tmp_path / "b")
    values = {"chain": chain.read_text(), "other-key": other.read_text(), "garbage": "-----BEGIN nonsense"}
    monkeypatch.setenv(credentials.ENV_CERT, values.get(cert, cert))
    if key:
        monkeypatch.setenv(credentials.ENV_KEY, values.get(key, key))
    credentials._STATUS = None
    state = credentials.startup_check()
    assert state.problem and says in state.message and "self-made" in state.message
    assert says in capsys.readouterr().err
    assert credentials.verify(headshot_png(tmp_path))["valid"]  # signed with the fallback


def test_signing_failures_and_off_hand_out_unsigned_pngs(signing, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the signer is down")

    monkeypatch.setattr(credentials, "_sign_with", broken)
    path = headshot_png(tmp_path, "unsigned")
    assert credentials.verify(path)["status"] == "none" and results.read_settings(path)["seed"] == 7
    monkeypatch.undo()
    monkeypatch.setenv("HEADSHOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(credentials.ENV_SWITCH, "off")
    assert credentials.status(reload=True).key is None
    assert credentials.verify(headshot_png(tmp_path, "off"))["status"] == "none"


# --------------------------------------------------------------------------------------
# Every image the app hands out, and a separate process reading them
# --------------------------------------------------------------------------------------

READER_SCRIPT = """
import io, json, sys, c2pa
out = {}
for path in sys.argv[1:]:
    with open(path, "rb") as f, c2pa.Reader("image/png", f) as reader:
        manifest = reader.get_active_manifest()
        acts = [a for s in manifest["assertions"] if s["label"].startswith("c2pa.actions") for a in s["data"]["actions"]]
        out[path] = {"state": reader.get_validation_state(), "label": manifest["label"],
                     "actions": [[a["action"], a.get("digitalSourceType")] for a in acts],
                     "parents": [i.get("active_manifest") for i in manifest.get("ingredients", [])
                                 if i.get("relationship") == "parentOf"]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def made(faces_dir, analyzer, tmp_path_factory):
    """A pack (two styles, LinkedIn crops) and its refine, variation and regenerate, and the favourites ZIP,
    made by studio and results on the tiny profile, signed with a self-made chain of this module."""
    pytest.importorskip("torch")
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSHOT_CACHE_DIR", str(tmp_path_factory.mktemp("c2pa-cache")))
    credentials.status(reload=True)
    session = sessions.Session()
    identity = studio.create_identity(
        sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))[:3], "instantid", analyzer=analyzer
    ).identity
    options = studio.GenerateOptions(seed=5, steps=2, linkedin=True)
    pack = studio.generate_pack(identity, ["corporate-grey", "tech-casual"], 1, options, analyzer=analyzer, session=session)
    first = pack.headshots[0]
    refined = results.refine(identity, first.path, session=session, analyzer=analyzer).headshots[0]
    like = results.more_like_this(identity, first.path, 1, session=session, analyzer=analyzer).headshots[0]
    again = results.regenerate(identity, first.path, session=session, analyzer=analyzer).headshots[0]
    results.toggle_favourite(session, refined.path)
    favourites = results.favourites_zip(session, analyzer)
    yield {"pack": pack, "first": first, "refined": refined, "like": like, "again": again, "favourites": favourites}
    session.delete()
    mp.undo()
    credentials._STATUS = None


@pytest.mark.usefixtures("one_torch_thread")
def test_every_handed_out_image_is_signed_and_read_by_a_separate_process(made, tmp_path):
    pack, first = made["pack"], made["first"]
    files = {
        "first": first.path,
        "crop": first.linkedin_path,
        "refined": made["refined"].path,
        "like": made["like"].path,
        "again": made["again"].path,
    }
    for zip_name, archive_path in (("pack", pack.zip_path), ("favourites", made["favourites"])):
        with zipfile.ZipFile(archive_path) as archive:
            for member in archive.namelist():
                if member.endswith(".png"):
                    target = tmp_path / zip_name / member
                    target.parent.mkdir(exist_ok=True)
                    target.write_bytes(archive.read(member))
                    files[f"{zip_name}:{member}"] = target
    assert sum(k.startswith("pack:") for k in files) == 4  # 2 headshots + 2 crops
    run = subprocess.run(
        [sys.executable, "-c", READER_SCRIPT, *map(str, files.values())], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    by_name = {name: seen[str(path)] for name, path in files.items()}
    for name, entry in by_name.items():
        assert entry["state"] in ("Valid", "Trusted"), (name, entry)
        assert [a[1] for a in entry["actions"] if a[1]] == [DST], (name, entry)
    assert by_name["first"]["actions"] == [["c2pa.created", DST]] and by_name["first"]["parents"] == []
    assert by_name["again"]["actions"] == [["c2pa.created", DST]]  # a new render from the recipe, no pixels
    assert by_name["crop"]["actions"] == [["c2pa.created", DST], ["c2pa.cropped", None]]
    for derived in ("refined", "like"):
        assert by_name[derived]["actions"] == [["c2pa.opened", None], ["c2pa.edited", DST]]
        assert by_name[derived]["parents"] == [by_name["first"]["label"]], derived
    zipped_first = next(v for k, v in by_name.items() if k.startswith("pack:") and k.endswith(first.path.name))
    assert zipped_first["label"] == by_name["first"]["label"]  # the ZIP holds the signed files as they are
    # results still reads the recipe of signed files (and refines them).
    assert results.read_settings(made["refined"].path)["kind"] == "refine"


def test_verify_endpoint_answers_for_signed_tampered_and_plain_files(signing, tmp_path):
    pytest.importorskip("gradio")
    from headshot.web import callbacks, endpoints

    signed = headshot_png(tmp_path)
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(with_pixel_changed(signed.read_bytes()))
    plain = tmp_path / "screenshot.jpg"
    Image.open(signed).convert("RGB").save(plain)
    state: dict = {}
    answers = {p.name: endpoints.verify(str(p), session=state) for p in (signed, tampered, plain)}
    assert answers[signed.name]["status"] == "valid" and answers[signed.name]["ours"]
    assert answers[tampered.name]["status"] == "tampered"
    assert answers[plain.name]["status"] == "none"
    assert "c2pa.created" in callbacks.verify_text(answers[signed.name])
    assert state["files"].owns(state["files"].adopt([str(signed)])[0])  # the tab's session holds its copy
    state["files"].delete()


# --------------------------------------------------------------------------------------
# Through the running app (slow tier): the API, /verify, and the MCP tool
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_headshot_made_through_the_api_and_its_refine_are_read_in_a_separate_process(app, faces_dir, tmp_path):
    import httpx

    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(app[0], verbose=False, download_files=False)
    obama = sorted((faces_dir / "same_person" / "obama").glob("*.jpg"))[:1]
    identity, _ = client.predict(
        selfies=[gradio_client.handle_file(str(p)) for p in obama], method="instantid", api_name="/create_identity"
    )
    gallery, _ = client.predict(identity=identity, style="corporate-grey", num_images=1, seed=3, steps=1,
                                api_name="/generate")  # fmt: skip
    first = tmp_path / "first.png"
    first.write_bytes(httpx.get(gallery[0]["image"]["url"], timeout=30).content)  # as a browser downloads it
    _, refined_file, _ = client.predict(
        identity=identity, image=gradio_client.handle_file(str(first)), api_name="/refine"
    )
    refined = tmp_path / "refined.png"
    refined.write_bytes(httpx.get(refined_file["url"], timeout=30).content)
    run = subprocess.run([sys.executable, "-c", READER_SCRIPT, str(first), str(refined)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen[str(first)]["state"] in ("Valid", "Trusted")
    assert seen[str(first)]["actions"] == [["c2pa.created", DST]]
    assert seen[str(refined)]["state"] in ("Valid", "Trusted")
    assert seen[str(refined)]["parents"] == [seen[str(first)]["label"]]

    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(with_pixel_changed(first.read_bytes()))
    screenshot = tmp_path / "screenshot.jpg"
    Image.open(first).convert("RGB").save(screenshot)
    answers = {
        p.name: client.predict(image=gradio_client.handle_file(str(p)), api_name="/verify")
        for p in (first, refined, tampered, screenshot)
    }
    assert answers["first.png"]["status"] == "valid" and answers["first.png"]["ours"], answers["first.png"]
    assert answers["refined.png"]["status"] == "valid" and len(answers["refined.png"]["history"]) == 2
    assert answers["tampered.png"]["status"] == "tampered" and not answers["tampered.png"]["valid"]
    assert answers["screenshot.jpg"]["status"] == "none"
    client.predict(api_name="/delete_my_data")


@pytest.mark.slow
def test_verify_is_an_mcp_tool_that_takes_a_data_url(app, tmp_path):
    import base64

    import httpx

    tools = {t["name"]: t for t in httpx.get(app[0] + "gradio_api/mcp/schema", timeout=30).json()}
    assert "verify" in tools and "image_link" in json.dumps(tools["verify"]["inputSchema"])
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(app[0], verbose=False, download_files=False)
    plain = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(plain, "PNG")
    link = "data:image/png;base64," + base64.b64encode(plain.getvalue()).decode()
    answer = client.predict(image=None, image_link=link, api_name="/verify")
    assert answer["status"] == "none", answer


def test_concurrent_renders_sign_side_by_side(signing, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda i: headshot_png(tmp_path, f"shot-{i}", colour=(i * 20, 90, 90)), range(8)))
    reports = [credentials.verify(p) for p in paths]
    assert all(r["status"] == "valid" and r["ours"] for r in reports)
    assert len({r["manifest"] for r in reports}) == 8


def _ca_chain():
    """A CA's root, its intermediate, and two customers' signer certificates with their keys."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    no = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)  # fmt: skip

    def issue(subject, issuer, public, signing_key, issuer_public, ca):
        name = lambda cn: x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example CA Inc"),  # noqa: E731
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip
        usage = {"key_cert_sign": True, "crl_sign": True} if ca else {"digital_signature": True}
        builder = (
            x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer)).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=300))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(**{**no, **usage}), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
        )  # fmt: skip
        if not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    root, inter, mine, theirs = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    inter_pem = issue("intermediate", "root", inter.public_key(), root, root.public_key(), True)
    pem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # noqa: E731
                                    serialization.NoEncryption()).decode()  # fmt: skip
    return [
        ((issue(cn, "intermediate", k.public_key(), inter, inter.public_key(), False) + inter_pem).decode(), pem(k))
        for cn, k in (("our signer", mine), ("another customer", theirs))
    ]


def test_a_ca_issued_chain_is_ours_and_another_customer_of_that_ca_is_not(signing, tmp_path, monkeypatch):
    (our_chain, our_key), (their_chain, their_key) = _ca_chain()
    monkeypatch.setenv(credentials.ENV_CERT, their_chain)
    monkeypatch.setenv(credentials.ENV_KEY, their_key)
    credentials.status(reload=True)
    theirs = headshot_png(tmp_path, "theirs")
    monkeypatch.setenv(credentials.ENV_CERT, our_chain.replace("\n", "\\n"))  # a one-line secret works too
    monkeypatch.setenv(credentials.ENV_KEY, our_key)
    assert credentials.status(reload=True).key.source == "deployer"
    ours = credentials.verify(headshot_png(tmp_path, "ours"))
    assert ours["status"] == "valid" and ours["ours"] and ours["signed_by"] == "Example CA Inc"
    other = credentials.verify(theirs)
    assert other["status"] == "valid" and not other["ours"]


def test_the_sign_benchmark_prints_one_figure_per_size(signing, shared_dir, capsys):
    from benchmarks import sign_bench

    figures = sign_bench.main(["--data", str(shared_dir), "--repeats", "1"])
    assert [f["name"] for f in figures] == [name for name, _, _ in sign_bench.SIZES]
    assert all(f["unit"] == "ms" and f["value"] > 0 for f in figures)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert printed == figures
