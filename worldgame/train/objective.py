"""What the training loop (train/loop.py) needs of a stage: the one interface of the four objectives
(train/vae.py, teacher.py, distill.py, rollout.py).

The loop owns the optimizer, the schedule, the generator and the trainable weights; an objective
owns its loss and whatever else it keeps beside the trainable weights (an EMA copy, a target
network, a curriculum counter). Both exports are the same for every stage:

* **resume state** (``resume_state`` / ``load_resume_state``): what beyond the trainable weights a
  resumed run needs to continue exactly (``{}`` when nothing); only tensors and plain containers,
  because the state file is read with ``weights_only=True``.
* **checkpoint weights** (``checkpoint_weights``, ``checkpoint_parts``): the network that validation
  measured, lent for the length of a ``with`` block (the teacher swaps its EMA weights in and back
  out), and the checkpoint sub-folders it is written to.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from diffusers import ModelMixin


@runtime_checkable
class Objective(Protocol):
    def trainable(self) -> torch.nn.Module:
        """The module whose parameters the optimizer updates."""
        ...

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        """One batch's scalar loss, its randomness drawn from ``gen`` (a device tensor: never synced here)."""
        ...

    def after_step(self) -> None:
        """Bookkeeping after each optimizer step (EMA, target network, curriculum)."""
        ...

    def validate(self) -> dict[str, float]:
        """Held-out metrics; ``score`` is the one the loop keeps the best weights by."""
        ...

    def resume_state(self) -> dict[str, Any]:
        """What a resumed run needs beyond the trainable weights and the optimizer."""
        ...

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Continue from what :meth:`resume_state` returned."""
        ...

    def checkpoint_weights(self) -> AbstractContextManager[ModelMixin]:
        """The weights validation measured, for the length of the block."""
        ...

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        """The sub-folders of checkpoint folder ``out`` those weights are written to."""
        ...
