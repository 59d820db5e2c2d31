"""Bouncer, the built-in game: the ground truth the shipped world model learns.

The green player (arrow keys / WASD) dodges red orbs that bounce off the walls, collects a
yellow coin that appears at random places and times, and can shoot one white bolt upwards
(space). A bolt that hits an orb sends it to a random place in the top of the arena. Touching an
orb costs a life and puts the player back at the start point below the middle; the orb that hit,
and any orb near that point, reappear at a random place at least half the arena away from it,
moving on a path that never crosses it (rules version 2; version 1 sent only the orbs near that
point to the top third, at any heading, and a player standing still lost every life within 7 s on
a third of the seeds). Score (yellow pips, left) and lives (pink pips, right) are drawn in the
top strip without text. Everything is axis-aligned squares on a flat background so that a small
world model can learn it, yet the orbs move on their own, collide, and the coin and orb respawns
are random draws the model must handle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BACKGROUND = (18, 22, 44)
WALL = (72, 78, 110)
PLAYER = (60, 220, 90)  # no other object uses green: find_player relies on it
ORB = (230, 64, 64)
COIN = (250, 210, 60)
BOLT = (235, 235, 245)
LIFE = (240, 120, 200)

ACTIONS = ("NOOP", "UP", "DOWN", "LEFT", "RIGHT", "FIRE")
# the kinds of reward step() reports in info["events"] and the sign of each: a coin collected, a bolt
# hitting an orb, the player hit by an orb (a life lost)
EVENT_KINDS = {"coin": 1, "shot": 1, "hit": -1}
MOVES = {1: (0, -1), 2: (0, 1), 3: (-1, 0), 4: (1, 0)}
KEY_BINDINGS = {
    "UP": ["up", "w"],
    "DOWN": ["down", "s"],
    "LEFT": ["left", "a"],
    "RIGHT": ["right", "d"],
    "FIRE": ["space"],
}
# the rules Bouncer(rules_version=) knows: 1 the original game (what a game config without
# rules_version means: every checkpoint and episode made before versions existed), 2 the kinder
# respawn after a hit (an orb that hit the player reappears far away, on a path that misses the
# start point)
RULES_VERSIONS = (1, 2)
RESPAWN_TRIES = 200  # draws for a far, safe respawn before the last far draw is taken as it is


class Bouncer:
    """The built-in game.

    Args:
        frame_size: side of the square frame in pixels (64 natively; sprites scale with it).
        num_orbs: how many red orbs bounce around.
        lives: lives at the start of an episode; the episode ends when they run out.
        coin_chance: probability per step that a coin appears when none is on the field.
        max_steps: episode length limit (0 = none).
        infinite_lives: practice mode: a hit still sends the player back to the middle, but no
            life is lost and the episode never ends (evaluation uses it for long rollouts).
        rules_version: 2 (the default): an orb that hits the player, and any orb near the start
            point, reappears at least half the arena away from the start point, on a path that
            never crosses it; 1: the original rules (such orbs go to the top third, any heading).
    """

    name = "bouncer"
    action_names = ACTIONS
    key_bindings = KEY_BINDINGS

    def __init__(
        self,
        frame_size: int = 64,
        num_orbs: int = 3,
        lives: int = 5,
        coin_chance: float = 0.05,
        max_steps: int = 0,
        infinite_lives: bool = False,
        rules_version: int = 2,
    ) -> None:
        if frame_size < 32:
            raise ValueError(f"bouncer needs frame_size >= 32, got {frame_size}")
        if rules_version not in RULES_VERSIONS:
            raise ValueError(f"bouncer rules_version must be one of {RULES_VERSIONS}, got {rules_version}")
        self.rules_version = rules_version
        self.frame_size = frame_size
        self.native_size = (frame_size, frame_size)
        self.tick_hz = 30.0  # the speed it was designed and recorded at
        self.num_orbs = num_orbs
        self.start_lives = lives
        self.coin_chance = coin_chance
        self.max_steps = max_steps
        self.infinite_lives = infinite_lives
        u = frame_size / 64
        self.hud = max(3, round(4 * u))  # top strip height
        self.player_size = max(2, round(6 * u))
        self.orb_size = max(2, round(4 * u))
        self.coin_size = max(2, round(4 * u))
        self.bolt_size = max(1, round(2 * u))
        self.speed = max(1, round(2 * u))
        self.orb_speeds = (max(1, round(u)), max(1, round(2 * u)))
        self.bolt_speed = max(1, round(4 * u))
        self.lo = self.hud + 1  # playfield, inclusive-exclusive, inside the 1-px walls
        self.hi = frame_size - 1
        self._frame = np.empty((frame_size, frame_size, 3), np.uint8)
        self.rng = np.random.default_rng(0)
        self.reset(0)

    # --- state -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> np.ndarray:
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.score = 0
        self.lives = self.start_lives
        self.player = self._centre()
        self.orbs = [self._random_orb(top_only=False) for _ in range(self.num_orbs)]
        self.coin: list[int] | None = None
        self.bolt: list[int] | None = None
        return self.render()

    def _centre(self) -> list[int]:
        c = (self.lo + self.hi - self.player_size) // 2
        return [c, c + (self.hi - self.lo) // 4]

    def _random_orb(self, top_only: bool) -> list[int]:
        s = self.orb_size
        span_hi = self.lo + (self.hi - self.lo) // 3 if top_only else self.hi - s
        x = int(self.rng.integers(self.lo, self.hi - s))
        y = int(self.rng.integers(self.lo, max(self.lo + 1, span_hi)))
        vx = int(self.rng.choice(self.orb_speeds)) * int(self.rng.choice((-1, 1)))
        vy = int(self.rng.choice(self.orb_speeds)) * int(self.rng.choice((-1, 1)))
        return [x, y, vx, vy]

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        if not 0 <= action < len(ACTIONS):
            raise ValueError(f"action {action} is not one of 0..{len(ACTIONS) - 1} ({', '.join(ACTIONS)})")
        self.t += 1
        reward = 0.0
        events: list[str] = []  # what earned or cost each point this step (eval splits its figures by kind)
        ps = self.player_size
        if action in MOVES:
            dx, dy = MOVES[action]
            self.player[0] = min(max(self.player[0] + dx * self.speed, self.lo), self.hi - ps)
            self.player[1] = min(max(self.player[1] + dy * self.speed, self.lo), self.hi - ps)
        elif action == 5 and self.bolt is None:
            b = self.bolt_size
            self.bolt = [self.player[0] + (ps - b) // 2, self.player[1] - b]

        for orb in self.orbs:
            self._move_orb(orb)

        if self.bolt is not None:
            self.bolt[1] -= self.bolt_speed
            if self.bolt[1] < self.lo:
                self.bolt = None
            else:
                for i, orb in enumerate(self.orbs):
                    if _overlap(self.bolt, self.bolt_size, orb, self.orb_size):
                        self.orbs[i] = self._random_orb(top_only=True)
                        self.bolt = None
                        reward += 1.0
                        events.append("shot")
                        break

        appeared = False  # a coin put on the field by chance this step: no reward says so, so info does
        if self.coin is None:
            if self.rng.random() < self.coin_chance:
                appeared = True
                c = self.coin_size
                self.coin = [int(self.rng.integers(self.lo, self.hi - c)), int(self.rng.integers(self.lo, self.hi - c))]
        elif _overlap(self.player, ps, self.coin, self.coin_size):
            self.coin = None
            self.score += 1
            reward += 1.0
            events.append("coin")

        if any(_overlap(self.player, ps, orb, self.orb_size) for orb in self.orbs):
            self.lives -= 0 if self.infinite_lives else 1
            reward -= 1.0
            events.append("hit")
            hitters = [_overlap(self.player, ps, orb, self.orb_size) for orb in self.orbs]
            self.player = self._centre()
            # orbs near the respawn point move away so one touch costs one life; from version 2 so
            # do the orbs that hit, to a far place and on a path that misses the respawn point
            for i, orb in enumerate(self.orbs):
                near = _overlap(self.player, ps * 3, [orb[0] + ps, orb[1] + ps], self.orb_size)
                if self.rules_version == 1 and near:
                    self.orbs[i] = self._random_orb(top_only=True)
                elif self.rules_version >= 2 and (near or hitters[i]):
                    self.orbs[i] = self._far_orb()

        done = self.lives <= 0 or (self.max_steps > 0 and self.t >= self.max_steps)
        return self.render(), reward, done, {**self.info(), "events": events, "appeared": appeared}

    def _far_orb(self) -> list[int]:
        """A respawned orb at least half the arena from the player (its centre from the player's),
        whose path never overlaps the player where it stands: random draws until one is both."""
        s, ps = self.orb_size, self.player_size
        px, py = self.player[0] + ps / 2, self.player[1] + ps / 2
        orb = far = self._random_orb(top_only=False)
        for _ in range(RESPAWN_TRIES):
            if math.hypot(orb[0] + s / 2 - px, orb[1] + s / 2 - py) >= (self.hi - self.lo) / 2:
                far = orb
                if not self._path_meets_player(orb):
                    return orb
            orb = self._random_orb(top_only=False)
        return far

    def _path_meets_player(self, orb: list[int]) -> bool:
        """Whether the orb, moving on its own, ever overlaps the player where it stands now: its path
        repeats after the least common multiple of the two axes' bounce periods."""
        span = 2 * (self.hi - self.orb_size - self.lo)
        period = math.lcm(*(span // math.gcd(span, abs(v)) for v in orb[2:]))
        o = list(orb)
        for _ in range(period):
            self._move_orb(o)
            if _overlap(self.player, self.player_size, o, self.orb_size):
                return True
        return False

    def _move_orb(self, orb: list[int]) -> None:
        s = self.orb_size
        for axis in (0, 1):
            orb[axis] += orb[axis + 2]
            if orb[axis] < self.lo:
                orb[axis] = 2 * self.lo - orb[axis]
                orb[axis + 2] = -orb[axis + 2]
            elif orb[axis] > self.hi - s:
                orb[axis] = 2 * (self.hi - s) - orb[axis]
                orb[axis + 2] = -orb[axis + 2]

    def info(self) -> dict[str, Any]:
        return {"score": self.score, "lives": self.lives, "t": self.t, "player_xy": self.player_xy()}

    def player_xy(self) -> tuple[float, float]:
        """Centre of the player in pixel coordinates (x right, y down), as find_player reports it."""
        half = (self.player_size - 1) / 2
        return (self.player[0] + half, self.player[1] + half)

    # --- drawing -----------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        f = self._frame
        f[:] = BACKGROUND
        n = self.frame_size
        f[self.hud, :] = WALL
        f[n - 1, :] = WALL
        f[self.hud :, 0] = WALL
        f[self.hud :, n - 1] = WALL
        pip = max(1, self.hud - 2)
        for i in range(min(self.score, 12)):  # the score bar stays full after 12
            x = 1 + i * (pip + 1)
            f[1 : 1 + pip, x : x + pip] = COIN
        for i in range(min(max(self.lives, 0), 12)):  # the strip holds a dozen pips
            x = n - 1 - (i + 1) * (pip + 1)
            f[1 : 1 + pip, x : x + pip] = LIFE
        if self.coin is not None:
            _rect(f, self.coin, self.coin_size, COIN)
        for orb in self.orbs:
            _rect(f, orb, self.orb_size, ORB)
        if self.bolt is not None:
            _rect(f, self.bolt, self.bolt_size, BOLT)
        _rect(f, self.player, self.player_size, PLAYER)
        return f.copy()


def _rect(frame: np.ndarray, xy: list[int], size: int, colour: tuple[int, int, int]) -> None:
    frame[xy[1] : xy[1] + size, xy[0] : xy[0] + size] = colour


def _overlap(a: list[int], sa: int, b: list[int], sb: int) -> bool:
    return a[0] < b[0] + sb and b[0] < a[0] + sa and a[1] < b[1] + sb and b[1] < a[1] + sa


def find_player(frame: np.ndarray, tolerance: int = 60, min_pixels: int = 3) -> tuple[float, float] | None:
    """Read the player's centre ``(x, y)`` back from any frame, real or generated.

    Pixels within ``tolerance`` (per channel) of the player's green form the mask; the HUD strip
    is ignored. Returns None when fewer than ``min_pixels`` pixels match (the player is lost).
    """
    hud = max(3, round(4 * frame.shape[0] / 64)) + 1
    body = frame[hud:].astype(np.int16)
    mask = (np.abs(body - np.array(PLAYER, np.int16)).max(axis=-1) <= tolerance)
    ys, xs = np.nonzero(mask)
    if len(xs) < min_pixels:
        return None
    return float(xs.mean()), float(ys.mean()) + hud
