"""Display UX: non-square games at their own aspect ratio (window, replay, export), a HUD that shows
only meaningful scores, `worldgame --version`, and the line `play` prints while it loads."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pygame
import pytest

from worldgame.data.episode import EpisodeWriter, read_episode
from worldgame.engine.views import View, display_size
from worldgame.games.bouncer import Bouncer

STEPS = 12
BOXING = [210, 160]  # (height, width) of an Atari frame


def _episode(path: Path, native_size: object = None, seed: int = 0) -> Path:
    """A Bouncer episode (64x64 frames) whose metadata claims ``native_size`` (omitted when None)."""
    game = Bouncer()
    meta = {"game": "bouncer", "seed": seed, "frame_size": 64, "action_names": list(game.action_names), "policy": "scripted"}
    if native_size is not None:
        meta["native_size"] = native_size
    rng = np.random.default_rng(seed)
    with EpisodeWriter(path, meta) as writer:
        writer.add(game.reset(seed), 0)
        for _ in range(STEPS):
            action = int(rng.integers(0, 6))
            frame, reward, done, _ = game.step(action)
            writer.add(frame, action, reward, done)
    return path


def _colours(image: np.ndarray) -> set[tuple[int, ...]]:
    return set(map(tuple, image[..., :3].reshape(-1, 3).tolist()))


# --- the size helper ---------------------------------------------------------------------------------


def test_display_size_keeps_square_games_and_ignores_hostile_values() -> None:
    for scale in (1, 2, 4, 8):
        assert display_size(64, None, scale) == (64 * scale, 64 * scale)
        assert display_size(64, [64, 64], scale) == (64 * scale, 64 * scale)
        w, h = display_size(64, BOXING, scale)
        assert h > w and abs(h / w - 210 / 160) < 0.03 and h % 64 == 0
        w, h = display_size(64, (160, 210), scale)  # a wide game: the other way round
        assert w > h and abs(w / h - 210 / 160) < 0.03
    for hostile in ([210, "160"], [0, 160], [210, 5000], [True, 2], [210, 160, 3], 210, "210x160", {"h": 210}, [210.0, 160]):
        assert display_size(64, hostile, 4) == (256, 256), hostile


# --- export ------------------------------------------------------------------------------------------


def test_export_gif_of_a_non_square_game_has_its_aspect_and_only_source_colours(tmp_path: Path, run_cli) -> None:
    path = _episode(tmp_path / "boxing.wgep", BOXING)
    out = tmp_path / "boxing.gif"
    r = run_cli("replay", f"path={path}", f"export={out}", "scale=4", "progress=false")
    assert r.returncode == 0, r.stderr
    video = iio.imread(out, index=None)
    frames = read_episode(path).frames
    h, w = video.shape[1:3]
    assert (w, h) == display_size(64, BOXING, 4) and h > w and abs(h / w - 210 / 160) < 0.03
    for shown, source in zip(video, frames, strict=True):
        assert _colours(shown) == _colours(source)  # nearest-neighbour: no blended colours, none lost
        rows = (2 * np.arange(h) + 1) * 64 // (2 * h)  # the source pixel under each output pixel's centre
        cols = (2 * np.arange(w) + 1) * 64 // (2 * w)
        assert np.array_equal(shown[..., :3], source[rows][:, cols])


def test_export_mp4_and_hud_strip_of_a_non_square_game(tmp_path: Path) -> None:
    from worldgame.frontend.export import export_episode

    episode = read_episode(_episode(tmp_path / "boxing.wgep", BOXING))
    w, h = display_size(64, BOXING, 3)
    video = iio.imread(export_episode(episode, tmp_path / "b.mp4", scale=3, progress=False), index=None)
    assert video.shape[1:3] == (h + h % 2, w + w % 2)
    gif = iio.imread(export_episode(episode, tmp_path / "b.gif", scale=3, hud=True, progress=False), index=None)
    assert gif.shape[2] == w and gif.shape[1] > h
    assert _colours(gif[0][:h]) == _colours(episode.frames[0])


@pytest.mark.parametrize("native", [None, [64, 64], [210, "160"], [-1, 3]])
def test_export_of_a_square_game_is_unchanged(tmp_path: Path, native: object) -> None:
    from worldgame.frontend.export import export_episode

    episode = read_episode(_episode(tmp_path / "sq.wgep", native))
    video = iio.imread(export_episode(episode, tmp_path / "sq.gif", scale=3, progress=False), index=None)
    assert video.shape[1:3] == (192, 192)
    for shown, source in zip(video, episode.frames, strict=True):
        assert np.array_equal(shown[..., :3], np.repeat(np.repeat(source, 3, axis=0), 3, axis=1))


# --- windows -----------------------------------------------------------------------------------------


def test_replay_window_shows_a_non_square_game_at_its_aspect(tmp_path: Path) -> None:
    from worldgame.commands.replay import run_window

    boxing, square = _episode(tmp_path / "a.wgep", BOXING), _episode(tmp_path / "b.wgep", None, seed=1)
    w, h = display_size(64, BOXING, 4)
    state = run_window([boxing, square], 0, scale=4, fps=1000, keys=[None, None], max_iterations=2)
    assert state.snapshot.shape[1] == w and state.snapshot.shape[0] > h
    shown = state.snapshot[:h]
    assert _colours(shown) == _colours(read_episode(boxing).frames[1])
    state = run_window([boxing, square], 0, scale=4, fps=1000, keys=[pygame.K_n, None], max_iterations=2)
    assert state.episode == 1 and state.snapshot.shape[1] == 256  # the square episode: square again


def test_play_window_of_an_atari_game_has_its_aspect(play_config, tmp_path: Path) -> None:
    pytest.importorskip("ale_py")
    from worldgame.commands.play import play

    cfg = play_config("engine=real", "game=gym", "game.id=ALE/Boxing-v5", "fps=0", "scale=4", f"sessions={tmp_path}")
    sizes = []
    summary = play(cfg, script=[{"right"}] * 4, on_frame=lambda f: sizes.append(pygame.display.get_surface().get_size()))
    assert summary.frames == 4
    w, h = display_size(64, BOXING, 4)
    assert all(size[0] == w and size[1] > h for size in sizes), sizes


def test_multi_panel_views_fit_the_width(tiny_checkpoint, play_config) -> None:
    """The World Model view of a non-square game: two panels at its aspect; LCM Steps shrinks to fit."""
    from worldgame.commands.play import make_engine
    from worldgame.engine.hud import HUD_LINES
    from worldgame.frontend.loop import PlayLoop
    from worldgame.frontend.window import Window

    engine, _ = make_engine(play_config(f"checkpoint={tiny_checkpoint}", "steps=8", "optimize=false"), seed=0)
    engine.game.native_size = tuple(BOXING)  # the lockstep game says what the model's frames show
    window = Window(64, 8, hud_lines=HUD_LINES)
    try:
        loop = PlayLoop(engine, window, fps=0, view="world_model", max_frames=2, max_width=800)
        loop.run()
        w, h = display_size(64, BOXING, 7)
        assert 2 * display_size(64, BOXING, 8)[0] > 800  # so scale 8 does not fit, 7 does
        assert window.screen.get_width() == 2 * w and window.panel_size() == (w, h)
        loop.view = View.lcm_steps
        loop._apply_view()
        assert window.panels == 8 and 800 - display_size(64, BOXING, window.scale + 1)[0] * 8 < 0 <= 800 - window.screen.get_width()
    finally:
        window.close()


# --- HUD ---------------------------------------------------------------------------------------------


def _hud(loop) -> str:
    from worldgame.engine.hud import hud_lines

    return "\n".join(hud_lines(loop.stats, loop._hud_state(0.0))[0])


def test_hud_of_model_play_without_an_event_head_says_the_dream_keeps_no_score(tiny_checkpoint, play_config) -> None:
    from worldgame.commands.play import make_engine
    from worldgame.engine.hud import HUD_LINES
    from worldgame.frontend.loop import PlayLoop
    from worldgame.frontend.window import Window

    engine, _ = make_engine(play_config(f"checkpoint={tiny_checkpoint}", "optimize=false"), seed=0)
    window = Window(64, 2, hud_lines=HUD_LINES)
    try:
        loop = PlayLoop(engine, window, fps=0, max_frames=3)
        loop.run()
        for view in (View.stream, View.lcm_steps, View.temporal):
            loop.view = view
            text = _hud(loop)
            # no event head: no number that means nothing, but the HUD says why there is none
            assert "score none (no event head)" in text and "(real game)" not in text and "?" not in text, text
        loop.view = View.world_model  # the real game is on screen: its score means something
        assert "real game 0" in _hud(loop) and "dream score none (no event head)" in _hud(loop)
    finally:
        window.close()


def test_hud_of_a_gym_game_shows_the_summed_reward() -> None:
    from worldgame.engine.engines import RealEngine
    from worldgame.engine.hud import HUD_LINES
    from worldgame.frontend.loop import PlayLoop
    from worldgame.frontend.window import Window
    from worldgame.games.gym_adapter import GymGame

    window = Window(64, 2, hud_lines=HUD_LINES)
    try:
        loop = PlayLoop(RealEngine(GymGame("CartPole-v1")), window, fps=0, seed=0, script=[set()] * 5)
        loop.run()
        assert loop.frames == 5
        text = _hud(loop)
        assert "| score 5 |" in text and "?" not in text, text  # CartPole: +1 a step
    finally:
        window.close()


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(run_cli, flag: str) -> None:
    from importlib.metadata import version

    r = run_cli(flag)
    assert r.returncode == 0 and r.stdout.strip() == f"worldgame {version('worldgame')}", r


def test_play_says_what_it_loads(tiny_checkpoint, run_cli) -> None:
    r = run_cli("play", f"checkpoint={tiny_checkpoint}", "fps=0", "frames=2", "optimize=false", timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"loading {tiny_checkpoint} ..." and lines[-1].startswith("played 2 steps (3 frames with the start)"), r.stdout


def test_first_play_says_it_prepares_the_fast_path(tiny_checkpoint, run_cli, tmp_path, monkeypatch) -> None:
    """The ONNX export happens once per weights: the first play says so on stderr, the next is quiet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # as after a fresh install
    first = run_cli("play", f"checkpoint={tiny_checkpoint}", "fps=0", "frames=2", "backend=onnx", timeout=300)
    again = run_cli("play", f"checkpoint={tiny_checkpoint}", "fps=0", "frames=2", "backend=onnx", timeout=300)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "preparing the ONNX Runtime fast path" in first.stderr and "fast path exported in" in first.stderr
    assert "ONNX" not in again.stderr, again.stderr
    for r in (first, again):
        assert r.stdout.splitlines()[0] == f"loading {tiny_checkpoint} ..."


