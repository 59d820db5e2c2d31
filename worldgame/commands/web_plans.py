"""The prepared samplers' numbers for the exported web page (``worldgame export-web``): THE one
function (:func:`web_plans`) that writes every plan's timesteps and per-step coefficients into
``plans.json``, read by the page's sampler (worldgame/web_export/sampler.js) and by the test that
checks the JS plans equal the Python ones (tests/test_export_web.py).

The numbers are the very 0-d tensors the prepared plans (models/samplers/: lcm.py,
ddim.py, dpmsolver.py) compute from the diffusers schedulers they mirror, as float32
values (a JSON number holds a float32 exactly), so the JS update rules run on the same constants.
"""

from __future__ import annotations

from typing import Any

import torch

from worldgame.models.samplers import PLANS, make_plan
from worldgame.models.schedulers import DEFAULT_SPACING, SPACINGS, play_scheduler
from worldgame.settings import STEP_COUNTS

WEB_PLANS_FORMAT = 1
NO_SPACING = "-"  # LCM has its own timesteps: its plans sit under this spacing key


def spacings(sampler: str) -> tuple[str, ...]:
    """The spacings a sampler's plans are written for (LCM: none)."""
    return (NO_SPACING,) if sampler == "lcm" else SPACINGS


def web_plans(prediction_type: str, step_counts: tuple[int, ...] = tuple(STEP_COUNTS)) -> dict[str, Any]:
    """Every play plan's numbers: ``plans[sampler][spacing][steps] = {"timesteps": [int], "coefs":
    [{name: float32 value}] one per step}`` for LCM, DDIM and DPM-Solver++ 2M at each spacing and
    step count, plus each sampler's default spacing. Independent of the input shape and of the
    context noise (the plans' coefficients depend on the schedule and step count only)."""
    shape = torch.zeros(1, 1, 1, 1, 1)  # the plans' buffers take this shape; their numbers do not depend on it
    plans: dict[str, Any] = {}
    for name in PLANS:
        plans[name] = {}
        for spacing in spacings(name):
            scheduler = play_scheduler(name, None if spacing == NO_SPACING else spacing, prediction_type)
            plans[name][spacing] = {}
            for steps in step_counts:
                plan = make_plan(name, scheduler, steps, shape, 0.0)
                plans[name][spacing][str(steps)] = {
                    "timesteps": list(plan.timestep_values),
                    "coefs": [{k: float(v.to(torch.float32)) for k, v in sorted(c.items())} for c in plan.coefs],
                }
    return {
        "format": WEB_PLANS_FORMAT,
        "prediction_type": prediction_type,
        "default_spacing": {name: DEFAULT_SPACING.get(name, NO_SPACING) for name in PLANS},
        "plans": plans,
    }
