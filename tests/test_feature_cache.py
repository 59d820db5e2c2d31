"""model.denoiser.variant=feature_cache: the context's features are computed once per frame and reused
by every sampling step (issue 22, the NRC row). The outputs match recomputing them at every step, on
the torch modules, the traced graphs and ONNX Runtime; a checkpoint loads its own class; the setting's
bad values are one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import _cfg, _episodes

from worldgame.engine.model_engine import ModelEngine
from worldgame.errors import WorldgameError
from worldgame.models import ActionDenoiser, WorldModel, backends
from worldgame.models.denoiser_cached import FeatureCacheDenoiser
from worldgame.models.sampler import Sampler
from worldgame.settings import load
from worldgame.train import loop

ACTIONS = (4, 4, 1, 3, 0, 2, 5, 4)  # a ring of frames: the context slides through several of the dream's own


@pytest.fixture(scope="module")
def cached_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with a feature-cache denoiser/ (untrained: plumbing, not quality)."""
    path = tmp_path_factory.mktemp("feature_cache") / "tiny_cached"
    shutil.copytree(tiny_checkpoint, path)
    old = WorldModel.from_pretrained(path, device="cpu").denoiser.config
    torch.manual_seed(2)
    net = FeatureCacheDenoiser(num_actions=old.num_actions, context_length=old.context_length,
                               block_out_channels=(16, 16), step_block_out_channels=(8, 16), norm_num_groups=8,
                               action_dim=8, noise_per_frame=True)
    shutil.rmtree(path / "denoiser")
    net.save_pretrained(path / "denoiser")
    return path


