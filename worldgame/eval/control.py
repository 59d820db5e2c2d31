"""Does holding a movement key move the player's sprite that way in the dream? For any game.

From a real context, the game is continued twice for ``frames`` frames, once holding action A
and once holding its opposite B (RIGHT/LEFT, DOWN/UP, found by name in the checkpoint's
``action_names``; a pair the game lacks is skipped), in the dream (same sampling noise for A and
B) and in the real game (rebuilt at the episode's seed, replaying the same actions: the games are
deterministic given seed and actions). On the last frame of each pair of continuations the *shift*
is where the foreground of A lies relative to that of B (below). The real game says which way
the key moves things and how far, so no direction is assumed from a name (in Pong "RIGHT" moves
the paddle up).

The shift (dx, dy) px: centroid of the pixels that are foreground in A only minus the centroid of
those foreground in B only (foreground: away from the episode's median background,
``objects.foreground_mask``). Whatever both continuations drew alike (walls, score, a sprite that
did not move) cancels instead of diluting the centroid; a sprite of width w moved by d shifts it
by about max(d, w) along the move, in the dream and the real game alike.

Verdict, per pair (``objects.control`` in the eval JSON, keyed "A/B"):

* a context counts when the real shift is at least ``MIN_REAL_PX`` (the key moves something
  there: not against a wall, not between points);
* it agrees when the dream's shift along the real shift's direction is at least ``AGREE_SHARE``
  (1/3) of the real shift's length: the right way, and not a twitch (the dream's sprites are
  blurrier and its opponents react differently, so equality is not asked);
* the pair passes when at least ``PASS_SHARE`` (3/4) of the counted contexts agree; with fewer
  than two counted contexts it has no verdict (``passed`` null).

Per pair: ``dream_px`` (mean dream shift along the real direction), ``real_px`` (mean real shift
length), ``dream_xy`` / ``real_xy`` (mean shift vectors), ``contexts`` (counted / tried),
``agree_frac``, ``passed``; and overall ``passed`` (every pair with a verdict passed; null when
none has one).

FIRE (where the game has FIRE and NOOP): the same two continuations, holding FIRE and holding
NOOP, for the first ``FIRE_FRAMES`` (4) frames (a punch shows at once; later the continuations
drift apart for other reasons); what FIRE changes is the *area* (px) foreground in one
continuation only, at the frame where it is largest (a punch extends and retracts; a bolt flies). A context counts when the real area is
at least ``MIN_FIRE_PX``; it agrees when the dream's is at least ``AGREE_SHARE`` of the real one;
the check passes when ``FIRE_PASS_SHARE`` (7/8) of the counted contexts agree. Keyed "FIRE/NOOP",
``dream_px`` / ``real_px`` are the mean areas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from worldgame.eval.metrics import frames_to_unit
from worldgame.eval.objects import foreground_mask

PAIRS = (("RIGHT", "LEFT"), ("DOWN", "UP"))  # image y grows downwards
MIN_REAL_PX = 1.0
AGREE_SHARE = 1 / 3
PASS_SHARE = 3 / 4
MIN_FIRE_PX = 4.0
FIRE_FRAMES = 4  # a punch shows within a few frames; later the two continuations drift apart anyway
FIRE_PASS_SHARE = 7 / 8

# (contexts, action index, frames) -> uint8 (len(contexts), frames, H, W, 3): the game continued
# from each context holding the action
Continue = Callable[[Sequence, int, int], np.ndarray]


def move_pairs(action_names: Sequence[str]) -> list[tuple[str, int, int]]:
    """("RIGHT/LEFT", index of RIGHT, index of LEFT), ... for the opposite pairs the game has."""
    index = {str(n).upper(): i for i, n in enumerate(action_names)}
    return [(f"{a}/{b}", index[a], index[b]) for a, b in PAIRS if a in index and b in index]


def shift(a: np.ndarray, b: np.ndarray, background: torch.Tensor) -> np.ndarray:
    """(dx, dy) px of frame a's foreground relative to frame b's, over the pixels foreground in
    only one of them (uint8 (H, W, 3) frames); (0, 0) when one side has none."""
    fg = foreground_mask(frames_to_unit(torch.from_numpy(np.stack([a, b]))), background).numpy()
    only_a, only_b = fg[0] & ~fg[1], fg[1] & ~fg[0]
    if not only_a.any() or not only_b.any():
        return np.zeros(2)
    ya, xa = np.nonzero(only_a)
    yb, xb = np.nonzero(only_b)
    return np.array([xa.mean() - xb.mean(), ya.mean() - yb.mean()])


def control_check(dream: Continue, real: Continue, contexts: Sequence, backgrounds: Sequence[torch.Tensor],
                  action_names: Sequence[str], frames: int = 12) -> dict:
    """The verdict of the module docstring. ``dream`` and ``real`` continue the game from each of
    ``contexts`` holding an action; ``backgrounds[i]`` is the median background (3, H, W) of
    context i's episode."""
    pairs: dict[str, dict] = {}
    for name, a, b in move_pairs(action_names):
        shifts = {}
        for kind, cont in (("dream", dream), ("real", real)):
            ends_a, ends_b = cont(contexts, a, frames)[:, -1], cont(contexts, b, frames)[:, -1]
            shifts[kind] = np.stack([shift(x, y, bg) for x, y, bg in zip(ends_a, ends_b, backgrounds)])
        length = np.linalg.norm(shifts["real"], axis=1)
        counted = length >= MIN_REAL_PX
        r, d = shifts["real"][counted], shifts["dream"][counted]
        along = (d * r).sum(1) / length[counted]  # the dream's shift along the real one's direction
        agree = along >= AGREE_SHARE * length[counted]
        n = int(counted.sum())
        pairs[name] = {
            "dream_px": round(float(along.mean()), 2) if n else None,
            "real_px": round(float(length[counted].mean()), 2) if n else None,
            "dream_xy": [round(float(v), 2) for v in d.mean(0)] if n else None,
            "real_xy": [round(float(v), 2) for v in r.mean(0)] if n else None,
            "contexts": [n, len(contexts)],
            "agree_frac": round(float(agree.mean()), 3) if n else None,
            "passed": bool(agree.mean() >= PASS_SHARE) if n >= 2 else None,
        }
    index = {str(n).upper(): i for i, n in enumerate(action_names)}
    if "FIRE" in index and "NOOP" in index:
        pairs["FIRE/NOOP"] = fire_check(dream, real, contexts, backgrounds, index["FIRE"], index["NOOP"],
                                        min(frames, FIRE_FRAMES))
    verdicts = [p["passed"] for p in pairs.values() if p["passed"] is not None]
    return {"frames": frames, "pairs": pairs, "passed": all(verdicts) if verdicts else None}


