"""Eval of the agent in the real game (eval/agent.py) and of the event head per kind of Bouncer event
(coin, shot, hit): the figures match the games really played, and eval's JSON carries them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from worldgame.eval import events as event_eval
from worldgame.eval.agent import real_game_scores
from worldgame.games.bouncer import ACTIONS, EVENT_KINDS, Bouncer
from worldgame.models.agent import Agent
from worldgame.models.events import REWARD_SIGNS, EventHead
from worldgame.models.world_model import WorldModel

NOOP, FIRE = 0, 5
SEED = 10000


def _with_parts(checkpoint: Path, folder: Path, action: int | None = None, sign: int | None = None) -> Path:
    """A copy of ``checkpoint`` with an agent (untrained: uniform; or always ``action``) and, with
    ``sign``, an event head that always says that reward sign."""
    shutil.copytree(checkpoint, folder)
    model = WorldModel.from_pretrained(folder, device="cpu")
    cfg = model.denoiser.config
    agent = Agent(latent_channels=cfg.latent_channels, latent_size=cfg.latent_size, num_actions=len(ACTIONS),
                  frames_seen=2, width=4, hidden=16)
    if action is not None:
        with torch.no_grad():  # the policy's weights start at zero: its bias alone picks the action
            agent.policy.bias[action] = 50.0
    model.agent = agent
    if sign is not None:
        head = EventHead(latent_channels=cfg.latent_channels, latent_size=cfg.latent_size, num_actions=len(ACTIONS),
                         width=4)
        with torch.no_grad():
            head.head[-1].weight.zero_()
            head.head[-1].bias.copy_(torch.tensor([10.0 if s == sign else 0.0 for s in REWARD_SIGNS] + [-10.0]))
        model.events = head
    model.save_pretrained(folder)
    return folder


def _replay(seed: int, games: int, max_frames: int, choose) -> dict:
    """The real game played by hand: frames per game, points, minus and each kind's count."""
    out = {"frames_each": [], "plus": 0.0, "minus": 0.0, **{kind: 0 for kind in EVENT_KINDS}}
    for i in range(games):
        game = Bouncer(rules_version=1)  # the tiny checkpoint's game config names no version: the original rules
        game.reset(seed + i)
        n, done = 0, False
        while not done and n < max_frames:
            _, reward, done, info = game.step(choose(game))
            out["plus"] += max(reward, 0.0)
            out["minus"] += max(-reward, 0.0)
            for kind in info["events"]:
                out[kind] += 1
            n += 1
        out["frames_each"].append(n)
    return out


def test_each_policy_plays_the_same_real_games_to_their_end_or_the_frame_limit(tiny_checkpoint, tmp_path,
                                                                                torch_one_thread) -> None:
    model = WorldModel.from_pretrained(_with_parts(tiny_checkpoint, tmp_path / "ck"), device="cpu")
    games, limit = 3, 300
    result = real_game_scores(model, model.metadata["game_config"], SEED, games, limit)
    policies = result["policies"]
    assert list(policies) == ["agent", "agent_greedy", "random", "random_uniform", "scripted"]
    for name, p in policies.items():
        assert len(p["frames_each"]) == games and sum(p["frames_each"]) == p["frames"], name
        assert max(p["frames_each"]) <= limit and min(p["frames_each"]) >= 1, name
        assert p["net_per_1k"] == pytest.approx(p["points_per_1k"] - p["minus_per_1k"], abs=0.02), name
        assert set(p["kinds_per_1k"]) == {"coin", "shot", "hit"}
    # random and scripted are the held-out games eval's event figures play (same seeds, sticky 0.8):
    # their lengths and rewards, recounted from those games
    for name, scripted in (("random", False), ("scripted", True)):
        played = event_eval.held_out_games(model.metadata["game_config"], SEED, games, limit + 1, scripted)
        p = policies[name]
        assert p["frames_each"] == [len(g["frames"]) - 1 for g in played], name
        rewards = np.concatenate([g["rewards"] for g in played])
        assert p["points_per_1k"] == round(rewards.clip(0).sum() * 1000 / p["frames"], 2), name
        assert p["minus_per_1k"] == round(-rewards.clip(max=0).sum() * 1000 / p["frames"], 2), name
    # random loses its five lives in a few hundred frames: some game ended before the limit
    assert min(policies["random"]["frames_each"]) < limit
    assert result["points_vs_random"] == round(policies["agent"]["points_per_1k"] / policies["random"]["points_per_1k"], 3)
    assert result["points_vs_scripted"] == round(policies["agent"]["points_per_1k"] / policies["scripted"]["points_per_1k"], 3)


