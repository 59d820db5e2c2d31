"""`worldgame replay`: the window driven headless by key events, video export, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pygame
import pytest

from worldgame.commands.replay import run_window
from worldgame.data.episode import Episode, EpisodeWriter, list_episodes, read_episode
from worldgame.games.bouncer import Bouncer

REPO = Path(__file__).resolve().parent.parent
SCALE = 4
STEPS = 30  # rows per episode: the reset frame + STEPS steps


def _write_episode(path: Path, seed: int, timings: bool = False, **extra: str) -> None:
    """A Bouncer episode; with ``timings`` it looks like a model session (policy, per-frame ms)."""
    game = Bouncer()
    meta = {
        "game": "bouncer",
        "seed": seed,
        "frame_size": game.frame_size,
        "action_names": list(game.action_names),
        "policy": "model" if timings else "scripted",
        **extra,
    }
    rng = np.random.default_rng(seed)
    with EpisodeWriter(path, meta) as writer:
        writer.add(game.reset(seed), 0, timings_ms={"denoise": 5.0, "decode": 1.0} if timings else None)
        for t in range(STEPS):
            action = int(rng.integers(0, 6))
            frame, reward, done, _ = game.step(action)
            writer.add(frame, action, reward, done, timings_ms={"denoise": 5.0 + t, "decode": 1.0} if timings else None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short Bouncer episodes."""
    out = tmp_path_factory.mktemp("episodes")
    for e in range(2):
        _write_episode(out / f"ep_{e:06d}.wgep", seed=e)
    return out


@pytest.fixture(scope="module")
def episodes(folder: Path) -> list[Episode]:
    return [read_episode(f) for f in list_episodes(folder)]


def _scaled(frame: np.ndarray, scale: int = SCALE) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def _shown(snapshot: np.ndarray, frame_size: int = 64) -> np.ndarray:
    """The frame area of a window snapshot."""
    side = frame_size * SCALE
    return snapshot[:side, :side]


def _replay(folder: Path, keys: list, iterations: int | None = None, episode: int = 0):
    return run_window(list_episodes(folder), episode, scale=SCALE, fps=1000, keys=keys,
                      max_iterations=iterations or len(keys))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- the window ------------------------------------------------------------------------------------


def test_arrows_step_one_frame_and_pause(folder: Path, episodes: list[Episode]) -> None:
    state = _replay(folder, [pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_LEFT])
    assert (state.episode, state.frame, state.paused) == (0, 2, True)
    assert np.array_equal(_shown(state.snapshot), _scaled(episodes[0].frames[2]))


@pytest.mark.parametrize(
    ("keys", "frame"),
    [
        ([pygame.K_SPACE, pygame.K_PAGEDOWN, pygame.K_PAGEDOWN, pygame.K_PAGEUP], 10),
        ([pygame.K_SPACE, pygame.K_END], STEPS),
        ([pygame.K_SPACE, pygame.K_END, pygame.K_PAGEDOWN, pygame.K_RIGHT], STEPS),  # clamped at the end
        ([pygame.K_SPACE, pygame.K_LEFT, pygame.K_PAGEUP], 0),  # clamped at the start
        ([pygame.K_SPACE, pygame.K_PAGEDOWN, pygame.K_RIGHT, pygame.K_HOME], 0),
    ],
)
def test_jump_keys(folder: Path, episodes: list[Episode], keys: list[int], frame: int) -> None:
    state = _replay(folder, keys)
    assert state.frame == frame and state.paused
    assert np.array_equal(_shown(state.snapshot), _scaled(episodes[0].frames[frame]))


def test_playback_advances_one_frame_per_tick_and_stops_at_the_end(folder: Path, episodes: list[Episode]) -> None:
    state = _replay(folder, [], iterations=5)
    assert (state.frame, state.paused) == (4, False)
    assert np.array_equal(_shown(state.snapshot), _scaled(episodes[0].frames[4]))
    state = _replay(folder, [], iterations=STEPS + 10)
    assert (state.frame, state.paused) == (STEPS, True)


