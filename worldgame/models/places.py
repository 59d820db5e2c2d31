"""A ``where`` chance code's grid (models/chance.py ``posterior_net="where"``): each pair of its learnt
groups names one latent cell, the first its block and the second its cell in the block, and the
denoiser's code maps start lighting the cell they name. A code of two pairs names two places (on
Bouncer a hit can send two or three orbs far away at once: the one that hit and those near the
player's respawn point). The code's expected latent is drawn with the event named and the learnt
groups unknown (:func:`expectation_code`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def where_block(values: int, latent_size: int) -> int:
    """The side b of a ``where`` code's block: the latent grid (latent_size^2) cut into V blocks of V
    cells each (a coarse group names the block, a fine group the cell in it); 0 where V and the
    grid do not divide so (V must be a square s^2 and latent_size = s * b with b^2 = V)."""
    s = math.isqrt(values)
    b = latent_size // s if s else 0
    return b if s * s == values and s * b == latent_size and b * b == values else 0


def where_logits(score: torch.Tensor, values: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A score per latent cell (B, n, n) -> the coarse group's logits (B, V), one per block (row-major,
    each the log-sum-exp of its cells' scores), and every block's fine logits (B, V blocks, V cells),
    each cell's score (row-major in its block)."""
    s, b = math.isqrt(values), score.shape[-1] // math.isqrt(values)
    blocks = score.reshape(-1, s, b, s, b).permute(0, 1, 3, 2, 4).reshape(-1, values, b * b)
    return blocks.logsumexp(-1), blocks


# cells around a named place that a later place may not name (Chebyshev distance in latent cells): an
# orb of 4 px straddles up to 2 x 2 cells of 4 px and its surprise spreads a cell further. On Bouncer's
# held-out hits the second place then lands on the second far-sent orb in 15 of 15 windows that have one.
PLACE_REACH = 2


def name_places(score: torch.Tensor, values: int, places: int, floor: float) -> list[torch.Tensor]:
    """A ``where`` posterior's learnt groups' logits, [coarse, fine] * ``places``, each (B, V), from a
    surprise per latent cell (B, n, n): each place the most surprising block, then its most
    surprising cell, of the cells no earlier place reached (:data:`PLACE_REACH`); cell 0 holds at
    least ``floor``, so a place below it is the corner (nothing new there)."""
    n, s = score.shape[-1], math.isqrt(values)
    b = n // s
    score = score.flatten(1).float()
    rows = torch.arange(len(score), device=score.device)
    cells = torch.arange(n * n, device=score.device)
    logits = []
    for k in range(places):
        score = torch.cat([score[:, :1].clamp_min(floor), score[:, 1:]], 1)
        coarse, fine = where_logits(score.view(-1, n, n), values)
        block = coarse.argmax(-1)
        chosen = fine[rows, block]
        logits += [coarse, chosen]
        if k + 1 < places:  # the cell named: its block's corner plus its place in the block
            cell = chosen.argmax(-1)
            y, x = (block // s) * b + cell // b, (block % s) * b + cell % b
            near = ((cells // n)[None] - y[:, None]).abs().maximum(((cells % n)[None] - x[:, None]).abs()) <= PLACE_REACH
            score = score.masked_fill(near, float("-inf"))
    return logits


def expectation_code(chance, events: torch.Tensor | None, batch: int) -> torch.Tensor:  # chance: a ChanceCode
    """The code (B, G, V) a ``where`` posterior's expected latent is drawn with: the event named (where
    the code has an event group: the data's ``events`` (B,)), the learnt groups unknown (each value
    1 / V, their embeddings' and maps' mean), so the denoiser expects what the event makes certain
    (the player back in the middle after a hit) and blends what it leaves to chance."""
    g, v = chance.config.groups, chance.config.values
    code = torch.full((batch, g, v), 1.0 / v, device=chance.mask.device)
    if chance.config.event_group:
        code[:, 0] = F.one_hot(events.long(), v).to(code)
    return code


def where_maps(values: int, latent_size: int, dim: int, places: int = 1) -> torch.Tensor:
    """The denoiser's code maps (:class:`CodeMap`) a ``where`` code starts from: (2 V places, dim, n, n),
    each place's coarse group's value v lighting block v in channel 0, its fine group's value v its
    cell v of every block in channel 1, so their sum is brightest at the one cell they name together."""
    s, b = math.isqrt(values), latent_size // math.isqrt(values)
    maps = torch.zeros(2 * values, dim, latent_size, latent_size)
    for v in range(values):
        maps[v, 0, (v // s) * b:(v // s + 1) * b, (v % s) * b:(v % s + 1) * b] = 1.0
        maps[values + v, min(1, dim - 1), v // b::b, v % b::b] += 1.0
    return maps.repeat(places, 1, 1, 1)