@pytest.mark.parametrize("action", [NOOP, FIRE])
def test_an_agent_rigged_to_one_action_plays_exactly_that_game(action, tiny_checkpoint, tmp_path,
                                                               torch_one_thread) -> None:
    """The game under a constant action, by the rules: an agent that never fires never shoots an orb
    (random, which fires, does); one that always fires shoots; both play the game replayed by hand."""
    model = WorldModel.from_pretrained(_with_parts(tiny_checkpoint, tmp_path / "ck", action=action), device="cpu")
    games, limit = 2, 400
    policies = real_game_scores(model, model.metadata["game_config"], SEED, games, limit)["policies"]
    truth = _replay(SEED, games, limit, lambda game: action)
    per_k = 1000 / sum(truth["frames_each"])
    for name in ("agent", "agent_greedy"):
        p = policies[name]
        assert p["frames_each"] == truth["frames_each"], name
        assert p["points_per_1k"] == round(truth["plus"] * per_k, 2) and p["minus_per_1k"] == round(truth["minus"] * per_k, 2)
        assert p["kinds_per_1k"] == {kind: round(truth[kind] * per_k, 2) for kind in EVENT_KINDS}
    assert policies["random"]["kinds_per_1k"]["shot"] > 0
    if action == NOOP:
        assert policies["agent"]["kinds_per_1k"]["shot"] == 0
        assert policies["agent"]["frames_each"] != policies["random"]["frames_each"]
    else:
        assert policies["agent"]["kinds_per_1k"]["shot"] > 0


def test_bouncer_names_each_event_and_its_rewards_stay_the_sum_of_them() -> None:
    game = Bouncer()
    game.reset(0)
    s, ps = game.orb_size, game.player_size
    game.orbs = [[game.lo, game.hi - s, 0, 0] for _ in game.orbs]  # still, in a corner away from the player
    game.coin = list(game.player)
    _, reward, _, info = game.step(NOOP)
    assert (reward, info["events"]) == (1.0, ["coin"])
    # a still orb just above the bolt's next position: the bolt hits it
    game.coin = None
    game.orbs[0] = [game.player[0] + (ps - game.bolt_size) // 2, game.player[1] - 2 * game.bolt_size - game.bolt_speed, 0, 0]
    game.coin_chance = 0.0
    _, reward, _, info = game.step(FIRE)
    assert (reward, info["events"]) == (1.0, ["shot"])
    game.orbs[1] = list(game.player) + [0, 0]
    _, reward, _, info = game.step(NOOP)
    assert (reward, info["events"]) == (-1.0, ["hit"])
    _, reward, _, info = game.step(NOOP)
    assert (reward, info["events"]) == (0.0, [])
    # real held-out games keep the kinds, frame by frame; each step's reward is their signed sum
    games = event_eval.held_out_games({"_target_": "worldgame.games.bouncer.Bouncer"}, SEED, 2, 600, scripted=True)
    for g in games:
        assert set(g["kinds"]) == set(EVENT_KINDS) and all(len(f) == len(g["rewards"]) for f in g["kinds"].values())
        signed = sum(EVENT_KINDS[kind] * flags.astype(float) for kind, flags in g["kinds"].items())
        assert np.array_equal(signed, g["rewards"])
    assert all(sum(int(g["kinds"][kind].sum()) for g in games) > 0 for kind in EVENT_KINDS)


def test_the_event_figures_split_by_kind() -> None:
    #            coin  shot  hit   -     coin+hit  shot
    signs = torch.tensor([1, 0, -1, 1, 1, -1])
    kinds = {"coin": torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.bool),
             "shot": torch.tensor([0, 1, 0, 0, 0, 1], dtype=torch.bool),
             "hit": torch.tensor([0, 0, 1, 0, 1, 0], dtype=torch.bool)}
    out = event_eval.by_kind(signs, kinds)
    assert list(out) == ["coin", "shot", "hit"]
    # three plus predictions, two on a step with a point (the coins): precision 2/3 for both plus kinds
    assert out["coin"] == {"precision": 0.667, "recall": 1.0, "f1": 0.8, "events": 2}
    assert out["shot"] == {"precision": 0.667, "recall": 0.0, "f1": 0.0, "events": 2}
    # two minus predictions, one on the hit
    assert out["hit"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "events": 2}
    none = event_eval.by_kind(torch.tensor([1, 0]), {"coin": torch.tensor([True, False]),
                                                      "shot": torch.tensor([False, False]),
                                                      "hit": torch.tensor([False, False])})
    assert none["shot"]["f1"] is None and none["hit"]["f1"] is None and none["coin"]["f1"] == 1.0


