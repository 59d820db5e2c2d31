"""The dream's game events: the sign of the reward (-/0/+) and the game's end, predicted from latents.

A small network beside the denoiser (DIAMOND keeps a reward/end model beside its diffusion model):
it sees the last ``frames_seen - 1`` context latents and the next latent (the real one in training,
the denoiser's in a dream) with the action taken, and says what happened in that transition. The
HUD of a game draws its score and lives, so the change between two frames is what shows an event;
the action helps where the picture is ambiguous (a shot fired). Without recurrence: a window of
frames is all a transition needs here (``frames_seen``; the events stage's validation measures it).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

REWARD_SIGNS = (-1, 0, 1)  # class i of the reward logits is the sign REWARD_SIGNS[i]


class EventHead(ModelMixin, ConfigMixin):
    """(latents of the last frames (B, frames_seen, C, h, w), action (B,)) -> (reward logits (B, 3), end logit (B,)).

    Args:
        latent_channels: channels of one latent (the autoencoder's).
        latent_size: side of the latent grid.
        num_actions: the game's actions.
        frames_seen: latents the network sees: the last ``frames_seen - 1`` of the context and the next one.
        width: channels of the first convolution (doubled after each of two stride-2 steps).
        action_dim: size of the action embedding.
        end_threshold: the end logit above which the game is over, chosen on held-out episodes by
            the events stage; None: the head never ends a game (its held-out end F1 was too low to
            trust: a false game over throws the player out of the dream, a missed one costs little).
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, latent_size: int = 16, num_actions: int = 8, frames_seen: int = 2,
                 width: int = 32, action_dim: int = 16, end_threshold: float | None = 0.0) -> None:
        super().__init__()
        self.frames_seen = frames_seen
        c = latent_channels * frames_seen
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.action = nn.Embedding(num_actions, action_dim)
        self.head = nn.Sequential(nn.Linear(2 * width * 16 + action_dim, 128), nn.SiLU(), nn.Linear(128, len(REWARD_SIGNS) + 1))

    def forward(self, window: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``window`` (B, >= frames_seen, C, h, w): latents oldest first, the last the frame the
        transition led to; ``action`` (B,) the action that led to it."""
        x = self.features(window[:, window.shape[1] - self.frames_seen:].flatten(1, 2))
        out = self.head(torch.cat([x, self.action(action)], dim=1))
        return out[:, : len(REWARD_SIGNS)], out[:, -1]

    @torch.no_grad()
    def predict(self, window: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward sign (B,) in -1/0/+1 as int64, ended (B,) bool): the most likely class; an end past ``end_threshold``."""
        return self.decide(*self(window, action))

    def decide(self, logits: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict`'s decision from the network's outputs."""
        threshold = self.config.end_threshold
        return logits.argmax(1) - 1, (end > threshold) if threshold is not None else torch.zeros_like(end, dtype=torch.bool)
