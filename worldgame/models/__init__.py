"""Models: the tiny autoencoder, the action-conditioned denoiser and the WorldModel that joins them."""

from worldgame.models.autoencoder import TinyAutoencoder
from worldgame.models.denoiser import ActionDenoiser
from worldgame.models.world_model import WorldModel, default_checkpoint

__all__ = ["ActionDenoiser", "TinyAutoencoder", "WorldModel", "default_checkpoint"]

from diffusers.utils import logging as _diffusers_logging

_diffusers_logging.set_verbosity_error()  # keep load-time chatter (fp32 casts, accelerate hints) out of the CLI
