"""Every user-facing limit is one ``config`` constant: the UI's bounds, studio, the style file checks and the
render check agree on it (each refuses just above the maximum and accepts the maximum). Also: building the
demo or importing ``app`` starts nothing; ``ui.serve`` does."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from headshot import config, sessions, studio, styles
from headshot.errors import InvalidRequest, PromptRejected
from headshot.web import endpoints

try:  # the render check moves from pipeline to recipe (issue 10)
    from headshot.gpu import recipe as render_check
except ImportError:  # pragma: no cover - before the split
    from headshot.gpu import pipeline as render_check

SCALE = (config.MIN_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE)
STEP = {"int": 1, "float": 0.01}


# --------------------------------------------------------------------------------------
# The UI's bounds are the config constants
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    from headshot.web import ui

    return ui.build_demo()


def _component(demo, elem_id: str):
    found = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    assert len(found) == 1, elem_id
    return found[0]


def test_ui_bounds_are_the_config_limits(demo):

    expected = {  # elem_id: (minimum, maximum); a minimum below the real one is the API's "unset" sentinel
        "num_images": (config.MIN_IMAGES, config.MAX_IMAGES_PER_REQUEST),
        "per_style": (config.MIN_IMAGES, config.MAX_IMAGES_PER_REQUEST),
        "best_of": (1, config.MAX_BEST_OF),
        "lora_strength": SCALE,
        "steps": (endpoints.STYLE_STEPS, config.MAX_STEPS),
        "guidance": (endpoints.STYLE_VALUE, config.MAX_GUIDANCE),
        "identity_strength": (endpoints.STYLE_VALUE, config.MAX_ADAPTER_SCALE),
        "identitynet_strength": (endpoints.STYLE_VALUE, config.MAX_ADAPTER_SCALE),
        "seed": (endpoints.RANDOM_SEED, config.MAX_SEED),
        "identity_seed": (0, config.MAX_SEED),
        "lora_steps": (endpoints.DEFAULT_LORA_SETTING, config.MAX_LORA_STEPS),
        "lora_rank": (endpoints.DEFAULT_LORA_SETTING, config.MAX_LORA_RANK),
        "lora_lr": (endpoints.DEFAULT_LORA_SETTING, config.MAX_LORA_LEARNING_RATE),
    }
    for elem_id, (low, high) in expected.items():
        component = _component(demo, elem_id)
        assert (component.minimum, component.maximum) == (low, high), elem_id
    # The sentinels sit just below the real range, so they never hide a real value.
    assert endpoints.STYLE_STEPS < config.MIN_STEPS and endpoints.STYLE_VALUE < config.MIN_GUIDANCE
    assert endpoints.STYLE_VALUE < config.MIN_ADAPTER_SCALE and endpoints.RANDOM_SEED < 0
    assert endpoints.DEFAULT_LORA_SETTING < config.MIN_LORA_STEPS and endpoints.DEFAULT_LORA_SETTING < config.MIN_LORA_RANK


def test_prompt_boxes_use_the_prompt_limit(demo):
    from gradio import Textbox

    boxes = [b for b in demo.blocks.values() if isinstance(b, Textbox) and b.max_length is not None]
    assert boxes and {b.max_length for b in boxes} == {config.MAX_PROMPT_CHARS}


# --------------------------------------------------------------------------------------
# studio: each option refused just above its maximum, accepted at it
# --------------------------------------------------------------------------------------


def _identity(lora: bool = True):
    import torch

    embedding = np.zeros(512, np.float32)
    embedding[0] = 1.0
    keypoints = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.4, 0.7], [0.6, 0.7]], np.float32)
    state = {"unet.down.lora_A.weight": torch.zeros(2, 2)} if lora else None
    return SimpleNamespace(embedding=embedding, keypoints=keypoints, lora=state, lora_config=None)


OPTION_LIMITS = [  # GenerateOptions field, maximum, a value just above it, the word in the refusal
    ("steps", config.MAX_STEPS, config.MAX_STEPS + 1, "Steps"),
    ("guidance", config.MAX_GUIDANCE, config.MAX_GUIDANCE + 0.01, "Guidance"),
    ("identity_strength", config.MAX_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE + 0.01, "Identity strength"),
    ("identitynet_strength", config.MAX_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE + 0.01, "IdentityNet"),
    ("lora_strength", config.MAX_ADAPTER_SCALE, config.MAX_ADAPTER_SCALE + 0.01, "LoRA strength"),
    ("seed", config.MAX_SEED, config.MAX_SEED + 1, "seed"),
]


@pytest.mark.parametrize(("field", "top", "above", "word"), OPTION_LIMITS, ids=[o[0] for o in OPTION_LIMITS])
def test_studio_and_render_check_agree_on_each_limit(field, top, above, word):
    style = styles.get_style("corporate-grey")
    identity = _identity()

    def request_for(value):
        options = studio.GenerateOptions(**{field: value})
        seed = studio._resolve_seed(options)
        return studio.build_request(identity, style, options, seed, 1)

    request = request_for(top)  # the maximum is accepted by studio ...
    render_check.check_request(request)  # ... and by the render check
    assert (request.lora["scale"] if field == "lora_strength" else getattr(request, field)) == top
    with pytest.raises(InvalidRequest, match=word):
        request_for(above)
    # The render check refuses the same value on its own (the API and benchmarks reach it directly).
    if field == "lora_strength":
        bad = dataclasses.replace(request, lora={**request.lora, "scale": above})
    else:
        bad = dataclasses.replace(request, **{field: above})
    with pytest.raises(InvalidRequest, match=word):
        render_check.check_request(bad)


@pytest.mark.parametrize("field", ["steps", "guidance", "identity_strength", "identitynet_strength"])
def test_below_the_minimum_is_refused_too(field):
    low = {"steps": config.MIN_STEPS, "guidance": config.MIN_GUIDANCE}.get(field, SCALE[0])
    below = low - (1 if field == "steps" else 0.01)
    with pytest.raises(InvalidRequest):
        studio.build_request(
            _identity(), styles.get_style("corporate-grey"), studio.GenerateOptions(**{field: below}), 0, 1
        )


def test_a_negative_seed_is_refused_and_none_is_random():
    with pytest.raises(InvalidRequest, match="seed"):
        studio._resolve_seed(studio.GenerateOptions(seed=-1))
    assert 0 <= studio._resolve_seed(studio.GenerateOptions(seed=None)) <= config.MAX_SEED
    assert studio._resolve_seed(studio.GenerateOptions(seed=0)) == 0


class _NoFaces:
    """Stands in for the face analyzer: finds no face (the images here are blank)."""

    same_person_threshold = 0.5

    def embed_largest(self, image):
        return None

    def detect(self, image):
        return []


@pytest.fixture
def counted_renders(monkeypatch):
    from headshot.gpu import pipeline

    asked: list[int] = []

    def render_all(requests, progress=None):
        asked.extend(r.num_images for r in requests)
        return [[Image.new("RGB", (r.width, r.height))] * r.num_images for r in requests]

    monkeypatch.setattr(pipeline, "render_all", render_all)
    monkeypatch.setattr(studio, "device_summary", lambda: {})
    return asked


def test_image_counts_candidates_and_packs(counted_renders):
    identity, fake = _identity(lora=False), _NoFaces()
    top = config.MAX_IMAGES_PER_REQUEST
    studio.generate(identity, "corporate-grey", studio.GenerateOptions(num_images=top, seed=1), analyzer=fake)
    best = config.MAX_BEST_OF
    studio.generate(identity, "corporate-grey", studio.GenerateOptions(best_of=best, seed=1), analyzer=fake)
    per_pack = config.MAX_PACK_IMAGES // best  # images x candidates up to the render limit
    studio.generate(
        identity, "corporate-grey", studio.GenerateOptions(num_images=per_pack, best_of=best), analyzer=fake
    )
    assert counted_renders == [top, best, per_pack * best]
    counted_renders.clear()

    refused = [
        {"num_images": top + 1},
        {"num_images": 0},
        {"best_of": best + 1},
        {"best_of": 0},  # 0 is a value (refused), never "the default"
        {"num_images": per_pack + 1, "best_of": best},  # more renders than MAX_PACK_IMAGES
    ]
    for options in refused:
        with pytest.raises(InvalidRequest):
            studio.generate(identity, "corporate-grey", studio.GenerateOptions(**options), analyzer=fake)
    assert counted_renders == []


def test_pack_limits(counted_renders):
    identity, fake = _identity(lora=False), _NoFaces()
    ids = [s["id"] for s in styles.list_styles()]
    per_style = config.MAX_IMAGES_PER_REQUEST
    fits = config.MAX_PACK_IMAGES // per_style
    assert len(ids) > fits, "enough shipped styles to go over the pack limit"
    studio.generate_pack(identity, ids[:fits], per_style, studio.GenerateOptions(seed=2), analyzer=fake)
    assert sum(counted_renders) == fits * per_style <= config.MAX_PACK_IMAGES
    counted_renders.clear()
    for style_ids, count in ((ids[:1], per_style + 1), (ids[:1], 0), (ids[: fits + 1], per_style)):
        with pytest.raises(InvalidRequest):
            studio.generate_pack(identity, style_ids, count, analyzer=fake)
    assert counted_renders == []


def test_render_check_image_count_limit():
    request = studio.build_request(
        _identity(False),
        styles.get_style("corporate-grey"),
        studio.GenerateOptions(),
        0,
        config.MAX_PACK_IMAGES,
    )
    render_check.check_request(request)

    with pytest.raises(InvalidRequest, match="number of images"):
        render_check.check_request(dataclasses.replace(request, num_images=config.MAX_PACK_IMAGES + 1))


def test_prompt_limit():
    assert styles.check_prompt("a" * config.MAX_PROMPT_CHARS)
    with pytest.raises(PromptRejected, match=str(config.MAX_PROMPT_CHARS)):
        styles.check_prompt("a" * (config.MAX_PROMPT_CHARS + 1))
    style = styles.get_style("corporate-grey")
    styles.negative_prompt(style, "a" * config.MAX_PROMPT_CHARS)
    with pytest.raises(PromptRejected):
        styles.negative_prompt(style, "a" * (config.MAX_PROMPT_CHARS + 1))


# --------------------------------------------------------------------------------------
# LoRA settings
# --------------------------------------------------------------------------------------


def test_lora_settings_limits():
    studio.check_lora_settings(config.MAX_LORA_STEPS, config.MAX_LORA_RANK, config.MAX_LORA_LEARNING_RATE)
    studio.check_lora_settings(None, None, None)  # the defaults
    for bad, word in (
        ({"steps": config.MAX_LORA_STEPS + 1}, "steps"),
        ({"steps": 0}, "steps"),
        ({"rank": config.MAX_LORA_RANK + 1}, "rank"),
        ({"rank": 0}, "rank"),
        ({"learning_rate": config.MAX_LORA_LEARNING_RATE * 1.01}, "learning rate"),
        ({"learning_rate": 0.0}, "learning rate"),
    ):
        with pytest.raises(InvalidRequest, match=word):
            studio.check_lora_settings(**bad)


def test_lora_settings_are_refused_before_any_work():
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("nothing may run before the settings are checked")

    with pytest.raises(InvalidRequest, match="rank"):
        studio.create_identity([], "lora", lora_rank=config.MAX_LORA_RANK + 1, analyzer=Untouchable())


def test_lora_training_check_agrees_with_config():
    lora = pytest.importorskip("headshot.gpu.lora")
    settings = lora.LoraSettings.for_profile(seed=0)
    settings.steps, settings.rank = config.MAX_LORA_STEPS, config.MAX_LORA_RANK
    settings.learning_rate = config.MAX_LORA_LEARNING_RATE
    settings.check()
    for field, value in (
        ("steps", config.MAX_LORA_STEPS + 1),
        ("rank", config.MAX_LORA_RANK + 1),
        ("learning_rate", config.MAX_LORA_LEARNING_RATE * 1.01),
    ):
        bad = lora.LoraSettings.for_profile(seed=0)
        setattr(bad, field, value)
        with pytest.raises(InvalidRequest):
            bad.check()


# --------------------------------------------------------------------------------------
# Building starts nothing; serve() starts the work
# --------------------------------------------------------------------------------------


def _forbid_start(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("building the demo must not start anything")

    monkeypatch.setattr(sessions, "start_sweeper", fail)
    monkeypatch.setattr(studio, "start_preload", fail)


def test_build_demo_and_import_app_start_nothing(monkeypatch):
    from headshot.web import ui

    _forbid_start(monkeypatch)
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")  # where the preload would run
    before = set(threading.enumerate())
    ui.build_demo()
    sys.modules.pop("app", None)
    app = importlib.import_module("app")
    started = [t.name for t in threading.enumerate() if t not in before]
    assert started == []
    assert app.demo._queue.max_size == ui.queue_max_size()  # the queue is configured (settings only)
    assert app.demo.api_open is False


def test_serve_starts_preload_sweeper_and_launches(monkeypatch):
    from headshot.web import ui

    calls: list[str] = []
    monkeypatch.setattr(sessions, "start_sweeper", lambda: calls.append("sweeper"))
    monkeypatch.setattr(studio, "start_preload", lambda: calls.append("preload"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    launched = {}
    demo = SimpleNamespace(launch=lambda **kwargs: launched.update(kwargs))
    ui.serve(demo, server_port=1234)
    assert calls == ["preload", "sweeper"]
    assert launched == {**ui.launch_kwargs(), "server_port": 1234}


# --------------------------------------------------------------------------------------
# The Gradio API's sentinels become None at the ui boundary only
# --------------------------------------------------------------------------------------


def test_api_sentinels_become_none_and_zero_stays_zero():

    common = {"prompt": "", "negative_prompt": "", "fast": False, "best_of": 1, "lora_strength": 1.0, "ai_mark": False}
    unset = endpoints._options(**common, linkedin=False, seed=-1)  # the API's defaults
    assert (unset.seed, unset.steps, unset.guidance, unset.aspect) == (None, None, None, None)
    assert (unset.identity_strength, unset.identitynet_strength) == (None, None)
    zero = endpoints._options(
        **{**common, "lora_strength": 0.0},
        linkedin=False,
        seed=0,
        guidance=0,
        identity_strength=0,
        identitynet_strength=0,
    )
    assert (zero.seed, zero.guidance, zero.identity_strength, zero.identitynet_strength) == (0, 0, 0, 0)
    assert zero.lora_strength == 0.0
    steps = endpoints._options(**common, linkedin=False, seed=-1, steps=config.MAX_STEPS)
    assert steps.steps == config.MAX_STEPS
