"""Temporal super-resolution (`display_hz`): in-between frames shown between model frames, through
the real play loop, window, recorder and bench; the model, its sessions and display_hz=0 untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldgame.commands.play import play
from worldgame.data.episode import read_episode
from worldgame.engine.engines import EngineStatus, StepResult, Wants
from worldgame.engine.hud import HudState, hud_lines
from worldgame.engine.session import EVENT_STEP, regenerate
from worldgame.engine.stats import FrameStats
from worldgame.errors import WorldgameError
from worldgame.frontend.controls import tap
from worldgame.frontend.loop import PlayLoop
from worldgame.frontend.tsr import Interpolator, frames_per_tick
from worldgame.frontend.window import Window

pytestmark = pytest.mark.usefixtures("torch_one_thread")
MOVES = [{"right"}] * 4 + [{"up", "space"}] * 3 + [{"left"}] * 4 + [set()] * 2 + [{"down"}] * 3


def _scaled(frame: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, 0), scale, 1)


def _sprite(x: int, y: int, size: int = 16, side: int = 6) -> np.ndarray:
    frame = np.zeros((size * 2, size * 2, 3), np.uint8)
    frame[:] = (18, 22, 44)
    frame[y : y + side, x : x + side] = (60, 220, 90)
    return frame


def test_display_hz_off_shows_each_model_frame_once_and_on_changes_no_model_frame(tiny_checkpoint, play_config, monkeypatch):
    """display_hz=0 is the loop as it was: one presented frame per model frame, the model's own
    frame in the window, no in-between frame, no new stage; with TSR on, the model frames (the
    ones recorded and fed back) are the same frames, bit for bit."""
    import pygame

    presents = []
    real_present = Window.present
    monkeypatch.setattr(Window, "present", lambda self: (presents.append(1), real_present(self)))
    runs = {}
    for hz in (0, 120):
        presents.clear()
        seen, frames, window = [], [], []
        cfg = play_config(f"checkpoint={tiny_checkpoint}", "fps=60", f"display_hz={hz}", "seed=5", "steps=2",
                          "scale=2", "display_interp=blend")

        def on_frame(info, seen=seen, frames=frames, window=window):
            seen.append(info)
            frames.append(info.result.frame.copy())
            window.append(pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1)[:128, :128].copy())

        summary = play(cfg, script=MOVES, on_frame=on_frame)
        runs[hz] = (summary, frames, seen)
        assert len(presents) == 1 + (2 if hz else 1) * len(MOVES)  # the first frame, then each tick's
        assert all(np.array_equal(shown, _scaled(f, 2)) for f, shown in zip(frames, window))  # ends on the model frame
        if hz == 0:
            assert summary.between_frames == 0 and all(f.shown == 1 for f in seen)
            assert all(f.first_latency_ms == f.latency_ms for f in seen)
            assert all("interpolate" not in f.stages_ms for f in seen)
    off, on = runs[0], runs[120]
    assert len(off[1]) == len(on[1]) == len(MOVES)
    assert all(np.array_equal(a, b) for a, b in zip(off[1], on[1]))
    assert on[0].between_frames == len(MOVES) and all(f.shown == 2 for f in on[2])


def test_display_hz_twice_fps_presents_two_frames_per_model_frame_between_their_neighbours(tiny_checkpoint, play_config):
    import pygame

    fps = 60
    cfg = play_config(f"checkpoint={tiny_checkpoint}", f"fps={fps}", f"display_hz={2 * fps}", "seed=3", "steps=2",
                      "scale=2", "display_interp=blend", "fusion=pixel")  # pixel fusion: the engine reuses its frame buffer
    seen, frames, betweens = [], {}, []

    def on_frame(info):
        seen.append(info)
        frames[info.index] = info.result.frame.copy()

    def on_between(info):
        shown = pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1)[:128, :128].copy()
        betweens.append((info.index, info.alpha, info.frame.copy(), shown))

    summary = play(cfg, script=MOVES + [tap("backspace")] + MOVES, on_frame=on_frame, on_between=on_between)
    stepped = [f for f in seen if f.event == EVENT_STEP]
    assert summary.frames == len(seen) == 2 * len(MOVES) + 1
    assert summary.between_frames == len(betweens) == len(stepped)  # the reset jumps: nothing in between
    assert all(f.shown == 2 for f in stepped) and all(f.shown == 1 for f in seen if f.event != EVENT_STEP)
    assert summary.display_fps > 1.5 * fps  # about two presented frames per model frame
    checked = 0
    for index, alpha, frame, shown in betweens:
        assert alpha == 0.5 and np.array_equal(shown, _scaled(frame, 2))  # what the window shows
        if index == 1:
            continue  # the first step starts from the run's reset frame, which on_frame does not see
        a, b = frames[index - 1], frames[index]
        assert np.all(frame >= np.minimum(a, b)) and np.all(frame <= np.maximum(a, b))  # every pixel within its neighbours'
        assert np.array_equal(frame, np.rint(a.astype(np.float32) * 0.5 + b.astype(np.float32) * 0.5).astype(np.uint8))
        checked += 1
    assert checked == len(betweens) - 1
    slot_ms = 1000 / (2 * fps)
    waits = [f.latency_ms - f.first_latency_ms for f in stepped]
    assert np.median(waits) >= 0.8 * slot_ms  # each model frame is shown one display period after its in-between frame


class MovingSprite:
    """An engine whose frame is a green square moving 2 px right and 2 px down per step."""

    kind, live, frame_size, native_size = "stub", frozenset(), 32, None
    action_names, key_bindings = ["NOOP"], {}

    def __init__(self) -> None:
        self.t = 0

    def reset(self, seed: int) -> np.ndarray:
        self.t = 0
        return _sprite(4, 4)

    def step(self, action: int) -> StepResult:
        self.t += 1
        return StepResult(_sprite(4 + 2 * self.t, 4 + 2 * self.t))

    def set_steps(self, steps: int) -> None: ...
    def set_fusion(self, mode) -> None: ...
    def resync(self) -> None: ...
    def want(self, wants: Wants) -> None: ...

    def status(self) -> EngineStatus:
        return EngineStatus()

    def state(self) -> None:
        return None


def test_warp_shows_a_moving_object_once_part_of_the_way_in_the_window():
    window = Window(32, 2, hud_lines=5)
    try:
        shown = []
        loop = PlayLoop(MovingSprite(), window, fps=0, script=[set()] * 5, display_per_tick=2, interpolation="warp",
                        on_between=lambda b: shown.append((b.index, b.frame.copy(), window.snapshot()[:64, :64])))
        summary = loop.run()
        assert summary.frames == 5 and summary.between_frames == 5
        for index, frame, pixels in shown:
            assert np.array_equal(pixels, _scaled(frame, 2))  # what the window shows
            colours = {tuple(c) for c in np.unique(frame.reshape(-1, 3), axis=0)}
            assert colours == {(18, 22, 44), (60, 220, 90)}  # the sprite once, opaque: no half-transparent copy
            ys, xs = np.nonzero(frame[..., 1] == 220)
            mid = 4 + 2 * index - 1 + 2.5  # the sprite's centre, half way: one px each way short of the model frame's
            assert len(xs) >= 30 and abs(xs.mean() - mid) <= 0.5 and abs(ys.mean() - mid) <= 0.5  # (a corner px may stay behind)
    finally:
        window.close()


def test_interpolator_warp_and_blend():
    warp, blend = Interpolator("warp"), Interpolator("blend")
    a, b = _sprite(6, 8), _sprite(10, 8)  # 4 px to the right
    warp.start(a, b)
    assert [int(np.argwhere(warp.frame(t)[..., 1] == 220)[:, 1].min()) for t in (0.25, 0.5, 0.75)] == [7, 8, 9]
    blend.start(a, b)
    half = blend.frame(0.5)
    assert np.all(half >= np.minimum(a, b)) and np.all(half <= np.maximum(a, b))
    assert len(np.unique(half.reshape(-1, 3), axis=0)) == 3  # the sprite twice, half-transparent where it left and arrived
    warp.start(a, a)
    assert np.array_equal(warp.frame(0.5), a)  # nothing moved: nothing changes
    nothing, appeared = _sprite(0, 0, side=0), _sprite(20, 20)
    warp.start(nothing, appeared)
    blend.start(nothing, appeared)
    faded = warp.frame(0.5)  # nothing to follow: it fades in, nothing new is drawn (its rim stays background a frame)
    assert np.all(faded >= np.minimum(nothing, appeared)) and np.all(faded <= np.maximum(nothing, appeared))
    assert 0 < int((faded != nothing).any(-1).sum()) and not (faded == appeared).all(-1)[20:26, 20:26].any()
    line = hud_lines(FrameStats(), HudState("model", 30.0, "NOOP", None, 1, display_hz=60.0, display_fps=59.5))[0][0]
    assert "display 59.5 Hz" in line


def test_sessions_recorded_with_tsr_hold_model_frames_only_and_regenerate_identically(tiny_checkpoint, play_config, tmp_path):
    script = MOVES + [tap("1")] + MOVES + [tap("f")] + MOVES + [tap("m"), tap("m"), tap("y")] + MOVES[:4] + [tap("tab")] + MOVES
    recorded = {}
    for hz in (0, 120):
        cfg = play_config(f"checkpoint={tiny_checkpoint}", "fps=60", f"display_hz={hz}", "seed=9", "record=true",
                          f"sessions={tmp_path / str(hz)}", "steps=2", "fusion=latent")
        seen = []
        summary = play(cfg, script=script, on_frame=lambda f, seen=seen: seen.append(f.result.frame.copy()))
        (path,) = summary.sessions
        assert regenerate(path, device="cpu") == {"frames": len(seen) + 1, "identical": True, "psnr": float("inf"),
                                                  "max_abs_diff": 0, "events_identical": True}
        episode = read_episode(path)
        assert len(episode) == len(seen) + 1  # the start row, then one row per model frame
        assert all(np.array_equal(episode.frames[i + 1], frame) for i, frame in enumerate(seen))
        recorded[hz] = episode
        if hz:
            assert summary.between_frames > 0 and "interpolate" in episode.timings_ms
    assert np.array_equal(recorded[0].frames, recorded[120].frames)


def test_bench_with_display_hz_reports_the_in_between_cost_and_the_latency_it_adds(tiny_checkpoint, run_cli_batch):
    r, plain = run_cli_batch(
        ["bench", f"checkpoint={tiny_checkpoint}", "steps=[1]", "frames=6", "warmup=2", "display_hz=120", "fps=60",
         "backend=torch"],
        ["bench", f"checkpoint={tiny_checkpoint}", "steps=[1]", "frames=3", "warmup=1", "backend=torch"])
    assert r.returncode == 0, r.stderr
    (result,) = json.loads(r.stdout.strip().splitlines()[-1])["results"]
    assert {"steps", "fps", "latency_ms", "stages_ms", "backend", "window", "tsr"} <= set(result)
    assert set(result["stages_ms"]) == {"input", "denoise", "fusion", "decode", "present"}
    tsr = result["tsr"]
    assert tsr["display_hz"] == 120 and tsr["fps"] == 60 and tsr["per_tick"] == 2 and tsr["interpolation"] == "warp"
    assert tsr["interpolated_frames"] == 6 and tsr["interp_frame_ms"]["interpolate"] > 0
    assert tsr["interp_frame_ms"]["total"] >= tsr["interp_frame_ms"]["present"] > 0
    assert tsr["display_fps"] > result["fps"]
    paced = tsr["paced"]
    assert paced["ticks"] == 6 and set(paced["latency_ms"]) == {"off", "on", "on_first_frame"}
    assert tsr["added_latency_ms"]["p50"] > 0.5 * 1000 / 120  # a model frame waits one display period for its turn
    assert plain.returncode == 0 and "tsr" not in json.loads(plain.stdout.strip().splitlines()[-1])["results"][0]


@pytest.mark.parametrize("args", [["play", "display_hz=45"], ["play", "display_hz=60", "fps=0"], ["play", "display_hz=30"],
                                  ["play", "display_hz=-1"], ["play", "display_interp=latent"], ["bench", "display_hz=50"]])
def test_bad_display_hz_is_one_line_and_exit_2(run_cli, args):
    r = run_cli(*args)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "display_" in r.stderr


def test_frames_per_tick_from_the_library(play_config, tiny_checkpoint):
    assert frames_per_tick(30, 0) == 1 and frames_per_tick(30, 60) == 2 and frames_per_tick(24, 120) == 5
    with pytest.raises(WorldgameError, match="whole multiple"):
        play(play_config(f"checkpoint={tiny_checkpoint}", "display_hz=45", "frames=1"))


def test_play_ticks_at_the_games_own_rate_unless_fps_is_given(play_config, run_cli):
    """fps=null: Bouncer's 30 Hz, Boxing's 15 Hz (the rate display_hz must be a whole multiple of,
    checked before the model loads); fps= given wins."""
    pytest.importorskip("ale_py")
    from worldgame.schema import SettingError

    with pytest.raises(SettingError, match=r"multiple of fps=30\b"):
        play(play_config("display_hz=45", "frames=1"))
    boxing = run_cli("play", "checkpoint=checkpoints/boxing", "display_hz=40", "frames=1")
    assert boxing.returncode == 2 and "multiple of fps=15 " in boxing.stderr, boxing.stderr
    given = run_cli("play", "checkpoint=checkpoints/boxing", "display_hz=45", "fps=20", "frames=1")
    assert given.returncode == 2 and "multiple of fps=20 " in given.stderr, given.stderr
