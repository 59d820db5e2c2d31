"""The control check: holding a movement key moves the sprite that way in the dream, judged
against the real game. Its logic runs on a small sprite world (a dream that moves the sprite the
right way passes; a wrong, frozen or feeble one fails); its plumbing on tiny checkpoints of the
built-in game and an Atari game, whose eval shows only what applies to each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldgame.eval.control import control_check, move_pairs, shift
from worldgame.eval.objects import median_background
from worldgame.eval.rollout import NotReplayable, held_out_episode, held_out_game, hold_real, replay

# a sprite world whose keys move the sprite as Pong's do: RIGHT goes up, LEFT down, no sideways move
NAMES = ("NOOP", "FIRE", "RIGHT", "LEFT")
PONG_MOVES = {2: (0, -2), 3: (0, 2)}


def _draw(x: int, y: int) -> np.ndarray:
    f = np.zeros((64, 64, 3), np.uint8)
    f[:, 30:32] = 90  # a net both continuations draw alike
    f[y : y + 4, x : x + 3] = 255
    return f


def _world(moves: dict[int, tuple[int, int]]):
    """(contexts = sprite positions, action, n) -> frames holding the action, per ``moves``."""
    def cont(contexts, action, n):
        out = []
        for x, y in contexts:
            dx, dy = moves.get(action, (0, 0))
            out.append([_draw(x + dx * t, int(np.clip(y + dy * t, 0, 60))) for t in range(1, n + 1)])
        return np.asarray(out)
    return cont


CONTEXTS = [(5, 20), (10, 30), (50, 25), (40, 35), (8, 28), (45, 22)]
BG = median_background(np.stack([_draw(x, y) for x, y in CONTEXTS * 3]))


def _check(dream_moves):
    return control_check(_world(dream_moves), _world(PONG_MOVES), CONTEXTS, [BG] * len(CONTEXTS), NAMES, frames=8)


def test_move_pairs_come_from_the_action_names() -> None:
    assert [p[0] for p in move_pairs(NAMES)] == ["RIGHT/LEFT"]
    assert move_pairs(("NOOP", "UP", "DOWN", "LEFT", "RIGHT", "FIRE")) == [("RIGHT/LEFT", 4, 3), ("DOWN/UP", 2, 1)]
    assert move_pairs(("A0", "A1")) == []


def test_shift_is_the_sprites_move() -> None:
    assert np.allclose(shift(_draw(20, 10), _draw(10, 10), BG), [10, 0])  # the net cancels, never dilutes
    assert np.allclose(shift(_draw(10, 10), _draw(10, 10), BG), [0, 0])


def test_right_moves_pass_wrong_frozen_and_feeble_ones_fail() -> None:
    good = _check(PONG_MOVES)
    pair = good["pairs"]["RIGHT/LEFT"]
    assert good["passed"] is True and pair["agree_frac"] == 1.0
    assert pair["real_xy"][0] == 0 and pair["real_xy"][1] < -10  # RIGHT went up: read from the game, not the name
    assert pair["dream_px"] == pair["real_px"]
    assert _check({2: (0, 2), 3: (0, -2)})["passed"] is False  # the keys swapped
    assert _check({2: (2, 0), 3: (-2, 0)})["passed"] is False  # sideways, as the name says, but not as the game does
    assert _check({})["passed"] is False  # the model ignores its actions
    assert _check({2: (0, -1), 3: (0, 1)})["passed"] is True  # half the move is enough
    assert _check({2: (0, 0), 3: (0, 1)})["passed"] is False  # a quarter is not (the 1/3 threshold)


def _punching(arm: int):
    """The sprite world where holding FIRE extends an ``arm`` px long for frames 2..4, then retracts."""
    def cont(contexts, action, n):
        out = []
        for x, y in contexts:
            frames = []
            for t in range(1, n + 1):
                f = _draw(x, y)
                if action == 1 and 2 <= t <= 4 and arm:
                    f[y + 1 : y + 3, x + 3 : x + 3 + arm] = 255
                frames.append(f)
            out.append(frames)
        return np.asarray(out)
    return cont


def test_fire_passes_where_the_dream_punches_and_fails_where_it_never_does() -> None:
    def fire(dream_arm):
        out = control_check(_punching(dream_arm), _punching(6), CONTEXTS, [BG] * len(CONTEXTS), NAMES, frames=8)
        return out["pairs"]["FIRE/NOOP"]

    good = fire(6)
    assert good["passed"] is True and good["agree_frac"] == 1.0 and good["real_px"] == 12 and good["contexts"] == [6, 6]
    assert fire(0)["passed"] is False  # a dream that never extends an arm (Boxing before the chance code)
    assert fire(1)["passed"] is False  # a twitch is not a punch (under a third of the real area)


def test_contexts_where_the_game_does_not_move_are_not_counted() -> None:
    stuck = {2: (0, 0), 3: (0, 0)}  # e.g. a paddle between points: no real move, no verdict
    out = control_check(_world(PONG_MOVES), _world(stuck), CONTEXTS, [BG] * len(CONTEXTS), NAMES, frames=8)
    assert out["pairs"]["RIGHT/LEFT"]["contexts"] == [0, len(CONTEXTS)] and out["passed"] is None


@pytest.mark.parametrize("game", [{"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64},
                                  {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "CartPole-v1", "frame_size": 64}])
def test_the_real_game_replays_from_seed_and_actions(game: dict) -> None:
    if "id" in game:
        pytest.importorskip("gymnasium")
    frames, actions = held_out_episode(game, 12, 60)
    assert np.array_equal(replay(held_out_game(game)[0], 12, actions), frames)
    held = hold_real(game, [(12, frames, actions)], [(0, 30)], 1, 5)
    assert held.shape == (1, 5, 64, 64, 3)
    with pytest.raises(NotReplayable):  # another seed is another game: no false reference
        hold_real(game, [(13, frames, actions)], [(0, 30)], 1, 5)


@pytest.fixture(scope="module")
def breakout_checkpoint(tmp_path_factory):
    """An untrained tiny checkpoint of an Atari game with RIGHT/LEFT keys (plumbing, not quality)."""
    pytest.importorskip("ale_py")
    import torch

    from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel

    torch.manual_seed(0)
    names = ["NOOP", "FIRE", "RIGHT", "LEFT"]
    model = WorldModel(
        TinyAutoencoder(width=16, encoder_blocks=1, decoder_blocks=1),
        ActionDenoiser(num_actions=len(names), context_length=2, block_out_channels=(16, 16), norm_num_groups=8),
        metadata={"game": "gym:ALE/Breakout-v5", "frame_size": 64, "native_size": [210, 160], "action_names": names,
                  "key_bindings": {},
                  "game_config": {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "ALE/Breakout-v5",
                                  "frame_size": 64},
                  "context_noise": 0.05, "prediction_type": "sample", "context_length": 2},
    )
    path = tmp_path_factory.mktemp("ck") / "breakout"
    model.save_pretrained(path)
    return path


SMALL = ["episodes=1", "episode_frames=24", "samples=2", "teacher_steps=1", "steps=[1]", "rollout_frames=8",
         "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1", "object_horizons=[8]", "threads=1",
         "control_contexts=3", "control_frames=4"]
BOUNCER_ONLY = ("player_err_px", "player_lost_frac", "first_hit_frame", "player_err_px_until_first_hit")


@pytest.fixture(scope="module")
def evals(request, tiny_checkpoint, tmp_path_factory, run_cli_batch) -> dict:
    """`worldgame eval` of the tiny Bouncer checkpoint and (with ale_py) the Breakout one, both in one
    driver process (torch loads once): {name: (CompletedProcess, out folder)}."""
    import importlib.util

    checkpoints = {"bouncer": tiny_checkpoint}
    if importlib.util.find_spec("ale_py") is not None:  # else the Breakout test skips on its own
        checkpoints["breakout"] = request.getfixturevalue("breakout_checkpoint")
    outs = {name: tmp_path_factory.mktemp(f"eval_{name}") for name in checkpoints}
    runs = run_cli_batch(*(["eval", f"checkpoint={ck}", f"out={outs[name]}", *SMALL] for name, ck in checkpoints.items()))
    return {name: (r, outs[name]) for name, r in zip(checkpoints, runs)}


def _eval(run: tuple):
    r, out = run
    assert r.returncode == 0, r.stderr
    # not a terminal: one plain line per stage on stderr (a long eval is never silent), no bar redraws
    stages = [line for line in r.stderr.splitlines() if line.startswith("eval [")]
    assert [line.split("]: ")[1].split(" ")[0] for line in stages] == ["held-out", "teacher-forced", "1", "1",
                                                                       "control:", "objects"], r.stderr
    assert "\r" not in r.stderr
    lines = r.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1]), (out / "report.md").read_text()


def test_gym_eval_shows_only_what_applies(breakout_checkpoint, evals) -> None:
    result, printed, report = _eval(evals["breakout"])
    from PIL import Image

    # the strip at the game's 210x160 aspect (each frame 3x: 192 tall, 146 wide), real over dreamed
    assert Image.open(evals["breakout"][1] / "strip.png").size == (146, 2 * 192 + 6)
    assert not set(BOUNCER_ONLY) & set(result["rollout"]) and "bouncer" not in result["objects"]
    assert "collapsed" in result["rollout"]
    control = result["objects"]["control"]
    assert list(control["pairs"]) == ["RIGHT/LEFT", "FIRE/NOOP"] and control["pairs"]["RIGHT/LEFT"]["contexts"][1] == 3
    for text in (printed, report):
        assert "player" not in text and "orb" not in text and "pip" not in text
        assert "RIGHT/LEFT" in text and "foreground" in text


def test_bouncer_eval_keeps_its_checks_and_adds_control(evals) -> None:
    result, printed, report = _eval(evals["bouncer"])
    assert set(BOUNCER_ONLY) <= set(result["rollout"]) and "control" in result["objects"]["bouncer"]
    assert list(result["objects"]["control"]["pairs"]) == ["RIGHT/LEFT", "DOWN/UP", "FIRE/NOOP"]
    assert "player" in printed and "player position error" in report and "orbs" in report
