"""Training on your own game: episodes and checkpoints carry the game's facts (keys, action names,
native frame size), collect keeps one game per folder, training reads several folders including
recorded real play and refuses dreams, and every command takes a gym checkpoint's game from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worldgame.data import EpisodeWriter
from worldgame.data.episode import (
    EVENT_RESET,
    EVENT_START,
    EVENT_STEP,
    list_episodes,
    read_episode,
    read_metadata,
)
from worldgame.errors import WorldgameError
from worldgame.games.bouncer import Bouncer
from worldgame.settings import load
from worldgame.train import loop
from worldgame.train.data import load_frame_data

TINY_TRAIN = ("train=tiny", "model=tiny", "progress=false", "threads=1", "train.vae.steps=4", "train.vae.val_every=2",
              "train.teacher.steps=4", "train.teacher.val_every=2", "train.distill.steps=0", "train.rollout.steps=0")


@pytest.fixture(scope="module")
def cartpole_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Episodes collected by the CLI with its default folder (run in a fresh working folder)."""
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("own")
    r = subprocess.run([sys.executable, "-m", "worldgame.cli", "collect", "game=gym", "game.id=CartPole-v1", "policy=random",
                        "episodes=3", "steps=30", "progress=false"], check=False, cwd=work, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return work / "data" / "cartpole"


def _train_cfg(data: object, out: Path, *extra: str):
    return load("train", [f"data={data}", f"out={out}", *TINY_TRAIN, *extra])


def test_collect_records_the_games_facts_in_a_folder_per_game(cartpole_data: Path) -> None:
    meta = read_metadata(list_episodes(cartpole_data)[0])
    assert meta["game"] == "gym:CartPole-v1"
    assert meta["native_size"] == [400, 600]  # CartPole renders 600 wide, 400 high
    assert meta["action_names"] == ["A0", "A1"] and meta["key_bindings"] == {"A0": ["0"], "A1": ["1"]}
    assert read_episode(list_episodes(cartpole_data)[0]).metadata["native_size"] == [400, 600]


def test_collect_refuses_another_game_in_a_folder(cartpole_data: Path, gym_cli: dict) -> None:
    r = gym_cli["collect_bouncer"]
    lines = [line for line in r["stderr"].splitlines() if line.strip()]
    assert r["rc"] == 1 and len(lines) == 1 and "gym:CartPole-v1" in lines[0] and "another out=" in lines[0], r["stderr"]
    assert gym_cli["cartpole_before"] == {p: p.read_bytes() for p in cartpole_data.iterdir()}


def test_training_saves_keys_and_shape_without_building_the_game(cartpole_data: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from worldgame.games import gym_adapter

    def no_env(*args: object, **kwargs: object) -> None:
        raise AssertionError("training built the gym env")

    monkeypatch.setattr(gym_adapter.GymGame, "__init__", no_env)
    loop.run(_train_cfg(cartpole_data, tmp_path / "run"))
    meta = json.loads((tmp_path / "run" / "worldgame.json").read_text())
    assert meta["native_size"] == [400, 600] and meta["key_bindings"] == {"A0": ["0"], "A1": ["1"]}
    assert meta["action_names"] == ["A0", "A1"] and meta["game"] == "gym:CartPole-v1"


def _bouncer_episode(path: Path, rows: int, extra_meta: dict | None = None, events: list[int] | None = None) -> None:
    game = Bouncer(lives=100)
    meta = {"game": game.name, "game_config": {"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64},
            "frame_size": 64, "action_names": list(game.action_names), "policy": "random", **(extra_meta or {})}
    with EpisodeWriter(path, meta) as w:
        for i in range(rows):
            frame = game.reset(i) if i == 0 or (events and events[i] == EVENT_RESET) else game.step(i % 5)[0]
            timings = {"event": float(events[i])} if events else None
            w.add(frame, i % 5 if i else 0, timings_ms=timings)


def test_train_reads_several_folders_and_real_sessions_and_skips_dreams(tmp_path: Path) -> None:
    for e in range(3):
        _bouncer_episode(tmp_path / "data" / f"ep_{e:06d}.wgep", 20)
    # a recorded session of the real game with a reset (the R key) at row 12
    events = [EVENT_START] + [EVENT_STEP] * 11 + [EVENT_RESET] + [EVENT_STEP] * 7
    _bouncer_episode(tmp_path / "sessions" / "real_1.wgep", 20, {"engine": "real", "policy": "human"}, events)
    _bouncer_episode(tmp_path / "sessions" / "model_1.wgep", 20, {"engine": "model", "policy": "model"})
    with pytest.warns(UserWarning, match="skipped 1 session"):
        train, val = load_frame_data([tmp_path / "data", tmp_path / "sessions"], context_length=4, val_fraction=0.34)
    # data: 2 train files + 1 held out; sessions: the real one trains, the dream is skipped
    assert len(train.frames) == 3 * 20 and len(val.frames) == 20
    # windows of K=4 never cross the reset: 16 per episode, 8 + 4 in the session (not 16)
    assert len(train) == 2 * 16 + (12 - 4) + (8 - 4)
    with pytest.raises(WorldgameError, match="only sessions of the world model"):
        load_frame_data(tmp_path / "sessions" / "model_1.wgep", 4, 0.1)


def test_train_refuses_folders_of_different_games(tmp_path: Path) -> None:
    for e in range(2):
        _bouncer_episode(tmp_path / "a" / f"ep_{e:06d}.wgep", 10)
    _bouncer_episode(tmp_path / "b" / "ep_000000.wgep", 10, {"game_config": {"_target_": "worldgame.games.bouncer.Bouncer",
                                                                             "frame_size": 64, "num_orbs": 5}})
    with pytest.raises(WorldgameError, match=r"game_config .* differs from"):
        load_frame_data([tmp_path / "a", tmp_path / "b"], 4, 0.1)


def test_train_cli_takes_a_list_of_folders(gym_cli: dict) -> None:
    r = gym_cli["train_list"]
    assert r["rc"] == 0, r["stderr"]
    assert "from [" in r["stdout"] and (gym_cli["work"] / "run_list" / "vae").is_dir()
    bad = gym_cli["train_empty"]
    assert bad["rc"] == 2 and "data=[]" in bad["stderr"] and "Traceback" not in bad["stderr"]


@pytest.fixture(scope="module")
def gym_checkpoint(cartpole_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gymck") / "run"
    loop.run(_train_cfg(cartpole_data, out))
    return out


@pytest.fixture(scope="module")
def gym_cli(cartpole_data: Path, gym_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The module's command lines, in order, in one driver process (tests/hostile/driver.py runs the
    real CLI in-process, so torch, hydra and gym import once); returns {case: result} and the work folder."""
    import shutil

    from hostile.batch import run_driver

    work = tmp_path_factory.mktemp("gym_cli")
    before = {p: p.read_bytes() for p in cartpole_data.iterdir()}
    shutil.copytree(cartpole_data, work / "more")
    sessions, dreams = work / "sessions", work / "dreams"
    cases = [
        ("collect_bouncer", ["collect", "game=bouncer", "policy=random", "episodes=1", "steps=5", f"out={cartpole_data}",
                             "progress=false"]),
        ("train_list", ["train", f"data=[{cartpole_data},{work / 'more'}]", f"out={work / 'run_list'}", "stage=vae",
                        *TINY_TRAIN]),
        ("train_empty", ["train", "data=[]", f"out={work / 'run_empty'}", *TINY_TRAIN]),
        # play, bench, eval and replay regenerate=true, none given game=
        ("play", ["play", f"checkpoint={gym_checkpoint}", "frames=6", "fps=0", "record=true", f"sessions={sessions}"]),
        ("replay", ["replay", f"path={sessions}", "regenerate=true"]),  # the folder holds the one session just played
        ("bench", ["bench", f"checkpoint={gym_checkpoint}", "steps=[1]", "frames=3", "warmup=0"]),
        ("eval", ["eval", f"checkpoint={gym_checkpoint}", "episodes=1", "episode_frames=24", "samples=4", "steps=[1]",
                  "teacher_steps=2", "rollout_frames=12", "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1",
                  "object_horizons=[10]", f"out={work / 'eval'}"]),
        # dreams as training data
        ("play_dreams", ["play", f"checkpoint={gym_checkpoint}", "frames=6", "fps=0", "record=true", f"sessions={dreams}"]),
        ("train_dreams", ["train", f"data={dreams}", f"out={work / 'run_dreams'}", *TINY_TRAIN]),
    ]
    (work / "driver").mkdir()
    results = run_driver(cases, work / "driver", cap=None, timeout=600)
    return {**results, "work": work, "cartpole_before": before}


def test_every_command_takes_the_game_from_a_gym_checkpoint(gym_checkpoint: Path, gym_cli: dict) -> None:
    """play, bench, eval and replay regenerate=true, none given game=."""
    r = gym_cli["play"]
    assert r["rc"] == 0, r["stderr"]
    (session,) = list_episodes(gym_cli["work"] / "sessions")  # the one session replay was given
    assert read_metadata(session)["game"] == "gym:CartPole-v1"
    r = gym_cli["replay"]
    assert r["rc"] == 0, r["stderr"]
    assert str(session) in r["stdout"]
    assert json.loads(r["stdout"].strip().splitlines()[-1])["identical"] is True
    r = gym_cli["bench"]
    assert r["rc"] == 0, r["stderr"]
    r = gym_cli["eval"]
    assert r["rc"] == 0, r["stderr"]
    result = json.loads(r["stdout"].strip().splitlines()[-1])
    assert result["checkpoint"] == str(gym_checkpoint) and "vae_psnr" in result
    assert "player" not in r["stdout"] + r["stderr"]  # the player locator is the built-in game's


def test_model_sessions_are_refused_as_training_data(gym_cli: dict) -> None:
    assert gym_cli["play_dreams"]["rc"] == 0
    r = gym_cli["train_dreams"]
    lines = [line for line in r["stderr"].splitlines() if line.strip()]
    assert r["rc"] == 1 and len(lines) == 1 and "dreams, not the game" in lines[0], r["stderr"]
    assert not (gym_cli["work"] / "run_dreams" / "vae").exists()


def test_checkpoint_native_size_is_checked(gym_checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    from worldgame.models import WorldModel

    shutil.copytree(gym_checkpoint, tmp_path / "ck", ignore=shutil.ignore_patterns("*.pt"))
    meta_file = tmp_path / "ck" / "worldgame.json"
    meta = json.loads(meta_file.read_text())
    assert WorldModel.from_pretrained(tmp_path / "ck", device="cpu").metadata["native_size"] == [400, 600]
    for bad in ([0, 5], [1, 2, 3], "210x160", [1e9, 2]):
        meta_file.write_text(json.dumps({**meta, "native_size": bad}))
        with pytest.raises(WorldgameError, match="native_size"):
            WorldModel.from_pretrained(tmp_path / "ck", device="cpu")
