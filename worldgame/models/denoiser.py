"""The action-conditioned denoiser: a diffusers UNet2DModel on K past latents + the noisy target.

Conditioning, as in GameNGen/DIAMOND: the K past latents are concatenated with the noisy target on
channels (``in_channels = C * (K + 1)``); the K past actions are embedded, flattened and projected,
the context-noise level is embedded too, and both are added to the UNet's timestep embedding via
its ``class_embed_type="identity"`` slot. With ``noise_per_frame`` each context frame has its own
noise level (DIAMOND's CS:GO recipe), all K levels embedded: in training every context frame is
noised independently, so the model learns how much to trust each one.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from worldgame.models.chance import CodeEmbedding, CodeMap


class ActionDenoiser(ModelMixin, ConfigMixin):
    """Predicts the clean next latent (or v / epsilon, per the scheduler) from noisy target + context.

    Args:
        num_actions: size of the game's discrete action set.
        context_length: K, the number of past latents and actions seen.
        latent_channels: C, channels of one latent.
        latent_size: side of the latent grid (16 for 64x64 frames).
        block_out_channels: UNet widths per resolution level.
        layers_per_block: resnets per UNet level.
        action_dim: size of one action embedding before flattening.
        norm_num_groups: GroupNorm groups inside the UNet.
        noise_per_frame: one context-noise level per context frame (B, K) instead of one per sample (B,).
        chance_groups, chance_values, chance_dim: the chance code the denoiser is conditioned on
            (models/chance.py): G groups of V values, each embedded in ``chance_dim``; 0 groups = none.
        chance_map: channels of the map each code value draws over the latent grid, read beside the
            input latents (0 = the code only as a vector beside the actions).
    """

    @register_to_config
    def __init__(
        self,
        num_actions: int,
        context_length: int = 4,
        latent_channels: int = 4,
        latent_size: int = 16,
        block_out_channels: tuple[int, ...] = (48, 96, 96),
        layers_per_block: int = 1,
        action_dim: int = 32,
        norm_num_groups: int = 16,
        noise_per_frame: bool = False,
        chance_groups: int = 0,
        chance_values: int = 16,
        chance_dim: int = 16,
        chance_map: int = 0,
    ) -> None:
        super().__init__()
        levels = len(block_out_channels)
        emb_dim = 4 * block_out_channels[0]
        self.unet = UNet2DModel(
            sample_size=latent_size,
            in_channels=latent_channels * (context_length + 1) + (chance_map if chance_groups else 0),
            out_channels=latent_channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=norm_num_groups,
            class_embed_type="identity",
            add_attention=False,  # attention at 4x4 costs more than it brings here
        )
        self.action_embedding = nn.Embedding(num_actions, action_dim)
        # the chance code (models/chance.py) beside the actions: none (0 groups) = as before it
        self.chance_embedding = CodeEmbedding(chance_groups, chance_values, chance_dim) if chance_groups else None
        self.chance_map_embedding = CodeMap(chance_groups, chance_values, chance_map, latent_size) if chance_groups and chance_map else None
        self.noise_level_proj = Timesteps(block_out_channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        levels_dim = block_out_channels[0] * (context_length if noise_per_frame else 1)
        self.cond_proj = nn.Sequential(
            nn.Linear(context_length * action_dim + levels_dim + chance_groups * chance_dim, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )

    def condition(self, actions: torch.Tensor, context_noise: torch.Tensor,
                  chance: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) actions + context-noise levels in [0, 1], (B,) or (B, K) -> (B, emb_dim) added to the
        time embedding. A (B,) level is every frame's level; a model with one level reads the mean.
        With a chance code: ``actions`` (B, K + G) carries the drawn code after the K actions, or
        ``chance`` (B, G, V) is training's straight-through one-hot code."""
        return conditioning(self, actions, context_noise, chance)

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        actions: torch.Tensor,
        context_noise: torch.Tensor,
        chance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """noisy (B, C, h, w), timesteps (B,), context (B, K, C, h, w), actions (B, K) long (B, K + G
        with a chance code), context_noise (B,) or (B, K), ``chance``: training's one-hot code ->
        model output (B, C, h, w)."""
        x = torch.cat([context.flatten(1, 2), noisy, *code_map(self, actions, chance)], dim=1)
        return self.unet(x, timesteps, class_labels=self.condition(actions, context_noise, chance), return_dict=False)[0]


def code_map(net, actions: torch.Tensor, chance: torch.Tensor | None) -> list[torch.Tensor]:
    """[the code's map (B, chance_map, h, w)] where the net draws one, else [] (both variants)."""
    if net.chance_map_embedding is None:
        return []
    return [net.chance_map_embedding(actions[:, net.config.context_length:], chance)]


def conditioning(net, actions: torch.Tensor, context_noise: torch.Tensor, chance: torch.Tensor | None) -> torch.Tensor:
    """Both denoiser variants' ``condition``: the K actions' embeddings, the context-noise levels'
    and, where the net has a chance code, the code's -- concatenated and projected."""
    k = net.config.context_length
    b = actions.shape[0]
    a = net.action_embedding(actions[:, :k]).flatten(1)
    if net.config.noise_per_frame:
        levels = context_noise.reshape(b, -1).expand(b, k).reshape(-1)
    else:
        levels = context_noise.reshape(b, -1).mean(1)
    parts = [a, net.noise_level_proj(levels * 1000).to(a.dtype).reshape(b, -1)]
    if net.chance_embedding is not None:
        parts.append(net.chance_embedding(actions[:, k:], chance))
    return net.cond_proj(torch.cat(parts, dim=1))
