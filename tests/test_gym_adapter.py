"""GymGame: any gymnasium env with discrete actions, seen as a worldgame Game."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldgame.data.episode import list_episodes, read_episode
from worldgame.errors import WorldgameError
from worldgame.games.gym_adapter import GymGame

pytest.importorskip("gymnasium")


def test_cartpole_frames_and_steps():
    game = GymGame("CartPole-v1")
    assert game.name == "gym:CartPole-v1"
    assert len(game.action_names) == 2
    frame = game.reset(0)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # a picture, not a blank
    out = game.step(1)
    assert isinstance(out, tuple) and len(out) == 4
    frame, reward, done, info = out
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert isinstance(reward, float) and isinstance(done, bool) and isinstance(info, dict)


def test_cartpole_frame_size_and_seed():
    a, b = GymGame("CartPole-v1", frame_size=32), GymGame("CartPole-v1", frame_size=32)
    fa, fb = a.reset(5), b.reset(5)
    assert fa.shape == (32, 32, 3)
    assert np.array_equal(fa, fb)
    for _ in range(5):
        assert np.array_equal(a.step(0)[0], b.step(0)[0])


def test_breakout_actions_and_keys():
    pytest.importorskip("ale_py")
    game = GymGame("ALE/Breakout-v5")
    assert list(game.action_names) == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert game.key_bindings["FIRE"] == ["space"]
    assert game.key_bindings["RIGHT"] == ["right"]
    assert game.key_bindings["LEFT"] == ["left"]
    assert "NOOP" not in game.key_bindings
    frame = game.reset(0)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    frame, reward, done, _ = game.step(1)
    assert frame.shape == (64, 64, 3) and isinstance(reward, float) and isinstance(done, bool)


def test_collect_gym_via_cli(tmp_path, run_cli):
    r = run_cli(
        "collect",
        "game=gym",
        "game.id=CartPole-v1",
        "policy=random",
        "episodes=1",
        "steps=20",
        f"out={tmp_path}",
        "progress=false",
    )
    assert r.returncode == 0, r.stderr
    (f,) = list_episodes(tmp_path)
    ep = read_episode(f)
    assert ep.metadata["game"] == "gym:CartPole-v1"
    assert ep.metadata["action_names"] == list(GymGame("CartPole-v1").action_names)
    assert 1 < len(ep) <= 21
    assert ep.frames.shape[1:] == (64, 64, 3)


def test_scripted_policy_refuses_gym_game(tmp_path, run_cli):
    r = run_cli(
        "collect",
        "game=gym",
        "game.id=CartPole-v1",
        "policy=scripted",
        "episodes=1",
        "steps=5",
        f"out={tmp_path}",
        "progress=false",
    )
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "policy=random" in lines[0], r.stderr


def test_continuous_env_refused():
    with pytest.raises(WorldgameError, match="Discrete"):
        GymGame("Pendulum-v1")


def test_unknown_env_refused():
    with pytest.raises(WorldgameError, match="NoSuchEnv"):
        GymGame("NoSuchEnv-v0")


@pytest.fixture(scope="module")
def cartpole_checkpoint(tmp_path_factory):
    """An untrained tiny checkpoint that says it was trained on CartPole (plumbing, not quality)."""
    import torch

    from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel

    torch.manual_seed(0)
    names = list(GymGame("CartPole-v1").action_names)
    model = WorldModel(
        TinyAutoencoder(width=16, encoder_blocks=1, decoder_blocks=1),
        ActionDenoiser(num_actions=len(names), context_length=2, block_out_channels=(16, 16), norm_num_groups=8),
        metadata={"game": "gym:CartPole-v1", "frame_size": 64, "action_names": names, "key_bindings": {},
                  "game_config": {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "CartPole-v1", "frame_size": 64},
                  "context_noise": 0.05, "prediction_type": "sample", "context_length": 2},
    )
    path = tmp_path_factory.mktemp("ck") / "cartpole"
    model.save_pretrained(path)
    return path


def test_checkpoint_names_its_own_game(cartpole_checkpoint, run_cli_batch):
    """bench (and play) take the game from the checkpoint; game= only has to agree with it."""
    args = ("bench", f"checkpoint={cartpole_checkpoint}", "steps=[1]", "frames=3", "warmup=0")
    ok, clash = run_cli_batch(args, (*args, "game=bouncer"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["results"][0]["steps"] == 1
    lines = [line for line in clash.stderr.splitlines() if line.strip()]
    assert clash.returncode == 1 and len(lines) == 1 and "gym:CartPole-v1" in lines[0], clash.stderr


def test_each_game_records_its_own_tick_rate(tiny_checkpoint):
    """Atari steps 4 of the emulator's 60 frames a second (15 Hz), CartPole says 50, Bouncer 30; the
    rate is derivable from a game config alone, and a checkpoint's recorded one is checked on load."""
    pytest.importorskip("ale_py")
    import shutil
    import tempfile
    from pathlib import Path

    from worldgame.games import Bouncer, game_metadata
    from worldgame.games.registry import tick_hz_of
    from worldgame.models import WorldModel

    boxing = {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "ALE/Boxing-v5", "frame_size": 64, "kwargs": {}}
    assert GymGame("ALE/Boxing-v5").tick_hz == 15.0 == tick_hz_of(boxing)
    assert tick_hz_of({**boxing, "kwargs": {"frameskip": 2}}) == 30.0
    assert GymGame("CartPole-v1").tick_hz == 50.0
    assert game_metadata(Bouncer(), {"_target_": "worldgame.games.bouncer.Bouncer"})["tick_hz"] == 30.0
    folder = Path(tempfile.mkdtemp()) / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    meta = json.loads((folder / "worldgame.json").read_text())
    (folder / "worldgame.json").write_text(json.dumps({**meta, "tick_hz": "fast"}))
    with pytest.raises(WorldgameError, match="tick_hz"):
        WorldModel.from_pretrained(folder)


