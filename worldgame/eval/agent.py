"""The agent (models/agent.py) playing the real game, against the random and scripted policies.

The agent was trained only inside the dream; what counts is how it does in the game itself. Each
policy plays the same held-out games (seeds ``seed + i``, each to its end or ``max_frames``):

* ``agent``: the agent drawing its actions (seeded by the game's seed); ``agent_greedy``: its most
  likely action each frame;
* ``random``: uniform actions, each kept with probability 0.8 (the sticky policy collect uses);
  ``random_uniform``: a fresh uniform action every frame (what an untrained agent plays);
* ``scripted``: the built-in game's data-collection policy (that game only).

Per policy: ``points_per_1k`` (the rewards gained), ``minus_per_1k`` (those lost: Bouncer's lives,
Boxing's punches taken) and ``net_per_1k``, pooled over all its frames; ``frames`` played (the
steps after each game's first frame, at most ``max_frames`` a game; ``frames_each`` per game);
``net_per_1k_std`` the spread of each game's own net per 1,000 frames, so that a lead over random
larger than it can be told from luck; the built-in game adds ``kinds_per_1k`` (coins, shots and
hits per 1,000 frames: which points a policy earns). ``points_vs_random`` and
``points_vs_scripted``: the agent's points per 1k over theirs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from worldgame.data.policies import make_policy
from worldgame.errors import WorldgameError
from worldgame.games import Bouncer, make_game
from worldgame.games.bouncer import EVENT_KINDS
from worldgame.models.agent import AgentPlayer

STICKY = 0.8  # the random policy repeats its last action this often, as collect's does


def real_game_scores(model, game_config: dict, seed: int, games: int, max_frames: int) -> dict:
    """Each policy on ``games`` real games at seeds ``seed``.. (up to ``max_frames`` frames each)."""
    if model.agent is None:
        raise WorldgameError("this checkpoint has no agent/ to play the game")
    chooser = {
        "agent": lambda game, s: AgentPlayer(model, seed=s, greedy=False),
        "agent_greedy": lambda game, s: AgentPlayer(model, seed=s, greedy=True),
        "random": lambda game, s: _blind(make_policy("random", game, STICKY, s)),
        # uniform each frame, as an untrained agent plays: on Bouncer it fires (and scores) far more
        # often than the sticky one, so an agent is measured against both
        "random_uniform": lambda game, s: _blind(make_policy("random", game, 0.0, s)),
    }
    if isinstance(make_game(game_config), Bouncer):  # the scripted policy knows only the built-in game
        chooser["scripted"] = lambda game, s: _blind(make_policy("scripted", game, STICKY, s))
    policies = {name: _play(game_config, seed, games, max_frames, make) for name, make in chooser.items()}
    agent = policies["agent"]["points_per_1k"]
    return {
        "games": games, "max_frames": max_frames, "seed": seed, "policies": policies,
        **{f"points_vs_{other}": _ratio(agent, policies[other]["points_per_1k"])
           for other in ("random", "random_uniform", "scripted") if other in policies},
    }


def _blind(policy) -> Callable[[np.ndarray], int]:
    """A data-collection policy (it reads the game, not the frame) as a frame -> action chooser."""
    return lambda frame: policy()


def _play(game_config: dict, seed: int, games: int, max_frames: int, make) -> dict:
    """One policy (``make(game, seed)`` -> frame -> action) over the games: the figures above."""
    plus, minus, frames = np.zeros(games), np.zeros(games), np.zeros(games, int)
    kinds: Counter[str] = Counter()
    named = False
    for i in range(games):
        game = make_game(game_config)
        frame = game.reset(seed + i)
        choose = make(game, seed + i)
        done = False
        while not done and frames[i] < max_frames:
            frame, reward, done, info = game.step(choose(frame))
            plus[i] += max(reward, 0.0)
            minus[i] += max(-reward, 0.0)
            frames[i] += 1
            if "events" in info:  # the built-in game names what scored: coin, shot, hit
                named = True
                kinds.update(info["events"])
    per_k = 1000 / max(int(frames.sum()), 1)
    net_each = (plus - minus) * 1000 / np.maximum(frames, 1)
    out = {"frames": int(frames.sum()),
           "points_per_1k": round(float(plus.sum()) * per_k, 2),
           "minus_per_1k": round(float(minus.sum()) * per_k, 2),
           "net_per_1k": round(float(plus.sum() - minus.sum()) * per_k, 2),
           "net_per_1k_std": round(float(net_each.std()), 2),
           "frames_each": frames.tolist()}
    if named:
        out["kinds_per_1k"] = {kind: round(kinds[kind] * per_k, 2) for kind in EVENT_KINDS}
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None  # None: the other policy scored nothing
