"""The feature-cache denoiser (``model.denoiser.variant=feature_cache``, issue 22's "NRC row"): the
context path and the noisy-target path are two networks, so a frame computes its context's features
once and every sampling step reuses them.

The concat denoiser (denoiser.py) feeds ``[K context latents, noisy target]`` through one UNet, so
each of play's 4 steps recomputes the context's features although the context is the same for all
steps of a frame. Here:

* :meth:`FeatureCacheDenoiser.context_features` (once per frame): the actions and context-noise
  levels are embedded as in ActionDenoiser (``cond``), and a conv encoder of diffusers
  ``DownBlock2D`` blocks over the K context latents, conditioned on ``cond``, gives one feature map
  at the input of each down level of the step net and one at its middle (1x1 projections to the
  step net's widths);
* :meth:`FeatureCacheDenoiser.step` (every sampling step): a light diffusers ``UNet2DModel``
  (``step_block_out_channels``, half the shipped widths by default) over the noisy target alone; the
  features are added to its hidden state before each down level and the mid block (so its skips
  carry them to the up path too), ``cond`` to its timestep embedding;
* ``forward`` is the two in a row, the signature every caller of the concat denoiser uses
  (training, the reference sampler), so those run unchanged.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import get_down_block
from torch import nn

from worldgame.models.chance import CodeEmbedding, CodeMap
from worldgame.models.denoiser import code_map, conditioning


class FeatureCacheDenoiser(ModelMixin, ConfigMixin):
    """Predicts the clean next latent (or v / epsilon) like ActionDenoiser, with its context features
    computed apart (:meth:`context_features`) and reusable across a frame's sampling steps.

    Args: those of ActionDenoiser (``block_out_channels`` are the context encoder's widths), plus
        step_block_out_channels: widths of the per-step UNet (one per level, as many as
            ``block_out_channels``).
    """

    @register_to_config
    def __init__(
        self,
        num_actions: int,
        context_length: int = 4,
        latent_channels: int = 4,
        latent_size: int = 16,
        block_out_channels: tuple[int, ...] = (32, 64, 96),
        layers_per_block: int = 1,
        action_dim: int = 32,
        norm_num_groups: int = 8,
        noise_per_frame: bool = False,
        chance_groups: int = 0,
        chance_values: int = 16,
        chance_dim: int = 16,
        chance_map: int = 0,
        step_block_out_channels: tuple[int, ...] = (16, 32, 48),
    ) -> None:
        super().__init__()
        if len(step_block_out_channels) != len(block_out_channels):
            raise ValueError(f"step_block_out_channels {list(step_block_out_channels)} needs one width per level of "
                             f"block_out_channels {list(block_out_channels)}")
        levels = len(block_out_channels)
        steps_w, enc_w = tuple(step_block_out_channels), tuple(block_out_channels)
        emb_dim = 4 * steps_w[0]  # the step UNet's time-embedding size; cond is added to it
        self.step_unet = UNet2DModel(
            sample_size=latent_size,
            in_channels=latent_channels,
            out_channels=latent_channels,
            block_out_channels=steps_w,
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=norm_num_groups,
            add_attention=False,  # as the concat denoiser: attention at 4x4 costs more than it brings
        )
        # the conditioning, as ActionDenoiser.condition (one embedding per frame, computed with the features)
        self.action_embedding = nn.Embedding(num_actions, action_dim)
        # the chance code (models/chance.py) beside the actions: none (0 groups) = as before it
        self.chance_embedding = CodeEmbedding(chance_groups, chance_values, chance_dim) if chance_groups else None
        self.chance_map_embedding = CodeMap(chance_groups, chance_values, chance_map, latent_size) if chance_groups and chance_map else None
        self.noise_level_proj = Timesteps(enc_w[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        levels_dim = enc_w[0] * (context_length if noise_per_frame else 1)
        self.cond_proj = nn.Sequential(
            nn.Linear(context_length * action_dim + levels_dim + chance_groups * chance_dim, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        # the context encoder: the step UNet's down path in shape, over the K context latents
        map_channels = chance_map if chance_groups else 0  # the code's map joins the context: known before the steps
        self.context_in = nn.Conv2d(latent_channels * context_length + map_channels, enc_w[0], kernel_size=3, padding=1)
        self.context_blocks = nn.ModuleList(
            get_down_block("DownBlock2D", num_layers=layers_per_block, in_channels=enc_w[max(i - 1, 0)],
                           out_channels=enc_w[i], temb_channels=emb_dim, add_downsample=i < levels - 1,
                           resnet_eps=1e-5, resnet_act_fn="silu", resnet_groups=norm_num_groups, downsample_padding=1)
            for i in range(levels)
        )
        # feature i enters the step UNet before down level i (its input width), the last before the mid block
        step_inputs = [steps_w[0], *steps_w[:-1], steps_w[-1]]
        encoder_outputs = [enc_w[0], *enc_w]
        self.feature_proj = nn.ModuleList(nn.Conv2d(e, s, kernel_size=1) for e, s in zip(encoder_outputs, step_inputs))

    def condition(self, actions: torch.Tensor, context_noise: torch.Tensor,
                  chance: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) actions (B, K + G with a chance code) + context-noise levels (B,) or (B, K) -> (B, emb_dim): as ActionDenoiser.condition."""
        return conditioning(self, actions, context_noise, chance)

    def context_features(self, context: torch.Tensor, actions: torch.Tensor,
                         context_noise: torch.Tensor, chance: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Once per frame: context (B, K, C, h, w), actions (B, K) long, context_noise (B,) or (B, K) ->
        ``(cond, feature before down level 0, ..., feature before the mid block)``, what :meth:`step` takes."""
        cond = self.condition(actions, context_noise, chance)
        h = self.context_in(torch.cat([context.flatten(1, 2), *code_map(self, actions, chance)], dim=1))
        hidden = [h]
        for block in self.context_blocks:
            h, _ = block(hidden_states=h, temb=cond)
            hidden.append(h)
        return (cond, *(proj(x) for proj, x in zip(self.feature_proj, hidden)))

    def step(self, noisy: torch.Tensor, timesteps: torch.Tensor, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Every sampling step: noisy (B, C, h, w), timesteps (B,), this frame's :meth:`context_features`
        -> model output (B, C, h, w). UNet2DModel.forward's path, with the features added."""
        cond, *maps = features
        unet = self.step_unet
        t_emb = unet.time_proj(timesteps.expand(noisy.shape[0])).to(dtype=noisy.dtype)
        emb = unet.time_embedding(t_emb) + cond
        sample = unet.conv_in(noisy) + maps[0]  # before the first skip, so the up path's last level sees it
        skips = (sample,)
        for i, block in enumerate(unet.down_blocks):
            if i:
                sample = sample + maps[i]
            sample, res = block(hidden_states=sample, temb=emb)
            skips += res
        sample = unet.mid_block(sample + maps[-1], emb)
        for block in unet.up_blocks:
            res, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
            sample = block(sample, res, emb)
        return unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        actions: torch.Tensor,
        context_noise: torch.Tensor,
        chance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The concat denoiser's signature: :meth:`step` after :meth:`context_features` (training and
        every one-off call; the sampler computes the features once per frame instead)."""
        return self.step(noisy, timesteps, self.context_features(context, actions, context_noise, chance))
