"""Ready to publish: the Space card agrees with the code, the licence table is there, downloads are verified.

The README's front matter is read as YAML and checked against ``config.hub_files()`` (the one list of Hub
files the full profile loads) and ``requirements.txt``; a pin changed on one side only fails here. The
face pack's download checks run on a stand-in zip built in a temp folder from the small face pack's files
(nothing is copied into the project), with the digest table monkeypatched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import logging
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from headshot import config, errors
from headshot.faces import analyzer, pack

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def front_matter() -> dict:
    text = README.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with a YAML front matter block"
    return yaml.safe_load(match.group(1))


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def pins() -> dict[str, str]:
    """``requirements.txt`` as {distribution name: pinned version} (extras dropped)."""
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        assert version, f"requirements.txt pins every package exactly: {line!r}"
        out[re.sub(r"\[.*\]", "", name).strip().lower()] = version.strip()
    return out


def card_problems(card: dict, hub: tuple[config.HubFiles, ...]) -> list[str]:
    """What differs between the card's ``models`` / ``preload_from_hub`` and the Hub files the code loads."""
    problems = []
    preload = {}
    for entry in card.get("preload_from_hub") or []:
        repo, files, revision = entry.split(" ")
        preload[repo] = (revision, tuple(files.split(",")))
    for item in hub:
        if item.repo_id not in preload:
            problems.append(f"{item.repo_id} is loaded but not preloaded")
            continue
        revision, files = preload.pop(item.repo_id)
        if revision != item.revision:
            problems.append(f"{item.repo_id}: preloaded at {revision}, loaded at {item.revision}")
        if set(files) != set(item.files):
            problems.append(f"{item.repo_id}: preloads {sorted(files)}, loads {sorted(item.files)}")
    problems += [f"{repo} is preloaded but never loaded" for repo in preload]
    if sorted(card.get("models") or []) != sorted(item.repo_id for item in hub):
        problems.append(f"models: {card.get('models')} is not {[item.repo_id for item in hub]}")
    return problems


# --------------------------------------------------------------------------------------
# The Space card
# --------------------------------------------------------------------------------------


def test_card_preloads_and_lists_exactly_what_the_code_loads():
    assert card_problems(front_matter(), config.hub_files()) == []
    assert front_matter()["preload_from_hub"] == [item.preload_entry() for item in config.hub_files()]


def test_instantid_and_the_checkpoint_are_preloaded_at_the_config_revisions():
    entries = {e.split(" ")[0]: e.split(" ") for e in front_matter()["preload_from_hub"]}
    for model in (config.SDXL_BASE, config.INSTANTID_CONTROLNET, config.INSTANTID_ADAPTER):
        _repo, _files, revision = entries[model.repo_id]
        assert revision == model.revision
        assert re.fullmatch(r"[0-9a-f]{40}", revision)  # a commit, never a branch
    assert "ip-adapter.bin" in entries["InstantX/InstantID"][1].split(",")
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in entries[config.SDXL_BASE.repo_id][1].split(",")


@pytest.mark.parametrize("name", ["SDXL_BASE", "INSTANTID_CONTROLNET", "FAST_LORA", "ANTELOPEV2"])
def test_a_revision_changed_in_config_alone_fails(monkeypatch, name):
    model = getattr(config, name)
    monkeypatch.setattr(config, name, dataclasses.replace(model, revision="0" * 40))
    problems = card_problems(front_matter(), config.hub_files())
    assert any(model.repo_id in p and "0" * 40 in p for p in problems), problems


def test_every_pinned_hub_model_is_in_the_one_list():
    """Every HubModel in config (the loading code's inputs) is covered by hub_files(), and nothing else."""
    hub = {(item.repo_id, item.revision): item for item in config.hub_files()}
    models = [v for v in vars(config).values() if isinstance(v, config.HubModel)]
    assert len(models) >= 6
    used = set()
    for model in models:
        key = (model.repo_id, model.revision)
        assert key in hub, f"{model.repo_id}@{model.revision} is loaded but not in config.hub_files()"
        used.add(key)
        files = hub[key].files
        if model.filename:
            assert model.filename in files
        if model.subfolder:
            assert any(f.startswith(f"{model.subfolder}/") for f in files)
    assert used == set(hub), "config.hub_files() lists a repository no pinned model loads"
    # The fp16 variant files the GPU path asks for, and the component folders diffusers reads.
    base = hub[(config.SDXL_BASE.repo_id, config.SDXL_BASE.revision)].files
    for component in ("text_encoder", "text_encoder_2", "unet"):
        assert f"{component}/config.json" in base
        assert any(f.startswith(f"{component}/") and ".fp16." in f for f in base)
    assert not any(f.startswith("vae/") for f in base)  # the fp16-fix VAE is passed in


