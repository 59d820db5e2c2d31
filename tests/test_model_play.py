"""`worldgame play` with the world model, headless: live switches, side by side, sessions that regenerate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from worldgame.commands.play import play
from worldgame.engine.session import EVENT_RESET, EVENT_RESYNC, regenerate
from worldgame.engine.views import View
from worldgame.errors import WorldgameError
from worldgame.frontend.controls import tap
from worldgame.games.bouncer import find_player

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_views_fusion_and_steps_switch_mid_run(tiny_checkpoint, play_config):
    cfg = play_config(f"checkpoint={tiny_checkpoint}", "engine=side_by_side", "fps=0", "seed=0", "steps=4", "fusion=latent")
    hold = [{"right"}]
    script = (
        hold * 2
        + [tap("m")] + hold * 2  # Stream
        + [tap("m")] + hold * 2  # LCM Steps at 4 steps
        + [tap("2")] + hold * 2  # ... at 2
        + [tap("8")] + [tap("1")] + hold  # ... at 8, then 1
        + [tap("m"), tap("4")] + hold * 2  # Temporal
        + [tap("f")] + hold * 2  # pixel fusion
        + [tap("f")] + hold * 2  # off
        + [tap("f")] + hold * 2  # latent again
        + [tap("tab")] + hold * 2  # World Model
        + [tap("y")] + hold  # re-sync to the real game
        + [tap("h"), tap("p"), tap("."), tap("p"), tap("backspace")] + hold
    )
    seen = []
    summary = play(cfg, script=script, on_frame=seen.append)
    assert summary.frames == len(script) - 1  # the tick that paused shows no new frame
    assert summary.nonfinite == 0
    views = [f.view for f in seen]
    assert set(views) == set(View) and views[0] is View.world_model
    for f in seen:
        r = f.result
        assert r.frame.shape == (64, 64, 3) and r.frame.dtype == np.uint8
        if f.view is View.world_model:
            assert f.panels == 2 and r.real is not None and r.real.shape == (64, 64, 3)
        if f.view is View.lcm_steps and f.event == 0:
            assert r.step_frames is not None and f.panels == len(r.step_frames) == len(r.step_timesteps)
        if f.view is View.temporal and f.event == 0:
            assert f.panels == 2 and r.unfused is not None
        if f.view is View.stream:
            assert f.panels == 1
    assert {len(f.result.step_frames) for f in seen if f.result.step_frames is not None} == {1, 2, 4, 8}
    assert [f.event for f in seen].count(EVENT_RESYNC) == 1 and seen[-2].event == EVENT_RESET
    assert all(set(f.stages_ms) >= {"input", "denoise", "fusion", "decode", "present"} for f in seen if f.event == 0)


def test_record_then_regenerate_is_identical(tiny_checkpoint, play_config, tmp_path):
    cfg = play_config(f"checkpoint={tiny_checkpoint}", "fps=0", "seed=11", "record=true", f"sessions={tmp_path}", "steps=2",
                      "fusion=pixel")
    moves = [{"right"}] * 3 + [{"up", "space"}] * 2 + [{"left"}] * 3
    script = (
        moves
        + [tap("1")] + moves  # steps change
        + [tap("f")] + moves  # latent fusion (F: off -> pixel -> latent)
        + [tap("m"), tap("m"), tap("y")] + moves  # Temporal view, re-sync
        + [tap("backspace")] + moves  # reset: seed + n
        + [tap("r")] + moves  # stop
        + [tap("r"), tap("4"), tap("f")] + moves + moves  # a second session started mid-run
    )
    summary = play(cfg, script=script)
    assert len(summary.sessions) == 2
    for path in summary.sessions:
        report = regenerate(path, device="cpu")
        from worldgame.data.episode import read_episode

        ep = read_episode(path)
        assert report == {"frames": len(ep), "identical": True, "psnr": float("inf"), "max_abs_diff": 0,
                          "events_identical": True}
    first = read_episode(summary.sessions[0])
    events = list(first.timings_ms["event"])
    assert EVENT_RESET in events and EVENT_RESYNC in events
    assert set(first.timings_ms["lcm_steps"]) == {1.0, 2.0} and set(first.timings_ms["fusion_mode"]) == {1.0, 2.0}
    meta = first.metadata
    assert meta["engine"] == "model" and len(meta["checkpoint_id"]) == 16 and meta["seed"] == 11
    assert {"denoise", "fusion", "decode", "present", "latency"} <= set(first.timings_ms)


def test_regenerate_refuses_a_real_session(tmp_path, play_config):
    summary = play(play_config("engine=real", "fps=0", "record=true", f"sessions={tmp_path}"), script=[{"up"}] * 3)
    with pytest.raises(WorldgameError, match="not a model session"):
        regenerate(summary.sessions[0])


def test_checkpoint_for_another_game_and_bad_settings(tiny_checkpoint, play_config, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_checkpoint, other)
    meta = json.loads((other / "worldgame.json").read_text())
    (other / "worldgame.json").write_text(json.dumps({**meta, "game": "pong"}))
    with pytest.raises(WorldgameError, match="pong"):
        play(play_config(f"checkpoint={other}", "frames=1"))
    with pytest.raises(WorldgameError, match="view"):
        play(play_config(f"checkpoint={tiny_checkpoint}", "view=sideways"))
    with pytest.raises(WorldgameError, match="steps"):
        play(play_config(f"checkpoint={tiny_checkpoint}", "steps=3"))


def test_shipped_model_moves_player_as_pressed(play_config):
    cfg = play_config("fps=0", "seed=2", "fusion=off")
    xs = []
    play(cfg, script=[()] * 2 + [{"right"}] * 10 + [{"left"}] * 10, on_frame=lambda f: xs.append(find_player(f.result.frame)))
    assert None not in xs[1:12] and None not in xs[12:]
    assert xs[11][0] - xs[1][0] >= 8  # 2 px per frame in the real game
    assert xs[11][0] - xs[21][0] >= 8



def test_context_noise_key_cycles_changes_the_dream_and_regenerates(tiny_checkpoint, play_config, tmp_path):
    """N cycles the play context noise (the checkpoint's own, none, twice); the HUD says so, and a
    session recorded across the switches regenerates bit-identically."""
    from worldgame.engine.hud import hud_lines
    from worldgame.frontend import loop as loop_module

    cfg = play_config(f"checkpoint={tiny_checkpoint}", "fps=0", "seed=3", "record=true", f"sessions={tmp_path}")
    noise, hud = [], []
    real_tick = loop_module.PlayLoop.tick

    def tick(self):  # the noise the engine steps with and the HUD, after each tick
        real_tick(self)
        noise.append(self.engine.status().context_noise)
        hud.append(hud_lines(self.stats, self._hud_state(0.0))[0][2])

    loop_module.PlayLoop.tick = tick
    try:
        script = [{"right"}] * 2 + ([tap("n")] + [{"right"}] * 2) * 3
        summary = play(cfg, script=script)
    finally:
        loop_module.PlayLoop.tick = real_tick
    own = noise[0]
    levels = [n for i, n in enumerate(noise) if i == 0 or n != noise[i - 1]]
    cycle = list(dict.fromkeys((own, 0.0, 2 * own or 0.1)))
    assert levels == [cycle[i % len(cycle)] for i in range(4)], levels
    assert any(line.endswith("context noise 0") for line in hud) and f"context noise {own:g}" in hud[0], hud
    (session,) = summary.sessions
    report = regenerate(session, device="cpu")
    assert report["identical"] and report["frames"] == summary.frames + 1, report


def test_context_noise_changes_the_next_frame(tiny_checkpoint, play_config):
    """The same state stepped at two noise levels gives two different frames: the control reaches the model."""
    from worldgame.engine.factory import make_engine

    engine, _ = make_engine(play_config(f"checkpoint={tiny_checkpoint}", "optimize=false", "backend=torch"), seed=0)
    engine.reset(1)
    state = engine.state()
    low, high = engine.context_noise_levels[1], max(engine.context_noise_levels)
    frames = []
    for level in (low, high):
        engine.load_state(state)
        engine.set_context_noise(level)
        frames.append(engine.step(1).frame.copy())
    assert low == 0.0 and high > 0 and not np.array_equal(*frames)
