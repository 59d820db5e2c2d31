"""`worldgame play engine=real`: the shared window loop driven headless by synthetic key events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygame
import pytest

from worldgame.commands.play import play
from worldgame.data.episode import list_episodes, read_episode
from worldgame.engine.session import EVENT_RESET, EVENT_START, EVENT_STEP
from worldgame.frontend.controls import Command, Controls, key_event, tap
from worldgame.games.bouncer import find_player

REPO = Path(__file__).resolve().parent.parent


def test_synthetic_key_events_round_trip_under_dummy_driver():
    pygame.display.init()
    try:
        pygame.display.set_mode((8, 8))
        pygame.event.clear()
        pygame.event.post(key_event(pygame.KEYDOWN, "left"))
        pygame.event.post(key_event(pygame.KEYUP, "left"))
        got = [(e.type, e.key) for e in pygame.event.get() if e.type in (pygame.KEYDOWN, pygame.KEYUP)]
        assert got == [(pygame.KEYDOWN, pygame.K_LEFT), (pygame.KEYUP, pygame.K_LEFT)]
    finally:
        pygame.display.quit()


def test_controls_pick_longest_combo_then_newest_key():
    c = Controls(["NOOP", "UP", "LEFT", "UP_FIRE"], {"UP": ["up", "w"], "LEFT": ["left"], "UP_FIRE": ["up+space"]})
    assert c.action() == 0
    c.handle(key_event(pygame.KEYDOWN, "left"))
    assert c.action() == 2
    c.handle(key_event(pygame.KEYDOWN, "w"))
    assert c.action() == 1  # pressed last wins
    c.handle(key_event(pygame.KEYDOWN, "up"))
    c.handle(key_event(pygame.KEYDOWN, "space"))
    assert c.action() == 3  # the two-key binding beats any single key
    c.handle(key_event(pygame.KEYUP, "space"))
    c.handle(key_event(pygame.KEYUP, "up"))
    c.handle(key_event(pygame.KEYUP, "w"))
    assert c.action() == 2
    assert c.handle(key_event(pygame.KEYDOWN, "escape")) is Command.QUIT
    assert c.handle(key_event(pygame.KEYDOWN, "tab")) is Command.VIEW
    assert c.handle(pygame.event.Event(pygame.QUIT)) is Command.QUIT


def test_real_play_moves_player_and_records(tmp_path, play_config):
    cfg = play_config("engine=real", "fps=0", "seed=2", "record=true", f"sessions={tmp_path}")  # no orb hits the player
    # tap() items leave held keys held, so "up" is still pressed on the first R tick
    script = [{"right"}] * 12 + [set()] + [{"up"}] * 12 + [tap("r")] + [set()] * 3 + [tap("r")] + [{"left"}] * 4
    shown: list[tuple[int, int, np.ndarray]] = []
    lives: set[int] = set()

    def on_frame(f):
        shown.append((f.index, f.action, f.result.frame.copy()))
        lives.add(f.result.info["lives"])

    summary = play(cfg, script=script, on_frame=on_frame)
    assert summary.frames == len(script) and lives == {5}
    xs = [find_player(frame) for _, _, frame in shown]
    assert all(p is not None for p in xs)
    start, after_right, after_up = xs[0], xs[11], xs[24]
    assert after_right[0] - start[0] >= 20 and abs(after_right[1] - start[1]) < 1  # 2 px per frame
    assert after_right[1] - after_up[1] >= 20 and abs(after_up[0] - after_right[0]) < 1
    assert [a for _, a, _ in shown[:12]] == [4] * 12 and [a for _, a, _ in shown[13:25]] == [1] * 12

    first, second = (read_episode(p) for p in summary.sessions)
    assert first.complete and second.complete
    assert first.metadata["engine"] == "real" and first.metadata["policy"] == "human"
    assert len(first) == 1 + 25  # the frame shown when recording started + 25 stepped frames (R stops before frame 26)
    np.testing.assert_array_equal(first.actions[1:13], [4] * 12)
    np.testing.assert_array_equal(first.frames[12], shown[11][2])
    assert first.timings_ms["event"][0] == EVENT_START and set(first.timings_ms["event"][1:]) == {EVENT_STEP}
    assert {"input", "game", "present", "latency", "appeared"} <= set(first.timings_ms)
    assert len(second) == 1 + 1 + 4 and list(second.actions[1:]) == [0] + [3] * 4
    assert sorted(map(str, list_episodes(tmp_path))) == sorted(summary.sessions)


def test_pause_single_step_reset_help_and_quit(tmp_path, play_config):
    cfg = play_config("engine=real", "fps=0", "seed=1", "record=true", f"sessions={tmp_path}")
    script = (
        [{"right"}] * 3
        + [tap("p")]  # pause: nothing advances
        + [()] * 3
        + [tap(".")]  # one frame
        + [tap("h"), tap("h"), tap("p")]
        + [()] * 2
        + [tap("backspace")]
        + [()] * 2
        + [tap("escape")]  # quits; the recording is saved
        + [()] * 50
    )
    events: list[int] = []
    summary = play(cfg, script=script, on_frame=lambda f: events.append(f.event))
    # 3 right + 1 '.' + 1 (tap p unpauses on its own tick) + 2 + reset + 2 = 10 frames; quit before the padding
    assert summary.frames == 10 and events.count(EVENT_RESET) == 1
    (path,) = summary.sessions
    ep = read_episode(path)
    assert ep.complete and len(ep) == 11
    assert list(ep.timings_ms["event"]).count(EVENT_RESET) == 1
    reset_row = list(ep.timings_ms["event"]).index(EVENT_RESET)
    assert ep.actions[reset_row] == 0


def test_play_cli_real_records(tmp_path, run_cli):
    r = run_cli("play", "engine=real", "frames=15", "record=true", f"sessions={tmp_path}", "seed=5")
    assert r.returncode == 0, r.stderr
    (path,) = list_episodes(tmp_path)
    ep = read_episode(path)
    assert len(ep) == 16 and ep.metadata["seed"] == 5 and ep.metadata["game"] == "bouncer"
    assert str(path) in r.stdout


def test_missing_checkpoint_is_one_line(run_cli):
    r = run_cli("play", "checkpoint=/nope", "frames=1")
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "/nope" in lines[0], r.stderr


def test_no_display_suggests_bench():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    r = subprocess.run(
        [sys.executable, "-m", "worldgame.cli", "play", "engine=real"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    if os.name != "posix" or sys.platform == "darwin":
        pytest.skip("a display is always there")
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bench" in lines[0], r.stderr


def test_hud_warns_when_slower_than_the_tick_and_stats_are_bounded():
    from worldgame.engine.hud import HudState, hud_lines
    from worldgame.engine.stats import FrameStats, RunStats

    stats, run = FrameStats(window=30), RunStats()
    for i in range(100):  # synthetic: 45 ms between frames, 40 ms of work
        stats.add({"input": 1.0, "denoise": 30.0, "decode": 9.0}, 40.0 + (i % 10), 45.0)
        run.add({"input": 1.0, "denoise": 30.0}, 40.0 + (i % 10), i * 0.045)
    state = HudState(engine="model", target_fps=30, action="LEFT", score="3", frame_index=100, steps=4)
    lines, warn = hud_lines(stats, state)
    assert lines[0].startswith("model slower than 30 Hz: 22 FPS") and warn == {0}
    assert "denoise 30.0" in lines[1] and "steps 4" in lines[2] and "action LEFT" in lines[3]
    assert stats.frames == 30 and stats.p95_latency() == pytest.approx(49.0, abs=0.6)
    assert run.fps() == pytest.approx(1 / 0.045) and run.latency_percentile(50) == pytest.approx(44.5, abs=0.6)
    fine, _ = hud_lines(stats, HudState(engine="model", target_fps=20, action="NOOP", score="0", frame_index=1))
    assert fine[0].startswith("FPS 22.2")


def test_real_play_records_when_a_coin_appeared(tmp_path, play_config):
    """A recorded real game is training data (`train data=sessions`): it says when a coin appeared, as
    `collect` does (the column a chance code's event group names); the game replayed on the recorded
    actions says the same, and every such row shows a coin the row before did not have."""
    from worldgame.eval.bouncer_checks import coins_per_frame
    from worldgame.games.bouncer import Bouncer

    summary = play(play_config("engine=real", "fps=0", "seed=4", "record=true", f"sessions={tmp_path}"),
                   script=[{"left"}] * 100 + [{"up"}] * 100 + [set()] * 100)
    (path,) = summary.sessions
    ep = read_episode(path)
    column = ep.timings_ms["appeared"]
    game = Bouncer(**{k: v for k, v in ep.metadata["game_config"].items() if not k.startswith("_")})
    game.reset(ep.metadata["seed"])
    said = [float(game.step(int(a))[3]["appeared"]) for a in ep.actions[1:]]
    assert np.isnan(column[0]) and column[1:].tolist() == said  # row 0 is where recording started: no transition
    rows = np.flatnonzero(column == 1)
    coins = coins_per_frame(ep.frames)
    assert len(rows) >= 1 and (coins[rows] > coins[rows - 1]).mean() > 0.5
