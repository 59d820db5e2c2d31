"""Stage 6: the agent (models/agent.py), trained only inside the dream -- an actor-critic on imagined rollouts.

Each step (DIAMOND and Dreamer train their agents this way):

1. ``batch_size`` dreams start from real contexts of the training data (K latents and their actions);
2. each dreams ``horizon`` frames with the play sampler (the checkpoint's, at ``sampler_steps``
   steps, batched), the agent drawing every action from its policy on the dream's own latents;
3. the checkpoint's event head says the reward's sign (-1/0/+1) and the game's end of each dreamed
   transition -- the only rewards the agent ever sees;
4. λ-returns bootstrapped from the value train the value (squared error) and the policy (PPO's
   clipped objective on standardised advantages, plus an entropy bonus that keeps it exploring),
   each batch of dreams used for ``epochs`` steps.

Validated on dreams from held-out contexts with fixed sampling seeds: the dream's net points per
1,000 frames under the agent (points minus points or lives lost: the rewards it is trained on) is
the score. The real game is never touched here; ``worldgame eval`` measures the agent there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from worldgame.models.agent import Agent
from worldgame.models.chance import events_of
from worldgame.models.rollout import Rollout
from worldgame.models.sampler import Sampler
from worldgame.models.world_model import WorldModel
from worldgame.settings import TrainSettings, plain
from worldgame.train.data import windows
from worldgame.train.latents import LatentBatches


class Imagination:
    """Batched dreams played by an agent: the play sampler, the event head and the latent rings."""

    def __init__(self, model: WorldModel, sampler_steps: int, batch_size: int, reward: str = "sign") -> None:
        self.model, self.steps, self.reward = model, sampler_steps, reward
        self.sampler = Sampler(model)  # the checkpoint's play default: what a player's dream runs
        if model.device.type == "cpu" and model.dtype == torch.float32:
            self.sampler.trace(batch_size)  # frozen graph, ~1.5-2x the modules' speed on one core

    @torch.no_grad()
    def rollout(self, agent: Agent, context: torch.Tensor, actions: torch.Tensor, horizon: int,
                gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Dream ``horizon`` frames from ``context`` (B, K, C, h, w) and the ``actions`` (B, K) that made it.

        Returns ``windows`` (horizon + 1, B, F, C, h, w): what the agent saw before each action and,
        last, after the final one; ``actions`` (horizon, B); ``rewards`` (horizon, B) the head's
        rewards (its signs, or P(+) - P(-) with ``reward="expected"``); ``signs`` (horizon, B) the
        head's signs; ``ends`` (horizon, B) bool, the head's game overs."""
        f = agent.frames_seen
        roll = Rollout.of(context.to(self.model.dtype), actions)
        windows = torch.empty(horizon + 1, *roll.context[:, -f:].shape, dtype=roll.context.dtype)
        taken = torch.empty(horizon, len(context), dtype=torch.long)
        rewards, ends = torch.empty(horizon, len(context)), torch.empty(horizon, len(context), dtype=torch.bool)
        signs = torch.empty(horizon, len(context), dtype=torch.long)

        def sample(c: torch.Tensor, a: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
            return self.sampler.step(c, a, steps=self.steps, generator=gen, out=out)

        for t in range(horizon):
            windows[t] = roll.context[:, -f:]
            taken[t] = agent.act(roll.context[:, -f:], gen)
            roll.advance(sample, taken[t])
            if self.model.draws_events:  # the event drawn with the frame: no head to be unsure of it
                sign, ended = events_of(self.sampler.last_code[:, 0])
                rewards[t] = sign.float()
            else:
                head = self.model.events
                logits, end = head(roll.context, roll.actions[:, -1])
                sign, ended = head.decide(logits, end)
                if self.reward == "expected":  # P(+) - P(-): graded where the head is unsure of a dreamed frame
                    p = logits.float().softmax(1)
                    rewards[t] = p[:, 2] - p[:, 0]
                else:
                    rewards[t] = sign.float()
            ends[t], signs[t] = ended, sign
        windows[horizon] = roll.context[:, -f:]
        return {"windows": windows, "actions": taken, "rewards": rewards, "ends": ends, "signs": signs}


def lambda_returns(rewards: torch.Tensor, ends: torch.Tensor, values: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    """TD(λ) returns (H, B) of ``rewards`` (H, B), ``values`` (H + 1, B); nothing flows past an end."""
    keep = gamma * (~ends).float()
    out = torch.empty_like(rewards)
    last = values[-1]
    for t in reversed(range(len(rewards))):
        last = rewards[t] + keep[t] * ((1 - lam) * values[t + 1] + lam * last)
        out[t] = last
    return out


class AgentObjective:
    def __init__(self, cfg: TrainSettings, batches: LatentBatches, val: LatentBatches, model: WorldModel,
                 device: torch.device) -> None:
        self.cfg, self.batches, self.val, self.world = cfg.train.agent, batches, val, model
        shape = cfg.model.denoiser
        self.model = Agent(latent_channels=shape.latent_channels, latent_size=shape.latent_size,
                           num_actions=len(model.action_names), **plain(cfg.model.agent)).to(device)
        self.dreams = Imagination(model, self.cfg.sampler_steps, self.cfg.batch_size, str(self.cfg.reward))
        self.val_dreams = Imagination(model, self.cfg.sampler_steps, self.cfg.val_dreams, str(self.cfg.reward))
        self._batch: dict[str, torch.Tensor] | None = None  # the dreams the next steps learn from
        self._uses = 0

    def trainable(self) -> torch.nn.Module:
        return self.model

    def _starts(self, batches: LatentBatches, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ends = batches.data.ends[torch.randint(len(batches.data.ends), (n,), generator=gen)]
        context_frames, _ = windows(ends, batches.k)  # real latents, no augmentation: a dream starts as a player's does
        return batches.latents[context_frames].float(), batches.data.actions[context_frames]

    @torch.no_grad()
    def _imagine(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """A batch of dreams played by the current policy, with what its updates need: the windows
        seen, the actions taken and their log-probabilities, λ-returns and standardised advantages."""
        c = self.cfg
        context, actions = self._starts(self.batches, c.batch_size, gen)
        self.model.eval()  # the act() calls are inference
        imagined = self.dreams.rollout(self.model, context, actions, c.horizon, gen)
        self.model.train()
        h, b = imagined["actions"].shape
        windows = imagined["windows"].float().flatten(0, 1).clone()  # a normal tensor: the rollout ran in inference mode
        logits, values = self.model(windows)
        values = values.view(h + 1, b)
        returns = lambda_returns(imagined["rewards"], imagined["ends"], values, c.gamma, c.lam)
        # advantages standardised per batch (as PPO does): rewards are rare, so raw advantages are
        # tiny and the policy would hardly move in the minutes the stage has
        advantage = returns - values[:-1]
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-3)
        taken = imagined["actions"].flatten()
        log_prob = logits.view(h + 1, b, -1)[:-1].flatten(0, 1).log_softmax(-1).gather(-1, taken[:, None])[:, 0]
        return {"windows": windows.view(h + 1, b, *windows.shape[1:])[:-1].flatten(0, 1), "actions": taken,
                "log_prob": log_prob, "returns": returns.flatten(), "advantage": advantage.flatten()}

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        """PPO's clipped objective on the current batch of dreams, each batch used for ``epochs`` steps:
        the dreams are what costs (the sampler), the updates on them almost nothing."""
        c = self.cfg
        if self._batch is None or self._uses >= c.epochs:
            self._batch, self._uses = self._imagine(gen), 0
        self._uses += 1
        b = self._batch
        logits, values = self.model(b["windows"])
        log_probs = logits.log_softmax(-1)
        ratio = (log_probs.gather(-1, b["actions"][:, None])[:, 0] - b["log_prob"]).exp()
        clipped = ratio.clamp(1 - c.clip, 1 + c.clip)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        actor = -torch.minimum(ratio * b["advantage"], clipped * b["advantage"]).mean() - c.entropy * entropy.mean()
        critic = 0.5 * ((values - b["returns"]) ** 2).mean()
        return actor + critic

    def after_step(self) -> None:
        pass

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The dream's net points per 1,000 frames under the agent, from fixed held-out contexts and seeds."""
        c = self.cfg
        gen = torch.Generator().manual_seed(1234)
        context, actions = self._starts(self.val, c.val_dreams, gen)
        was = self.model.training
        self.model.eval()
        imagined = self.val_dreams.rollout(self.model, context, actions, c.val_horizon, gen)
        self.model.train(was)
        signs, ends = imagined["signs"], imagined["ends"]
        alive = torch.cat([torch.ones(1, ends.shape[1], dtype=torch.bool), ~ends.cumsum(0).bool()[:-1]])
        frames = float(alive.sum())
        per_k = 1000 / max(frames, 1.0)
        plus, minus = float(((signs > 0) & alive).sum()) * per_k, float(((signs < 0) & alive).sum()) * per_k
        rewarded = float((imagined["rewards"] * alive).sum()) * per_k  # what the agent is trained on
        probs = self.model(imagined["windows"][:-1].float().flatten(0, 1))[0].softmax(-1)
        entropy = float(-(probs * probs.clamp_min(1e-9).log()).sum(-1).mean())
        return {"score": rewarded, "points_per_1k": plus, "minus_per_1k": minus, "reward_per_1k": rewarded,
                "entropy": entropy}

    def resume_state(self) -> dict[str, Any]:
        return {}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        pass

    @contextmanager
    def checkpoint_weights(self) -> Iterator[Agent]:
        yield self.model

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        return ("agent",)
