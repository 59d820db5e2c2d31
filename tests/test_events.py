"""The dream's game events (issue 20): the event head learns, the dream keeps score and ends its game,
sessions bring the events back, and an old checkpoint without the head plays as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from worldgame.data.episode import EVENT_RESET, read_episode
from worldgame.engine.model_engine import ModelEngine
from worldgame.engine.session import regenerate
from worldgame.games.bouncer import ACTIONS
from worldgame.models.events import REWARD_SIGNS, EventHead
from worldgame.models.world_model import WorldModel
from worldgame.settings import load
from worldgame.train.data import FrameData
from worldgame.train.events import EventsObjective, end_threshold
from worldgame.train.latents import LatentBatches


def test_the_event_head_learns_a_toy_pattern() -> None:
    """Latents that carry each event as a shifted channel: after 300 steps the held-out F1 of every
    kind is high, and the loss fell."""
    torch.manual_seed(0)
    n, k = 3000, 2
    gen = np.random.default_rng(0)
    rewards = gen.choice([-1.0, 0.0, 1.0], size=n, p=[0.05, 0.9, 0.05]).astype(np.float32)
    dones = gen.random(n) < 0.02
    latents = torch.randn(n, 4, 16, 16) * 0.5
    latents[torch.from_numpy(rewards > 0), 0] += 2
    latents[torch.from_numpy(rewards < 0), 1] += 2
    latents[torch.from_numpy(dones), 2] += 2

    def data(lo: int, hi: int) -> tuple[FrameData, torch.Tensor]:
        r, d = torch.from_numpy(rewards[lo:hi]), torch.from_numpy(dones[lo:hi])
        return FrameData(frames=torch.zeros(hi - lo, 1, 1, 3, dtype=torch.uint8),
                         actions=torch.from_numpy(gen.integers(0, len(ACTIONS), hi - lo)),
                         ends=torch.arange(k, hi - lo), metadata={}, events=(r != 0) | d, rewards=r, dones=d), latents[lo:hi]

    cfg = load("train", ["model=tiny", "train=tiny", "train.events.batch_size=64", "train.events.lr=3e-3"])
    train, (val, val_latents) = data(0, 2400), data(2400, n)
    dev = torch.device("cpu")
    obj = EventsObjective(cfg, LatentBatches(*train, k, 0.1, dev), LatentBatches(val, val_latents, k, 0.0, dev),
                          len(ACTIONS), dev)
    opt = torch.optim.AdamW(obj.trainable().parameters(), lr=3e-3)
    g, losses = torch.Generator().manual_seed(0), []
    for _ in range(300):
        loss = obj.loss(g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    m = obj.validate()
    print({key: round(v, 3) for key, v in m.items()})
    assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:30])
    assert min(m["plus_f1"], m["minus_f1"], m["end_f1"]) >= 0.9, m
    # the end threshold is chosen on the held-out windows; an end the head cannot find is never used
    assert end_threshold(obj.model, obj.val) is not None
    val.dones[torch.randperm(len(val.dones))[:40]] = True  # ends that show nowhere in the latents
    assert end_threshold(obj.model, obj.val) is None
    head = obj.model
    head.register_to_config(end_threshold=None)
    window, action = torch.randn(8, 2, 4, 16, 16), torch.zeros(8, dtype=torch.long)
    assert not head.predict(window, action)[1].any()


def _rigged(checkpoint: Path, folder: Path, sign: int, end: bool) -> Path:
    """A copy of ``checkpoint`` whose event head always says ``sign`` and ``end``."""
    shutil.copytree(checkpoint, folder)
    model = WorldModel.from_pretrained(folder, device="cpu")
    cfg = model.denoiser.config
    head = EventHead(latent_channels=cfg.latent_channels, latent_size=cfg.latent_size, num_actions=len(ACTIONS), width=4)
    with torch.no_grad():
        last = head.head[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0 if s == sign else 0.0 for s in REWARD_SIGNS] + [10.0 if end else -10.0]))
    model.events = head
    model.save_pretrained(folder)
    return folder


def test_the_dream_keeps_score_and_lives_and_its_end_starts_a_new_game(tiny_checkpoint: Path, tmp_path: Path) -> None:
    minus = WorldModel.from_pretrained(_rigged(tiny_checkpoint, tmp_path / "minus", -1, False), device="cpu")
    engine = ModelEngine(minus, steps=1, backend="torch", optimize=False)
    engine.reset(0)
    assert engine.status().score == "0  lives 5"
    results = [engine.step(0) for _ in range(5)]
    assert [r.reward for r in results] == [-1.0] * 5
    assert [r.done for r in results] == [False] * 4 + [True]  # the last life gone: game over
    engine.reset(1)
    assert engine.status().score == "0  lives 5"  # a new game from real frames
    plus = WorldModel.from_pretrained(_rigged(tiny_checkpoint, tmp_path / "plus", 1, False), device="cpu")
    engine = ModelEngine(plus, steps=1, backend="torch", optimize=False)
    engine.reset(0)
    for _ in range(3):
        engine.step(0)
    assert engine.status().score == "3  lives 5"
    plain = ModelEngine(WorldModel.from_pretrained(tiny_checkpoint, device="cpu"), steps=1, backend="torch", optimize=False)
    plain.reset(0)
    assert plain.step(0).reward == 0.0 and not plain.step(0).done  # no head: no events, as before
    assert plain.status().score == "none (no event head)"


SMALL_EVAL = ["episodes=1", "episode_frames=24", "samples=2", "teacher_steps=1", "steps=[1]", "rollout_frames=8",
              "rollout_steps=1", "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1", "object_horizons=[8]",
              "control_contexts=1", "control_frames=2", "event_games=2", "event_frames=40"]


@pytest.fixture(scope="module")
def cli(tiny_checkpoint: Path, tmp_path_factory, run_cli_batch) -> dict:
    """The module's command lines, as a user runs them, in one driver process (torch loads once):
    play on a head that always sees the end, eval of a head that calls every transition a point."""
    work = tmp_path_factory.mktemp("events_cli")
    ending = _rigged(tiny_checkpoint, work / "ending", 1, True)
    always = _rigged(tiny_checkpoint, work / "always", 1, False)
    play, evaluated = run_cli_batch(
        ["play", f"checkpoint={ending}", "frames=12", "fps=0", "game_over_s=0.1", "record=true", f"sessions={work / 's'}",
         "steps=1", "backend=torch", "seed=3"],
        ["eval", f"checkpoint={always}", f"out={work / 'eval'}", *SMALL_EVAL])
    return {"play": play, "eval": evaluated, "work": work}


def test_a_predicted_game_over_ends_the_game_in_play_and_the_session_regenerates_it(cli: dict) -> None:
    """Through the CLI: a head that always sees the end makes every frame a game over; play holds the
    GAME OVER screen a moment (game_over_s: 3 ticks at Bouncer's 30 Hz), then resets to a new game
    each time, records it, and regenerate brings frames and events back bit for bit."""
    tmp_path = cli["work"]
    r = cli["play"]
    assert r.returncode == 0, r.stderr
    session = read_episode(next((tmp_path / "s").glob("*.wgep")))
    assert session.dones[1:].any() and session.rewards[1:].max() == 1.0
    resets = np.flatnonzero(session.timings_ms["event"] == EVENT_RESET)
    assert len(resets) >= 2  # a new game after each game over
    result = regenerate(next((tmp_path / "s").glob("*.wgep")), device="cpu")
    assert result["identical"] and result["events_identical"], result


def test_crafted_event_parts_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from worldgame.errors import WorldgameError

    folder = _rigged(tiny_checkpoint, tmp_path / "ck", 1, False)
    config = folder / "events" / "config.json"
    good = json.loads(config.read_text())
    for bad in ({"width": 10**6}, {"frames_seen": 10**6}, {"num_actions": -3}):
        config.write_text(json.dumps({**good, **bad}))
        with pytest.raises(WorldgameError, match="events"):
            WorldModel.from_pretrained(folder, device="cpu")
    config.write_text(json.dumps(good))
    weights = next((folder / "events").glob("*.safetensors"))
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(WorldgameError, match="events"):
        WorldModel.from_pretrained(folder, device="cpu")


def test_eval_reports_the_events_teacher_forced_and_in_dreams(cli: dict) -> None:
    """A head that calls every transition a point: eval's JSON says so in both of its event figures."""
    r = cli["eval"]
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout.strip().splitlines()[-1])["events"]
    assert events["games"] == 2
    assert events["teacher_forced"]["plus"]["recall"] in (1.0, None) or events["teacher_forced"]["plus"]["events"] == 0
    assert events["teacher_forced"]["minus"]["f1"] in (0.0, None)  # never says minus
    assert events["dream"]["points_per_1k"] == 1000.0 and events["dream"]["minus_per_1k"] == 0.0
    assert "game events" in r.stderr  # its own stage line
