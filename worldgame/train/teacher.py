"""Stage 2: the teacher, a DDPM-family denoiser (sample- or v-prediction) with noise-augmented context.

Loss: MSE between the network output and the scheduler's target at a uniform random timestep."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers.training_utils import EMAModel

from worldgame.errors import WorldgameError
from worldgame.models.checkpoint_checks import check_part
from worldgame.models.denoiser import ActionDenoiser
from worldgame.models.denoisers import build_denoiser, denoiser_class
from worldgame.models.schedulers import lcm_scheduler, teacher_scheduler, train_scheduler
from worldgame.settings import TrainSettings, plain
from worldgame.train.latents import LatentBatches, teacher_forced_psnr
from worldgame.train.sampling import closed_loop_check, object_score, sample


class TeacherObjective:
    def __init__(self, cfg: TrainSettings, batches: LatentBatches, val: LatentBatches, vae, num_actions: int,
                 device: torch.device) -> None:
        self.cfg, self.batches, self.val, self.vae = cfg.train.teacher, batches, val, vae
        self.play_noise = float(cfg.model.play_context_noise)
        self.model = build_denoiser(num_actions, plain(cfg.model.denoiser)).to(device)  # its variant's class
        if self.cfg.init:  # continue a trained teacher (its EMA starts from its weights too)
            self.model.load_state_dict(_init_weights(Path(self.cfg.init), self.model).state_dict())
        self.ema = EMAModel(self.model.parameters(), decay=self.cfg.ema_decay, use_ema_warmup=True)
        self.noise = train_scheduler(cfg.model.prediction_type)
        self.lcm = lcm_scheduler(cfg.model.prediction_type)
        self.ddim = teacher_scheduler(self.lcm.config)
        self.val_batch = val.at(val.data.ends[torch.randperm(len(val.data.ends), generator=torch.Generator().manual_seed(0))[:256]], None)

    def trainable(self) -> torch.nn.Module:
        return self.model

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        b = self.batches.sample(self.cfg.batch_size, gen)
        z0 = b["target"]
        eps = torch.randn(z0.shape, generator=gen).to(z0.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (len(z0),), generator=gen).to(z0.device)
        zt = self.noise.add_noise(z0, eps, t)
        out = self.model(zt, t, b["context"], b["actions"], b["context_noise"])
        if self.noise.config.prediction_type == "sample":
            target = z0
        elif self.noise.config.prediction_type == "v_prediction":
            target = self.noise.get_velocity(z0, eps, t)
        else:
            target = eps
        return (out - target).square().mean()

    def after_step(self) -> None:
        self.ema.step(self.model.parameters())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.ema.store(self.model.parameters())
        self.ema.copy_to(self.model.parameters())
        self.model.eval()
        vb = self.val_batch
        # 1 step: x0 straight from t=999 (LCM's schedule; DDIM's "leading" 1-step grid would start at t=0)
        m = {"psnr1": teacher_forced_psnr(lambda c, a: sample(self.model, self.lcm, c, a, 1), self.vae, vb),
             "psnr4": teacher_forced_psnr(lambda c, a: sample(self.model, self.ddim, c, a, 4), self.vae, vb)}
        m.update(closed_loop_check(self.model, self.ddim, self.vae, self.val, 4, self.play_noise))
        self.model.train()
        self.ema.restore(self.model.parameters())
        m["score"] = object_score(m)
        return m

    def resume_state(self) -> dict[str, Any]:
        """The EMA weights, so that a resumed run continues them instead of restarting them."""
        return {"ema": self.ema.state_dict()}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])

    @contextmanager
    def checkpoint_weights(self) -> Iterator[ActionDenoiser]:
        """The EMA weights, which are what validation measured; the trained ones again after the block."""
        self.ema.store(self.model.parameters())
        self.ema.copy_to(self.model.parameters())
        try:
            yield self.model
        finally:
            self.ema.restore(self.model.parameters())

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        # also the playable denoiser/ (a 1-4 step x0 sampler) until distillation has started writing its own
        return ("teacher",) if (out / "state_distill.pt").exists() else ("teacher", "denoiser")


def _init_weights(folder: Path, model: ActionDenoiser) -> ActionDenoiser:
    """The teacher/ of checkpoint ``folder`` (train.teacher.init), checked like any checkpoint part and
    required to have this run's shape."""
    part = folder / "teacher"
    hint = "pass a checkpoint folder with a teacher/ of the same model shape, or init=null to start afresh"
    if not (part / "config.json").is_file():
        raise WorldgameError(f"train.teacher.init={folder}: no teacher/ there; {hint}")
    cls = denoiser_class(part)
    if cls is not type(model):
        raise WorldgameError(f"train.teacher.init={folder}: its teacher/ is a {cls.__name__}, not the "
                             f"{type(model).__name__} model.denoiser.variant makes here; {hint}")
    check_part(cls, part, hint)
    try:
        init = cls.from_pretrained(part, local_files_only=True, use_safetensors=True).float()
    except Exception as e:
        raise WorldgameError(f"train.teacher.init={folder}: its teacher/ is damaged ({type(e).__name__}); {hint}") from e
    def shape(m: ActionDenoiser) -> dict:  # the public settings, lists and tuples alike
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in m.config.items() if not k.startswith("_")}

    if shape(init) != shape(model):
        raise WorldgameError(f"train.teacher.init={folder}: its teacher/ has another shape than model= here; {hint}")
    return init
