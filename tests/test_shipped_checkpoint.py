"""The checkpoint committed in checkpoints/ loads offline and obeys the keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldgame.games import find_player
from worldgame.games.bouncer import Bouncer
from worldgame.models import WorldModel, default_checkpoint

CHECKPOINT = default_checkpoint("bouncer")


@pytest.fixture(scope="module")
def model() -> WorldModel:
    assert (CHECKPOINT / "worldgame.json").is_file(), f"shipped checkpoint missing at {CHECKPOINT}"
    return WorldModel.from_pretrained(CHECKPOINT, device="cpu")


def _real_context(model: WorldModel) -> tuple[torch.Tensor, list[int]]:
    """K real frames of the game with the player in the middle and no orb near it."""
    game = Bouncer(**{k: v for k, v in model.metadata["game_config"].items() if k != "_target_"})
    game.reset(123)
    game.orbs = [[game.lo + 2, game.lo + 2, 1, 0]]  # one orb, far away in the top-left corner
    frames = [game.render()]
    for _ in range(model.context_length - 1):
        frames.append(game.step(0)[0])
    return model.encode(np.stack(frames))[None], [0] * model.context_length


@pytest.mark.parametrize("action, sign", [(4, 1), (3, -1)])  # RIGHT moves right, LEFT moves left
def test_holding_a_direction_moves_the_player(model: WorldModel, action: int, sign: int) -> None:
    context, actions = _real_context(model)
    start = find_player(model.decode(context[:, -1])[0].numpy())
    assert start is not None
    acts = torch.tensor([actions], dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        acts = torch.cat([acts[:, 1:], torch.tensor([[action]])], dim=1)
        latent = model.step(context, acts, steps=4, generator=gen)
        context = torch.cat([context[:, 1:], latent[:, None]], dim=1)
    end = find_player(model.decode(context[:, -1])[0].numpy())
    assert end is not None, "the player vanished from the generated frames"
    moved = end[0] - start[0]
    assert sign * moved > 8, f"player moved {moved:+.1f} px in x after 10 frames of {model.action_names[action]}"
    assert abs(end[1] - start[1]) < 6


def test_metadata_names_the_game(model: WorldModel) -> None:
    meta = model.metadata
    assert meta["game"] == "bouncer" and meta["frame_size"] == 64
    assert meta["action_names"] == list(Bouncer.action_names)
    assert "eval" in meta, "the shipped checkpoint carries its eval figures"
