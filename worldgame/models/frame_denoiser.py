"""One frame's denoiser: what a prepared sampler's step loop calls, ``denoise(z, t)``.

:func:`for_frame` binds a network to one frame's context once, before the step loop. A network with
``context_features`` (the feature-cache denoiser, denoiser_cached.py, or its traced / ONNX parts,
:class:`SplitDenoiser`) computes them there, once, and every step reuses them; any other network
(the concat denoiser, its traced graph or ONNX session) is called whole at each step, as before.
That is the one code path every sampler, backend and batch size takes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Features = tuple[torch.Tensor, ...]


def for_frame(net, context: torch.Tensor, actions: torch.Tensor,
              context_noise: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``denoise(z, t)`` for one frame of ``net`` (the denoiser's signature): the context's features
    computed here, once, when ``net`` has them."""
    context_features = getattr(net, "context_features", None)
    if context_features is None:
        return lambda z, t: net(z, t, context, actions, context_noise)
    features = context_features(context, actions, context_noise)
    step = net.step
    return lambda z, t: step(z, t, features)


def has_context_features(net) -> bool:
    """Whether ``net`` splits into context features and a per-step network (the feature_cache variant)."""
    return callable(getattr(net, "context_features", None))


class SplitDenoiser:
    """A feature-cache denoiser run as two callables with flat signatures (traced graphs, ONNX
    sessions): ``context(context, actions, context_noise) -> features`` and ``step(noisy, timesteps,
    *features) -> out``. Called whole, it is the denoiser's signature (checks, one-off calls)."""

    def __init__(self, context: Callable[..., Features], step: Callable[..., torch.Tensor]) -> None:
        self._context, self._step = context, step

    def context_features(self, context: torch.Tensor, actions: torch.Tensor, context_noise: torch.Tensor) -> Features:
        return self._context(context, actions, context_noise)

    def step(self, noisy: torch.Tensor, timesteps: torch.Tensor, features: Features) -> torch.Tensor:
        return self._step(noisy, timesteps, *features)

    def __call__(self, noisy, timesteps, context, actions, context_noise) -> torch.Tensor:
        return self.step(noisy, timesteps, self.context_features(context, actions, context_noise))


class ContextGraph(torch.nn.Module):
    """The feature-cache denoiser's context path as a module of its own (to trace or export)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, context: torch.Tensor, actions: torch.Tensor, context_noise: torch.Tensor) -> Features:
        return tuple(self.net.context_features(context, actions, context_noise))


class StepGraph(torch.nn.Module):
    """The feature-cache denoiser's per-step path, its features flat (a graph takes tensors, not a tuple)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
        return self.net.step(noisy, timesteps, features)
