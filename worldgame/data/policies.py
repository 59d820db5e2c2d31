"""Policies that drive a game while collecting data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from worldgame.errors import WorldgameError
from worldgame.games.bouncer import Bouncer
from worldgame.games.protocol import Game


class RandomPolicy:
    """Uniform random actions, each repeated with probability ``sticky`` (Atari-style sticky actions)."""

    name = "random"

    def __init__(self, game: Game, sticky: float = 0.8, seed: int = 0) -> None:
        self.n = len(game.action_names)
        self.sticky = sticky
        self.rng = np.random.default_rng(seed)
        self.action = 0

    def __call__(self) -> int:
        if self.rng.random() >= self.sticky:
            self.action = int(self.rng.integers(self.n))
        return self.action


class ScriptedPolicy:
    """Covers Bouncer's state space: walks to targets spread over a 4x4 grid of regions, presses
    into walls, chases coins, fires, idles, and takes random actions now and then; orbs do the dying."""

    name = "scripted"

    def __init__(self, game: Game, sticky: float = 0.8, seed: int = 0) -> None:
        if not isinstance(game, Bouncer):
            raise WorldgameError("policy=scripted knows only the built-in game; use policy=random for other games")
        self.game = game
        self.rng = np.random.default_rng(seed)
        self.random = RandomPolicy(game, sticky, seed + 1)
        self.region = int(self.rng.integers(16))
        self.target: tuple[int, int] | None = None
        self.hold = 0  # steps left of the current wall push / idle / random burst
        self.mode = "walk"

    def _new_target(self) -> None:
        g, r = self.game, self.rng
        u = r.random()
        if u < 0.15:  # press into a wall for a while
            self.mode, self.hold = "wall", int(r.integers(5, 25))
            self.wall_action = int(r.integers(1, 5))
        elif u < 0.3:
            self.mode, self.hold = "idle", int(r.integers(3, 20))
        elif u < 0.45:
            self.mode, self.hold = "random", int(r.integers(10, 40))
        else:
            self.mode = "walk"
            if g.coin is not None and r.random() < 0.4:
                self.target = (g.coin[0], g.coin[1])
            else:
                self.region = (self.region + int(r.integers(1, 16))) % 16
                w = (g.hi - g.lo) / 4
                x = g.lo + (self.region % 4 + r.random()) * w
                y = g.lo + (self.region // 4 + r.random()) * w
                self.target = (int(x), int(y))

    def __call__(self) -> int:
        if self.mode != "walk":
            self.hold -= 1
            if self.hold <= 0:
                self._new_target()
            if self.mode == "wall":
                return self.wall_action
            if self.mode == "idle":
                return 0
            return self.random()
        if self.target is None:
            self._new_target()
            return 0
        dodge = self._dodge()
        if dodge:
            return dodge
        if self.rng.random() < 0.08:
            return 5
        if self.rng.random() < 0.05:
            return int(self.rng.integers(6))
        px, py = self.game.player
        dx, dy = self.target[0] - px, self.target[1] - py
        if abs(dx) <= self.game.speed and abs(dy) <= self.game.speed:
            self._new_target()
            return 0
        if abs(dx) > abs(dy) or (abs(dx) > self.game.speed and self.rng.random() < 0.3):
            return 4 if dx > 0 else 3
        return 2 if dy > 0 else 1


    def _dodge(self) -> int:
        """Step away from an orb that is close, most of the time (a human would)."""
        g = self.game
        px, py = g.player
        for ox, oy, _, _ in g.orbs:
            dx, dy = px - ox, py - oy
            if abs(dx) < 3 * g.player_size and abs(dy) < 3 * g.player_size and self.rng.random() < 0.7:
                if abs(dx) > abs(dy):
                    return 4 if dx > 0 else 3
                return 2 if dy > 0 else 1
        return 0


class TrackerPolicy:
    """Plays ALE Pong as a fair human would, so the data shows rallies, returns and points both ways
    (a random paddle almost never returns the ball): it finds the ball and its own paddle in a frame
    of the game and moves the paddle toward the ball, aiming at a point of the paddle it redraws each
    rally (so returns leave at different angles), reacts late now and then, and hands over to the
    sticky random policy in bursts (so every key is seen in every situation).

    It looks at the env's own 210x160 frame, or at any frame ``see()`` returns (a dream's, at the
    model's size: rows and columns scaled, colours told apart by rules that survive blur).
    """

    name = "tracker"
    # ALE Pong's frame (210 x 160): the field between the walls, our (right, green) paddle's columns, colours
    NATIVE = (210, 160)
    FIELD_ROWS = (34, 194)
    PADDLE_COLS = (139, 145)
    # the ball is the field's only blue-ish thing (white 236,236,236 on brown 144,72,17; paddles
    # have blue 92 and 74), our paddle its only green one (92,186,92): rules that hold on a resized
    # frame's or a dream's blurred pixels too, where exact colours do not
    BALL_MIN_BLUE = 110
    PADDLE_MIN_GREEN_OVER_RED = 40
    UP, DOWN = 2, 3  # Pong's RIGHT moves the paddle up, LEFT down

    def __init__(self, game: Game, sticky: float = 0.8, seed: int = 0,
                 see: Callable[[], np.ndarray | None] | None = None) -> None:
        if getattr(game, "name", "") != "gym:ALE/Pong-v5":
            raise WorldgameError("policy=tracker plays only ALE/Pong-v5 (it reads Pong's own frame); use policy=random for other games")
        self.see = see if see is not None else (lambda: getattr(game, "native_frame", None))
        self.rng = np.random.default_rng(seed)
        self.random = RandomPolicy(game, sticky, seed + 1)
        self.burst = 0  # steps left of a random burst
        self.late = 0  # steps left of not reacting
        self.aim = 0.0  # native rows below the paddle's middle it hits with, this rally
        self.had_ball = False

    def find(self, frame: np.ndarray | None) -> tuple[float | None, float | None]:
        """(ball row, paddle row) in native rows, None for one not seen."""
        if frame is None:
            return None, None
        h, w = frame.shape[:2]
        sy, sx = h / self.NATIVE[0], w / self.NATIVE[1]
        top, bottom = int(np.ceil(self.FIELD_ROWS[0] * sy)), int(self.FIELD_ROWS[1] * sy)  # rows wholly inside the walls
        left, right = int(self.PADDLE_COLS[0] * sx), int(np.ceil(self.PADDLE_COLS[1] * sx))
        field = frame[top:bottom].astype(np.int16)
        ball = np.argwhere(field[..., 2] >= self.BALL_MIN_BLUE)
        ours = field[:, left:right]
        paddle = np.argwhere(ours[..., 1] - ours[..., 0] >= self.PADDLE_MIN_GREEN_OVER_RED)
        to_native = lambda rows: float(rows.mean() + top) / sy
        return (to_native(ball[:, 0]) if len(ball) else None), (to_native(paddle[:, 0]) if len(paddle) else None)

    def __call__(self) -> int:
        r = self.rng
        if self.burst > 0:
            self.burst -= 1
            return self.random()
        if r.random() < 0.01:
            self.burst = int(r.integers(10, 60))
            return self.random()
        ball_y, paddle_y = self.find(self.see())
        if ball_y is not None and not self.had_ball:  # a new rally: a new point of the paddle to hit with
            self.aim = float(r.uniform(-6.0, 6.0))
        self.had_ball = ball_y is not None
        if self.late > 0:
            self.late -= 1
            return 0
        if r.random() < 0.02:
            self.late = int(r.integers(3, 12))  # a slow reaction: sometimes a miss, a point for the other side
        fire = 2 if r.random() < 0.1 else 0  # RIGHTFIRE/LEFTFIRE move the same way: seen, never needed
        if ball_y is None or paddle_y is None:
            return int(r.integers(2)) if r.random() < 0.2 else 0  # NOOP, sometimes FIRE (serves)
        gap = ball_y + self.aim - paddle_y
        if abs(gap) < 4:
            return 0
        return (self.UP if gap < 0 else self.DOWN) + fire


POLICIES = {"random": RandomPolicy, "scripted": ScriptedPolicy, "tracker": TrackerPolicy}


def game_policy(game: Game) -> str:
    """The policy that plays a game the way its data should: the scripted player for the built-in
    game, the tracker for Pong (random play there is one long loss: the ball never comes back),
    sticky random actions for anything else. Held-out evaluation plays with it."""
    if isinstance(game, Bouncer):
        return "scripted"
    return "tracker" if getattr(game, "name", "") == "gym:ALE/Pong-v5" else "random"


def make_policy(name: str, game: Game, sticky: float, seed: int) -> RandomPolicy | ScriptedPolicy | TrackerPolicy:
    if name not in POLICIES:
        raise WorldgameError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    return POLICIES[name](game, sticky=sticky, seed=seed)
