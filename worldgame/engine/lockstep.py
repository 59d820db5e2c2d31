"""The real game on the dream's actions, played only when someone looks at it.

Model play needs the real game three times: at reset (the dream starts from its first K frames),
for the World Model view (shown beside the dream) and for a re-sync (its last K frames replace the
dream's context). Stepping it on every tick would cost every frame of plain play for those moments,
so it is played lazily: every action is logged, and :meth:`LockstepGame.frames` catches the game
up on the actions it has not played yet. The World Model view asks every tick (one step each);
a re-sync from another view replays what it missed (games are deterministic given their seed).

The log, with the seed of the game's last reset, is also the session snapshot of the real game:
the log holds every action since that reset, the K-1 no-ops that start a dream included.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worldgame.errors import WorldgameError
from worldgame.games import Game

LOG_CAPACITY = 1 << 20  # actions logged since the game's last reset (~9 h at 30 Hz); then it is played every tick


class LockstepGame:
    """A real game that follows the dream's actions (see the module docstring).

    Args:
        game: the game (reset here; its frames must be ``frame_size`` square).
        context_length: K, the real frames a dream starts from and re-syncs to.
    """

    def __init__(self, game: Game, context_length: int) -> None:
        self.game = game
        n = game.frame_size
        self._frames = np.zeros((context_length, n, n, 3), np.uint8)  # the last K frames, oldest first
        self._log = np.zeros(LOG_CAPACITY, np.int8)
        self._logged = 0  # actions since the game's last reset (may pass LOG_CAPACITY: then not kept)
        self._played = 0  # of those, the ones the game has played
        self.seed = 0  # of the game's last reset
        self.info: dict[str, Any] = {}  # the game's info after the last action it played

    def reset(self, seed: int) -> np.ndarray:
        """Reset the game at ``seed`` and play K-1 no-ops: the K frames a dream starts from."""
        self._restart(seed)
        for _ in range(len(self._frames) - 1):
            self.follow(0)
        return self.frames()

    def follow(self, action: int) -> None:
        """The dream took ``action``: log it (the game plays it when next looked at)."""
        if self._logged >= LOG_CAPACITY:
            self.frames()  # the log is full: play what it holds (a game over empties it)
        if self._logged < LOG_CAPACITY:
            self._log[self._logged] = action
            self._logged += 1
            return
        self._logged += 1  # hours without a game over: played at once, and snapshots lose the actions
        self._play(action)

    def frames(self) -> np.ndarray:
        """The game's last K frames, oldest first, after playing every action it missed
        (a buffer reused by the next call)."""
        while self._played < min(self._logged, LOG_CAPACITY):
            self._play(int(self._log[self._played]))
        return self._frames

    def state(self) -> dict[str, Any]:
        """The game's seed and, while the log holds them all, its actions since (session snapshot)."""
        state: dict[str, Any] = {"ref_seed": self.seed}
        if self._logged <= LOG_CAPACITY:
            state["ref_actions"] = self._log[: self._logged].copy()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (played when next looked at). Without its actions (a game
        logged past the log's end) the game stays where it is, as it always has."""
        if "ref_actions" in state:
            self._restart(int(state["ref_seed"]))
            actions = np.asarray(state["ref_actions"]).astype(np.int8).reshape(-1)
            if len(actions) > LOG_CAPACITY:
                raise WorldgameError(f"a session snapshot holds {len(actions)} real-game actions; sessions hold at most {LOG_CAPACITY}")
            self._log[: len(actions)] = actions
            self._logged = len(actions)
        else:
            self.seed = int(state["ref_seed"])

    def _restart(self, seed: int) -> None:
        self.seed, self._logged, self._played = seed, 0, 0
        self._frames[-1] = self.game.reset(seed)

    def _play(self, action: int) -> None:
        frame, _, done, self.info = self.game.step(action)
        self._frames[:-1] = self._frames[1:]  # numpy copies overlapping slices safely
        self._frames[-1] = frame
        self._played += 1
        if done:  # the real game is over: it restarts on its own (seed + 1), the dream goes on
            pending = self._log[self._played : min(self._logged, LOG_CAPACITY)].copy()
            self._restart(self.seed + 1)
            self._log[: len(pending)] = pending
            self._logged = len(pending)
