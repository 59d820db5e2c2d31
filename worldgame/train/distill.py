"""Stage 3: latent consistency distillation (LCM) of the teacher into a 1-4 step student.

Per batch: a point z_t on the teacher's ODE at LCM grid time t; one teacher DDIM step gives z_t'
at t' = t - k; the online student's boundary-scaled estimate at (z_t, t) is pulled, with a
pseudo-Huber loss, towards the EMA target network's estimate at (z_t', t'). The boundary
scalings come from LCMScheduler itself, so training and sampling agree.

On its own rollouts: with probability ``own_rollout_frac`` a batch's context is not the real one
but what the student makes of it at play time (1..``unroll`` frames dreamed from the real context,
no grad). The student then learns the teacher's ODE on the contexts it will actually see, keeping
the distillation's ability to *sample* (a respawned orb drawn crisply somewhere) rather than
regressing to the mean as a loss against the real frame would.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from worldgame.models.denoiser import ActionDenoiser
from worldgame.models.schedulers import ORIGINAL_INFERENCE_STEPS, lcm_scheduler, predicted_x0, train_scheduler
from worldgame.settings import TrainSettings
from worldgame.train.latents import LatentBatches
from worldgame.train.sampling import own_rollout, validate_student


class DistillObjective:
    def __init__(self, cfg: TrainSettings, batches: LatentBatches, val: LatentBatches, vae, teacher: ActionDenoiser,
                 device: torch.device) -> None:
        self.cfg, self.batches, self.val, self.vae = cfg.train.distill, batches, val, vae
        self.play_noise = float(cfg.model.play_context_noise)
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.model = copy.deepcopy(self.teacher).train().requires_grad_(True)
        self.target = copy.deepcopy(self.teacher)
        self.noise = train_scheduler(cfg.model.prediction_type)
        self.lcm = lcm_scheduler(cfg.model.prediction_type)
        self.skip = self.noise.config.num_train_timesteps // ORIGINAL_INFERENCE_STEPS
        self.alphas = self.noise.alphas_cumprod.to(device)
        self.own_frac, self.unroll = self.cfg.own_rollout_frac, self.cfg.unroll
        self.ends = {n: batches.ends_for_unroll(n) for n in range(1, self.unroll + 1)} if self.own_frac > 0 else {}
        self.val_batch = val.at(val.data.ends[torch.randperm(len(val.data.ends), generator=torch.Generator().manual_seed(0))[:256]], None)

    def trainable(self) -> torch.nn.Module:
        return self.model

    def _x0(self, out: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return predicted_x0(self.noise.config.prediction_type, out, z, self.alphas[t])

    def _consistency(self, net, z: torch.Tensor, t: torch.Tensor, cond: tuple) -> torch.Tensor:
        c_skip, c_out = self.lcm.get_scalings_for_boundary_condition_discrete(t.float())
        x0 = self._x0(net(z, t, *cond), z, t)
        return c_skip.view(-1, 1, 1, 1) * z + c_out.view(-1, 1, 1, 1) * x0

    def _own_rollout_batch(self, gen: torch.Generator) -> tuple[torch.Tensor, tuple]:
        """(real next latents, (student-made context, actions, play-time noise levels))."""
        n = int(torch.randint(1, self.unroll + 1, (1,), generator=gen))
        pool = self.ends[n]
        ends = pool[torch.randint(len(pool), (self.cfg.batch_size,), generator=gen)]
        dev = self.alphas.device
        dgen = torch.Generator(device=dev).manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        context = own_rollout(self.model, self.lcm, self.batches, ends, n, 2, self.play_noise, dgen)
        context = context + self.play_noise * torch.randn(context.shape, generator=dgen, device=dev)
        k, acts = self.batches.k, self.batches.data.actions
        actions = acts[ends[:, None] + torch.arange(-k + 1, 1)].to(dev)
        level = torch.full((len(ends),), self.play_noise, device=dev)
        return self.batches.latents[ends].float().to(dev), (context, actions, level)

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        if self.own_frac > 0 and float(torch.rand(1, generator=gen)) < self.own_frac:
            z0, cond = self._own_rollout_batch(gen)
        else:
            b = self.batches.sample(self.cfg.batch_size, gen)
            z0, cond = b["target"], (b["context"], b["actions"], b["context_noise"])
        dev = z0.device
        i = torch.randint(0, ORIGINAL_INFERENCE_STEPS, (len(z0),), generator=gen).to(dev)
        t = (i + 1) * self.skip - 1
        t_prev = (t - self.skip).clamp_min(0)
        eps = torch.randn(z0.shape, generator=gen).to(dev)
        zt = self.noise.add_noise(z0, eps, t)
        online = self._consistency(self.model, zt, t, cond)
        with torch.no_grad():
            x0 = self._x0(self.teacher(zt, t, *cond), zt, t)  # one teacher DDIM step t -> t'
            a_t, a_p = self.alphas[t].view(-1, 1, 1, 1), self.alphas[t_prev].view(-1, 1, 1, 1)
            eps_hat = (zt - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            z_prev = a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps_hat
            target = self._consistency(self.target, z_prev, t_prev, cond)
        c = self.cfg.huber_c
        return ((online - target).square() + c * c).sqrt().mean() - c

    @torch.no_grad()
    def after_step(self) -> None:
        for p_t, p in zip(self.target.parameters(), self.model.parameters()):
            p_t.lerp_(p, 1 - self.cfg.target_ema)

    def validate(self) -> dict[str, float]:
        return validate_student(self, (1, 2, 4))

    def resume_state(self) -> dict[str, Any]:
        """The EMA target network, so that a resumed run continues it instead of restarting it."""
        return {"target": self.target.state_dict()}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])

    @contextmanager
    def checkpoint_weights(self) -> Iterator[ActionDenoiser]:
        yield self.model

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        return ("denoiser",)
