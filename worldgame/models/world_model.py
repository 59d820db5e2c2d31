"""WorldModel: load a checkpoint folder, encode frames, decode latents, and the reference sampling loop.

The fast, prepared sampling that play, bench, eval and serve run is models/sampler.py's ``Sampler``,
which a dream owns; this module holds no routing state.

Checkpoint folder layout (diffusers-style, safetensors only, loads offline)::

    vae/        TinyAutoencoder      (config.json + diffusion_pytorch_model.safetensors)
    denoiser/   ActionDenoiser, LCM-distilled student (what play uses)
    teacher/    ActionDenoiser before distillation (optional; eval compares against it)
    events/     EventHead: the reward's sign and the game's end per transition (optional; the dream's score)
    agent/      Agent: a policy and value trained only in the dream (optional; `play agent=true`)
    chance/     ChanceCode: the prior the dream draws each frame's chance code from (and the posterior
                training named it with); present exactly when the denoiser is conditioned on a code
    scheduler/  LCMScheduler config (the betas the teacher was trained with)
    worldgame.json  game, frame size, action names and key bindings, K, play-time context noise,
                    and where the weights came from (data, training time, eval figures)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_dir, atomic_write_json
from worldgame.models.agent import Agent
from worldgame.models.autoencoder import TinyAutoencoder
from worldgame.models.chance import ChanceCode
from worldgame.models.checkpoint_checks import (
    PLAY_SHAPE,
    check_against_weights,
    check_chance,
    check_part,
    play_default_ok,
    read_metadata,
)
from worldgame.models.denoiser import ActionDenoiser
from worldgame.models.denoisers import denoiser_class
from worldgame.models.events import EventHead
from worldgame.models.schedulers import lcm_scheduler, play_scheduler, set_timesteps
from worldgame.settings.fields import SHIPPED_CHECKPOINTS
from worldgame.vocabulary import PLAY_STEPS

METADATA = "worldgame.json"


MAX_TEACHER_STEPS = 1000


def default_checkpoint(game: str = "bouncer") -> Path:
    """The checkpoint shipped for ``game`` (checkpoints/<game> in a checkout, or inside the wheel;
    ``gym:ALE/Boxing-v5`` looks in checkpoints/boxing)."""
    from worldgame.games.registry import folder_name

    return SHIPPED_CHECKPOINTS / folder_name(game)


def play_default(metadata: dict[str, Any]) -> dict[str, Any]:
    """The sampler and steps a checkpoint names for play (worldgame.json ``"play": {"sampler",
    "spacing", "steps"}``), checked; checkpoints without one were made for LCM, and without steps
    play 4 (what play ran before a checkpoint could choose, docs/fidelity.md)."""
    play = metadata.get("play")
    if play is None:
        return {"sampler": "lcm", "spacing": None, "steps": PLAY_STEPS}
    if not play_default_ok(play):
        raise WorldgameError(f"{METADATA}: \"play\" is {str(play)[:80]}, not {PLAY_SHAPE}; fix or remove it")
    return {"sampler": play["sampler"], "spacing": play.get("spacing"), "steps": play.get("steps", PLAY_STEPS)}


def play_steps(steps: int | None, metadata: dict[str, Any]) -> int:
    """``steps`` as a setting gives it (play, serve, export-web, eval): None = the checkpoint's play default."""
    return int(steps) if steps is not None else play_default(metadata)["steps"]


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise WorldgameError(f"device={device!r} is not a torch device (try auto, cpu or cuda)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WorldgameError(f"device={device} but this torch has no usable CUDA; use device=auto or cpu")
    return dev


def _load(cls: Any, folder: Path, dtype: torch.dtype) -> Any:
    if not (folder / "config.json").is_file():
        raise WorldgameError(f"checkpoint part {folder} is missing; the checkpoint is incomplete")
    hint = f"restore it (e.g. `git checkout {folder}`) or retrain it"
    check_part(cls, folder, hint)
    try:
        module = cls.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(dtype).eval()
    except Exception as e:
        raise WorldgameError(f"checkpoint part {folder} is damaged or incomplete ({type(e).__name__}); {hint}") from e
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        raise WorldgameError(f"checkpoint part {folder} is damaged (its weights hold NaN or inf); {hint}")
    return module


class WorldModel:
    """The neural game engine's model: frames <-> latents, and latents + actions -> next latent."""

    def __init__(
        self,
        vae: TinyAutoencoder,
        denoiser: ActionDenoiser,
        metadata: dict[str, Any],
        teacher: ActionDenoiser | None = None,
        events: EventHead | None = None,
        agent: Agent | None = None,
        chance: ChanceCode | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.vae = vae.to(self.device, dtype).eval().requires_grad_(False)
        self.denoiser = denoiser.to(self.device, dtype).eval().requires_grad_(False)
        self.teacher = teacher.to(self.device, dtype).eval().requires_grad_(False) if teacher is not None else None
        self.events = events.to(self.device, dtype).eval().requires_grad_(False) if events is not None else None
        self.agent = agent.to(self.device, dtype).eval().requires_grad_(False) if agent is not None else None
        self.chance = chance.to(self.device, dtype).eval().requires_grad_(False) if chance is not None else None
        self.metadata = metadata
        self.prediction_type = metadata.get("prediction_type", "sample")
        self.scheduler = lcm_scheduler(self.prediction_type)
        self.context_length: int = denoiser.config.context_length
        self.context_noise: float = float(metadata.get("context_noise", 0.0))
        self.action_names: list[str] = list(metadata["action_names"])
        self.frame_size: int = int(metadata["frame_size"])
        play_default(metadata)  # a checkpoint naming a sampler we lack fails at load, in one line

    @property
    def draws_events(self) -> bool:
        """The chance code's first group is the transition's event (models/chance.py ``event_group``):
        the dream's points, hits and game overs are drawn with the frame, not read off it."""
        return self.chance is not None and bool(self.chance.config.get("event_group", False))

    @property
    def has_events(self) -> bool:
        """The dream says its own points and game overs (drawn with the code, or the event head's)."""
        return self.draws_events or self.events is not None

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", half: bool | None = None, teacher: bool = False) -> WorldModel:
        """Load a checkpoint folder offline. ``half`` defaults to True on CUDA, False on CPU."""
        path = Path(path)
        if not path.is_dir():
            raise WorldgameError(f"checkpoint {path}: no such folder (train one with `worldgame train`, or omit checkpoint= for the shipped one)")
        meta_file = path / METADATA
        if not meta_file.is_file():
            raise WorldgameError(f"checkpoint {path}: no {METADATA}; this is not a worldgame checkpoint folder")
        metadata = read_metadata(meta_file)
        dev = pick_device(device)
        dtype = torch.float16 if (half if half is not None else dev.type == "cuda") else torch.float32
        vae = _load(TinyAutoencoder, path / "vae", dtype)
        denoiser = _load(denoiser_class(path / "denoiser"), path / "denoiser", dtype)  # concat or feature_cache
        teach = _load(denoiser_class(path / "teacher"), path / "teacher", dtype) if teacher and (path / "teacher").is_dir() else None
        # the event head is optional: a checkpoint trained before it plays as before, keeping no score
        events = _load(EventHead, path / "events", dtype) if (path / "events").is_dir() else None
        agent = _load(Agent, path / "agent", dtype) if (path / "agent").is_dir() else None  # optional too
        chance = _load(ChanceCode, path / "chance", dtype) if (path / "chance").is_dir() else None
        check_against_weights(meta_file, metadata, denoiser, ("events", events), ("agent", agent), ("chance", chance), vae=vae)
        for net in (denoiser, teach):
            if net is not None:
                check_chance(meta_file, net, chance)
        model = cls(vae, denoiser, metadata, teacher=teach, device=dev, dtype=dtype, events=events, agent=agent, chance=chance)
        model.path = path
        return model

    def save_pretrained(self, path: str | Path, half: bool = True) -> None:
        """Write the checkpoint folder (weights in fp16 when ``half``; loading casts them back).

        Each part is written into a temporary folder beside it and swapped in by rename, and
        worldgame.json last, atomically: a loader never sees half a file, and a full disk leaves
        the previous checkpoint as it was.
        """
        path = Path(path)
        parts = {"vae": self.vae, "denoiser": self.denoiser, "teacher": self.teacher, "events": self.events, "agent": self.agent,
                 "chance": self.chance}
        try:
            path.mkdir(parents=True, exist_ok=True)
            for name, module in parts.items():
                if module is not None:
                    with atomic_dir(path / name) as tmp:
                        module.to(torch.float16 if half else torch.float32).save_pretrained(tmp, safe_serialization=True)
                    module.to(self.dtype)
            with atomic_dir(path / "scheduler") as tmp:
                self.scheduler.save_pretrained(tmp)
        except OSError as e:
            raise WorldgameError(f"cannot write checkpoint {path} ({e.strerror or e}); free some disk space or choose a writable out=") from e
        atomic_write_json(path / METADATA, self.metadata)

    def check_game(self, game: str, frame_size: int) -> None:
        """Raise a clear error when this checkpoint was trained on another game or frame size."""
        if self.metadata.get("game") != game or self.frame_size != frame_size:
            raise WorldgameError(
                f"checkpoint {getattr(self, 'path', '')} is for {self.metadata.get('game')} at {self.frame_size}px, "
                f"not {game} at {frame_size}px; pass a checkpoint trained on this game"
            )

    # --- the three operations ------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, H, W, 3) -> latents (B, C, h, w) on the model's device."""
        x = torch.as_tensor(frames, device=self.device).permute(0, 3, 1, 2).to(self.dtype)
        return self.vae.encode(x / 127.5 - 1)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, decoder: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """latents (B, C, h, w) -> uint8 frames (B, H, W, 3) on the model's device. ``decoder``: a
        callable standing in for ``vae.decode`` (a prepared sampler's fast path), None: the module."""
        return to_frames((decoder or self.vae.decode)(latents.to(self.dtype)))

    @torch.inference_mode()
    def reference_step(self, context: torch.Tensor, actions: torch.Tensor, steps: int, generator: torch.Generator | None,
                       sampler: str = "lcm", spacing: str | None = None,
                       on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """The next latent by the reference loop (:func:`scheduler_sample`, the torch modules, one
        diffusers ``step`` per step): what the prepared samplers (models/sampler.py) reproduce bit for
        bit. ``sampler``: lcm, ddim, dpmsolver (the denoiser/) or teacher (teacher/ with DDIM)."""
        net = self.teacher if sampler == "teacher" else self.denoiser
        if net is None:
            raise WorldgameError("this checkpoint has no teacher/ folder; load it with teacher=True after training one")
        scheduler = play_scheduler("ddim" if sampler == "teacher" else sampler, spacing, self.prediction_type)
        draw_code = self.chance.drawer() if net.config.get("chance_groups", 0) else None  # the frame's chance code, first
        return scheduler_sample(net, scheduler, context, actions, steps, generator, self.context_noise, on_step, draw_code)


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """The VAE decoder's output (B, 3, H, W) in [-1, 1] -> uint8 frames (B, H, W, 3), as play shows them."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def scheduler_sample(net, scheduler, context: torch.Tensor, actions: torch.Tensor, steps: int,
                     generator: torch.Generator | None, context_noise: float = 0.0,
                     on_step: Callable[[int, torch.Tensor], None] | None = None,
                     draw_code: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """THE sampling loop, any diffusers scheduler (LCM, DDIM), one ``scheduler.step`` per step; training's
    validation (train/sampling.py) and inference both run it. Returns the last denoised estimate.

    ``context_noise`` > 0 noises the context and tells the network so, as at play time. The noise is
    drawn from ``generator`` in a fixed order (context noise, start latent, then whatever each
    ``scheduler.step`` draws), in ``context``'s dtype: :class:`LCMPlan` reproduces it bit for bit.

    ``draw_code(context, actions, generator) -> (B, G)``: a chance code's prior (models/chance.py),
    drawn once for the frame before anything else and handed to the network after the actions."""
    b, dev, dtype = context.shape[0], context.device, context.dtype
    if draw_code is not None:
        actions = torch.cat([actions, draw_code(context, actions, generator)], 1)
    set_timesteps(scheduler, steps, dev)
    noise_level = torch.full((b,), float(context_noise), device=dev, dtype=dtype)
    if context_noise > 0:
        context = context + context_noise * torch.randn(context.shape, generator=generator, device=dev, dtype=dtype)
    latents = torch.randn((b, *context.shape[2:]), generator=generator, device=dev, dtype=dtype)
    denoised = latents
    for i, t in enumerate(scheduler.timesteps):
        out = net(latents, t.expand(b), context, actions, noise_level)
        result = scheduler.step(out, t, latents, generator=generator, return_dict=False)
        latents, denoised = result[0], (result[1] if len(result) > 1 else result[0])
        if on_step is not None:
            on_step(i, denoised)
    return denoised
