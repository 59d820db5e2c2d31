"""Inference backends (models/backends/) and the prepared LCM sampler (samplers/lcm.py's LCMPlan).

Real code paths: tiny checkpoints, the real diffusers LCMScheduler as the reference, real
onnxruntime; the ONNX cache goes to a temporary XDG_CACHE_HOME.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from worldgame.engine.model_engine import ModelEngine
from worldgame.errors import WorldgameError
from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel, backends
from worldgame.models.sampler import Sampler
from worldgame.models.schedulers import lcm_scheduler
from worldgame.models.world_model import scheduler_sample

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private ONNX cache (subprocesses inherit it through the environment)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "worldgame" / "onnx"


def _model(prediction_type: str = "sample", context_noise: float = 0.05, dtype=torch.float32) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(
        TinyAutoencoder(width=16, encoder_blocks=1, decoder_blocks=1),
        ActionDenoiser(num_actions=6, context_length=2, block_out_channels=(16, 16), norm_num_groups=8),
        metadata={"game": "bouncer", "game_config": {"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64},
                  "frame_size": 64, "action_names": ["NOOP", "UP", "DOWN", "LEFT", "RIGHT", "FIRE"],
                  "context_noise": context_noise, "prediction_type": prediction_type},
        dtype=dtype,
    )


# --- the prepared sampler is today's scheduler path, bit for bit -----------------------------------
@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_prepared_lcm_sampler_is_bit_identical_to_lcm_scheduler_step(prediction_type, dtype):
    model = _model(prediction_type, dtype=dtype)
    prepared = Sampler(model)
    if dtype == torch.float32:
        prepared.trace(1)  # batch 1 through the traced graph, batch 3 eager
    for batch in (1, 3):
        context = torch.randn(batch, 2, 4, 16, 16).to(dtype)
        actions = torch.randint(0, 6, (batch, 2))
        for steps in (1, 2, 3, 4, 8):
            g_ref, g_new = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
            seen_ref: list[torch.Tensor] = []
            seen_new: list[torch.Tensor] = []
            with torch.inference_mode():
                ref = scheduler_sample(model.denoiser, lcm_scheduler(prediction_type), context, actions, steps, g_ref,
                                       model.context_noise, lambda i, d, seen=seen_ref: seen.append(d.clone()))
            new = prepared.step(context, actions, steps, g_new, lambda i, d, seen=seen_new: seen.append(d.clone()))
            assert torch.equal(new, ref), (batch, steps)
            assert len(seen_new) == steps and all(torch.equal(a, b) for a, b in zip(seen_new, seen_ref))
            assert torch.equal(g_new.get_state(), g_ref.get_state())  # same draws: old sessions regenerate
    assert prepared.timesteps(4) == prepared.plan(4, context).timestep_values == [999, 759, 499, 259]


def test_a_tick_allocates_no_sampler_state(tiny_checkpoint):
    engine = ModelEngine(WorldModel.from_pretrained(tiny_checkpoint, device="cpu"), steps=4, backend="torch")
    engine.reset(0)
    plans = dict(engine.dream.sampler._plans)
    assert {k[0] for k in plans} >= {1, 2, 4, 8}  # (steps, shape, context noise): prepared at start
    buffers = {k: p.latents.data_ptr() for k, p in plans.items()}
    for steps in (1, 2, 4, 8, 4):
        engine.set_steps(steps)
        engine.step(4)
    assert engine.dream.sampler._plans == plans and {k: p.latents.data_ptr() for k, p in plans.items()} == buffers


# --- onnx ------------------------------------------------------------------------------------------
def test_onnx_matches_torch_within_tolerance(tiny_checkpoint):
    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    runner = backends.OnnxRunner(model, threads=1)
    assert runner.max_abs_diff < 1e-4
    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        for t in (999, 500, 19):
            z, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 2, 4, 16, 16, generator=g)
            args = (z, torch.tensor([t]), ctx, torch.tensor([[1, 5]]), torch.full((1,), 0.05))
            assert (runner.denoise(*args) - model.denoiser(*args)).abs().max() < 1e-4
            assert (runner.decode(z) - model.vae.decode(z)).abs().max() < 1e-4
    # the engines side by side from one seed: the first frames agree to one level of 255
    torch_engine = ModelEngine(WorldModel.from_pretrained(tiny_checkpoint, device="cpu"), seed=1, backend="torch")
    onnx_engine = ModelEngine(WorldModel.from_pretrained(tiny_checkpoint, device="cpu"), seed=1, backend="onnx")
    assert onnx_engine.backend == "onnx" and not onnx_engine.optimized
    assert np.array_equal(torch_engine.reset(1), onnx_engine.reset(1))
    for action in (4, 4, 1):
        a, b = torch_engine.step(action).frame, onnx_engine.step(action).frame
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_cache_is_keyed_by_weights_and_hash_checked(tiny_checkpoint, cache, monkeypatch, capfd):
    exports = []
    real_export = backends._export
    monkeypatch.setattr(backends.runner, "_export", lambda *a: exports.append(a[2]) or real_export(*a))
    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    assert backends.attach(Sampler(model), "onnx") == "onnx" and len(exports) == 2
    key = backends.weights_key(model)
    folder = backends.cache_dir(key)
    assert folder.parent == cache and folder.name == f"{key}-u{os.getuid()}"  # per user
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["weights_sha256"] == key and set(manifest["sha256"]) == {"denoiser.onnx", "decoder.onnx"}
    assert not list(folder.glob(".*"))  # no temporary files left behind

    backends.attach(Sampler(WorldModel.from_pretrained(tiny_checkpoint, device="cpu")), "onnx")
    assert len(exports) == 2  # same weights: loaded from the cache

    changed = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    with torch.no_grad():
        changed.denoiser.cond_proj[0].bias.add_(0.01)
    assert backends.weights_key(changed) != key
    backends.attach(Sampler(changed), "onnx")
    assert len(exports) == 4 and sorted(cache.iterdir()) == sorted([folder, backends.cache_dir(backends.weights_key(changed))])

    good = (folder / "decoder.onnx").read_bytes()
    (folder / "decoder.onnx").write_bytes(good[:-64] + bytes(64))  # tampered / damaged: never used
    capfd.readouterr()
    assert backends.attach(Sampler(WorldModel.from_pretrained(tiny_checkpoint, device="cpu")), "onnx") == "onnx"
    assert "does not match its recorded sha256" in capfd.readouterr().err and len(exports) == 6
    assert (folder / "decoder.onnx").read_bytes() == good  # exported again, deterministically


def test_auto_picks_onnx_on_cpu_and_torch_otherwise(tiny_checkpoint, monkeypatch, capfd):
    load = lambda **kw: WorldModel.from_pretrained(tiny_checkpoint, device="cpu", **kw)
    assert ModelEngine(load(), backend="auto").backend == "onnx"
    assert ModelEngine(load(), backend="torch").backend == "torch"
    assert ModelEngine(load(half=True), backend="auto", optimize=False).backend == "torch"
    with pytest.raises(WorldgameError, match="backend=onnx runs float32 on the CPU"):
        backends.attach(Sampler(load(half=True)), "onnx")
    with pytest.raises(WorldgameError, match="backend='tpu'"):
        backends.attach(Sampler(load()), "tpu")
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
    capfd.readouterr()
    assert backends.attach(Sampler(load()), "auto") == "torch"
    assert "onnxruntime is not installed" in capfd.readouterr().err
    with pytest.raises(WorldgameError, match="onnxruntime is not installed"):
        backends.attach(Sampler(load()), "onnx")


def test_onnx_session_records_its_backend_and_regenerates_identically(tiny_checkpoint, play_config, tmp_path):
    from worldgame.commands.play import play
    from worldgame.data.episode import read_episode
    from worldgame.engine.session import regenerate
    from worldgame.frontend.controls import tap

    cfg = play_config(f"checkpoint={tiny_checkpoint}", "fps=0", "seed=5", "record=true", f"sessions={tmp_path}",
                      "steps=2", "backend=onnx")
    moves = [{"right"}] * 3 + [{"up", "space"}] * 2
    summary = play(cfg, script=moves + [tap("4"), tap("f")] + moves + [tap("y")] + moves + [tap("backspace")] + moves)
    (path,) = summary.sessions
    ep = read_episode(path)
    assert ep.metadata["backend"] == "onnx" and ep.metadata["optimized"] is False
    assert regenerate(path, device="cpu") == {"frames": len(ep), "identical": True, "psnr": float("inf"), "max_abs_diff": 0,
                                              "events_identical": True}


def test_bench_names_the_backend_and_a_bad_one_is_one_line(tiny_checkpoint, run_cli):
    r = run_cli("bench", f"checkpoint={tiny_checkpoint}", "steps=[1]", "frames=3", "warmup=1", "backend=onnx")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert [res["backend"] for res in report["results"]] == ["onnx"]
    for command in ("bench", "play"):
        r = run_cli(command, f"checkpoint={tiny_checkpoint}", "backend=tpu")
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
        assert "backend=tpu: choose one of auto, torch, onnx" in r.stderr
