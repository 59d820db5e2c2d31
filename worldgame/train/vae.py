"""Stage 1: the autoencoder. Loss: L1 + MSE on pixels, weighted toward the foreground, with noise on
the latents so the decoder tolerates the small errors of generated latents.

Why the weighting: a game frame is mostly static background, so a plain pixel loss is minimised by
decoding the background and dropping the few-pixel sprites (on an Atari game: 30.5 dB with every
sprite gone). Pixels that differ from the data's per-pixel median background (the foreground) get
``foreground_weight`` times the weight of the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from worldgame.eval.metrics import psnr
from worldgame.eval.objects import foreground_mask, foreground_scores, median_background
from worldgame.models.autoencoder import TinyAutoencoder
from worldgame.settings import TrainSettings, plain
from worldgame.train.data import FrameData, to_unit


class VaeObjective:
    def __init__(self, cfg: TrainSettings, train: FrameData, val: FrameData, device: torch.device) -> None:
        self.cfg, self.train_data, self.val_data, self.device = cfg.train.vae, train, val, device
        self.model = TinyAutoencoder(**plain(cfg.model.vae)).to(device)
        g = torch.Generator().manual_seed(0)
        self.val_frames = val.frames[torch.randint(len(val.frames), (512,), generator=g)]
        sample = train.frames[torch.randint(len(train.frames), (min(2048, len(train.frames)),), generator=g)]
        self.background = median_background(sample).to(device)  # (3, H, W) in [0, 1]
        self.fg_weight = self.cfg.foreground_weight

    def trainable(self) -> torch.nn.Module:
        return self.model

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.train_data.frames), (self.cfg.batch_size,), generator=gen)
        x = to_unit(self.train_data.frames[idx]).to(self.device)
        z = self.model.encoder(x)
        noisy = z + self.cfg.latent_noise * torch.randn_like(z)
        y = self.model.decoder(noisy)
        fg = foreground_mask((x + 1) / 2, self.background)[:, None]
        weight = 1 + (self.fg_weight - 1) * fg.float()
        err = (y - x).abs() + (y - x).square()
        return (weight * err).sum() / (weight.sum() * x.shape[1]) + self.cfg.latent_l2 * z.square().mean()

    def after_step(self) -> None:
        pass

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        x = (to_unit(self.val_frames).to(self.device) + 1) / 2
        y = (self.model.decoder(self.model.encoder(x * 2 - 1)).clamp(-1, 1) + 1) / 2
        self.model.train()
        m = {"psnr": psnr(y, x).mean().item(), **foreground_scores(y, x, self.background)}
        # the score must see the sprites: whole-frame PSNR alone rewards a background-only decoder
        m["score"] = m["psnr"] + m["fg_psnr"] + 5 * (m["fg_recall"] + m["fg_precision"])
        return m

    def resume_state(self) -> dict[str, Any]:
        return {}  # the trained weights are all there is

    def load_resume_state(self, state: dict[str, Any]) -> None:
        pass

    @contextmanager
    def checkpoint_weights(self) -> Iterator[TinyAutoencoder]:
        """The autoencoder, its latent_scale set so latents have unit variance, as the denoiser's
        noise schedule expects."""
        with torch.no_grad():
            z = self.model.encoder(to_unit(self.val_frames).to(self.device))
        self.model.register_to_config(latent_scale=float(1.0 / z.std()))
        yield self.model

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        return ("vae",)

