"""The display measures (worldgame/eval/display.py): flicker, ghosting and lag of the shown stream,
on synthetic streams whose answers are known, through a tiny model, and in eval's JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldgame.engine.fusion import PHI
from worldgame.eval.display import measure, predict_latents, shown_frames
from worldgame.eval.objects import median_background


def _game(frames: int = 60, size: int = 48) -> np.ndarray:
    """A still grey scene with a white 4x4 square gliding 1 px per frame, back and forth."""
    out = np.full((frames, size, size, 3), 60, np.uint8)
    for t in range(frames):
        x = 4 + (t % 64 if t % 64 < 32 else 63 - t % 64)
        out[t, 20:24, x : x + 4] = 255
    return out


def _measure(shown: np.ndarray, real: np.ndarray) -> dict:
    return measure([(shown, real, median_background(real))])


def test_the_real_stream_has_no_flicker_no_lag_and_perfect_foreground() -> None:
    real = _game()
    m = _measure(real, real)
    assert m["flicker"] == 0.0 and m["lag_frames"] == pytest.approx(0.0, abs=0.05)
    assert m["fg_psnr"] >= 99 and m["moving_frames"] > 30


@pytest.mark.parametrize("late", [1, 3])
def test_a_stream_late_by_some_frames_has_that_lag(late: int) -> None:
    real = _game()
    shown = np.concatenate([np.repeat(real[:1], late, axis=0), real[:-late]])
    m = _measure(shown, real)
    assert m["lag_frames"] == pytest.approx(late, abs=0.1)
    assert m["fg_psnr"] < 30  # the square is drawn where it was, not where it is


def test_noise_on_still_pixels_flickers_and_fusion_calms_it_but_ghosts_and_lags() -> None:
    real = _game()
    rng = np.random.default_rng(0)
    noisy = np.clip(real.astype(int) + rng.integers(-20, 21, real.shape), 0, 255).astype(np.uint8)
    off = _measure(noisy, real)
    assert off["flicker"] > 5 and off["lag_frames"] == pytest.approx(0.0, abs=0.3)
    fused = shown_frames(None, None, ("pixel", 4, PHI), decoded=torch.from_numpy(noisy))
    assert fused.dtype == torch.uint8 and fused.shape == noisy.shape
    m = _measure(fused.numpy(), real)
    assert m["flicker"] < 0.7 * off["flicker"]  # fusion lowers the flicker ...
    assert m["lag_frames"] > 0.4 and m["fg_psnr"] < off["fg_psnr"]  # ... and shows the square late and smeared


def test_teacher_forced_stream_and_latent_fusion_with_a_tiny_model(tiny_checkpoint, torch_one_thread) -> None:
    from worldgame.eval.rollout import held_out_episode
    from worldgame.models.world_model import WorldModel

    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    frames, actions = held_out_episode(model.metadata["game_config"], 10000, 20)
    latents = predict_latents(model, frames, actions, steps=1, seed=0, batch=7)  # batches split the time axis
    k = model.context_length
    assert latents.shape[0] == len(frames) - k
    # frame t is predicted from the real frames before it and the action taken at t, never from
    # frame t itself or a later action (the same seed: the same sampling noise)
    t = k + 9
    def pred(f=frames, a=actions):
        return predict_latents(model, f, a, steps=1, seed=0, batch=7)[t - k]
    target, before = frames.copy(), frames.copy()
    target[t] = 255 - target[t]
    before[t - 1] = 255 - before[t - 1]
    now, later = actions.copy(), actions.copy()
    now[t], later[t + 1] = (actions[t] + 1) % 6, (actions[t + 1] + 1) % 6
    assert torch.equal(pred(), latents[t - k]) and torch.equal(pred(target), latents[t - k])
    assert torch.equal(pred(a=later), latents[t - k])
    assert not torch.equal(pred(before), latents[t - k]) and not torch.equal(pred(a=now), latents[t - k])
    off = shown_frames(model, latents)
    assert off.shape == (len(frames) - k, *frames.shape[1:]) and off.dtype == torch.uint8
    assert torch.equal(shown_frames(model, latents, ("latent", 0, PHI)), off)  # window 0: nothing fused
    fused = shown_frames(model, latents, ("latent", 4, PHI))
    assert torch.equal(fused[0], off[0]) and not torch.equal(fused, off)  # the first frame is itself, then a blend


def test_eval_json_carries_the_display_key(tiny_checkpoint, run_cli, tmp_path) -> None:
    small = ["episodes=1", "episode_frames=24", "samples=2", "teacher_steps=1", "steps=[1]", "rollout_frames=8",
             "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1", "object_horizons=[8]", "threads=1",
             "control_contexts=0", "fusion=pixel", "fusion_window=3", "fusion_base=2"]
    r = run_cli("eval", f"checkpoint={tiny_checkpoint}", f"out={tmp_path}", *small)
    assert r.returncode == 0, r.stderr
    display = json.loads(r.stdout.strip().splitlines()[-1])["display"]
    assert (display["fusion"], display["window"], display["base"]) == ("pixel", 3, 2.0)
    assert display["frames"] == 22 and set(display["off"]) >= {"flicker", "fg_psnr", "lag_frames"}
    for m in (display, display["off"]):
        assert m["flicker"] >= 0 and np.isfinite(m["fg_psnr"])