def changed_area(a: np.ndarray, b: np.ndarray, background: torch.Tensor) -> float:
    """Pixels foreground in exactly one of frames a and b (uint8 (H, W, 3))."""
    fg = foreground_mask(frames_to_unit(torch.from_numpy(np.stack([a, b]))), background).numpy()
    return float((fg[0] ^ fg[1]).sum())


def fire_check(dream: Continue, real: Continue, contexts: Sequence, backgrounds: Sequence[torch.Tensor],
               fire: int, noop: int, frames: int) -> dict:
    """Does FIRE change the dream where it changes the game (the FIRE part of the docstring)?"""
    areas = {}
    for kind, cont in (("dream", dream), ("real", real)):
        with_fire, without = cont(contexts, fire, frames), cont(contexts, noop, frames)
        areas[kind] = np.array([max(changed_area(x, y, bg) for x, y in zip(xs, ys))
                                for xs, ys, bg in zip(with_fire, without, backgrounds)])
    counted = areas["real"] >= MIN_FIRE_PX
    agree = areas["dream"][counted] >= AGREE_SHARE * areas["real"][counted]
    n = int(counted.sum())
    return {
        "dream_px": round(float(areas["dream"][counted].mean()), 2) if n else None,
        "real_px": round(float(areas["real"][counted].mean()), 2) if n else None,
        "dream_xy": None, "real_xy": None,
        "contexts": [n, len(contexts)],
        "agree_frac": round(float(agree.mean()), 3) if n else None,
        "passed": bool(agree.mean() >= FIRE_PASS_SHARE) if n >= 2 else None,
    }
