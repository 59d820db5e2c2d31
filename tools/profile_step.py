"""Profile one WorldModel.step + decode (the per-frame hot path) with torch.profiler.

    python tools/profile_step.py [checkpoint_dir] [steps]
"""

from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from worldgame.models import WorldModel, default_checkpoint
from worldgame.models.sampler import Sampler


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else default_checkpoint()
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    model = WorldModel.from_pretrained(path)
    sampler = Sampler(model)
    if model.device.type == "cpu":
        sampler.trace(1)
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    context = torch.randn(1, k, c, s, s, device=model.device, dtype=model.dtype)
    actions = torch.zeros(1, k, dtype=torch.long, device=model.device)
    for _ in range(10):
        sampler.decode(sampler.step(context, actions, steps))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(50):
            sampler.decode(sampler.step(context, actions, steps))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
