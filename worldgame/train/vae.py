"""Stage 1: the autoencoder. Loss: L1 + MSE on pixels, with noise on the latents so the decoder
tolerates the small errors of generated latents."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from worldgame.eval.metrics import psnr
from worldgame.models.autoencoder import TinyAutoencoder
from worldgame.train.data import FrameData, to_unit


class VaeObjective:
    def __init__(self, cfg: DictConfig, train: FrameData, val: FrameData, device: torch.device) -> None:
        self.cfg, self.train_data, self.val_data, self.device = cfg.train.vae, train, val, device
        self.model = TinyAutoencoder(**OmegaConf.to_container(cfg.model.vae, resolve=True)).to(device)
        g = torch.Generator().manual_seed(0)
        self.val_frames = val.frames[torch.randint(len(val.frames), (512,), generator=g)]

    def trainable(self) -> torch.nn.Module:
        return self.model

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.train_data.frames), (self.cfg.batch_size,), generator=gen)
        x = to_unit(self.train_data.frames[idx]).to(self.device)
        z = self.model.encoder(x)
        noisy = z + self.cfg.latent_noise * torch.randn_like(z)
        y = self.model.decoder(noisy)
        return (y - x).abs().mean() + (y - x).square().mean() + self.cfg.latent_l2 * z.square().mean()

    def after_step(self) -> None:
        pass

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        x = to_unit(self.val_frames).to(self.device)
        y = self.model.decoder(self.model.encoder(x)).clamp(-1, 1)
        self.model.train()
        value = psnr((y + 1) / 2, (x + 1) / 2).mean().item()
        return {"psnr": value, "score": value}

    def finish(self) -> None:
        """Set latent_scale so latents have unit variance, as the denoiser's noise schedule expects."""
        with torch.no_grad():
            z = self.model.encoder(to_unit(self.val_frames).to(self.device))
        self.model.register_to_config(latent_scale=float(1.0 / z.std()))