def test_pong_arrows_follow_the_paddle():
    """Pong's RIGHT moves the paddle up: the up arrow is bound to it too (and down to LEFT)."""
    pytest.importorskip("ale_py")
    game = GymGame("ALE/Pong-v5")
    assert game.key_bindings["RIGHT"] == ["right", "up"]
    assert game.key_bindings["LEFTFIRE"] == ["left+space", "down+space"]
    assert GymGame("ALE/Breakout-v5").key_bindings["RIGHT"] == ["right"]  # only games that need it


def _returns(policy_name: str, steps: int = 700) -> tuple[int, float]:
    """Times the ball left our (right) paddle going back left, and the paddle's travel."""
    from worldgame.data.policies import make_policy

    game = GymGame("ALE/Pong-v5")
    game.reset(3)
    policy = make_policy(policy_name, game, 0.8, 3)
    returns, last_x, last_dx, ys = 0, None, 0.0, []
    for _ in range(steps):
        game.step(policy())
        field = game.native_frame[34:194]
        ball = np.argwhere((field == 236).all(-1))
        paddle = np.argwhere((field[:, 140:144] == (92, 186, 92)).all(-1))
        if len(paddle):
            ys.append(paddle[:, 0].mean())
        if not len(ball):
            last_x = None
            continue
        x = ball[:, 1].mean()
        if last_x is not None and x != last_x:
            returns += last_dx > 0 and x < last_x and x > 120
            last_dx = x - last_x
        last_x = x
    return returns, float(np.abs(np.diff(ys)).sum())


def test_tracker_returns_pongs_ball():
    """The tracker hits the ball back (what the data needs to show rallies); random play hardly does."""
    pytest.importorskip("ale_py")
    tracked, travel = _returns("tracker")
    random_returns, _ = _returns("random")
    assert tracked >= 4 and tracked > 2 * random_returns, (tracked, random_returns)
    assert travel > 100  # it moves


def test_tracker_refuses_other_games(tmp_path, run_cli):
    r = run_cli("collect", "game=gym", "game.id=CartPole-v1", "policy=tracker", "episodes=1", "steps=5",
                f"out={tmp_path}", "progress=false")
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ALE/Pong-v5" in lines[0], r.stderr
    assert not list(tmp_path.glob("*.wgep"))


def test_held_out_play_uses_each_games_own_policy():
    """Held-out evaluation plays Pong with the tracker (random Pong has no rallies to compare),
    the built-in game with its scripted player, and other games with sticky random actions."""
    pytest.importorskip("ale_py")
    from worldgame.data.policies import game_policy
    from worldgame.eval.rollout import held_out_episode
    from worldgame.games.bouncer import Bouncer

    assert game_policy(GymGame("ALE/Pong-v5")) == "tracker"
    assert game_policy(GymGame("ALE/Breakout-v5")) == "random"
    assert game_policy(Bouncer()) == "scripted"
    cfg = {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "ALE/Pong-v5", "frame_size": 64}
    frames, actions = held_out_episode(cfg, 7, 200)
    a, b = held_out_episode(cfg, 7, 200)
    assert frames.shape == (200, 64, 64, 3) and np.array_equal(frames, a) and np.array_equal(actions, b)
    assert {2, 3} <= set(actions.tolist())  # the paddle is steered both ways


def test_tracker_reads_a_resized_frame_as_the_native_one():
    """Given a 96-px frame (what a dream shows), the tracker finds the ball and its paddle where the
    native frame has them: so it can play inside a dream."""
    pytest.importorskip("ale_py")
    from worldgame.data.policies import TrackerPolicy

    game = GymGame("ALE/Pong-v5", frame_size=96)
    game.reset(0)
    policy = TrackerPolicy(game, 0.8, 0)
    errors, both, disagree = [], 0, 0
    for _ in range(200):
        frame = game.step(policy())[0]
        native, small = policy.find(game.native_frame), policy.find(frame)
        for a, b in zip(native, small, strict=True):
            disagree += (a is None) != (b is None)
            if a is not None and b is not None:
                errors.append(abs(a - b))
        both += native[0] is not None
    assert both > 100 and disagree <= 4, (both, disagree)  # the ball is in play most of the time, and seen in both
    assert max(errors) < 3  # native rows


def test_an_atari_command_exits_without_leak_reports(tmp_path, run_cli):
    """The ALE env is closed before the command freezes its heap at exit: no ~20 lines of
    "nanobind: leaked instances" that read as a crash (issue 31's rough edges)."""
    pytest.importorskip("ale_py")
    r = run_cli("play", "checkpoint=checkpoints/boxing", "frames=3", "fps=0", f"sessions={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "nanobind" not in r.stderr and "leaked" not in r.stderr, r.stderr[-800:]
