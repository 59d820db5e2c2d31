"""The agent stage (train/agent.py): an actor-critic that learns only inside the dream, rewarded by the event head."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_train import _episodes

from worldgame.errors import WorldgameError
from worldgame.games.bouncer import ACTIONS
from worldgame.models import WorldModel
from worldgame.models.agent import Agent, AgentPlayer
from worldgame.models.events import EventHead
from worldgame.settings import load
from worldgame.train import loop
from worldgame.train.agent import lambda_returns

FIRE = ACTIONS.index("FIRE")


def _fire_pays(checkpoint: Path) -> None:
    """Give ``checkpoint`` an event head that says +1 exactly when the action taken was FIRE (whatever
    the picture), and never ends the game: the toy world whose best policy is known."""
    model = WorldModel.from_pretrained(checkpoint, device="cpu")
    cfg = model.denoiser.config
    head = EventHead(latent_channels=cfg.latent_channels, latent_size=cfg.latent_size, num_actions=len(ACTIONS),
                     width=4, action_dim=4, end_threshold=None)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.action.weight[FIRE, 0] = 1.0  # the action's embedding says FIRE, and nothing else reaches the head
        first, last = head.head[0], head.head[-1]
        first.weight[0, -4] = 10.0  # hidden unit 0: silu(10) for FIRE, 0 otherwise
        last.weight[2, 0] = 1.0  # the + class grows with it
        last.bias[1] = 5.0  # the 0 class wins otherwise
    model.events = head
    model.save_pretrained(checkpoint)


def _cfg(data: Path, out: Path, *extra: str):
    return load("train", [f"data={data}", f"out={out}", "train=tiny", "model=tiny", "progress=false", "threads=1", *extra])


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained world model of the built-in game whose event head pays for FIRE."""
    root = tmp_path_factory.mktemp("agent")
    _episodes(root / "data", n=3, steps=60)
    loop.run(_cfg(root / "data", root / "run", "stage=vae"))
    loop.run(_cfg(root / "data", root / "run", "stage=teacher"))
    loop.run(_cfg(root / "data", root / "run", "stage=distill"))
    _fire_pays(root / "run")
    return root


def test_lambda_returns_bootstrap_and_stop_at_an_end() -> None:
    rewards = torch.tensor([[0.0], [1.0], [0.0]])
    values = torch.tensor([[0.0], [0.0], [0.0], [10.0]])
    no_end = lambda_returns(rewards, torch.zeros(3, 1, dtype=torch.bool), values, gamma=0.5, lam=1.0)
    assert torch.allclose(no_end[:, 0], torch.tensor([0.5 + 1.25, 1.0 + 2.5, 5.0]))  # the last value bootstraps
    ended = lambda_returns(rewards, torch.tensor([[False], [True], [False]]), values, gamma=0.5, lam=1.0)
    assert torch.allclose(ended[:, 0], torch.tensor([0.5, 1.0, 5.0]))  # nothing flows back past the end


@pytest.mark.parametrize("reward", ["sign", "expected"])
def test_the_agent_learns_what_the_dream_pays_for_and_plays_dream_and_real_game(toy: Path, tmp_path: Path,
                                                                               reward: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(toy / "run", run)
    report = loop.run(_cfg(toy / "data", run, "stage=agent", "train.agent.steps=40", "train.agent.lr=1e-3",
                           "train.agent.batch_size=16", "train.agent.horizon=4", "train.agent.val_every=20",
                           "train.agent.entropy=0", f"train.agent.reward={reward}"))["agent"]
    first, last = report["history"][0], report["history"][-1]
    # the dream pays +1 per FIRE: the random start earns ~1000/6 per 1,000 frames, the learnt policy more
    assert last["points_per_1k"] > first["points_per_1k"] + 150, report["history"]
    assert last["entropy"] < first["entropy"]
    model = WorldModel.from_pretrained(run, device="cpu")
    assert isinstance(model.agent, Agent)
    # the same network plays the real game from the autoencoder's latents of its frames
    from worldgame.games.bouncer import Bouncer

    game, player = Bouncer(), AgentPlayer(model, seed=0)
    frame = game.reset(0)
    actions = []
    for _ in range(30):
        actions.append(player(frame))
        frame = game.step(actions[-1])[0]
    assert actions.count(FIRE) > 15


def test_the_agent_stage_needs_an_event_head(toy: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(toy / "run", run)
    shutil.rmtree(run / "events")
    with pytest.raises(WorldgameError, match=r"events is missing; run `worldgame train stage=events` first"):
        loop.run(_cfg(toy / "data", run, "stage=agent"))


def test_an_agent_of_another_game_is_refused_in_one_line(toy: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(toy / "run", run)
    model = WorldModel.from_pretrained(run, device="cpu")
    model.agent = Agent(latent_channels=model.denoiser.config.latent_channels, latent_size=16, num_actions=18,
                        width=4, hidden=8)  # Atari's 18 actions in a Bouncer checkpoint
    model.save_pretrained(run)
    with pytest.raises(WorldgameError, match=r"its agent/ part was made for another model"):
        WorldModel.from_pretrained(run, device="cpu")
