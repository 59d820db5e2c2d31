"""The CUDA path (skipped where torch sees no CUDA device; tools/gpu_check.sh runs them on a GPU):
the prepared sampler mirrors its diffusers scheduler bit for bit on CUDA, a recorded session
regenerates bit-identically there, and the shipped model loads in fp16 and plays.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

# imported after the skip mark: the module is collected (and skipped) even where they would be slow
from worldgame.commands.play import play
from worldgame.engine.model_engine import ModelEngine
from worldgame.engine.session import regenerate
from worldgame.models import WorldModel
from worldgame.models.sampler import Sampler
from worldgame.models.schedulers import play_scheduler
from worldgame.models.world_model import scheduler_sample


@pytest.mark.parametrize("sampler", ["lcm", "ddim", "dpmsolver"])
@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_prepared_sampler_is_bit_identical_to_its_scheduler_on_cuda(tiny_checkpoint, sampler, half):
    model = WorldModel.from_pretrained(tiny_checkpoint, device="cuda", half=half)
    prepared = Sampler(model, sampler)
    for batch in (1, 3):
        g = torch.Generator(device="cuda").manual_seed(5)
        context = torch.randn(batch, 2, 4, 16, 16, device="cuda", generator=g).to(model.dtype)
        actions = torch.randint(0, 6, (batch, 2), device="cuda", generator=g)
        for steps in (1, 2, 4, 8):
            g_ref, g_new = torch.Generator(device="cuda").manual_seed(7), torch.Generator(device="cuda").manual_seed(7)
            with torch.inference_mode():
                ref = scheduler_sample(model.denoiser, play_scheduler(sampler, None, model.prediction_type), context,
                                       actions, steps, g_ref, model.context_noise)
            new = prepared.step(context, actions, steps, g_new)
            assert new.device.type == "cuda" and torch.equal(new, ref), (sampler, batch, steps)
            assert torch.equal(g_new.get_state(), g_ref.get_state())


def test_session_recorded_on_cuda_regenerates_bit_identically(tiny_checkpoint, play_config, tmp_path):
    cfg = play_config(f"checkpoint={tiny_checkpoint}", "device=cuda", "fps=0", "seed=3", "record=true",
                      f"sessions={tmp_path}", "steps=2")
    summary = play(cfg, script=[{"right"}] * 4 + [{"up", "space"}] * 3 + [{"left"}] * 4)
    assert summary.sessions
    for path in summary.sessions:
        report = regenerate(path, device="cuda")
        assert report["identical"] and report["max_abs_diff"] == 0, report


@pytest.mark.parametrize("game", ["bouncer", "boxing"])
def test_shipped_model_loads_in_fp16_on_cuda_and_plays(game):
    if game == "boxing":
        pytest.importorskip("ale_py")
    model = WorldModel.from_pretrained(f"checkpoints/{game}", device="cuda")
    assert model.dtype == torch.float16 and model.device.type == "cuda"
    engine = ModelEngine(model, steps=4, seed=0, backend="auto")
    assert engine.backend == "torch" and engine.dream.sampler.precision == "float16"
    first = engine.reset(0)
    frames = [engine.step(a % len(model.action_names)).frame for a in range(30)]
    assert all(f.dtype == np.uint8 and f.shape == first.shape for f in frames)
    assert engine.dream.nonfinite == 0