def test_teacher_forced_reports_kinds_for_bouncer_only(tiny_checkpoint, tmp_path, torch_one_thread) -> None:
    """A head that calls every transition a point finds every coin and shot and no hit."""
    model = WorldModel.from_pretrained(_with_parts(tiny_checkpoint, tmp_path / "ck", sign=1), device="cpu")
    games = event_eval.held_out_games(model.metadata["game_config"], SEED, 2, 300, scripted=True)
    tf = event_eval.teacher_forced(model, games)
    k = model.context_length
    counts = {kind: sum(int(g["kinds"][kind][k:].sum()) for g in games) for kind in EVENT_KINDS}
    assert {kind: tf["kinds"][kind]["events"] for kind in EVENT_KINDS} == counts and counts["hit"] > 0
    for kind in ("coin", "shot"):
        assert tf["kinds"][kind]["recall"] == (1.0 if counts[kind] else None)
    assert tf["kinds"]["hit"]["recall"] == 0.0 and tf["kinds"]["hit"]["f1"] == 0.0
    for g in games:  # a game that does not name its events (a gym game): no split
        del g["kinds"]
    assert "kinds" not in event_eval.teacher_forced(model, games)


def test_eval_writes_the_agent_in_the_real_game(tiny_checkpoint, tmp_path, run_cli_batch) -> None:
    ck = _with_parts(tiny_checkpoint, tmp_path / "ck", sign=1)
    small = ["episodes=1", "episode_frames=24", "samples=2", "teacher_steps=1", "steps=[1]", "rollout_frames=8",
             "rollout_steps=1", "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1", "object_horizons=[8]",
             "control_contexts=1", "control_frames=2", "event_games=1", "event_frames=200", "threads=1",
             "agent_games=2", "agent_frames=50"]
    # both evals in one driver process (the second: agent_games=0 skips it)
    r, r0 = run_cli_batch(["eval", f"checkpoint={ck}", f"out={tmp_path / 'eval'}", *small],
                          ["eval", f"checkpoint={ck}", f"out={tmp_path / 'eval0'}", *small[:-2], "event_games=0",
                           "agent_games=0"])
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    agent = result["agent"]
    assert (agent["games"], agent["max_frames"], agent["seed"]) == (2, 50, SEED)
    assert list(agent["policies"]) == ["agent", "agent_greedy", "random", "random_uniform", "scripted"]
    assert all(len(p["frames_each"]) == 2 and max(p["frames_each"]) <= 50 for p in agent["policies"].values())
    assert "points_vs_random" in agent and "points_vs_scripted" in agent
    assert set(result["events"]["teacher_forced"]["kinds"]) == {"coin", "shot", "hit"}
    assert "the agent in the real game" in r.stderr and "the agent in the real game" in r.stdout
    assert "The agent in the real game" in (tmp_path / "eval" / "report.md").read_text()
    # agent_games=0 skips it
    r = r0
    assert r.returncode == 0, r.stderr
    assert "agent" not in json.loads(r.stdout.strip().splitlines()[-1])


def test_a_gym_game_has_no_scripted_policy_and_no_kinds(tmp_path, torch_one_thread) -> None:
    pytest.importorskip("ale_py")
    from worldgame.models import ActionDenoiser, TinyAutoencoder

    names = ["NOOP", "FIRE", "RIGHT", "LEFT"]
    torch.manual_seed(0)
    model = WorldModel(
        TinyAutoencoder(width=16, encoder_blocks=1, decoder_blocks=1),
        ActionDenoiser(num_actions=len(names), context_length=2, block_out_channels=(16, 16), norm_num_groups=8),
        metadata={"game": "gym:ALE/Breakout-v5", "frame_size": 64, "native_size": [210, 160], "action_names": names,
                  "key_bindings": {}, "context_noise": 0.05, "prediction_type": "sample", "context_length": 2,
                  "game_config": {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "ALE/Breakout-v5",
                                  "frame_size": 64}},
    )
    cfg = model.denoiser.config
    model.agent = Agent(latent_channels=cfg.latent_channels, latent_size=cfg.latent_size, num_actions=len(names),
                        frames_seen=2, width=4, hidden=16)
    result = real_game_scores(model, model.metadata["game_config"], SEED, 1, 20)
    assert list(result["policies"]) == ["agent", "agent_greedy", "random", "random_uniform"] and "points_vs_scripted" not in result
    assert all(p["frames"] == 20 and "kinds_per_1k" not in p for p in result["policies"].values())
    games = event_eval.held_out_games(model.metadata["game_config"], SEED, 1, 10, scripted=False)
    assert "kinds" not in games[0]
