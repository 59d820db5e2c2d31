"""THE closed-loop rollout: B dreams, each fed its own predictions, one action per dream per frame.

Play (``engine/dream.py``, batch 1, one action at a time from the keys), eval's dreams
(``eval/rollout.py``, recorded actions) and training's own-rollout contexts and validation dreams
(``train/sampling.py``, a bare network) all step a :class:`Rollout`. What a frame *shows* is
``engine/fusion.show``, kept apart: the rings hold the unfused latents, always.

The rings are preallocated tensors shifted in place, so nothing grows with the horizon::

    action ─▶ action ring (B, K) ──┐
    latent ring (B, K, C, h, w) ───┴─▶ sample(context, actions, out) ─▶ z ─▶ latent ring
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

# sample(context (B, K, C, h, w), actions (B, K), out (B, C, h, w) or None) -> the next latent (B, C, h, w)
SampleFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class Rollout:
    """The K-latent and K-action rings of ``batch`` dreams.

    ``actions[:, j]`` is the action that produced ``context[:, j]``; :meth:`push_action` adds the
    action being taken now, so the sampler sees the actions of context frames 2..K and, last, the
    current one (the one the predicted frame answers).
    """

    def __init__(self, batch: int, k: int, latent_shape: tuple[int, ...], device: torch.device | str,
                 dtype: torch.dtype) -> None:
        self.context = torch.zeros(batch, k, *latent_shape, device=device, dtype=dtype)  # oldest first, never fused
        self.actions = torch.zeros(batch, k, dtype=torch.long, device=device)
        self._context_shift = torch.empty(batch, max(k - 1, 0), *latent_shape, device=device, dtype=dtype)
        self._actions_shift = torch.empty(batch, max(k - 1, 0), dtype=torch.long, device=device)

    @classmethod
    def of(cls, context: torch.Tensor, actions: torch.Tensor) -> Rollout:
        """A rollout starting from ``context`` (B, K, C, h, w) and the actions that produced it (B, K)."""
        rollout = cls(context.shape[0], context.shape[1], tuple(context.shape[2:]), context.device, context.dtype)
        rollout.context.copy_(context)
        rollout.actions.copy_(actions)
        return rollout

    def push_action(self, action: int | torch.Tensor) -> None:
        """The action each dream takes now (an int for all, or (B,))."""
        _push(self.actions, self._actions_shift, action)

    def predict(self, sample: SampleFn, out: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the next latent from the rings and slide it into the context (unfused)."""
        z = sample(self.context, self.actions, out)
        _push(self.context, self._context_shift, z)
        return z

    def advance(self, sample: SampleFn, action: int | torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """One closed-loop frame: take ``action``, predict, feed the prediction back."""
        self.push_action(action)
        return self.predict(sample, out)


def closed_loop(sample: SampleFn, context: torch.Tensor, actions_before: torch.Tensor,
                actions: torch.Tensor) -> Iterator[torch.Tensor]:
    """Dream one frame per column of ``actions`` (B, H) from ``context`` (B, K, C, h, w) and the
    actions that produced it (B, K); yields each predicted latent (B, C, h, w), valid until the next."""
    rollout = Rollout.of(context, actions_before)
    for h in range(actions.shape[1]):
        yield rollout.advance(sample, actions[:, h])


def recorded_windows(actions: torch.Tensor, first: torch.Tensor, k: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From one recorded action sequence: the actions that produced the K context frames before each
    of ``first`` (B, K), and the actions of the ``horizon`` frames dreamed from there (B, horizon)."""
    first = first.to(actions.device)
    return (actions[first[:, None] + torch.arange(-k, 0, device=actions.device)],
            actions[first[:, None] + torch.arange(horizon, device=actions.device)])


def _push(ring: torch.Tensor, scratch: torch.Tensor, newest: torch.Tensor | int) -> None:
    """Shift ``ring`` (B, K, ...) one slot toward the oldest, in place, and write ``newest`` last."""
    if scratch.shape[1]:
        scratch.copy_(ring[:, 1:])
        ring[:, :-1].copy_(scratch)
    ring[:, -1] = newest
