"""What a player of the built-in game sees, read back from any frame (real or dreamed).

* orbs: red blobs below the HUD strip, per frame; coins likewise (yellow);
* pips: score (yellow, left) and lives (pink, right) in the HUD strip, and whether each change has
  a cause in the same stream (a life lost needs a hit: the player thrown back; a point needs a
  coin picked up or a bolt in flight; nothing else changes them);
* control: the player's displacement against what the action should do, away from orbs (hits).

All functions take uint8 frames (T, H, W, 3) of a 64-px-or-larger Bouncer stream.
"""

from __future__ import annotations

import numpy as np

from worldgame.eval.objects import colour_mask, count_blobs
from worldgame.games.bouncer import BOLT, COIN, LIFE, MOVES, ORB, Bouncer, find_player


def _geometry(frame_size: int) -> Bouncer:
    return Bouncer(frame_size=frame_size)


def orbs_per_frame(frames: np.ndarray) -> np.ndarray:
    """Orb-coloured blobs (>= 3 pixels) below the HUD strip, per frame."""
    g = _geometry(frames.shape[1])
    masks = colour_mask(frames[:, g.hud + 1 :], ORB)
    return np.array([count_blobs(m, min_pixels=3) for m in masks])


def coins_per_frame(frames: np.ndarray) -> np.ndarray:
    """Coin-coloured blobs (>= 3 pixels) below the HUD strip, per frame (the game shows at most one)."""
    g = _geometry(frames.shape[1])
    return np.array([count_blobs(m, min_pixels=3) for m in colour_mask(frames[:, g.hud + 1 :], COIN)])


def pips(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score pips, life pips) per frame: a pip counts when its cell is mostly its colour."""
    g, n = _geometry(frames.shape[1]), frames.shape[1]
    p = max(1, g.hud - 2)
    score = np.zeros(len(frames), int)
    lives = np.zeros(len(frames), int)
    for i in range(12):
        xs, xl = 1 + i * (p + 1), n - 1 - (i + 1) * (p + 1)
        score += colour_mask(frames[:, 1 : 1 + p, xs : xs + p], COIN).mean((1, 2)) > 0.5
        lives += colour_mask(frames[:, 1 : 1 + p, xl : xl + p], LIFE).mean((1, 2)) > 0.5
    return score, lives


def player_track(frames: np.ndarray) -> list[tuple[float, float] | None]:
    return [find_player(f) for f in frames]


def pip_changes(frames: np.ndarray) -> dict[str, int]:
    """Count score/life pip changes and those without a cause in the same stream."""
    g = _geometry(frames.shape[1])
    score, lives = pips(frames)
    track = player_track(frames)
    near = _orb_near(frames, track)
    home = np.add(g._centre(), (g.player_size - 1) / 2)
    hits = np.zeros(len(frames), bool)  # the player thrown back: a jump no move makes, or home beside an orb
    for t in range(1, len(frames)):
        a, b = track[t - 1], track[t]
        if a is None or b is None:
            continue
        jump = np.hypot(b[0] - a[0], b[1] - a[1]) > g.speed + 1.5
        hits[t] = jump or (np.hypot(b[0] - home[0], b[1] - home[1]) <= 1 and near[t])
    jumps = hits
    body = frames[:, g.hud + 1 :]
    coins = np.array([count_blobs(m, 3) for m in colour_mask(body, COIN)])
    bolts = colour_mask(body, BOLT, 40).sum((1, 2)) > 0
    changes = uncaused = 0
    for t in range(1, len(frames)):
        lo, hi = max(1, t - 2), min(len(frames), t + 3)
        dl, ds = lives[t] - lives[t - 1], score[t] - score[t - 1]
        if dl:
            changes += 1
            uncaused += not (dl == -1 and jumps[lo:hi].any())
        if ds:
            changes += 1
            coin_taken = (np.diff(coins[lo - 1 : hi]) < 0).any()
            uncaused += not (ds == 1 and (coin_taken or bolts[lo - 1 : hi].any()))
    return {"changes": changes, "uncaused": uncaused}


def control_errors(frames: np.ndarray, actions: np.ndarray, before: np.ndarray | None = None) -> np.ndarray:
    """Per-frame error (px) between the player's move and what ``actions[t]`` should do, on frames
    where the player is visible in t-1 and t and no orb is near it (a hit throws it back).

    ``actions[t]`` produced ``frames[t]``; ``before`` is the frame preceding ``frames[0]`` (optional).
    """
    g = _geometry(frames.shape[1])
    half = (g.player_size - 1) / 2
    lo, hi = g.lo + half, g.hi - g.player_size + half
    stream = frames if before is None else np.concatenate([before[None], frames])
    acts = actions if before is None else np.concatenate([[0], actions])
    track = player_track(stream)
    near = _orb_near(stream, track)
    errors = []
    for t in range(1, len(stream)):
        prev, cur = track[t - 1], track[t]
        if prev is None or cur is None or near[t]:
            continue  # near[t]: an orb close enough to hit; the game may throw the player back
        dx, dy = MOVES.get(int(acts[t]), (0, 0))
        want = (np.clip(prev[0] + dx * g.speed, lo, hi), np.clip(prev[1] + dy * g.speed, lo, hi))
        errors.append(float(np.hypot(cur[0] - want[0], cur[1] - want[1])))
    return np.asarray(errors)


def _orb_near(frames: np.ndarray, track: list) -> np.ndarray:
    """near[t]: an orb pixel in frame t-1 or t lies close enough to the player (at t-1) to hit it."""
    g = _geometry(frames.shape[1])
    masks = colour_mask(frames[:, g.hud + 1 :], ORB)
    reach = g.player_size / 2 + g.orb_size / 2 + g.speed + 2 * max(g.orb_speeds) + 2
    near = np.zeros(len(frames), bool)
    for t in range(1, len(frames)):
        prev = track[t - 1]
        ys, xs = np.nonzero(masks[t - 1] | masks[t])
        if prev is not None and len(xs):
            near[t] = bool((np.maximum(np.abs(xs - prev[0]), np.abs(ys + g.hud + 1 - prev[1])) < reach).any())
    return near
