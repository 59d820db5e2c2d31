"""The checkpoint committed in checkpoints/ loads offline and obeys the keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldgame.games import find_player
from worldgame.games.bouncer import Bouncer
from worldgame.models import WorldModel, default_checkpoint
from worldgame.models.sampler import Sampler

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
    gen, sampler = torch.Generator().manual_seed(0), Sampler(model)
    for _ in range(10):
        acts = torch.cat([acts[:, 1:], torch.tensor([[action]])], dim=1)
        latent = sampler.step(context, acts, steps=4, generator=gen)
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


# --- the shipped Atari model: checkpoints/boxing (ALE/Boxing-v5) ------------------------------
BOXING = default_checkpoint("gym:ALE/Boxing-v5")


def test_boxing_is_shipped_with_its_game_facts() -> None:
    boxing = WorldModel.from_pretrained(BOXING, device="cpu")
    meta = boxing.metadata
    assert BOXING.name == "boxing" and meta["game"] == "gym:ALE/Boxing-v5"
    assert meta["native_size"] == [210, 160] and meta["frame_size"] == 64
    assert meta["key_bindings"]["RIGHT"] == ["right"] and meta["key_bindings"]["FIRE"] == ["space"]
    assert "eval" in meta and (BOXING / "eval" / "report.md").is_file() and (BOXING / "eval" / "strip.png").is_file()


@pytest.fixture(scope="module")
def plays(run_cli_batch) -> dict:
    """`worldgame play` of each shipped Atari checkpoint, both in one driver process (torch loads once)."""
    boxing, pong = run_cli_batch(["play", f"checkpoint={BOXING}", "frames=5", "fps=0"],
                                 ["play", f"checkpoint={PONG}", "frames=5", "fps=0"])
    return {"boxing": boxing, "pong": pong}


def test_boxing_plays_without_naming_its_game(plays) -> None:
    r = plays["boxing"]
    assert r.returncode == 0, r.stderr
    assert "played 5 steps (6 frames with the start)" in r.stdout


def test_boxing_dream_moves_the_boxer_the_way_the_real_game_does() -> None:
    """The eval's control check on 4 held-out contexts: holding RIGHT vs LEFT (and DOWN vs UP)
    moves the sprite in the dream as in the real game."""
    from worldgame.eval.control import control_check
    from worldgame.eval.objects import median_background
    from worldgame.eval.rollout import held_out_episode, hold_dream, hold_real

    boxing = WorldModel.from_pretrained(BOXING, device="cpu")
    game_cfg = boxing.metadata["game_config"]
    frames, actions = held_out_episode(game_cfg, 20000, 200)
    background = median_background(frames)
    contexts = [(0, s) for s in (40, 80, 120, 160)]
    result = control_check(
        lambda ctx, a, n: hold_dream(boxing, [(frames, actions)], ctx, a, n, 4, 0),
        lambda ctx, a, n: hold_real(game_cfg, [(20000, frames, actions)], ctx, a, n),
        contexts, [background] * len(contexts), boxing.action_names, 12,
    )
    assert result["passed"] is True, result


# --- the shipped ball game: checkpoints/pong (ALE/Pong-v5 at 96 px) --------------------------
PONG = default_checkpoint("gym:ALE/Pong-v5")


def test_pong_is_shipped_at_its_frame_size_with_arrows_that_follow_the_paddle() -> None:
    pong = WorldModel.from_pretrained(PONG, device="cpu")
    meta = pong.metadata
    assert PONG.name == "pong" and meta["game"] == "gym:ALE/Pong-v5"
    assert meta["frame_size"] == 96 and pong.vae.config.downscale == 6  # 96 px, the denoiser's 16x16 latent
    assert pong.denoiser.config.latent_size == 16
    assert meta["key_bindings"]["RIGHT"] == ["right", "up"] and meta["key_bindings"]["LEFT"] == ["left", "down"]


def test_pong_plays_without_naming_its_game(plays) -> None:
    r = plays["pong"]
    assert r.returncode == 0, r.stderr
    assert "played 5 steps (6 frames with the start)" in r.stdout


def test_pong_keeps_the_ball_one_frame_ahead() -> None:
    """Teacher-forced on held-out tracker play: the predicted frame shows the small objects (the
    ball) where the real one does, far more often than repeating the last frame does."""
    from worldgame.eval.objects import median_background, small_object_recall
    from worldgame.eval.rollout import held_out_episode

    pong = WorldModel.from_pretrained(PONG, device="cpu")
    frames, actions = held_out_episode(pong.metadata["game_config"], 20000, 160)
    k, picks = pong.context_length, range(100, 160, 4)
    ctx = np.stack([frames[t - k:t] for t in picks])
    acts = torch.as_tensor(np.stack([actions[t - k + 1:t + 1] for t in picks]))
    context = pong.encode(ctx.reshape(-1, *ctx.shape[2:])).view(len(ctx), k, -1, 16, 16)
    g = torch.Generator().manual_seed(0)
    pred = pong.decode(pong.reference_step(context, acts, 4, g)).permute(0, 3, 1, 2).float() / 255
    real = torch.from_numpy(frames[list(picks)]).permute(0, 3, 1, 2).float() / 255
    last = torch.from_numpy(ctx[:, -1]).permute(0, 3, 1, 2).float() / 255
    bg = median_background(frames)
    ours, copy = small_object_recall(pred, real, bg), small_object_recall(last, real, bg)
    assert ours["objects"] >= 10 and ours["recall"] >= 0.7 and ours["recall"] > copy["recall"] + 0.2, (ours, copy)


def test_the_shipped_checkpoints_are_found_in_a_checkout_and_in_a_wheel(tmp_path) -> None:
    """A checkout keeps them in checkpoints/ beside the package; a wheel in the package's own
    _checkpoints/ (pyproject.toml's force-include), which `did_you_mean` and the loader must find too."""
    from worldgame.settings.fields import shipped_checkpoints

    wheel = tmp_path / "site-packages" / "worldgame"
    (wheel / "_checkpoints" / "bouncer").mkdir(parents=True)
    assert shipped_checkpoints(wheel) == wheel / "_checkpoints"
    checkout = tmp_path / "repo" / "worldgame"
    (checkout / "_checkpoints").mkdir(parents=True)
    (checkout.parent / "checkpoints").mkdir()
    assert shipped_checkpoints(checkout) == checkout.parent / "checkpoints"
    assert shipped_checkpoints(tmp_path / "bare" / "worldgame") == tmp_path / "bare" / "checkpoints"  # named, though absent
