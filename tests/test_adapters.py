"""headshot.gpu.adapters, training side: the before-render LoRA check and the training adapter's lifecycle."""

from __future__ import annotations

import pytest
import torch

from headshot.errors import IdentityFileError
from headshot.faces import identity
from headshot.gpu import adapters

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DConditionModel

    from headshot.gpu.tiny import ensure_tiny_models

    return UNet2DConditionModel.from_pretrained(ensure_tiny_models(128)["sdxl"], subfolder="unet")


@pytest.fixture(scope="module")
def good_lora(unet) -> dict[str, torch.Tensor]:
    from headshot.gpu.tiny import random_unet_lora

    return random_unet_lora(unet, rank=4, seed=1)


def lora_config(rank: int = 4, targets=identity.LORA_TARGET_MODULES):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights="gaussian")


# --------------------------------------------------------------------------------------
# The before-render check: identity.check_lora_state_dict with the UNet's layer shapes
# --------------------------------------------------------------------------------------


def test_target_shapes_cover_the_attention_projections(unet, good_lora):
    shapes = adapters.lora_target_shapes(unet)
    assert {k.removeprefix("unet.").rsplit(".lora_", 1)[0] for k in good_lora} == set(shapes)
    summary = adapters.check_lora_for_unet(good_lora, unet)
    assert summary == {"rank": 4, "layers": len(good_lora) // 2}


def _first(sd: dict, suffix: str) -> str:
    return next(k for k in sd if k.endswith(suffix))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("missing_partner", "without its partner"),
        ("rank_mismatch", "different ranks"),
        ("rank_too_high", "outside 1-128"),
        ("shape_mismatch", "does not fit the base model"),
        ("unknown_module", "the base model does not have"),
        ("not_attention", "not on an attention projection"),
        ("foreign_key", "unexpected tensor"),
        ("kohya", "kohya name"),
        ("alpha", "separate alpha tensor"),
        ("integer", "of type torch.int64"),
        ("vector", "not a matrix"),
        ("empty", "has no weights"),
        ("text_encoder", "text-encoder weights"),
    ],
)
def test_before_render_check_refuses_foreign_or_damaged_tensors(unet, good_lora, damage, message):
    sd = dict(good_lora)
    key_a = _first(sd, "attn1.to_q.lora_A.weight")
    key_b = key_a.replace("lora_A", "lora_B")
    if damage == "nan":
        sd[key_a] = sd[key_a].clone()
        sd[key_a][0, 0] = float("nan")
    elif damage == "inf":
        sd[key_b] = sd[key_b].clone()
        sd[key_b][-1, -1] = float("inf")
    elif damage == "missing_partner":
        del sd[key_b]
    elif damage == "rank_mismatch":
        sd[key_b] = torch.zeros(sd[key_b].shape[0], 5)
    elif damage == "rank_too_high":
        sd[key_a] = torch.zeros(129, sd[key_a].shape[1])
        sd[key_b] = torch.zeros(sd[key_b].shape[0], 129)
    elif damage == "shape_mismatch":  # a LoRA for wider layers: another base model
        sd[key_a] = torch.zeros(4, 640)
        sd[key_b] = torch.zeros(640, 4)
    elif damage == "unknown_module":
        sd[key_a.replace("down_blocks.1", "down_blocks.7")] = sd.pop(key_a)
        sd[key_b.replace("down_blocks.1", "down_blocks.7")] = sd.pop(key_b)
    elif damage == "not_attention":
        sd["unet.down_blocks.1.attentions.0.proj_in.lora_A.weight"] = torch.zeros(4, 64)
        sd["unet.down_blocks.1.attentions.0.proj_in.lora_B.weight"] = torch.zeros(64, 4)
    elif damage == "foreign_key":
        sd["unet.conv_in.weight"] = torch.zeros(3, 3)
    elif damage == "kohya":
        sd["lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight"] = torch.zeros(4, 64)
    elif damage == "alpha":
        sd[key_a.replace("lora_A.weight", "alpha")] = torch.tensor(4.0)
    elif damage == "integer":
        sd[key_a] = torch.zeros(sd[key_a].shape, dtype=torch.int64)
    elif damage == "vector":
        sd[key_a] = sd[key_a][0]
    elif damage == "empty":
        sd = {}
    elif damage == "text_encoder":
        sd["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 32)
        sd["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = torch.zeros(32, 4)
    with pytest.raises(IdentityFileError, match=message) as info:
        adapters.check_lora_for_unet(sd, unet)
    assert info.value.code == "invalid_identity"
    assert str(info.value).startswith("This identity file's LoRA ")


# --------------------------------------------------------------------------------------
# The training adapter: attached for the block, gone afterwards
# --------------------------------------------------------------------------------------


def test_training_adapter_trains_only_its_own_fp32_weights_and_goes_away(unet):
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    grads = {k: p.requires_grad for k, p in unet.named_parameters()}
    with adapters.training_adapter(unet, lora_config(), "trainee", seed=3) as params:
        assert params and all(".lora_A." in k or ".lora_B." in k for k, _ in params)
        assert all(p.dtype == torch.float32 and p.requires_grad for _, p in params)
        trainable = [p for p in unet.parameters() if p.requires_grad]
        assert len(trainable) == len(params)
        assert adapters.has_adapters(unet)
    assert not adapters.has_adapters(unet) and not hasattr(unet, "peft_config")
    assert unet.state_dict().keys() == before.keys()
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in before.items())
    assert {k: p.requires_grad for k, p in unet.named_parameters()} == grads


def test_training_adapter_seed_decides_the_initialisation(unet):
    def first_a(seed):
        with adapters.training_adapter(unet, lora_config(), "trainee", seed=seed) as params:
            return params[0][1].detach().clone()

    assert torch.equal(first_a(1), first_a(1)) and not torch.equal(first_a(1), first_a(2))


def test_training_adapter_next_to_another_adapter_leaves_it_as_it_was(unet):
    unet.add_adapter(lora_config(2, ["attn1.to_q"]), "other")
    try:
        unet.disable_adapters()
        types = [(name, type(m).__name__) for name, m in unet.named_modules()]
        with adapters.training_adapter(unet, lora_config(), "trainee"):
            assert unet.active_adapters() == ["trainee"]
            with pytest.raises(RuntimeError, match="already loaded"):
                with adapters.training_adapter(unet, lora_config(), "trainee"):
                    pass
        assert [(name, type(m).__name__) for name, m in unet.named_modules()] == types
        assert unet.active_adapters() == ["other"] and set(unet.peft_config) == {"other"}
        layers = [m for m in unet.modules() if hasattr(m, "base_layer")]
        assert layers and all(m.disable_adapters for m in layers)
    finally:
        unet.unload_lora()


def test_training_adapter_is_removed_when_training_fails(unet):
    with pytest.raises(ValueError, match="boom"):
        with adapters.training_adapter(unet, lora_config(), "trainee"):
            unet.train()
            raise ValueError("boom")
    assert not hasattr(unet, "peft_config") and not unet.training
