"""Object-aware measures on hand-made frames: a frame with its objects removed scores low recall,
a copy of the truth scores perfect; the built-in game's orb, pip and control checks read a real
stream as the game drew it and flag streams that break its rules."""

from __future__ import annotations

import numpy as np
import torch

from worldgame.eval import bouncer_checks
from worldgame.eval.objects import blobs_per_frame, count_blobs, foreground_scores, median_background
from worldgame.eval.rollout import held_out_episode
from worldgame.games.bouncer import BACKGROUND, LIFE, ORB, Bouncer

BOUNCER = {"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64}


def _unit(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def _real(n: int = 300, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    return held_out_episode(BOUNCER, seed, n)


def test_copy_of_truth_is_perfect_and_background_only_is_not() -> None:
    frames, _ = _real()
    bg = median_background(frames)
    truth = _unit(frames[50:60])
    perfect = foreground_scores(truth, truth, bg)
    assert perfect["fg_recall"] == 1.0 and perfect["fg_precision"] == 1.0
    assert perfect["fg_psnr"] > 90
    empty = foreground_scores(bg.expand_as(truth).clone(), truth, bg)  # objects removed: the background alone
    assert empty["fg_recall"] == 0.0 and empty["fg_psnr"] < 15


def test_invented_objects_cost_precision_and_moved_ones_cost_psnr() -> None:
    frames, _ = _real()
    bg = median_background(frames)
    truth = _unit(frames[100:110])
    extra = truth.clone()
    extra[:, :, 40:44, 10:14] = torch.tensor([1.0, 1.0, 1.0])[:, None, None]  # a white square nobody drew
    s = foreground_scores(extra, truth, bg)
    assert s["fg_recall"] == 1.0 and s["fg_precision"] < 0.9
    shifted = foreground_scores(_unit(frames[101:111]), truth, bg)
    assert shifted["fg_psnr"] < 30 < foreground_scores(truth, truth, bg)["fg_psnr"]


def test_blob_counting() -> None:
    mask = np.zeros((16, 16), bool)
    mask[1:3, 1:3] = mask[8:12, 8:12] = True
    mask[14, 14] = True  # a one-pixel speck is not an object
    assert count_blobs(mask) == 2
    frames, _ = _real(50)
    blobs = blobs_per_frame(frames, median_background(frames))
    assert blobs.min() >= 3 and np.median(blobs) >= 4  # player + 3 orbs (+ coin, bolt), some touching


def test_orbs_read_back_from_the_real_game() -> None:
    frames, _ = _real()
    orbs = bouncer_checks.orbs_per_frame(frames)
    assert orbs.max() == 3 and orbs.mean() > 2.5  # overlapping orbs merge now and then
    faded = frames.copy()
    faded[bouncer_checks.colour_mask(faded, ORB)] = BACKGROUND
    assert bouncer_checks.orbs_per_frame(faded).max() == 0


def test_pip_changes_need_a_cause() -> None:
    game = Bouncer(lives=5)
    frames = [game.reset(3)]
    rng = np.random.default_rng(0)
    while len(frames) < 400:
        frame, _, done, _ = game.step(int(rng.integers(1, 6)))
        frames.append(frame)
        if done:
            break
    frames = np.stack(frames)
    real = bouncer_checks.pip_changes(frames)
    assert real["changes"] >= 1 and real["uncaused"] == 0  # every life lost came with a hit
    _, lives = bouncer_checks.pips(frames)
    calm = np.stack([Bouncer().reset(5)] * 20)
    calm[bouncer_checks.colour_mask(calm, ORB)] = BACKGROUND  # no orb anywhere: nothing can hit the player
    flicker = calm.copy()
    flicker[10:12, 1:3, 64 - 1 - 3 : 64 - 1 - 1] = BACKGROUND  # a life pip vanishes for two frames, no hit
    assert bouncer_checks.pip_changes(calm) == {"changes": 0, "uncaused": 0}
    assert bouncer_checks.pip_changes(flicker)["uncaused"] == 2
    assert bouncer_checks.pips(calm)[1][0] == 5 and lives[0] == 5 and tuple(calm[0, 1, 64 - 4]) == LIFE


def test_control_error_is_zero_for_the_game_and_sees_a_wrong_move() -> None:
    frames, actions = _real(400)
    errors = bouncer_checks.control_errors(frames, actions)
    assert len(errors) > 100 and errors.max() == 0
    wrong = actions.copy()
    moves = np.flatnonzero(np.isin(actions, [1, 2, 3, 4]))
    wrong[moves] = np.where(wrong[moves] == 3, 4, 3)  # every move read as the opposite horizontal one
    assert (bouncer_checks.control_errors(frames, wrong) > 1).mean() > 0.3