# RealVisXL_V4.0 at the pinned commit, as the Hub's file pages list it ("Upload 23 files" + two more).
REALVISXL_V4_TREE = [
    ".gitattributes",
    "README.md",
    "RealVisXL_V4.0.safetensors",
    "model_index.json",
    "scheduler/scheduler_config.json",
    *(f"{te}/{f}" for te in ("text_encoder", "text_encoder_2")
      for f in ("config.json", "model.fp16.safetensors", "model.safetensors")),
    *(f"{tok}/{f}" for tok in ("tokenizer", "tokenizer_2")
      for f in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")),
    *(f"{m}/{f}" for m in ("unet", "vae")
      for f in ("config.json", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors")),
]


def test_diffusers_fetches_exactly_the_listed_base_files(tmp_path, monkeypatch):
    """diffusers' own download rules, run offline on the repository's file list with the arguments
    models._assemble passes on a GPU (variant fp16, controlnet and vae given), pick config.SDXL_BASE_FILES."""
    import fnmatch
    import json
    import types

    import diffusers.pipelines.pipeline_utils as pipeline_utils
    from diffusers import StableDiffusionXLControlNetPipeline

    components = {
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    index = tmp_path / "model_index.json"
    index.write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline", **components}))
    siblings = [types.SimpleNamespace(rfilename=f) for f in REALVISXL_V4_TREE]
    monkeypatch.setattr(pipeline_utils, "model_info", lambda *a, **k: types.SimpleNamespace(siblings=siblings))
    monkeypatch.setattr(pipeline_utils, "hf_hub_download", lambda *a, **k: str(index))
    fetched = []

    class Fetched(Exception):
        pass

    def snapshot_download(repo_id, allow_patterns=None, ignore_patterns=None, **kwargs):
        assert kwargs["revision"] == config.SDXL_BASE.revision
        fetched.extend(
            f
            for f in REALVISXL_V4_TREE
            if any(fnmatch.fnmatch(f, p) for p in allow_patterns)
            and not any(fnmatch.fnmatch(f, p) for p in ignore_patterns)
        )
        raise Fetched

    monkeypatch.setattr(pipeline_utils, "snapshot_download", snapshot_download)
    with pytest.raises(Fetched):
        StableDiffusionXLControlNetPipeline.download(
            config.SDXL_BASE.repo_id,
            revision=config.SDXL_BASE.revision,
            variant="fp16",
            controlnet=object(),
            vae=object(),
        )
    assert sorted(fetched) == sorted(config.SDXL_BASE_FILES)


def test_sdk_version_is_the_pinned_gradio():
    assert front_matter()["sdk"] == "gradio"
    assert str(front_matter()["sdk_version"]) == pins()["gradio"]


def test_python_version_is_one_every_pin_installs_on():
    python = Version(str(front_matter()["python_version"]))
    project = (ROOT / "pyproject.toml").read_text()
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', project).group(1)
    assert python in SpecifierSet(requires)
    checked = []
    for name, pinned in pins().items():
        meta = importlib.metadata.metadata(name)
        installed = Version(meta["Version"])
        if name == "torch" and installed.public != Version(pinned).public:
            continue  # a dev venv may test on another torch; .ci/check_space_build.py resolves the pinned one
        assert installed.public == Version(pinned).public, (
            f"{name} {installed} is installed, requirements.txt pins {pinned}: install the pins to check "
            "their Requires-Python"
        )
        spec = meta.get("Requires-Python")
        if spec:
            assert python in SpecifierSet(spec), f"{name}=={pinned} needs Python {spec}, not {python}"
            checked.append(name)
    assert "gradio" in checked and "diffusers" in checked


def test_licence_table_names_every_model_and_the_non_commercial_terms():
    section = readme_section("Licences")
    for item in config.hub_files():
        assert item.repo_id in section
        assert item.revision[:7] in section
    rows = {line.split("|")[1]: line for line in section.splitlines() if line.startswith("| ")}
    instantid = next(line for line in section.splitlines() if "InstantX/InstantID" in line)
    antelope = next(line for line in section.splitlines() if "MonsterMMORPG/tools" in line)
    assert "research" in instantid and "**no" in instantid
    assert "non-commercial" in antelope and "**no" in antelope
    assert any("insightface" in key for key in rows)  # code listed separately from the weights
    assert "[Licences](#licences)" in readme_section("Limits and privacy")


CARD_MAX_BYTES = 15_000  # a Space card a visitor reads in two minutes; the rest lives in docs/
MOVED_DOCUMENTS = (
    "docs/usage.md",
    "docs/deploy.md",
    "docs/privacy.md",
    "docs/licences.md",
    "docs/design.md",
    "docs/performance.md",
    "benchmarks/README.md",
)
LINK = re.compile(r"\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub and the Hub give a document's headings (lower case, punctuation dropped)."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def relative_links(path: Path) -> list[tuple[Path, str]]:
    """(file linked, anchor) for every relative link and image in a markdown file."""
    links = []
    for match in LINK.finditer(path.read_text(encoding="utf-8")):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        links.append(((path.parent / file).resolve() if file else path, anchor))
    return links


def test_the_card_is_short_and_links_the_moved_documents():
    size = len(README.read_bytes())
    assert size <= CARD_MAX_BYTES, f"README.md is {size} bytes: at most {CARD_MAX_BYTES}, the rest in docs/"
    linked = {target for target, _ in relative_links(README)}
    for document in MOVED_DOCUMENTS:
        assert (ROOT / document).resolve() in linked, f"README.md does not link {document}"


@pytest.mark.parametrize("document", ["README.md", *MOVED_DOCUMENTS])
def test_every_relative_link_points_to_a_file_and_a_heading(document):
    links = relative_links(ROOT / document)
    assert links, f"{document} links nothing"
    for target, anchor in links:
        assert target.is_file(), f"{document} links {target.relative_to(ROOT)}, which does not exist"
        if anchor and target.suffix == ".md":
            anchors = heading_anchors(target.read_text(encoding="utf-8"))
            assert anchor in anchors, f"{document} links #{anchor} of {target.name}: no such heading"


def test_privacy_tab_points_to_the_licences():
    from headshot.web import layout

    text = layout.LICENCES
    assert "README.md#licences" in text
    assert "InstantID" in text and "antelopev2" in text and "non-commercial" in text


# --------------------------------------------------------------------------------------
# Verified downloads
# --------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def stand_in(face_pack, tmp_path, monkeypatch):
    """A stand-in antelopev2.zip from the small pack's files and a digest table that matches it."""
    det = (face_pack / "det_2.5g.onnx").read_bytes()
    rec = (face_pack / "mobilefacenet_128d_dynbatch.onnx").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("antelopev2/scrfd_10g_bnkps.onnx", det)
        zf.writestr("antelopev2/glintr100.onnx", rec)
        zf.writestr("antelopev2/genderage.onnx", b"not needed")
    data = buf.getvalue()
    table = {
        "antelopev2.zip": sha256(data),
        "scrfd_10g_bnkps.onnx": sha256(det),
        "glintr100.onnx": sha256(rec),
    }
    monkeypatch.setattr(config, "ANTELOPEV2_SHA256", table)
    monkeypatch.setenv("HEADSHOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HEADSHOT_FACE_MODELS", raising=False)
    return data, table


def serve(monkeypatch, data: bytes) -> list[str]:
    """The Hub unreachable, the release URL serving ``data``; returns the URLs asked for."""
    import huggingface_hub

    asked = []

    def no_hub(*args, **kwargs):
        raise OSError("no Hub here")

    def urlopen(url, timeout=None):
        asked.append(url)
        return io.BytesIO(data)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setattr(pack.urllib.request, "urlopen", urlopen)
    return asked


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_a_matching_zip_is_unpacked_and_loads(stand_in, tmp_path, monkeypatch):
    data, _ = stand_in
    asked = serve(monkeypatch, data)
    pack_id, folder = pack.resolve_pack()
    assert asked == [config.ANTELOPEV2_URL]
    assert pack_id == "antelopev2"
    assert sorted(p.name for p in folder.iterdir()) == ["glintr100.onnx", "scrfd_10g_bnkps.onnx"]
    assert analyzer.FaceAnalyzer(folder).embedding_size == 128
    assert pack.resolve_pack() == (pack_id, folder)  # verified again from the cache, not downloaded
    assert len(asked) == 1


def test_a_zip_with_one_byte_changed_is_refused_and_deleted(stand_in, tmp_path, monkeypatch):
    data, table = stand_in
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF
    serve(monkeypatch, bytes(tampered))
    with pytest.raises(errors.FaceModelsUnavailable) as info:
        pack.resolve_pack()
    message = str(info.value)
    assert "antelopev2.zip" in message and table["antelopev2.zip"] in message
    assert info.value.code == "face_models_unavailable"
    assert leftovers(tmp_path) == []  # nothing of the download is kept
    assert not (tmp_path / "cache" / "face_packs" / "antelopev2").exists()


def test_the_real_zip_digest_refuses_a_stand_in(stand_in, tmp_path, monkeypatch):
    data, _ = stand_in
    monkeypatch.setattr(config, "ANTELOPEV2_SHA256", dict(REAL_DIGESTS))
    serve(monkeypatch, data)
    with pytest.raises(errors.FaceModelsUnavailable, match=REAL_DIGESTS["antelopev2.zip"]):
        pack.resolve_pack()
    assert leftovers(tmp_path) == []


def test_an_onnx_file_that_does_not_match_is_refused_and_nothing_is_kept(stand_in, tmp_path, monkeypatch):
    data, _ = stand_in
    monkeypatch.setitem(config.ANTELOPEV2_SHA256, "glintr100.onnx", "ab" * 32)
    serve(monkeypatch, data)
    with pytest.raises(errors.FaceModelsUnavailable) as info:
        pack.resolve_pack()
    assert "glintr100.onnx" in str(info.value) and "ab" * 32 in str(info.value)
    assert leftovers(tmp_path) == []
    assert not any((tmp_path / "cache" / "face_packs").iterdir())  # no half-unpacked temp folder either


def test_a_tampered_cache_is_downloaded_again(stand_in, tmp_path, monkeypatch):
    data, _ = stand_in
    asked = serve(monkeypatch, data)
    _, folder = pack.resolve_pack()
    (folder / "glintr100.onnx").write_bytes(b"swapped after the download")
    assert pack.resolve_pack() == ("antelopev2", folder)
    assert len(asked) == 2
    assert analyzer.FaceAnalyzer(folder).embedding_size == 128


def test_a_file_without_a_confirmed_digest_loads_with_a_warning(stand_in, tmp_path, monkeypatch, caplog):
    data, _ = stand_in
    monkeypatch.setitem(config.ANTELOPEV2_SHA256, "glintr100.onnx", None)
    serve(monkeypatch, data)
    with caplog.at_level(logging.WARNING, logger="headshot.faces.pack"):
        _, folder = pack.resolve_pack()
    assert (folder / "glintr100.onnx").is_file()
    assert any("glintr100.onnx" in r.getMessage() and "unverified" in r.getMessage() for r in caplog.records)


def test_the_preloaded_zip_in_the_default_hub_cache_is_used_first(stand_in, tmp_path, monkeypatch):
    data, _ = stand_in
    import huggingface_hub

    preloaded = tmp_path / "hf-home" / "antelopev2.zip"
    preloaded.parent.mkdir()
    preloaded.write_bytes(data)
    calls = []

    def hf_hub_download(**kwargs):
        calls.append(kwargs)
        return str(preloaded)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    _, folder = pack.resolve_pack()
    model = config.ANTELOPEV2
    hub = {"repo_id": model.repo_id, "filename": model.filename, "revision": model.revision}
    assert calls == [{**hub, "local_files_only": True}]
    assert (folder / "scrfd_10g_bnkps.onnx").is_file()


def test_a_local_pack_is_the_users_own_and_is_not_checked(face_pack, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a HEADSHOT_FACE_MODELS folder must not be checked against the digests")

    monkeypatch.setattr(pack, "_verify_download", refuse)
    monkeypatch.setenv("HEADSHOT_FACE_MODELS", str(face_pack))
    assert pack.resolve_pack() == ("faces-small", face_pack.resolve())


REAL_DIGESTS = {
    "antelopev2.zip": "8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5",
    "scrfd_10g_bnkps.onnx": "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
    "glintr100.onnx": "4ab1d6435d639628a6f3e5008dd4f929edf4c4124b1a7169e1048f9fef534cdf",
}


def test_the_digest_table_covers_the_pack_and_holds_the_confirmed_digests():
    table = config.ANTELOPEV2_SHA256
    assert set(table) == {config.ANTELOPEV2.filename, *pack.ANTELOPEV2_FILES}
    for name, digest in table.items():
        assert digest is None or re.fullmatch(r"[0-9a-f]{64}", digest), name
    # Confirmed from public sources (see config.py); a change here must be deliberate.
    assert table == REAL_DIGESTS
