"""Stage 2: the teacher, a DDPM-family denoiser (sample- or v-prediction) with noise-augmented context.

Loss: MSE between the network output and the scheduler's target at a uniform random timestep.

With a chance code (``model.denoiser.chance_groups`` > 0, models/chance.py) the stage trains three
nets at once: the posterior names the outcome of each real next latent (a straight-through one-hot
code), the denoiser draws the frame given it, and the prior learns to predict the posterior's code
from the context and actions alone (cross-entropy, no gradient into the posterior). The EMA spans
all three, so the code's meaning the denoiser learnt is the one its prior draws."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel

from worldgame.errors import WorldgameError
from worldgame.models.chance import EVENT_APPEARED, ChanceCode, diversity_loss, rate, usage
from worldgame.models.checkpoint_checks import check_part
from worldgame.models.denoiser import ActionDenoiser
from worldgame.models.denoisers import build_denoiser, denoiser_class
from worldgame.models.places import expectation_code, where_maps
from worldgame.models.schedulers import (
    SCHEDULE,
    lcm_scheduler,
    play_scheduler,
    predicted_x0,
    teacher_scheduler,
    train_scheduler,
)
from worldgame.settings import TrainSettings, plain
from worldgame.train.latents import LatentBatches, teacher_forced_psnr
from worldgame.train.sampling import closed_loop_check, object_score, own_rollout, sample


# a latent cell whose mean square departure (over channels) from the background's passes this many
# times the training latents' mean holds part of an object (Bouncer: 1.0, ~20 of 256 cells a frame,
# its HUD included; relative, as an autoencoder's latents have a scale of their own)
FOREGROUND_DEPARTURE = 1.35


class TeacherObjective:
    def __init__(self, cfg: TrainSettings, batches: LatentBatches, val: LatentBatches, vae, num_actions: int,
                 device: torch.device) -> None:
        self.cfg, self.batches, self.val, self.vae = cfg.train.teacher, batches, val, vae
        self.play_noise = float(cfg.model.play_context_noise)
        self.model = build_denoiser(num_actions, plain(cfg.model.denoiser)).to(device)  # its variant's class
        if self.cfg.init:  # continue a trained teacher (its EMA starts from its weights too)
            self.model.load_state_dict(_init_weights(Path(self.cfg.init), self.model).state_dict())
        d = cfg.model.denoiser
        self.chance = ChanceCode(num_actions, d.context_length, d.latent_channels, d.latent_size, d.chance_groups,
                                 d.chance_values, **plain(cfg.model.chance)).to(device) if d.chance_groups else None
        if self.chance is not None and self.chance.config.event_group and (batches.data.rewards is None or batches.data.dones is None):
            raise WorldgameError("model.chance.event_group=true: the data holds no rewards and game ends to name the events "
                                 "from; record it with `worldgame collect`, or set model.chance.event_group=false")
        continued, grown = _init_chance(Path(self.cfg.init), self.chance, need=self.cfg.prior_only) \
            if self.cfg.init and self.chance is not None else (False, False)
        if grown:
            _start_appeared(self.model, self.chance)
        if self.chance is not None and self.chance.names_places and not continued \
                and self.model.chance_map_embedding is not None:
            _start_where_maps(self.model, self.chance)
        if self.cfg.prior_only:  # the code is settled: the denoiser and the posterior that names it stay as they are
            for name, p in [*self.model.named_parameters(), *self.chance.named_parameters()]:
                p.requires_grad_(name.startswith("prior"))
        self.nets = torch.nn.ModuleDict({"denoiser": self.model, **({"chance": self.chance} if self.chance is not None else {})})
        self.ema = EMAModel(self.nets.parameters(), decay=self.cfg.ema_decay, use_ema_warmup=True)
        self.noise = train_scheduler(cfg.model.prediction_type)
        self.lcm = lcm_scheduler(cfg.model.prediction_type)
        self.ddim = teacher_scheduler(self.lcm.config)
        self.unroll_sampler = play_scheduler(str(self.cfg.unroll_sampler), "leading", cfg.model.prediction_type)
        self.background, self.departure = _background(batches.latents, device) \
            if self.cfg.foreground_weight != 1 else (None, 0.0)
        self.val_batch = val.at(val.data.ends[torch.randperm(len(val.data.ends), generator=torch.Generator().manual_seed(0))[:256]], None)

    def trainable(self) -> torch.nn.Module:
        return self.model if self.chance is None else self.nets  # the denoiser alone: old runs resume as before

    def loss(self, gen: torch.Generator) -> torch.Tensor:
        b = self.batches.sample(self.cfg.batch_size, gen)
        if self.cfg.prior_only:
            return self.cfg.prior_weight * self._prior_loss(b, gen)
        if self.cfg.own_share:
            self._own_context(b, gen)
        z0 = b["target"]
        eps = torch.randn(z0.shape, generator=gen).to(z0.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (len(z0),), generator=gen).to(z0.device)
        zt = self.noise.add_noise(z0, eps, t)
        code, chance_loss = None, 0.0
        if self.chance is not None:
            posterior = self.chance.posterior(b["context"], b["actions"], z0, self._expected(b))
            code = self.chance.code(posterior, b.get("events"), gen if z0.device.type == "cpu" else None,
                                    self.cfg.posterior_noise)  # (B, G, V) one-hot
            prior = self.chance.prior(b["clean_context"], b["actions"], code.detach().argmax(-1))
            ce = self._prior_ce(prior, code.detach(), b) + self._prior_loss(None, gen)
            learnt = self.chance.learnt  # the groups the posterior chooses (not the data's event group)
            chance_loss = (self.cfg.prior_weight * ce + self.cfg.usage_weight * diversity_loss(learnt(posterior))
                           + (self.cfg.rate_weight * rate(learnt(posterior), learnt(prior)) if self.cfg.rate_weight else 0.0))
        out = self.model(zt, t, b["context"], b["actions"], b["context_noise"], code)
        if self.noise.config.prediction_type == "sample":
            target = z0
        elif self.noise.config.prediction_type == "v_prediction":
            target = self.noise.get_velocity(z0, eps, t)
        else:
            target = eps
        error = (out - target).square()
        if self.background is not None:
            error = error * self._cell_weights(z0, b["clean_context"][:, -1])
        if self.cfg.rare_unbiased:  # the uniform data's loss, though a rare_share of the batch is drawn around events
            return (error.flatten(1).mean(1) * b["weight"]).mean() + chance_loss
        return error.mean() + chance_loss

    def _cell_weights(self, target: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) loss weights: ``foreground_weight`` on the latent cells where the next frame or the
        last real one departs from the game's background (an object there, or one that just left) and
        their neighbours (where it moves to, its blurred edge), 1 elsewhere, scaled to a mean of 1 per
        frame so the loss keeps its size. An orb is 2-4 of 256 cells: by the plain mean its intensity is
        a rounding error against the background the net already draws, and in a dream the small
        shortfall each frame compounds into a fade."""
        def away(z: torch.Tensor) -> torch.Tensor:
            return (z - self.background).square().mean(1, keepdim=True) > self.departure
        near = F.max_pool2d((away(target) | away(last)).float(), 3, stride=1, padding=1)
        weight = 1 + (self.cfg.foreground_weight - 1) * near
        return weight / weight.mean((2, 3), keepdim=True)

    def _prior_loss(self, batch: dict[str, torch.Tensor] | None, gen: torch.Generator) -> torch.Tensor | float:
        """The prior's cross-entropy on the code the posterior names for ``batch`` (None: none) and for
        ``prior_batch`` more windows: the prior is small and events rare, so it learns from many more
        windows than the denoiser can afford."""
        batches = [batch] if batch is not None else []
        if self.cfg.prior_batch:
            batches.append(self.batches.sample(self.cfg.prior_batch, gen, noisy_context=False))
        ce = 0.0
        for b in batches:
            with torch.no_grad():
                code = self.chance.code(self.chance.posterior(b["context"], b["actions"], b["target"], self._expected(b)),
                                        b.get("events"), None)
            ce = ce + self._prior_ce(self.chance.prior(b["clean_context"], b["actions"], code.argmax(-1)), code, b)
        return ce

    @torch.no_grad()
    def _own_context(self, b: dict[str, torch.Tensor], gen: torch.Generator) -> None:
        """Replace the context of ``own_share`` of batch ``b``'s windows by the model's own dream, as play
        makes it: from the real context ``n`` frames earlier (n drawn from 1..unroll), the unroll sampler
        draws each frame with the recorded actions, told the code the posterior names for the real one
        where the model has a chance code (so the dream keeps to the
        recorded game and its events, and the real target stays the right answer), each sliding into the
        context. The window's target and actions stay the real ones: the denoiser learns to draw the game's
        next frame from its own drifted frames -- a dimmer orb brought back, not faded further. Windows too
        near their episode's start keep the real context. The prior keeps learning on the real (clean)
        context: the recorded next frame's code and event follow from the real game, not from the dream,
        and paired with a drifted dream they taught the prior hits and coins no orb caused (lives lost
        1.5x the game's rate, two coins in 16 % of frames; on the real context 1.2x and 2 %, fidelity.md).
        No host sync beyond the batch's indices."""
        rows = torch.randperm(len(b["ends"]), generator=gen)[:round(len(b["ends"]) * self.cfg.own_share)]
        n = int(torch.randint(1, self.cfg.unroll + 1, (1,), generator=gen))
        rows = rows[self.batches.has_room(b["ends"][rows], n)]
        if not len(rows):
            return
        dev = b["target"].device
        dgen = torch.Generator(device=dev).manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        first = b["ends"][rows] - n  # the first frame the model dreams
        frames = iter(range(n))

        def told(context: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
            """The code the posterior names for the real frame being dreamed, given the dream so far."""
            real = self.batches.at(first + next(frames), None)
            real["context"] = context
            posterior = self.chance.posterior(context, actions, real["target"], self._expected(real))
            return self.chance.code(posterior, real.get("events"), None).argmax(-1)

        context = own_rollout(self.model, self.unroll_sampler, self.batches, b["ends"][rows], n, self.cfg.unroll_steps,
                              self.play_noise, dgen, told if self.chance is not None else None)
        level = b["context_noise"][rows]
        level = (level if level.dim() == 2 else level[:, None].expand(-1, context.shape[1]))[:, :, None, None, None]
        b["context"] = b["context"].clone()
        b["context"][rows] = context + level * torch.randn(context.shape, generator=dgen, device=dev)

    def _expected(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """What the denoiser expects ``batch``'s next latents to be, for a ``where`` posterior (else None)."""
        return expected_next(self.model, self.chance, batch["context"], batch["actions"], batch.get("events"),
                             batch["context_noise"], self.noise)

    def _prior_ce(self, prior: torch.Tensor, code: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The prior's cross-entropy on ``code`` (B, G, V one-hot) of ``batch``'s windows, each weighted
        by its ``weight``, 1 / its sampling odds: that gives the uniform data's loss, so the prior keeps the game's odds of
        events (the rare_share drawn around them teaches a prior that cannot yet tell them apart that
        they are common: invented orbs) while it still learns from every window drawn; but at the
        game's odds (~1 % of Bouncer's frames) the prior learnt nothing of *when* a point or a hit
        comes in 5,500 steps, so ``prior_drawn_odds`` lets it learn from the windows as drawn.
        A chained prior with an event group learns its event at the game's odds and its later groups
        from the windows as drawn: they are drawn given the event, and the odds of *where* a respawn
        goes given a hit are the same in a batch that oversamples hits as in the game.
        No host sync."""
        ce = F.cross_entropy(prior.flatten(0, 1), code.argmax(-1).flatten(), reduction="none").view(len(code), -1)
        if self.cfg.prior_drawn_odds:
            return ce.mean()
        if self.chance.chained and self.chance.config.event_group:
            return ((ce[:, 0] * batch["weight"]).mean() + ce[:, 1:].sum(1).mean()) / ce.shape[1]
        return (ce.mean(1) * batch["weight"]).mean()

    def after_step(self) -> None:
        self.ema.step(self.nets.parameters())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.ema.store(self.nets.parameters())
        self.ema.copy_to(self.nets.parameters())
        self.nets.eval()
        vb = self.val_batch
        draw = self.chance.drawer() if self.chance is not None else None  # the code drawn from the prior, as in play
        # 1 step: x0 straight from t=999 (LCM's schedule; DDIM's "leading" 1-step grid would start at t=0)
        m = {"psnr1": teacher_forced_psnr(lambda c, a: sample(self.model, self.lcm, c, a, 1, draw_code=draw), self.vae, vb),
             "psnr4": teacher_forced_psnr(lambda c, a: sample(self.model, self.ddim, c, a, 4, draw_code=draw), self.vae, vb)}
        if self.chance is not None:
            m.update(chance_figures(self.model, self.chance, self.lcm, self.vae, vb))
        m.update(closed_loop_check(self.model, self.ddim, self.vae, self.val, 4, self.play_noise, draw_code=draw))
        self.nets.train()
        self.ema.restore(self.nets.parameters())
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
        self.ema.store(self.nets.parameters())
        self.ema.copy_to(self.nets.parameters())
        try:
            yield self.model if self.chance is None else {"teacher": self.model, "denoiser": self.model, "chance": self.chance}
        finally:
            self.ema.restore(self.nets.parameters())

    def checkpoint_parts(self, out: Path) -> tuple[str, ...]:
        # also the playable denoiser/ (a 1-4 step x0 sampler) until distillation has started writing its own
        parts = ("teacher",) if (out / "state_distill.pt").exists() else ("teacher", "denoiser")
        return parts if self.chance is None else (*parts, "chance")


def _background(latents: torch.Tensor, device: torch.device, frames: int = 4096) -> tuple[torch.Tensor, float]:
    """The game's background in latent space, (1, C, h, w): each element's median over ``frames`` training
    latents drawn with a fixed seed (the same on a resume); and the departure from it (mean square over
    channels) past which a cell holds an object: FOREGROUND_DEPARTURE times its mean over those latents."""
    pick = torch.randperm(len(latents), generator=torch.Generator().manual_seed(0))[:frames]
    sample = latents[pick].float()
    background = sample.median(0).values[None]
    return background.to(device), FOREGROUND_DEPARTURE * float((sample - background).square().mean())


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
    init = _load_part(folder, "teacher", cls, hint)
    def shape(m: ActionDenoiser) -> dict:  # the public settings, lists and tuples alike
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in m.config.items() if not k.startswith("_")}

    chance = ("chance_groups", "chance_values", "chance_dim", "chance_map")
    unchanced = {k: v for k, v in shape(model).items() if k not in chance}
    if shape(init) == shape(model):
        return init
    if init.chance_embedding is None and model.chance_embedding is not None and \
            {k: v for k, v in shape(init).items() if k not in chance} == unchanced:
        return _with_code(init, model)
    raise WorldgameError(f"train.teacher.init={folder}: its teacher/ has another shape than model= here; {hint}")


def _load_part(folder: Path, name: str, cls: Any, hint: str) -> Any:
    """Part ``name``/ of checkpoint ``folder`` (train.teacher.init), checked as a user's load checks it."""
    part = folder / name
    check_part(cls, part, hint)
    try:
        init = cls.from_pretrained(part, local_files_only=True, use_safetensors=True).float()
    except Exception as e:
        raise WorldgameError(f"train.teacher.init={folder}: its {name}/ is damaged ({type(e).__name__}); {hint}") from e
    if not all(torch.isfinite(p).all() for p in init.parameters()):  # as the play loader refuses them
        raise WorldgameError(f"train.teacher.init={folder}: its {name}/ weights hold NaN or inf; {hint}")
    return init


def _init_chance(folder: Path, chance: ChanceCode, need: bool = False) -> tuple[bool, bool]:
    """Continue the chance code of checkpoint ``folder`` (train.teacher.init) where it has one of this
    run's shape: the teacher continued reads the codes its posterior names, so a fresh posterior
    would make it learn them anew. The prior's weights are continued where this run's prior has
    the same (a chained prior continues an unchained one of the same net, its new weights starting
    at zero, so it first draws as that one did); a prior of another net (model.chance.prior_net)
    starts afresh and learns the continued posterior's code, and a posterior of another net
    (model.chance.posterior_net) starts afresh, naming a code of its own that the continued
    denoiser learns to read; an event group grown by the ``appeared`` value (the one value the init's never
    drew) starts it as _start_appeared says. Returns whether the posterior was continued and whether
    the code grew so."""
    part = folder / "chance"
    if not (part / "config.json").is_file():
        if need:
            raise WorldgameError(f"train.teacher.prior_only=true: train.teacher.init={folder} has no chance/ whose code the "
                                 "prior could learn; pass a checkpoint trained with a chance code")
        return False, False  # a teacher without a code: the code starts afresh (_with_code)
    hint = "pass a checkpoint folder whose chance/ is whole, or init=null to start afresh"
    init = _load_part(folder, "chance", ChanceCode, hint)
    mine = {k: v for k, v in chance.config.items() if not k.startswith("_")}
    theirs = {k: init.config.get(k, {"prior_net": "flat", "prior_chain": False, "posterior_net": "flat",
                                     "appeared": False, "event_width": 0}.get(k)) for k in mine}
    # a code may grow: a value more for the event group (appeared) starts as _start_appeared says, and a
    # net of another shape (event_width) afresh
    nets = ("prior_net", "prior_chain", "posterior_net", "where_floor", "appeared", "event_width")
    if {k: v for k, v in theirs.items() if k not in nets} != {k: v for k, v in mine.items() if k not in nets}:
        raise WorldgameError(f"train.teacher.init={folder}: its chance/ draws another code than model= here "
                             f"({theirs['groups']}x{theirs['values']}, event group {theirs['event_group']}); {hint}")
    if need and theirs["posterior_net"] != mine["posterior_net"]:
        raise WorldgameError(f"train.teacher.prior_only=true: train.teacher.init={folder} names its code with a "
                             f"{theirs['posterior_net']} posterior, not the model.chance.posterior_net={mine['posterior_net']} "
                             "here; set posterior_net as that checkpoint was trained")
    state = chance.state_dict()
    chance.load_state_dict({k: v for k, v in init.state_dict().items() if k in state and state[k].shape == v.shape},
                           strict=False)
    return theirs["posterior_net"] == mine["posterior_net"], bool(mine["appeared"] and not theirs["appeared"])


# the odds a grown appeared value starts at against "nothing happened": Bouncer's coin appears in ~1 % of frames
APPEARED_START_ODDS = 0.01


def _start_appeared(model: ActionDenoiser, chance: ChanceCode) -> None:
    """A code grown by the event value ``appeared`` (models/chance.py EVENT_APPEARED) starts it as "nothing
    happened" -- the denoiser's embedding and map of it, the prior's logit of it at
    :data:`APPEARED_START_ODDS` of nothing's -- so the expected latent the ``where`` rule compares with is
    the quiet frame's, and the appeared object is the surprise; the rest is learnt."""
    new = EVENT_APPEARED  # group 0's rows come first in each table
    head = chance.prior_event.head[-1] if chance.config.prior_net == "local" else chance.prior_head[-1]
    with torch.no_grad():
        for table in (model.chance_embedding, model.chance_map_embedding):
            if table is not None:
                table.weight[new] = table.weight[0]
        head.weight[new] = head.weight[0]
        head.bias[new] = head.bias[0] + math.log(APPEARED_START_ODDS)


def _start_where_maps(model: ActionDenoiser, chance: ChanceCode) -> None:
    """A fresh ``where`` code's learnt groups start the denoiser's code maps lighting the place they
    name (models/places.py ``where_maps``): the denoiser can read the place before it has learnt to."""
    maps = model.chance_map_embedding
    g, v, eg = maps.groups, maps.values, int(chance.config.event_group)
    with torch.no_grad():
        weight = maps.weight.view(g, v, *maps.weight.shape[1:])
        n = 2 * chance.places
        weight[eg:eg + n] = where_maps(v, maps.size, maps.dim, chance.places).view(n, v, *maps.weight.shape[1:]).to(weight)


def _with_code(init: ActionDenoiser, model: ActionDenoiser) -> ActionDenoiser:
    """A teacher without a chance code continued by one with it (issue 30): every shared weight is
    copied and the code's input columns (of ``cond_proj``, and of the input convolution that reads the
    code's map) start at zero, so at step 0 the new model draws exactly what the old one drew and
    learns to read the code from there (the embeddings keep their own init; their gradient arrives
    once those columns move)."""
    state = model.state_dict()
    for name, value in init.state_dict().items():
        if state[name].shape != value.shape:  # cond_proj's first layer, the code map's input convolution:
            # (out, inputs, ...) whose last inputs are the code's
            state[name] = torch.cat([value, torch.zeros_like(state[name][:, value.shape[1]:])], dim=1)
        else:
            state[name] = value
    model.load_state_dict(state)
    return model


@torch.no_grad()
def chance_figures(net, chance: ChanceCode, lcm, vae, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """What tells a working chance code from a dead one, on held-out pairs: each group's perplexity
    under the posterior (1 = dead), the prior's cross-entropy against the posterior's code (nats;
    log V = knows nothing), and 1-step teacher-forced PSNR given the posterior's code (what the
    denoiser can draw when told the outcome) against the prior's most likely one."""
    c, a = batch["context"], batch["actions"]
    expected = expected_next(net, chance, c, a, batch.get("events"), batch.get("context_noise"), lcm)
    code = chance.code(chance.posterior(c, a, batch["target"], expected), batch.get("events"), None).argmax(-1)
    prior = chance.prior(c, a, code)
    told = lambda cc, aa: sample(net, lcm, cc, torch.cat([aa, code], 1), 1)
    likely = lambda cc, aa: sample(net, lcm, cc, torch.cat([aa, chance.likeliest(c, a)], 1), 1)
    m = {f"code_ppl{g}": float(p) for g, p in enumerate(usage(code, chance.config.values))}
    m["prior_ce"] = F.cross_entropy(prior.flatten(0, 1), code.flatten()).item()
    if chance.config.event_group:  # the event group alone: how well the prior foresees a point or a hit
        m["event_ce"] = F.cross_entropy(prior[:, 0], code[:, 0]).item()
    m["psnr1_posterior"] = teacher_forced_psnr(told, vae, batch)
    m["psnr1_likely"] = teacher_forced_psnr(likely, vae, batch)
    return m


@torch.no_grad()
def expected_next(net, chance: ChanceCode, context: torch.Tensor, actions: torch.Tensor, events: torch.Tensor | None,
                  level: torch.Tensor | None, scheduler) -> torch.Tensor | None:
    """What denoiser ``net`` expects the next latent to be knowing the event but not the rest of the code
    (models/places.py ``expectation_code``): its clean estimate from pure noise (the last timestep,
    the start latent at the noise's mean), which a ``where`` posterior compares the real next latent
    with; None for another posterior. ``level``: the context's noise level (None: clean); ``scheduler``:
    any of the model's (its prediction type and noise schedule)."""
    if not chance.names_places:
        return None
    b, dev = len(context), context.device
    start = torch.zeros(b, *context.shape[2:], device=dev, dtype=context.dtype)
    last = torch.full((b,), SCHEDULE["num_train_timesteps"] - 1, device=dev, dtype=torch.long)
    level = level if level is not None else torch.zeros(b, device=dev)
    out = net(start, last, context, actions, level, expectation_code(chance, events, b).to(context.dtype))
    alphas = scheduler.alphas_cumprod.to(dev)
    return predicted_x0(scheduler.config.prediction_type, out, start, alphas[last])
