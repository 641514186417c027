"""Ahead-of-time compilation (``aoti.py``) on the CPU: capture, export with dynamic sizes, route calls.

``spaces.aoti_capture`` / ``aoti_compile`` need a CUDA build of torch, so a capture of our own and the
exported programs themselves stand in for them (``aoti.build_programs`` takes both as arguments).
"""

from __future__ import annotations

import contextlib
import math
import types
from unittest.mock import patch

import numpy as np
import pytest
import torch
from PIL import Image

from headshot.gpu import aoti, models, pipeline
from tests.test_models import own_models, pixels, request  # noqa: F401 (a fixture)


@contextlib.contextmanager
def _capture(module, call_method="forward"):
    """What ``spaces.aoti_capture`` does (its module needs a CUDA build of torch to import)."""

    class Captured(Exception):
        def __init__(self, *args, **kwargs):
            super().__init__()
            self.call = (args, kwargs)

    call = types.SimpleNamespace(args=(), kwargs={})

    def raise_(*args, **kwargs):
        raise Captured(*args, **kwargs)

    with patch.object(module, call_method, new=raise_):
        try:
            yield call
        except Captured as exc:
            call.args, call.kwargs = exc.call


def _face_mask(width: int, height: int):
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 8, 3 * width // 4, 7 * height // 8))
    return mask


@pytest.mark.slow
def test_aoti_routing_with_exported_programs(own_models):  # noqa: F811 (the fixture)
    """The AoTI path on the CPU: capture, export with dynamic sizes, route calls; exported programs
    stand in for the Inductor-compiled ones (``spaces.aoti_compile`` needs CUDA). The default render (face
    region on) and a render without the region (an all-ones mask) both take the UNet program, at any
    face-adapter strength."""
    torch.set_num_threads(1)
    eager = {
        size: pixels(pipeline.render_on(own_models, request(width=size, height=64))) for size in (64, 48)
    }
    weak_net = request(identitynet_strength=0.3)
    eager_weak_net = pixels(pipeline.render_on(own_models, weak_net))
    other_scale = request(identity_strength=0.5, identitynet_strength=0.3, face_mask=_face_mask(64, 64))
    eager_other_scale = pixels(pipeline.render_on(own_models, other_scale))
    face_region = request(face_mask=_face_mask(64, 64))  # the default render: face-region control on
    eager_face_region = pixels(pipeline.render_on(own_models, face_region))
    try:
        with torch.no_grad():
            programs = aoti.build_programs(own_models, _capture, lambda exported: exported.module())
        aoti.install(own_models, programs)
        unet_calls = own_models.pipe.unet.forward.calls
        net_calls = own_models.identitynet.forward.calls
        for size in (64, 48):  # the captured size and another one (dynamic height/width)
            images = pixels(pipeline.render_on(own_models, request(width=size, height=64)))
            assert np.abs(images - eager[size]).max() <= 2.0  # region off: an all-ones mask, the same image
        # The default render carries a face mask: the program was captured with one.
        assert np.abs(pixels(pipeline.render_on(own_models, face_region)) - eager_face_region).max() <= 2.0
        pipeline.render_on(own_models, request(width=48, height=64, face_mask=_face_mask(48, 64)))
        assert unet_calls["aoti"] > 0 and unet_calls["eager"] == 0
        assert net_calls["aoti"] > 0 and net_calls["eager"] == 0
        # The IdentityNet program is built at scale 1: another strength scales its residuals.
        assert np.abs(pixels(pipeline.render_on(own_models, weak_net)) - eager_weak_net).max() <= 2.0
        # Another face-adapter scale: folded into the UNet's mask input (the program's own scale is baked in).
        before = dict(unet_calls)
        assert np.abs(pixels(pipeline.render_on(own_models, other_scale)) - eager_other_scale).max() <= 2.0
        assert unet_calls["aoti"] > before["aoti"] and unet_calls["eager"] == before["eager"]
        assert not own_models.aoti_gate  # reset after every render
    finally:
        aoti.release(own_models)
    assert "forward" not in own_models.pipe.unet.__dict__ and not own_models.aoti
    assert math.isclose(models.AOTI_IP_SCALE, request().identity_strength)
