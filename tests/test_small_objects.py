"""Small objects (a ball, a bolt) measured as objects: on hand-made frames a ball removed scores zero,
the truth scores one, a ghost ball is a false show, and big sprites or one-pixel noise never count."""

from __future__ import annotations

import numpy as np
import torch

from worldgame.eval.objects import shows_small_object, small_object_recall, small_objects_in_dreams

BG = np.zeros((32, 32, 3), np.uint8)


def _frame(ball: tuple[int, int] | None, paddle: bool = True, noise: tuple[int, int] | None = None) -> np.ndarray:
    f = BG.copy()
    if paddle:
        f[4:16, 28:31] = 200  # 36 px: a big sprite, never a small object
    if ball is not None:
        y, x = ball
        f[y : y + 2, x : x + 2] = 255  # a 4-pixel ball
    if noise is not None:
        f[noise] = 255  # one stray pixel: decoder noise, not an object
    return f


def _unit(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255


BACKGROUND = _unit([BG])[0]


def test_the_truth_scores_one_and_a_removed_ball_zero() -> None:
    truth = _unit([_frame((10, 10)), _frame((20, 5))])
    assert small_object_recall(truth, truth, BACKGROUND) == {"recall": 1.0, "objects": 2}
    no_ball = _unit([_frame(None), _frame(None)])
    assert small_object_recall(no_ball, truth, BACKGROUND) == {"recall": 0.0, "objects": 2}
    # one ball kept, one drawn elsewhere: half; the paddle, drawn in every prediction, never counts
    moved = _unit([_frame((10, 10)), _frame((2, 2))])
    assert small_object_recall(moved, truth, BACKGROUND)["recall"] == 0.5


def test_a_ball_half_drawn_counts_and_no_small_object_is_no_figure() -> None:
    truth = _unit([_frame((10, 10))])
    half = _frame(None)
    half[10:12, 10] = 255  # 2 of its 4 pixels
    assert small_object_recall(_unit([half]), truth, BACKGROUND)["recall"] == 1.0
    only_paddle = _unit([_frame(None, noise=(20, 20))])  # the paddle is too big, the stray pixel too small
    assert small_object_recall(only_paddle, only_paddle, BACKGROUND) == {"recall": None, "objects": 0}


def test_dreams_shown_and_invented_frames() -> None:
    real = np.stack([_frame((10, 10)), _frame((11, 11)), _frame(None), _frame(None)])  # the ball leaves after 2 frames
    bg = BACKGROUND
    assert shows_small_object(real, bg).tolist() == [True, True, False, False]
    same = small_objects_in_dreams(real[None], real, bg)
    assert same["shown_frac"] == 1.0 and same["invented_frac"] == 0.0 and same["real_frac"] == 0.5
    lost = np.stack([_frame(None)] * 4)  # the dream drops the ball
    assert small_objects_in_dreams(lost[None], real, bg)["shown_frac"] == 0.0
    ghost = np.stack([_frame((10, 10)), _frame((11, 11)), _frame((20, 20)), _frame((21, 21))])  # and never loses it
    g = small_objects_in_dreams(ghost[None], real, bg)
    assert g["shown_frac"] == 1.0 and g["invented_frac"] == 0.5
    # two dreams averaged: one keeps the ball, one drops it
    both = small_objects_in_dreams(np.stack([real, lost]), real, bg)
    assert both["shown_frac"] == 0.5 and both["frames"] == 8


def test_eval_report_lines_carry_the_small_objects() -> None:
    from worldgame.eval.report import small_objects_line

    small = {"max_px": 16, "vae": {"recall": 0.95, "objects": 40},
             "teacher_forced": {"recall": {"copy_last": 0.2, "1": 0.6, "4": 0.8, "teacher": None}, "objects": 40},
             "dream": {"frames": 100, "real_frac": 0.7, "dream_frac": 0.6, "shown_frac": 0.9, "invented_frac": 0.03}}
    line = small_objects_line(small)
    assert "autoencoder recall 0.950 of 40" in line and "0.800 at 4" in line and "copy-last 0.200" in line
    assert "90% of the frames the real game does" in line and "doesn't in 3%" in line