def test_next_and_previous_episode(folder: Path, episodes: list[Episode]) -> None:
    state = _replay(folder, [pygame.K_SPACE, pygame.K_RIGHT, pygame.K_n])
    assert (state.episode, state.frame) == (1, 0)  # a new episode starts at its first frame
    assert np.array_equal(_shown(state.snapshot), _scaled(episodes[1].frames[0]))
    state = _replay(folder, [pygame.K_SPACE, pygame.K_n, pygame.K_n, pygame.K_b])  # N at the last one stays
    assert (state.episode, state.frame) == (0, 0)
    assert np.array_equal(_shown(state.snapshot), _scaled(episodes[0].frames[0]))
    state = _replay(folder, [pygame.K_SPACE, pygame.K_b], episode=1)
    assert state.episode == 0


def test_help_overlay_and_quit(folder: Path, episodes: list[Episode]) -> None:
    state = _replay(folder, [pygame.K_SPACE, pygame.K_h])
    assert state.help
    assert not np.array_equal(_shown(state.snapshot), _scaled(episodes[0].frames[0]))  # the overlay covers it
    state = _replay(folder, [pygame.K_ESCAPE], iterations=100)
    assert not state.running and state.iterations == 1
    state = _replay(folder, [None, pygame.event.Event(pygame.QUIT)], iterations=100)
    assert not state.running and state.iterations == 2


def test_session_with_timings(tmp_path: Path) -> None:
    path = tmp_path / "session.wgep"
    _write_episode(path, seed=7, timings=True)
    state = run_window([path], 0, scale=SCALE, fps=1000, keys=[pygame.K_END], max_iterations=1)
    assert state.frame == STEPS
    assert np.array_equal(_shown(state.snapshot), _scaled(read_episode(path).frames[-1]))


def test_damaged_episode_while_browsing_is_shown_not_fatal(folder: Path, tmp_path: Path) -> None:
    good = tmp_path / "a.wgep"
    good.write_bytes((folder / "ep_000000.wgep").read_bytes())
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "b.wgep").write_bytes(bytes(data))
    state = run_window(list_episodes(tmp_path), 0, scale=SCALE, fps=1000, keys=[pygame.K_n, pygame.K_RIGHT],
                       max_iterations=2)
    assert (state.episode, state.frame) == (1, 0)
    assert not _shown(state.snapshot).any()  # a black frame; the HUD names the problem


# --- export ----------------------------------------------------------------------------------------


def test_export_mp4(folder: Path, episodes: list[Episode], tmp_path: Path, run_cli) -> None:
    out = tmp_path / "ep.mp4"
    r = run_cli("replay", f"path={folder}", f"export={out}", "scale=4", "fps=15", "progress=false")
    assert r.returncode == 0, r.stderr
    video = iio.imread(out, index=None)
    assert video.shape == (STEPS + 1, 64 * 4, 64 * 4, 3)
    diff = np.abs(video[0].astype(int) - _scaled(episodes[0].frames[0], 4))
    assert diff.mean() < 3 and np.percentile(diff, 99) < 24  # lossy H.264, near-lossless settings
    assert not (tmp_path / "ep.partial.mp4").exists()


def test_export_gif_of_a_chosen_episode(folder: Path, episodes: list[Episode], tmp_path: Path, run_cli) -> None:
    out = tmp_path / "sub" / "ep.gif"
    spaced = tmp_path / "it's a folder"  # the path as a bare first argument, quoted for hydra by the CLI
    spaced.symlink_to(folder)
    r = run_cli("replay", str(spaced), "episode=1", f"export={out}", "scale=2", "progress=false")
    assert r.returncode == 0, r.stderr
    video = iio.imread(out, index=None)
    assert video.shape[:3] == (STEPS + 1, 128, 128)
    assert np.array_equal(video[0][..., :3], _scaled(episodes[1].frames[0], 2))  # a GIF palette is exact here
    assert np.array_equal(video[-1][..., :3], _scaled(episodes[1].frames[-1], 2))


