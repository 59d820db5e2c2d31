"""A tiny autoencoder for game frames: pixel-unshuffle stem, work at latent resolution.

TAESD-style (deterministic, one latent per downscale x downscale patch) but without full-resolution
convolutions: the frame is folded into channels by ``PixelUnshuffle`` first, so every convolution
runs on the 16x16 grid. That makes it cheap to train on a CPU and to decode at play time (~1-2 ms).
A larger frame folds a larger patch (96 px -> 6x6, 128 px -> 8x8) into the same 16x16 grid, so
the denoiser's cost does not change; only the stem and the decoder's last convolution grow.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from worldgame.errors import WorldgameError


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        # 3x3 then 1x1: neighbours matter for edges, the rest is per-cell work (half the cost of 3x3 + 3x3)
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x + self.body(x))


class TinyAutoencoder(ModelMixin, ConfigMixin):
    """Frames in [-1, 1] (B, 3, H, W) <-> latents (B, latent_channels, H/downscale, W/downscale).

    Args:
        in_channels: image channels (3 for RGB).
        latent_channels: channels of the latent grid the world model works on.
        downscale: side of the pixel patch folded into one latent cell (4: 64x64 -> 16x16).
        width: channels of every convolution inside encoder and decoder.
        encoder_blocks: residual blocks in the encoder.
        decoder_blocks: residual blocks in the decoder (decode runs every frame at play time).
        latent_scale: multiply raw latents by this so they have unit variance (set after training).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 4,
        downscale: int = 4,
        width: int = 48,
        encoder_blocks: int = 2,
        decoder_blocks: int = 3,
        latent_scale: float = 1.0,
    ) -> None:
        super().__init__()
        folded = in_channels * downscale * downscale
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(downscale),
            nn.Conv2d(folded, width, 3, padding=1),
            nn.SiLU(),
            *[ResBlock(width) for _ in range(encoder_blocks)],
            nn.Conv2d(width, latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, width, 3, padding=1),
            nn.SiLU(),
            *[ResBlock(width) for _ in range(decoder_blocks)],
            nn.Conv2d(width, folded, 3, padding=1),
            nn.PixelShuffle(downscale),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (unit variance once latent_scale is set)."""
        return self.encoder(images) * self.config.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images, roughly in [-1, 1] (not clamped)."""
        return self.decoder(latents / self.config.latent_scale)


def downscale_for(frame_size: int, latent_size: int, downscale: int | None = None) -> int:
    """The autoencoder's downscale for ``frame_size`` frames: the one that gives the denoiser its
    ``latent_size`` grid (``downscale`` None: derived; given: checked). One line otherwise."""
    if downscale is None:
        if frame_size % latent_size:
            fits = " or ".join(str(latent_size * m) for m in range(max(1, frame_size // latent_size), frame_size // latent_size + 2))
            raise WorldgameError(f"frames of {frame_size}px do not fold into the denoiser's {latent_size}x{latent_size} "
                                 f"latent (model.denoiser.latent_size): collect with game.frame_size={fits}, or set "
                                 f"model.denoiser.latent_size to a divisor of {frame_size}")
        return frame_size // latent_size
    if downscale * latent_size != frame_size:
        raise WorldgameError(f"model.vae.downscale={downscale} folds {frame_size}px frames into a "
                             f"{frame_size / downscale:g}-cell latent, not model.denoiser.latent_size={latent_size}; "
                             "leave model.vae.downscale unset (null) and it follows the frame size")
    return downscale
