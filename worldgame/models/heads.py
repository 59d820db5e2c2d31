"""The small per-frame networks beside the sampler: the event head (reward sign, game over) and the
agent (its policy). A dream calls each once per frame at batch 1, where eager torch spends ~0.5 ms
a call on dispatch for ~5 MFLOP of work; :func:`worldgame.models.backends.attach` swaps in ONNX
Runtime sessions (~0.12 ms), checked against torch, like the denoiser's fast path.

Owned by the dream (engine/dream.py) and shared with it, as the prepared sampler is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from worldgame.models.world_model import WorldModel


class Heads:
    """The checkpoint's event head and agent as callables a backend may replace.

    ``events_forward(window, action) -> (logits, end)`` and ``policy(window) -> logits`` stand for the
    modules' forwards (the window: the dream's whole latent ring, (1, K, C, h, w)); the decisions
    made from their outputs (argmax, threshold, the action's draw) stay the modules' own code.
    """

    # no inference_mode here: its context costs as much as the ORT call, and the modules' weights
    # never require grad (WorldModel loads them frozen), so no graph is recorded without it

    def __init__(self, model: WorldModel) -> None:
        self.model = model
        self.events_forward: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = model.events
        self.policy: Callable[[torch.Tensor], torch.Tensor] | None = (lambda w: model.agent(w)[0]) if model.agent is not None else None

    def events(self, window: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward sign (B,) in -1/0/+1, ended (B,) bool) of the transition into ``window``'s newest latent."""
        return self.model.events.decide(*self.events_forward(window, action))

    def act(self, window: torch.Tensor, generator: torch.Generator | None, greedy: bool = False) -> torch.Tensor:
        """The agent's actions (B,) on ``window``: drawn with ``generator``, or the most likely when ``greedy``."""
        return self.model.agent.choose(self.policy(window), generator, greedy)