def test_export_with_hud_strip(episodes: list[Episode], tmp_path: Path) -> None:
    from worldgame.frontend.export import export_episode

    out = export_episode(episodes[0], tmp_path / "hud.gif", fps=10, scale=3, hud=True, progress=False)
    video = iio.imread(out, index=None)
    assert video.shape[0] == STEPS + 1 and video.shape[2] == 192 and video.shape[1] > 192
    assert np.array_equal(video[0][:192, :, :3], _scaled(episodes[0].frames[0], 3))


# --- bad input: one line on stderr, non-zero exit --------------------------------------------------


def test_missing_path_is_one_line(run_cli) -> None:
    r = run_cli("replay", "path=/nope")
    assert r.returncode != 0
    lines = _lines(r.stderr)
    assert len(lines) == 1 and "/nope" in lines[0], r.stderr


def test_damaged_file_is_one_line_naming_it(folder: Path, tmp_path: Path, run_cli) -> None:
    bad = tmp_path / "bad.wgep"
    data = bytearray((folder / "ep_000000.wgep").read_bytes())
    data[40] ^= 0xFF
    bad.write_bytes(bytes(data))
    r = run_cli("replay", f"path={bad}", f"export={tmp_path / 'x.mp4'}")
    assert r.returncode != 0
    lines = _lines(r.stderr)
    assert len(lines) == 1 and str(bad) in lines[0], r.stderr
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["episode=5"], "episode=5"),
        (["export=out.avi"], ".avi"),
        (["scale=0"], "scale"),
        (["regenerate=true"], "not a model session"),
    ],
)
def test_bad_settings_are_one_line(folder: Path, run_cli, args: list[str], needle: str) -> None:
    r = run_cli("replay", f"path={folder}", *args)
    assert r.returncode != 0
    lines = _lines(r.stderr)
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_empty_folder_is_one_line(tmp_path: Path, run_cli) -> None:
    r = run_cli("replay", f"path={tmp_path}")
    assert r.returncode != 0
    assert len(_lines(r.stderr)) == 1 and str(tmp_path) in r.stderr, r.stderr


def test_no_display_is_one_line_and_export_needs_none(folder: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "worldgame.cli", "replay", f"path={folder}", *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)

    r = run()
    assert r.returncode != 0
    lines = _lines(r.stderr)
    assert len(lines) == 1 and "display" in lines[0], r.stderr
    r = run(f"export={tmp_path / 'x.gif'}", "scale=1", "progress=false")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.gif").is_file()


# --- regenerate (model sessions) --------------------------------------------------------------------


def test_regenerate_of_a_session_whose_checkpoint_is_gone_is_one_line(tmp_path: Path, run_cli) -> None:
    """The lazy import and error path: one line whether or not session.py is installed."""
    path = tmp_path / "session.wgep"
    _write_episode(path, seed=3, timings=True, checkpoint=str(tmp_path / "no_such_checkpoint"))
    r = run_cli("replay", f"path={path}", "regenerate=true", "device=cpu")
    assert r.returncode != 0
    lines = _lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert "session.wgep" in lines[0]


def test_regenerate_prints_json_last(tmp_path: Path, run_cli_batch, tiny_checkpoint: Path) -> None:
    """A model session recorded by `play` re-runs bit-identically on the same device."""
    # recorded headless with `worldgame play record=true`, then regenerated, in one driver process
    sessions = tmp_path / "sessions"
    played, r = run_cli_batch(
        ["play", f"checkpoint={tiny_checkpoint}", "fps=0", "frames=20", "record=true", f"sessions={sessions}", "seed=1"],
        ["replay", f"path={sessions}", "regenerate=true", "device=cpu"])  # the folder holds the one session played
    assert played.returncode == 0, played.stderr
    (session,) = sessions.glob("*.wgep")
    assert r.returncode == 0, r.stderr
    assert str(session) in r.stdout
    result = json.loads(_lines(r.stdout)[-1])
    assert set(result) >= {"frames", "identical", "psnr", "max_abs_diff"}
    assert result["frames"] == len(read_episode(session)) and result["identical"]
    assert f"({result['frames']} frames with the start)" in played.stdout  # play counts the frames replay does
    assert result["max_abs_diff"] == 0

