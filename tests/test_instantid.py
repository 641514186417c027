"""InstantID glue and the tiny repositories: real diffusers loading of tiny random weights, on the CPU."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from headshot.gpu import instantid, tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

D = 128  # the faces-small pack's embedding size


@pytest.fixture(scope="module")
def repos() -> dict:
    return tiny.ensure_tiny_models(D)


@pytest.fixture(scope="module")
def pipe(repos):
    """The tiny SDXL ControlNet pipeline with InstantID's adapter, loaded like the full profile."""
    from diffusers import StableDiffusionXLControlNetPipeline

    net = instantid.load_identitynet(repos["instantid"])
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        repos["sdxl"], controlnet=net, add_watermarker=False
    )
    instantid.load_face_adapter(pipe, repos["instantid"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(D).astype(np.float32)
    return v / np.linalg.norm(v)


# --------------------------------------------------------------------------------------
# The tiny repositories
# --------------------------------------------------------------------------------------


def test_tiny_repositories_have_the_hub_layouts(repos):
    sdxl, inst = repos["sdxl"], repos["instantid"]
    index = json.loads((sdxl / "model_index.json").read_text())
    for part in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert part in index and (sdxl / part).is_dir(), part
    assert index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    assert (inst / "ControlNetModel" / "config.json").is_file()
    assert list((inst / "ControlNetModel").glob("*.safetensors"))
    adapter = torch.load(inst / "ip-adapter.bin", weights_only=True)
    assert set(adapter) == {"image_proj", "ip_adapter"}
    proj = adapter["image_proj"]
    assert proj["proj_in.weight"].shape[1] == D
    assert proj["latents"].shape[1] == tiny.NUM_FACE_TOKENS
    assert (
        all(f"layers.{i}.0.to_kv.weight" in proj for i in range(4)) and "layers.4.0.to_q.weight" not in proj
    )
    ids = sorted({int(k.split(".")[0]) for k in adapter["ip_adapter"]})
    assert ids == list(range(1, 2 * len(ids), 2))  # cross-attention processors: odd numbers
    assert (repos["fast_lora"] / "pytorch_lora_weights.safetensors").is_file()


def test_tiny_build_is_cached_per_spec(repos):
    assert tiny.ensure_tiny_models(D) == repos
    assert tiny.spec_hash(tiny.build_spec(D)) != tiny.spec_hash(tiny.build_spec(512))


def test_tiny_build_is_atomic_under_a_race(tmp_path, monkeypatch):
    """Racing builders all get the one complete folder; no temporary folder is left behind."""
    builds = []

    def slow_build(spec, out):
        builds.append(out)
        (out / "sdxl").mkdir()
        time.sleep(0.2)
        (out / "sdxl" / "model_index.json").write_text("{}")

    monkeypatch.setattr(tiny, "_build", slow_build)
    results, failures = [], []

    def worker():
        try:
            results.append(tiny.ensure_tiny_models(D, root=tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert len({r["sdxl"] for r in results}) == 1 and len(builds) >= 1
    assert [p.name for p in tmp_path.iterdir()] == [results[0]["sdxl"].parent.name]
    assert (results[0]["sdxl"] / "model_index.json").is_file()
    assert (results[0]["sdxl"].parent / "spec.json").is_file()


def test_random_unet_lora_matches_the_unet(pipe):
    lora = tiny.random_unet_lora(pipe.unet, rank=2, seed=1)
    assert lora and all(k.startswith("unet.") for k in lora)
    modules = dict(pipe.unet.named_modules())
    for key, value in lora.items():
        path = key.removeprefix("unet.").rsplit(".lora_", 1)[0]
        layer = modules[path]
        if key.endswith("lora_A.weight"):
            assert value.shape == (2, layer.in_features)
        else:
            assert value.shape == (layer.out_features, 2)
    assert not any("encoder_hid_proj" in k for k in lora)
    assert torch.equal(
        lora[next(iter(lora))], tiny.random_unet_lora(pipe.unet, rank=2, seed=1)[next(iter(lora))]
    )


# --------------------------------------------------------------------------------------
# Loading with diffusers' public API
# --------------------------------------------------------------------------------------


def test_face_adapter_loads_as_ip_adapter_plus(pipe):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    layer = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(layer, IPAdapterPlusImageProjection)
    assert instantid.adapter_embedding_size(pipe.unet) == D
    cross = [n for n in pipe.unet.attn_processors if n.endswith("attn2.processor")]
    ip = [p for p in pipe.unet.attn_processors.values() if isinstance(p, IPAdapterAttnProcessor2_0)]
    assert len(ip) == len(cross) > 0
    assert ip[0].num_tokens == [tiny.NUM_FACE_TOKENS]


def test_face_image_embeds_shapes_and_negative_half():
    emb = unit(0)
    cfg = instantid.face_image_embeds(
        emb, do_classifier_free_guidance=True, device="cpu", dtype=torch.float32
    )
    plain = instantid.face_image_embeds(
        emb, do_classifier_free_guidance=False, device="cpu", dtype=torch.float32
    )
    assert cfg.shape == (2, 1, 1, D) and plain.shape == (1, 1, 1, D)
    assert torch.count_nonzero(cfg[0]) == 0  # InstantID's negative: a zero face embedding
    assert torch.equal(cfg[1], plain[0])
    # the stored unit vector is scaled to the raw embedding's length, sqrt(D), keeping its direction
    assert plain.norm().item() == pytest.approx(D**0.5, rel=1e-5)
    assert torch.allclose(plain.flatten() / plain.norm(), torch.from_numpy(emb), atol=1e-6)
    half = instantid.face_image_embeds(
        emb, do_classifier_free_guidance=False, device="cpu", dtype=torch.float16
    )
    assert half.dtype == torch.float16


@pytest.mark.parametrize("bad", [np.zeros(D, np.float32), np.full(D, np.nan, np.float32), np.zeros(0)])
def test_face_image_embeds_refuses_bad_embeddings(bad):
    with pytest.raises(ValueError):
        instantid.face_image_embeds(bad, do_classifier_free_guidance=True, device="cpu", dtype=torch.float32)


def test_face_tokens_project_each_face(pipe):
    def tokens(emb):
        e = instantid.face_image_embeds(
            emb, do_classifier_free_guidance=True, device="cpu", dtype=torch.float32
        )
        with torch.no_grad():
            return instantid.face_tokens(pipe.unet, e)

    a, b = tokens(unit(1)), tokens(unit(2))
    assert a.shape == (2, tiny.NUM_FACE_TOKENS, pipe.unet.config.cross_attention_dim)
    assert torch.isfinite(a).all()
    assert torch.equal(a[0], b[0])  # the negative (zero face) tokens do not depend on the person
    assert not torch.allclose(a[1], b[1])


# --------------------------------------------------------------------------------------
# The IdentityNet sees the face tokens, not the text
# --------------------------------------------------------------------------------------


def _controlnet_inputs(pipe, batch: int):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, 4, 8, 8, generator=g)
    cond = torch.rand(batch, 3, 16, 16, generator=g)
    text = torch.randn(batch, 77, pipe.unet.config.cross_attention_dim, generator=g)
    proj_dim = pipe.text_encoder_2.config.projection_dim
    added = {"text_embeds": torch.randn(batch, proj_dim, generator=g), "time_ids": torch.rand(batch, 6)}
    return sample, cond, text, added


def _residuals(net, sample, cond, text, added, guess_mode=False):
    with torch.no_grad():
        down, mid = net(
            sample,
            torch.tensor(500),
            encoder_hidden_states=text,
            controlnet_cond=[cond],
            conditioning_scale=[1.0],
            added_cond_kwargs=added,
            guess_mode=guess_mode,
            return_dict=False,
        )
    return torch.cat([d.flatten() for d in down] + [mid.flatten()])


def test_identitynet_uses_face_tokens_and_ignores_text(pipe):
    embeds = instantid.face_image_embeds(
        unit(1), do_classifier_free_guidance=True, device="cpu", dtype=torch.float32
    )
    other = instantid.face_image_embeds(
        unit(2), do_classifier_free_guidance=True, device="cpu", dtype=torch.float32
    )
    net = instantid.identitynet_for_request(pipe.controlnet, pipe.unet, embeds)
    net_other = instantid.identitynet_for_request(pipe.controlnet, pipe.unet, other)
    sample, cond, text, added = _controlnet_inputs(pipe, 2)
    base = _residuals(net, sample, cond, text, added)
    assert torch.equal(base, _residuals(net, sample, cond, torch.randn_like(text), added))  # text ignored
    assert not torch.allclose(base, _residuals(net_other, sample, cond, text, added))  # the face matters
    # exactly what the IdentityNet computes when handed the face tokens directly
    with torch.no_grad():
        down, mid = pipe.controlnet(
            sample,
            torch.tensor(500),
            encoder_hidden_states=net.face_tokens,
            controlnet_cond=cond,
            conditioning_scale=1.0,
            added_cond_kwargs=added,
            return_dict=False,
        )
    assert torch.equal(base, torch.cat([d.flatten() for d in down] + [mid.flatten()]))


def test_identitynet_conditional_half_in_guess_mode(pipe):
    embeds = instantid.face_image_embeds(
        unit(1), do_classifier_free_guidance=True, device="cpu", dtype=torch.float32
    )
    net = instantid.identitynet_for_request(pipe.controlnet, pipe.unet, embeds)
    assert torch.equal(net.tokens_for_batch(2), net.face_tokens)
    assert torch.equal(net.tokens_for_batch(1), net.face_tokens[1:])  # the face, not the zero negative
    with pytest.raises(ValueError):
        net.tokens_for_batch(3)


@pytest.mark.parametrize(
    ("guidance", "guess_mode", "batch"), [(5.0, False, 2), (1.0, False, 1), (5.0, True, 1)]
)
def test_pipeline_feeds_face_tokens_to_the_identitynet(pipe, guidance, guess_mode, batch):
    """Through diffusers' own denoising loop: CFG, no CFG, and guess mode (conditional batch only)."""
    from diffusers import StableDiffusionXLControlNetPipeline

    do_cfg = guidance > 1
    embeds = instantid.face_image_embeds(
        unit(3), do_classifier_free_guidance=do_cfg, device="cpu", dtype=torch.float32
    )
    net = instantid.identitynet_for_request(pipe.controlnet, pipe.unet, embeds)
    seen: list[torch.Tensor] = []
    hook = pipe.controlnet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"]), with_kwargs=True
    )
    try:
        run = StableDiffusionXLControlNetPipeline(
            **{**pipe.components, "controlnet": net}, add_watermarker=False
        )
        run.set_progress_bar_config(disable=True)
        out = run(
            prompt="a photo",
            image=[Image.new("RGB", (32, 32), (40, 90, 200))],
            width=32,
            height=32,
            num_inference_steps=2,
            guidance_scale=guidance,
            guess_mode=guess_mode,
            controlnet_conditioning_scale=[0.8],
            ip_adapter_image_embeds=[embeds],
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        )
    finally:
        hook.remove()
    assert len(seen) == 2
    expected = net.face_tokens if batch == net.face_tokens.shape[0] else net.face_tokens[1:]
    for tokens in seen:
        assert torch.equal(tokens, expected)
    assert torch.isfinite(out.images).all()
