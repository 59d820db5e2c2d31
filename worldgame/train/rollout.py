"""Stage 4: fine-tune the LCM student on its own rollouts, the context it will see at play time.

Teacher forcing trains on real contexts; at play time the context is the model's own output, and
small errors there (a dimmer orb, a softer edge) compound until objects fade. Per batch:

1. pick windows with room to unroll ``n`` frames, ``n`` drawn from 0..n_max, where n_max grows by
   one every ``unroll_every`` steps up to ``unroll`` (a curriculum: real contexts first);
2. from the real context, the play-time sampler (LCM, ``sampler_steps`` steps, the play-time context
   noise) dreams ``n`` frames with the recorded actions under no_grad, each sliding into the context;
3. on that context the student runs the play-time sampler toward the next frame for a random number
   of steps under no_grad, then one more step with gradients (the exit step); its boundary-scaled
   estimate is pulled toward the *real* next latent (MSE).

This is Self Forcing with a ground-truth target instead of a distribution-matching loss, and
DIAMOND's CS:GO recipe of training on a few steps of its own predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from worldgame.models.denoiser import ActionDenoiser
from worldgame.models.schedulers import lcm_scheduler, predicted_x0, train_scheduler
from worldgame.settings import TrainSettings
from worldgame.train.latents import LatentBatches
from worldgame.train.sampling import own_rollout, validate_student


class RolloutObjective:
    def __init__(self, cfg: TrainSettings, batches: LatentBatches, val: LatentBatches, vae, student: ActionDenoiser,
                 device: torch.device) -> None:
        self.cfg, self.batches, self.val, self.vae, self.device = cfg.train.rollout, batches, val, vae, device
        self.model = student.to(device).train().requires_grad_(True)
        self.lcm = lcm_scheduler(cfg.model.prediction_type)
        self.alphas = train_scheduler(cfg.model.prediction_type).alphas_cumprod.to(device)
        self.kind = cfg.model.prediction_type
        self.play_noise = float(cfg.model.play_context_noise)
        self.ends = {n: batches.ends_for_unroll(n) for n in range(self.cfg.unroll + 1)}
        self.steps_done = 0
        g = torch.Generator().manual_seed(0)
        self.val_batch = val.at(val.data.ends[torch.randperm(len(val.data.ends), generator=g)[:256]], None)

    def trainable(self) -> torch.nn.Module:
        return self.model

    def unroll_max(self) -> int:
        return min(self.cfg.unroll, 1 + self.steps_done // self.cfg.unroll_every)

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        k, lat, acts, dev = self.batches.k, self.batches.latents, self.batches.data.actions, self.device
        n = int(torch.randint(0, self.unroll_max() + 1, (1,), generator=gen))
        pool = self.ends[n] if len(self.ends[n]) else self.ends[0]
        n = n if len(self.ends[n]) else 0
        ends = pool[torch.randint(len(pool), (self.cfg.batch_size,), generator=gen)]
        dgen = torch.Generator(device=dev).manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        context = own_rollout(self.model, self.lcm, self.batches, ends, n, self.cfg.sampler_steps, self.play_noise, dgen)
        window = acts[ends[:, None] + torch.arange(-k + 1, 1)].to(dev)
        target = lat[ends].float().to(dev)
        return self._exit_step_loss(context, window, target, gen, dgen)

    def _exit_step_loss(self, context, actions, target, gen, dgen) -> torch.Tensor:
        """Run the play-time sampler, train one randomly chosen step of it against the real latent."""
        b = len(target)
        steps = self.cfg.train_steps[int(torch.randint(len(self.cfg.train_steps), (1,), generator=gen))]
        exit_at = int(torch.randint(steps, (1,), generator=gen))
        level = torch.full((b,), self.play_noise, device=target.device)
        if self.play_noise > 0:
            context = context + self.play_noise * torch.randn(context.shape, generator=dgen, device=target.device)
        self.lcm.set_timesteps(steps, device=target.device)
        x = torch.randn(target.shape, generator=dgen, device=target.device)
        with torch.no_grad():
            for t in self.lcm.timesteps[:exit_at]:
                out = self.model(x, t.expand(b), context, actions, level)
                x = self.lcm.step(out, t, x, generator=dgen, return_dict=False)[0]
        t = self.lcm.timesteps[exit_at].expand(b)
        c_skip, c_out = self.lcm.get_scalings_for_boundary_condition_discrete(t.float())
        estimate = c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1) * self._x0(self.model(x, t, context, actions, level), x, t)
        return (estimate - target).square().mean()

    def _x0(self, out: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return predicted_x0(self.kind, out, z, self.alphas[t])

    def after_step(self) -> None:
        self.steps_done += 1

    def validate(self) -> dict[str, float]:
        return validate_student(self, (1, 4))

    def resume_state(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.steps_done = int(state["steps_done"])

    @contextmanager
    def checkpoint_weights(self) -> Iterator[ActionDenoiser]:
        yield self.model

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        return ("denoiser",)