class _Calls:
    """Counts the calls of a module (a forward hook on the real module)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        module.register_forward_hook(lambda *_: setattr(self, "n", self.n + 1))


@pytest.mark.parametrize("sampler", ["lcm", "ddim", "dpmsolver"])
def test_features_once_per_frame_match_recomputing_them_every_step(cached_checkpoint, sampler, torch_one_thread):
    cached_model = WorldModel.from_pretrained(cached_checkpoint, device="cpu")
    whole_model = WorldModel.from_pretrained(cached_checkpoint, device="cpu")
    cached = ModelEngine(cached_model, steps=4, seed=1, optimize=False, backend="torch", sampler=sampler)
    whole = ModelEngine(whole_model, steps=4, seed=1, optimize=False, backend="torch", sampler=sampler)
    # the network called whole at every step (it has no context_features): features recomputed each step
    whole.dream.sampler.accelerate(1, lambda *inputs: whole_model.denoiser(*inputs))
    context_calls, step_calls = _Calls(cached_model.denoiser.context_in), _Calls(cached_model.denoiser.step_unet.conv_in)
    recomputed = _Calls(whole_model.denoiser.context_in)
    assert np.array_equal(cached.reset(3), whole.reset(3))
    before = context_calls.n, step_calls.n, recomputed.n
    for action in ACTIONS:
        a, b = cached.step(action).frame, whole.step(action).frame
        torch.testing.assert_close(cached.dream.context, whole.dream.context)  # the latent ring, float tolerance
        assert np.array_equal(a, b)
    frames = len(ACTIONS)
    assert (context_calls.n - before[0], step_calls.n - before[1]) == (frames, 4 * frames)  # once a frame; 4 steps
    assert recomputed.n - before[2] == 4 * frames  # what the cache saves
    # and the prepared plan is the reference sampling loop (which calls the network whole), as for concat
    context, actions = cached.dream.context.clone(), cached.dream.actions.clone()
    for steps in (1, 4):
        ref = cached_model.reference_step(context, actions, steps, torch.Generator().manual_seed(7), sampler)
        got = Sampler(cached_model, sampler).step(context, actions, steps, torch.Generator().manual_seed(7))
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_traced_and_onnx_graphs_split_the_same_way(cached_checkpoint, backend, torch_one_thread):
    eager = ModelEngine(WorldModel.from_pretrained(cached_checkpoint, device="cpu"), seed=1, optimize=False, backend="torch")
    fast = ModelEngine(WorldModel.from_pretrained(cached_checkpoint, device="cpu"), seed=1, backend=backend)
    assert fast.backend == backend and (fast.optimized or backend == "onnx")
    network = fast.dream.sampler._path(1)[0]
    assert callable(network.context_features) and callable(network.step)  # two graphs: context once, step per step
    assert np.array_equal(eager.reset(2), fast.reset(2))
    for action in ACTIONS:
        a, b = eager.step(action).frame, fast.step(action).frame
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    if backend == "onnx":
        runner = backends.OnnxRunner(WorldModel.from_pretrained(cached_checkpoint, device="cpu"), threads=1)
        assert runner.parts == backends.SPLIT_PARTS and runner.max_abs_diff < 1e-4


def test_a_checkpoint_loads_its_own_class(cached_checkpoint, tiny_checkpoint, tmp_path):
    model = WorldModel.from_pretrained(cached_checkpoint, device="cpu")
    assert type(model.denoiser) is FeatureCacheDenoiser
    assert type(WorldModel.from_pretrained(tiny_checkpoint, device="cpu").denoiser) is ActionDenoiser  # no variant: concat
    model.save_pretrained(tmp_path / "again", half=False)
    again = WorldModel.from_pretrained(tmp_path / "again", device="cpu")
    def shape(net) -> dict:
        return {k: v for k, v in net.config.items() if not k.startswith("_")}  # not _name_or_path

    assert type(again.denoiser) is FeatureCacheDenoiser and shape(again.denoiser) == shape(model.denoiser)
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, 4, 16, 16, generator=g), torch.tensor([500]), torch.randn(1, 2, 4, 16, 16, generator=g),
            torch.tensor([[1, 2]]), torch.full((1,), 0.05))
    with torch.inference_mode():
        assert torch.equal(again.denoiser(*args), model.denoiser(*args))
    config = json.loads((tmp_path / "again" / "denoiser" / "config.json").read_text())
    (tmp_path / "again" / "denoiser" / "config.json").write_text(json.dumps({**config, "_class_name": "os.system"}))
    with pytest.raises(WorldgameError, match=r"config.json names the class 'os.system'"):
        WorldModel.from_pretrained(tmp_path / "again", device="cpu")


def test_the_teacher_stage_trains_the_variant(tmp_path):
    _episodes(tmp_path / "data", n=2, steps=60)
    run = tmp_path / "run"
    loop.run(_cfg(tmp_path / "data", run, "stage=vae", "train.vae.steps=5"))
    loop.run(_cfg(tmp_path / "data", run, "stage=teacher", "train.teacher.steps=5", "model.denoiser.variant=feature_cache",
                  "model.denoiser.step_block_out_channels=[8,16]"))
    model = WorldModel.from_pretrained(run, device="cpu", teacher=True)
    assert type(model.denoiser) is FeatureCacheDenoiser and type(model.teacher) is FeatureCacheDenoiser
    assert list(model.denoiser.config.step_block_out_channels) == [8, 16]
    recorded = json.loads((run / "worldgame.json").read_text())["training"]["teacher"]["model"]["denoiser"]
    assert recorded["variant"] == "feature_cache"
    assert Sampler(model).step(torch.zeros(1, 2, 4, 16, 16), torch.zeros(1, 2, dtype=torch.long)).shape == (1, 4, 16, 16)


@pytest.mark.parametrize("override,match", [
    ("model.denoiser.variant=bogus", r"model.denoiser.variant"),
    ("model.denoiser.step_block_out_channels=[8]", r"^model.denoiser.step_block_out_channels=\[8\]: needs one width per level"),
])
def test_bad_variant_settings_are_one_line(override, match):
    with pytest.raises(WorldgameError, match=match) as e:
        load("train", ["model.denoiser.variant=feature_cache", override])
    assert "\n" not in str(e.value)
