"""Held-out ground truth for evaluation, and closed-loop rollouts of the world model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from worldgame.data.policies import game_policy, make_policy
from worldgame.engine.fusion import Fusion, show
from worldgame.games import make_game
from worldgame.models.rollout import closed_loop as closed_loop_latents
from worldgame.models.rollout import recorded_windows
from worldgame.models.sampler import Sampler, as_sampler
from worldgame.models.world_model import WorldModel


def held_out_game(game_config: dict):
    """The game as held-out play runs it: the built-in game with infinite lives (one episode
    spans all frames; hits still send the player back to the middle as in the training data)."""
    bouncer = game_config.get("_target_", "").endswith("Bouncer")
    return make_game(game_config, **({"infinite_lives": True} if bouncer else {})), bouncer


def held_out_episode(game_config: dict, seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Play the game with its own policy (``game_policy``: scripted, tracker or sticky random) at an
    unseen seed; returns frames (T,H,W,3), actions (T,)."""
    game, _ = held_out_game(game_config)
    policy = make_policy(game_policy(game), game, 0.8, seed)
    out_frames, actions = [game.reset(seed)], [0]
    for _ in range(frames - 1):
        a = policy()
        frame, _, done, _ = game.step(a)
        if done:  # games that end (not Bouncer here) start again; the model sees a jump
            frame = game.reset(seed + len(out_frames))
        out_frames.append(frame)
        actions.append(a)
    return np.stack(out_frames), np.asarray(actions)


def replay(game, seed: int, actions: np.ndarray) -> np.ndarray:
    """The frames ``held_out_episode`` gave for these actions (actions[0], the reset's, is unused):
    the games are deterministic given seed and actions. ``game`` from ``held_out_game`` (reset reseeds it)."""
    out = [game.reset(seed)]
    for a in actions[1:]:
        frame, _, done, _ = game.step(int(a))
        out.append(game.reset(seed + len(out)) if done else frame)  # the same restart as held_out_episode
    return np.stack(out)


class NotReplayable(Exception):
    """Replaying an episode's actions at its seed did not give its frames again."""


def hold_real(game_config: dict, episodes: Sequence[tuple[int, np.ndarray, np.ndarray]],
              contexts: Sequence[tuple[int, int]], action: int, n: int) -> np.ndarray:
    """The real game continued from each context (episode index e, start s) holding ``action`` for
    ``n`` frames: episode e replayed up to frame s-1, then the action held. ``episodes[e]`` =
    (seed, frames, actions). Returns uint8 (len(contexts), n, H, W, 3); NotReplayable when the
    replay does not reach the recorded frame s-1 (a game not deterministic given its seed)."""
    game, _ = held_out_game(game_config)
    out = []
    for e, s in contexts:
        seed, frames, acts = episodes[e]
        played = replay(game, seed, np.concatenate([acts[:s], np.full(n, action)]))
        if not np.array_equal(played[s - 1], frames[s - 1]):
            raise NotReplayable(f"{game_config.get('id', game_config.get('_target_'))} at seed {seed}")
        out.append(played[s:])
    return np.stack(out)


def hold_dream(sampler: Sampler | WorldModel, episodes: Sequence[tuple[np.ndarray, np.ndarray]],
               contexts: Sequence[tuple[int, int]], action: int, n: int, steps: int, seed: int) -> np.ndarray:
    """The dream continued from the real context before each (episode e, start s) holding ``action``
    for ``n`` frames; the same ``seed`` gives every action the same sampling noise per context.
    Returns uint8 (len(contexts), n, H, W, 3)."""
    k = as_sampler(sampler).model.context_length
    frames, actions = [], []
    for e, s in contexts:  # one segment per context: its real context, then the held action
        f, a = episodes[e]
        frames += [f[s - k : s], np.zeros((n, *f.shape[1:]), np.uint8)]
        actions += [a[s - k : s], np.full(n, action)]
    starts = [i * (k + n) + k for i in range(len(contexts))]
    return closed_loop(sampler, np.concatenate(frames), np.concatenate(actions), starts, n, steps, seed).numpy()


@torch.no_grad()
def closed_loop(sampler: Sampler | WorldModel, frames: np.ndarray, actions: np.ndarray, starts: list[int], horizon: int,
                steps: int, seed: int, fusion: Fusion | None = None, desc: str | None = None) -> torch.Tensor:
    """From real contexts ending before each of ``starts``, generate ``horizon`` frames per start with
    the recorded actions, feeding the model its own predictions (THE batched closed-loop rollout,
    models/rollout.py, that play runs at batch 1). Returns uint8 (B, horizon, H, W, 3) on the CPU.

    ``sampler``: the prepared sampler to dream with (a WorldModel: its play default, unprepared).
    ``fusion``: the display fusion to return the frames as play shows them (``fusion.show``); the
    model's own context is never fused. ``desc``: show a progress bar (on a terminal) with this label."""
    sampler = as_sampler(sampler)
    model, k = sampler.model, sampler.model.context_length
    gen = torch.Generator(device=model.device).manual_seed(seed)
    context = torch.stack([model.encode(frames[s - k : s]) for s in starts])
    before, ahead = recorded_windows(torch.as_tensor(actions, device=model.device), torch.tensor(starts), k, horizon)

    def sample(ctx: torch.Tensor, acts: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return sampler.step(ctx, acts, steps=steps, generator=gen, out=out)

    n = model.frame_size
    out = torch.empty(len(starts), horizon, n, n, 3, dtype=torch.uint8)
    dream = closed_loop_latents(sample, context, before, ahead)
    for h, z in enumerate(tqdm(dream, total=horizon, desc=desc, unit="frame", leave=False, disable=None if desc else True)):
        out[:, h] = show(z, fusion, sampler.decode)  # copied out: show may answer in a buffer it reuses
    return out
