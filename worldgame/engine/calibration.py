"""precision=int8's calibration dream, and :func:`attach`: the fast path (models/backends/) with it.

ONNX Runtime's static int8 quantization needs the denoiser's inputs as play feeds them. They come
from a short dream of the checkpoint's own game, started from its own reset frames: the checkpoint
and the game are all it needs, no data folder. The dream is the engine's, so it lives here, and the
fast path below it is handed :func:`calibration_inputs` by :func:`attach` (it never imports the engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from worldgame.engine.dream import Dream
from worldgame.engine.lockstep import LockstepGame
from worldgame.errors import WorldgameError
from worldgame.games import make_game
from worldgame.models import backends
from worldgame.models.sampler import Sampler
from worldgame.vocabulary import STEP_COUNTS

if TYPE_CHECKING:
    from worldgame.models.heads import Heads
    from worldgame.models.world_model import WorldModel

CALIBRATION = (4, 24)  # the calibration dream: game resets (seeds 0..), frames each (step counts 1, 2, 4, 8 in turn)


def calibration_inputs(model: WorldModel) -> list[tuple[torch.Tensor, ...]]:
    """The denoiser's inputs in a short dream of the checkpoint's own game, on the
    torch modules and the play sampler: CALIBRATION[0] resets (seeds 0, 1, ...) of the real game,
    each dreamed CALIBRATION[1] frames on sticky random actions, at 1, 2, 4 and 8 steps in turn, so
    every timestep play uses is seen. What play feeds the network, and only the checkpoint needed."""
    denoised = []

    def denoise(*inputs: torch.Tensor) -> torch.Tensor:
        denoised.append(tuple(x.clone() for x in inputs))
        return model.denoiser(*inputs)

    try:
        game = LockstepGame(make_game(model.metadata["game_config"]), model.context_length)
    except Exception as e:  # a gym game whose package is missing, ...
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise WorldgameError(f"precision=int8 calibrates on the checkpoint's game, which cannot start "
                             f"({type(e).__name__}: {first_line})") from e
    sampler = Sampler(model)
    sampler.accelerate(1, denoise)
    dream, rng = Dream(model, sampler=sampler), np.random.default_rng(0)
    for seed in range(CALIBRATION[0]):
        dream.start(game.reset(seed), seed)
        dream.set_steps(STEP_COUNTS[seed % len(STEP_COUNTS)])
        action = 0
        for _ in range(CALIBRATION[1]):
            if rng.random() > 0.8:  # sticky random actions, as collect's random policy
                action = int(rng.integers(len(model.action_names)))
            dream.step(action)
    return denoised


def attach(sampler: Sampler, backend: str = "auto", threads: int | None = None, precision: str | None = None,
           any_batch: bool = False, heads: Heads | None = None) -> str:
    """:func:`worldgame.models.backends.attach` (its arguments and answer), calibrating an int8
    export on :func:`calibration_inputs` when one has to be made: what play, bench, serve and eval call."""
    return backends.attach(sampler, backend, threads, precision, any_batch, heads, calibrate=calibration_inputs)
