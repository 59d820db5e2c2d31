"""The agent: a policy and a value that play the game from its latents, trained only inside the dream.

It sees what the event head sees -- the last ``frames_seen`` latents (two give the objects' motion) --
and answers with a distribution over the game's actions and the value of the state (the discounted
sum of the event head's rewards to come). In the dream it reads the latent ring the denoiser writes;
in the real game it reads the autoencoder's latents of the real frames (:class:`AgentPlayer`), so one
network plays both. Trained by train/agent.py (an actor-critic on imagined rollouts, as DIAMOND and
Dreamer do); no recurrence: a window of frames is all Bouncer and Boxing need to choose a move.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class Agent(ModelMixin, ConfigMixin):
    """latents of the last frames (B, >= frames_seen, C, h, w) -> (action logits (B, A), value (B,)).

    Args:
        latent_channels: channels of one latent (the autoencoder's).
        latent_size: side of the latent grid.
        num_actions: the game's actions.
        frames_seen: latents the network sees, the newest last.
        width: channels of the first convolution (doubled after each of two stride-2 steps).
        hidden: width of the fully connected layer the policy and the value share.
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, latent_size: int = 16, num_actions: int = 6, frames_seen: int = 2,
                 width: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.frames_seen = frames_seen
        self.features = nn.Sequential(
            nn.Conv2d(latent_channels * frames_seen, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(2 * width * ((latent_size + 3) // 4) ** 2, hidden), nn.SiLU(),
        )
        self.policy = nn.Linear(hidden, num_actions)
        self.value = nn.Linear(hidden, 1)
        nn.init.zeros_(self.policy.weight)  # starts uniform: the random policy, then learns away from it
        nn.init.zeros_(self.policy.bias)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(window[:, window.shape[1] - self.frames_seen:].flatten(1, 2))
        return self.policy(x), self.value(x)[:, 0]

    @torch.no_grad()
    def act(self, window: torch.Tensor, generator: torch.Generator | None = None, greedy: bool = False) -> torch.Tensor:
        """Actions (B,) int64: drawn from the policy with ``generator``, or its most likely when ``greedy``."""
        return self.choose(self(window)[0], generator, greedy)

    @staticmethod
    def choose(logits: torch.Tensor, generator: torch.Generator | None, greedy: bool = False) -> torch.Tensor:
        """Actions (B,) from policy ``logits`` (B, actions): drawn, or the most likely when ``greedy``."""
        logits = logits.float()
        if greedy:
            return logits.argmax(1)
        return torch.multinomial(logits.softmax(1), 1, generator=generator)[:, 0]


class AgentPlayer:
    """The agent playing a real game: each real frame is encoded by the checkpoint's autoencoder into
    a ring of the last ``frames_seen`` latents, and the agent acts on it (as it does in the dream).

    Args:
        model: a loaded WorldModel with an ``agent`` (its ``encode`` is the autoencoder).
        seed: seeds the agent's action draws.
        greedy: play the most likely action instead of drawing one.
    """

    def __init__(self, model, seed: int = 0, greedy: bool = False) -> None:
        if model.agent is None:
            raise ValueError("this checkpoint has no agent/")
        self.model, self.agent, self.greedy = model, model.agent, greedy
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.ring: torch.Tensor | None = None

    def reset(self, frame: np.ndarray) -> None:
        """A new game from ``frame``: the ring holds that frame alone, repeated."""
        z = self.model.encode(frame[None])
        self.ring = z[:, None].repeat(1, self.agent.frames_seen, 1, 1, 1)

    def __call__(self, frame: np.ndarray) -> int:
        """The action to take on seeing ``frame`` (the game's latest)."""
        if self.ring is None:
            self.reset(frame)
        else:
            self.ring = torch.cat([self.ring[:, 1:], self.model.encode(frame[None])[:, None]], 1)
        return int(self.agent.act(self.ring, self.generator, self.greedy)[0])
