"""The per-frame path: the UI-free Dream, the real game played only when looked at (LockstepGame),
the model engine's explicit interface, one sampling loop for training and play (the import layers
and cycles: tests/test_layers.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldgame.engine import lockstep
from worldgame.engine.engines import Wants
from worldgame.engine.lockstep import LockstepGame
from worldgame.games.bouncer import Bouncer

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ACTIONS = np.random.default_rng(0).integers(0, 6, 400)


def _engine(tiny_checkpoint, **kw):
    from worldgame.engine.model_engine import ModelEngine
    from worldgame.models import WorldModel

    return ModelEngine(WorldModel.from_pretrained(tiny_checkpoint, device="cpu"), backend="torch", **kw)


def test_plain_model_play_steps_no_real_game_until_looked_at(tiny_checkpoint):
    engine = _engine(tiny_checkpoint, steps=1)
    steps = []
    real_step = engine.game.step
    engine.game.step = lambda a: steps.append(a) or real_step(a)
    first = engine.reset(3)
    k = engine.model.context_length
    assert len(steps) == k - 1  # the dream starts from the real game's first K frames
    for a in ACTIONS[:20]:
        result = engine.step(int(a))
        assert result.real is None and "game" not in result.stages_ms
    assert len(steps) == k - 1  # Stream view: no real game per tick

    engine.want(Wants(real=True))  # World Model view: caught up, then one real step per tick
    result = engine.step(4)
    assert steps == [0] * (k - 1) + [int(a) for a in ACTIONS[:20]] + [4] and result.stages_ms["game"] >= 0
    truth = Bouncer(rules_version=1)  # the tiny checkpoint names no rules version: the original rules
    truth.reset(3)
    for i, a in enumerate(steps):
        frame, *_ = truth.step(a)
        if i == k - 2:
            assert np.array_equal(frame, first)  # reset shows the last of the K frames the dream starts from
    assert np.array_equal(result.real, frame) and result.info["real"]["score"] == truth.info()["score"]
    assert engine.status().real_score == str(truth.info()["score"])

    engine.want(Wants())
    for a in ACTIONS[20:30]:
        engine.step(int(a))
    n = len(steps)
    engine.resync()  # from the Stream view: the real game catches up on what it missed, once
    assert len(steps) == n + 10


@pytest.mark.parametrize("max_steps", [25, 0], ids=["game over every 25 steps", "never over"])
def test_lockstep_game_lazy_equals_eager(monkeypatch, max_steps):
    monkeypatch.setattr(lockstep, "LOG_CAPACITY", 64)  # the log fills up: played when full, then per action

    def run(look_every: int) -> list[np.ndarray]:
        game = LockstepGame(Bouncer(max_steps=max_steps, infinite_lives=True), 3)
        seen = [game.reset(5).copy()]
        for i, a in enumerate(ACTIONS):
            game.follow(int(a))
            if (i + 1) % look_every == 0:
                seen.append(game.frames().copy())
        assert game.seed == (5 if max_steps == 0 else 5 + (len(ACTIONS) + 2) // 25)  # a game over restarts at seed + 1
        return seen

    eager = run(1)
    for every in (40, 100):
        lazy = run(every)
        assert len(lazy) == 1 + len(ACTIONS) // every
        assert all(np.array_equal(a, eager[every * i]) for i, a in enumerate(lazy))


def test_lockstep_snapshot_replays_the_same_game():
    game = LockstepGame(Bouncer(max_steps=25), 2)
    game.reset(1)
    for a in ACTIONS[:60]:
        game.follow(int(a))
    state = game.state()  # seed of the last known reset and every action since (some not played yet)
    again = LockstepGame(Bouncer(max_steps=25), 2)
    again.load_state(state)
    for a in ACTIONS[60:70]:
        game.follow(int(a))
        again.follow(int(a))
    assert np.array_equal(game.frames(), again.frames()) and game.seed == again.seed == 3


def test_dream_alone_snapshot_restore_continues_bit_identically(tiny_checkpoint):
    from worldgame.engine.dream import Dream
    from worldgame.models import WorldModel

    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    real = LockstepGame(Bouncer(), model.context_length).reset(4)
    dream = Dream(model, seed=9)
    dream.set_steps(2)
    dream.set_fusion("latent")
    dream.start(real, seed=9)
    for a in (4, 4, 1):
        dream.step(a)
    state = dream.snapshot()
    wants = Wants(step_frames=True, unfused=True)
    ahead = [dream.step(a, wants) for a in (2, 2, 5, 0)]
    other = Dream(model, seed=0)
    other.restore(state)
    again = [other.step(a, wants) for a in (2, 2, 5, 0)]
    for x, y in zip(ahead, again, strict=True):
        assert np.array_equal(x.frame, y.frame) and np.array_equal(x.unfused, y.unfused)
        assert np.array_equal(x.step_frames, y.step_frames) and x.step_timesteps == y.step_timesteps == [999, 499]
    assert not np.array_equal(ahead[-1].frame, ahead[-1].unfused)  # latent fusion shows a fused frame


@pytest.mark.parametrize("fusion", ["off", "latent", "pixel"])
def test_eval_dreams_show_exactly_what_play_shows(tiny_checkpoint, fusion):
    """eval's batched closed-loop rollout at batch 1 and the play Dream: one rollout, one show()."""
    from worldgame.engine.dream import Dream
    from worldgame.engine.fusion import PHI, Fusion
    from worldgame.eval.rollout import closed_loop
    from worldgame.models import WorldModel
    from worldgame.models.sampler import Sampler

    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    k, moves = model.context_length, [int(a) for a in ACTIONS[:12]]
    real = LockstepGame(Bouncer(), k).reset(5)
    dream = Dream(model, seed=7)
    dream.set_steps(2)
    dream.set_fusion(fusion)
    dream.start(real, seed=7)
    played = np.stack([dream.step(a).frame.copy() for a in moves])  # a frame may be a buffer the next step reuses
    actions = np.concatenate([np.zeros(k, np.int64), moves])  # Dream.start: the context's actions are 0
    shown = closed_loop(Sampler(model), real, actions, [k], len(moves), 2, 7,
                        fusion=None if fusion == "off" else Fusion(fusion, 4, PHI)).numpy()
    assert np.array_equal(shown[0], played)


def test_training_validation_and_play_sample_with_one_loop(tiny_checkpoint):
    """train/sampling.py's sampler is the inference loop: same generator, same latent as play's."""
    from worldgame.models import WorldModel
    from worldgame.models.sampler import Sampler
    from worldgame.models.schedulers import lcm_scheduler
    from worldgame.train.sampling import sample

    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    context, actions = torch.randn(2, 2, 4, 16, 16), torch.randint(0, 6, (2, 2))
    for steps in (1, 4):
        g_train, g_play = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        trained = sample(model.denoiser, lcm_scheduler("sample"), context, actions, steps,
                         context_noise=model.context_noise, generator=g_train)
        played = Sampler(model, "lcm").step(context, actions, steps, g_play)
        assert torch.equal(trained, played) and torch.equal(g_train.get_state(), g_play.get_state())