@pytest.mark.parametrize("keeps", [True, False])
def test_a_start_that_compiles_torch_says_so(tmp_path, monkeypatch, capsys, keeps: bool) -> None:
    """No bytecode for torch and diffusers (an install that skipped it): the ~30 s is named, and
    how to stop paying it every start when Python may not write bytecode."""
    import sys

    from worldgame.engine.factory import say_if_compiling

    say_if_compiling()
    assert capsys.readouterr().err == ""  # this environment has their bytecode
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path))  # where no bytecode was ever written
    monkeypatch.setattr(sys, "dont_write_bytecode", not keeps)
    say_if_compiling()
    err = capsys.readouterr().err
    assert "torch and diffusers" in err and err.count("\n") == 1
    assert ("later starts skip it" in err) == keeps and ("every start" in err) == (not keeps)


def test_the_temporal_view_with_fusion_off_says_why_its_panels_agree():
    """Fusion off: the Temporal view's two panels are the same frame, and its caption says so (F
    turns fusion on); with fusion on the second panel names the mode (issue 31's rough edges)."""
    import numpy as np

    from worldgame.engine.engines import EngineStatus, StepResult
    from worldgame.engine.views import panels
    from worldgame.vocabulary import FusionMode

    frame = np.zeros((64, 64, 3), np.uint8)
    result = StepResult(frame)
    off = panels(View.temporal, result, EngineStatus(steps=4, fusion=FusionMode.off))
    assert [c for _, c in off] == ["unfused", "fusion off (F): the same frame"]
    on = panels(View.temporal, result, EngineStatus(steps=4, fusion=FusionMode.latent))
    assert on[1][1] == "fused: " + FusionMode.latent.label
