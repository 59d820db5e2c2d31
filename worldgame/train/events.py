"""Stage 5: the event head (models/events.py): the reward's sign and the game's end of each transition.

Loss: cross-entropy on the reward sign plus binary cross-entropy on the end, on windows of the
autoencoder's latents. Events are rare (a coin every few seconds, a game over every few minutes),
so ``rare_share`` of each batch comes from windows whose target frame holds one. The latents it sees
get noise (``latent_noise``) because in a dream the next latent is the denoiser's, never the real one.
Validated on every held-out window: the F1 of each event kind, the score their mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from worldgame.eval.metrics import f1_scores
from worldgame.models.events import EventHead
from worldgame.settings import TrainSettings, plain
from worldgame.train.latents import LatentBatches

VAL_BATCH = 1024


def _window(batch: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The latents the head sees for a batch of windows: the context, then the frame it led to."""
    return torch.cat([batch["context"], target[:, None]], 1)


@torch.no_grad()
def held_out_outputs(model: EventHead, val: LatentBatches) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward logits (N, 3), end logits (N,)) of every held-out window, on the CPU."""
    was_training = model.training
    model.eval()
    outputs = []
    for i in range(0, len(val.data.ends), VAL_BATCH):
        b = val.at(val.data.ends[i : i + VAL_BATCH], None)
        outputs.append([x.cpu() for x in model(_window(b, b["target"]), b["actions"][:, -1])])
    model.train(was_training)
    return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])


def labels(data, ends: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward class (B,) in 0/1/2 for -/0/+, ended (B,) bool) of the transitions into frames ``ends``."""
    return torch.sign(data.rewards[ends]).long() + 1, data.dones[ends]


class EventsObjective:
    def __init__(self, cfg: TrainSettings, batches: LatentBatches, val: LatentBatches, num_actions: int,
                 device: torch.device) -> None:
        self.cfg, self.batches, self.val, self.device = cfg.train.events, batches, val, device
        shape = cfg.model.denoiser
        self.model = EventHead(latent_channels=shape.latent_channels, latent_size=shape.latent_size,
                               num_actions=num_actions, **plain(cfg.model.events)).to(device)
        self.rare = batches.data.rare_ends(0)  # windows whose target holds a reward or an end
        # the end is rarer still: its own share, so the head sees game overs at all
        self.ending = batches.data.ends[batches.data.dones[batches.data.ends]]

    def trainable(self) -> torch.nn.Module:
        return self.model

    def _draw(self, gen: torch.Generator) -> torch.Tensor:
        n = self.cfg.batch_size
        ends = self.batches.data.ends[torch.randint(len(self.batches.data.ends), (n,), generator=gen)]
        n_rare = round(n * self.cfg.rare_share) if len(self.rare) else 0
        n_end = n_rare // 4 if len(self.ending) else 0
        if n_rare:
            ends[:n_rare] = self.rare[torch.randint(len(self.rare), (n_rare,), generator=gen)]
        if n_end:
            ends[:n_end] = self.ending[torch.randint(len(self.ending), (n_end,), generator=gen)]
        return ends

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        ends = self._draw(gen)
        b = self.batches.at(ends, gen)  # context noised by the batches' own level (latent_noise)
        target = b["target"]
        level = torch.rand(len(ends), 1, 1, 1, generator=gen) * self.cfg.latent_noise
        target = target + (level * torch.randn(target.shape, generator=gen)).to(target.device)
        reward, ended = labels(self.batches.data, ends)
        logits, end = self.model(_window(b, target), b["actions"][:, -1])
        return (torch.nn.functional.cross_entropy(logits, reward.to(self.device))
                + torch.nn.functional.binary_cross_entropy_with_logits(end, ended.float().to(self.device)))

    def after_step(self) -> None:
        pass

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        sign, ended = self.model.decide(*held_out_outputs(self.model, self.val))
        reward, truly_ended = labels(self.val.data, self.val.data.ends)
        m: dict[str, float] = {}
        for name, pred, true in (("plus", sign == 1, reward == 2), ("minus", sign == -1, reward == 0),
                                 ("end", ended, truly_ended)):
            scores = f1_scores(pred, true)
            m.update({f"{name}_f1": scores["f1"], f"{name}_events": scores["events"]})
        kinds = [m[f"{k}_f1"] for k in ("plus", "minus", "end") if m[f"{k}_events"]]
        m["score"] = sum(0.0 if math.isnan(f) else f for f in kinds) / max(1, len(kinds))
        return m

    def resume_state(self) -> dict[str, Any]:
        return {}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        pass

    @contextmanager
    def checkpoint_weights(self) -> Iterator[EventHead]:
        """The head, its end threshold chosen on the held-out windows (see :func:`end_threshold`)."""
        self.model.register_to_config(end_threshold=end_threshold(self.model, self.val))
        yield self.model

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        return ("events",)


MIN_END_F1 = 0.8  # below this held-out F1 at its best threshold the head never ends a game


@torch.no_grad()
def end_threshold(model: EventHead, val: LatentBatches) -> float | None:
    """The end logit threshold with the best F1 on every held-out window (the middle of the range
    that reaches it); None when even that F1 is below MIN_END_F1 or the held-out data has no end."""
    logit, truth = held_out_outputs(model, val)[1], val.data.dones[val.data.ends]
    if not truth.any():
        return None
    candidates = [round(x, 2) for x in torch.linspace(-4, 8, 49).tolist()]
    f1 = [f1_scores(logit > t, truth)["f1"] for t in candidates]
    best_f1 = max(f1)
    if best_f1 < MIN_END_F1:
        return None
    best = [t for t, f in zip(candidates, f1, strict=True) if f == best_f1]
    return best[len(best) // 2]  # the middle of the best range: a dream's latents sit off the real ones
