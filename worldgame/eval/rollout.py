"""Held-out ground truth for evaluation, and closed-loop rollouts of the world model."""

from __future__ import annotations

import numpy as np
import torch

from worldgame.data.policies import make_policy
from worldgame.games import make_game
from worldgame.models.world_model import WorldModel


def held_out_episode(game_config: dict, seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Play the game with the scripted policy at an unseen seed; returns frames (T,H,W,3), actions (T,).

    The built-in game runs with infinite lives, so one episode spans ``frames`` frames; hits still
    send the player back to the middle as in the training data.
    """
    overrides = {"infinite_lives": True} if game_config.get("_target_", "").endswith("Bouncer") else {}
    game = make_game(game_config, **overrides)
    policy = make_policy("scripted" if overrides else "random", game, 0.8, seed)
    out_frames, actions = [game.reset(seed)], [0]
    for _ in range(frames - 1):
        a = policy()
        frame, _, done, _ = game.step(a)
        if done:  # games that end (not Bouncer here) start again; the model sees a jump
            frame = game.reset(seed + len(out_frames))
        out_frames.append(frame)
        actions.append(a)
    return np.stack(out_frames), np.asarray(actions)


@torch.no_grad()
def closed_loop(model: WorldModel, frames: np.ndarray, actions: np.ndarray, starts: list[int], horizon: int,
                steps: int, seed: int, fusion=None) -> torch.Tensor:
    """From real contexts ending before each of ``starts``, generate ``horizon`` frames per start with
    the recorded actions, feeding the model its own predictions. Returns uint8 (B, horizon, H, W, 3).

    ``fusion``: (FusionMode, TemporalFusion) to return the frames as the display shows them (fused
    in latent or pixel space); the model's own context is never fused."""
    k = model.context_length
    gen = torch.Generator(device=model.device).manual_seed(seed)
    context = torch.stack([model.encode(frames[s - k : s]) for s in starts])
    acts = torch.as_tensor(actions, device=model.device)
    out = []
    for h in range(horizon):
        idx = torch.tensor([s + h for s in starts])
        window = acts[idx[:, None] + torch.arange(-k + 1, 1)]
        latent = model.step(context, window, steps=steps, generator=gen)
        context = torch.cat([context[:, 1:], latent[:, None]], dim=1)
        if fusion is None:
            out.append(model.decode(latent).cpu())
        elif fusion[0].value == "latent":
            out.append(model.decode(fusion[1](latent)).cpu())
        else:
            out.append(fusion[1](model.decode(latent).float()).round().to(torch.uint8).cpu())
    return torch.stack(out, dim=1)
