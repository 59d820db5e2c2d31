"""The prepared samplers by name: the one registry of the plans a play tick runs (their base and its
helpers in base.py; LCM, DDIM and DPM-Solver++ one file each)."""

from __future__ import annotations

import torch

from worldgame.models.samplers.base import PreparedSampler
from worldgame.models.samplers.ddim import DDIMPlan
from worldgame.models.samplers.dpmsolver import DPMSolverPlan
from worldgame.models.samplers.lcm import LCMPlan

PLANS: dict[str, type[PreparedSampler]] = {"lcm": LCMPlan, "ddim": DDIMPlan, "dpmsolver": DPMSolverPlan}


def make_plan(name: str, scheduler, steps: int, context: torch.Tensor, context_noise: float) -> PreparedSampler:
    """The prepared sampler of ``name`` ("lcm", "ddim", "dpmsolver") for one step count and shape."""
    plan = PLANS.get(name)
    if plan is None:
        raise ValueError(f"no prepared plan for sampler {name!r}")
    return plan(scheduler, steps, context, context_noise)
