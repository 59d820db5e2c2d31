"""The chance code's local prior (models/chance.py ``prior_net="local"``): a fully convolutional net at
the latents' resolution, and :func:`pick`, the Gumbel-max draw every prior's groups are drawn by."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalPrior(nn.Module):
    """The prior as a fully convolutional net at the latents' own resolution, max-pooled over the frame.

    What the prior must foresee is mostly a local meeting -- an orb about to touch the player, a bolt
    an orb -- that looks the same wherever in the frame it happens. The flat net (two stride-2
    convolutions, then one linear layer over the 4 x 4 grid) has to learn it anew for every place
    from a few thousand event frames, and plateaued, overfitting, at 0.45 probability on the true
    event of Bouncer's held-out event frames; this one, a twentieth of its size, reached 0.65 within
    2,500 steps on the same windows (tools/prior_probe.py, docs/fidelity.md). Two coordinate
    channels let the pooled features still say where, for the learnt groups (a respawn's place). The
    actions scale and shift its channels (FiLM), each context position's action a row of its own.

    The event group gets a net of its own: one net for every group learnt nothing of *when* an event
    comes (0.04 on the true event after 2,000 steps against 0.49 alone), as the learnt groups' codes
    on the windows around events are the game's own chance (a respawn's place, ~3.5 nats a window)
    and their gradient drowned the event's.

    ``chain``: its ``groups`` are foreseen one after another, each given the values drawn before it
    (``given``: a value drawn by another net before all of them -- the event -- which scales and
    shifts the channels as the actions do; the earlier groups of its own are read by the head). Drawn
    apart, a hit and the code that says where its orb goes come from two independent draws: a hit
    without a respawn (the orb vanishes) or a respawn without an event (an orb invented)."""

    def __init__(self, in_channels: int, num_actions: int, context_length: int, size: int, groups: int, values: int,
                 width: int, hidden: int, blocks: int = 3, chain: bool = False, given: int = 0) -> None:
        super().__init__()
        self.groups, self.values = groups, values
        axis = torch.linspace(-1.0, 1.0, size)
        self.register_buffer("coords", torch.stack(torch.meshgrid(axis, axis, indexing="ij"))[None], persistent=False)
        self.register_buffer("offsets", torch.arange(context_length) * num_actions, persistent=False)
        self.inp = nn.Conv2d(in_channels + 2, width, 3, padding=1)
        self.actions = nn.Embedding(num_actions * context_length, 2 * width)
        self.given = nn.Embedding(given, 2 * width) if chain and given else None
        self.earlier = nn.Embedding(groups * values, 2 * width) if chain and groups > 1 else None
        if self.earlier is not None:
            self.register_buffer("group_offsets", torch.arange(groups) * values, persistent=False)
        for table in (self.given, self.earlier):  # zero: a chained net starts drawing as an unchained one
            if table is not None:
                nn.init.zeros_(table.weight)
        # alternate dilation 1 and 2: a receptive field of 11 x 11 latent cells in three blocks
        self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1 + i % 2, dilation=1 + i % 2) for i in range(blocks))
        self.out = nn.Conv2d(width, 2 * width, 1)
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(2 * width, hidden), nn.SiLU(), nn.Linear(hidden, groups * values))

    def features(self, stacked: torch.Tensor, actions: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled features (B, 2 * width) of the stacked context latents (B, K * C, h, w), the
        actions (B, K) and, for a chained net with ``given`` rows, the value drawn before (B,)."""
        h = self.inp(torch.cat([stacked, self.coords.expand(len(stacked), -1, -1, -1)], 1))
        film = self.actions(actions + self.offsets).sum(1)
        if self.given is not None:
            film = film + self.given(given.long())
        scale, shift = film.chunk(2, -1)
        h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        for conv in self.blocks:
            h = h + conv(F.silu(h))
        return self.out(F.silu(h)).amax((2, 3))

    def _logits(self, pooled: torch.Tensor, before: torch.Tensor | None, j: int) -> torch.Tensor:
        """Group ``j``'s logits (B, V) given ``before`` (B, j), the values of the groups before it."""
        if before is not None:
            pooled = pooled + self.earlier(before.long() + self.group_offsets[:j]).sum(1)
        return self.head(pooled).view(-1, self.groups, self.values)[:, j]

    def forward(self, stacked: torch.Tensor, actions: torch.Tensor, given: torch.Tensor | None = None,
                code: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, groups * V); a chained net's group j given ``code`` (B, groups)'s values before it
        (training's teacher forcing: the posterior's code)."""
        pooled = self.features(stacked, actions, given)
        if self.earlier is None:
            return self.head(pooled)
        return torch.cat([self._logits(pooled, code[:, :j] if j else None, j) for j in range(self.groups)], 1)

    def draw(self, stacked: torch.Tensor, actions: torch.Tensor, given: torch.Tensor | None, noise: torch.Tensor,
             temperature: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The code (B, groups), each group drawn (:func:`pick`, with ``noise`` (B, groups, V) and the
        value ``mask`` (groups, V) added to its logits) given the groups drawn before it."""
        pooled = self.features(stacked, actions, given)
        if self.earlier is None:
            return pick(self.head(pooled).view(-1, self.groups, self.values) + mask, noise, temperature)
        code: list[torch.Tensor] = []
        for j in range(self.groups):
            code.append(pick(self._logits(pooled, torch.stack(code, 1) if code else None, j) + mask[j], noise[:, j], temperature))
        return torch.stack(code, 1)


def pick(logits: torch.Tensor, noise: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Each group's value (B, ...) from ``logits`` (B, ..., V): Gumbel-max with ``noise`` at
    ``temperature`` (a 0-d tensor, a graph input on ONNX Runtime; 1 = the prior's own odds), or the
    most likely value at 0."""
    t = torch.as_tensor(temperature, dtype=torch.float32)
    scores = torch.where(t > 0, logits.float() / t.clamp_min(1e-6) + noise, logits.float())
    return scores.argmax(-1)
